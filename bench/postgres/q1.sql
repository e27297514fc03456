-- Q1: relations of entity :x active at day :t (days since 1900-01-01).
-- Every begin/end change of a relation involving :x dated <= T (a start's
-- valid_to is an end change of the same event, effect 1); the latest by
-- (valid time, seq, effect) decides; active when it is a begin.
WITH changes AS (
    SELECT e.object AS other, e.rel_kind, c.at, e.seq, c.effect, c.begins, e.event_id
    FROM events e
    CROSS JOIN LATERAL (VALUES (e.valid_from, 0, e.op = 'start'), (e.valid_to, 1, false))
        AS c (at, effect, begins)
    WHERE e.subject = :x AND e.rel_kind IS NOT NULL
      AND e.valid_from <= DATE '1900-01-01' + (:t)::int
      AND c.at <= DATE '1900-01-01' + (:t)::int
    UNION ALL
    SELECT e.subject, e.rel_kind, c.at, e.seq, c.effect, c.begins, e.event_id
    FROM events e
    CROSS JOIN LATERAL (VALUES (e.valid_from, 0, e.op = 'start'), (e.valid_to, 1, false))
        AS c (at, effect, begins)
    WHERE e.object = :x AND e.rel_kind IS NOT NULL
      AND e.valid_from <= DATE '1900-01-01' + (:t)::int
      AND c.at <= DATE '1900-01-01' + (:t)::int
)
SELECT other, rel_kind, at AS since, event_id
FROM (
    SELECT DISTINCT ON (other, rel_kind) other, rel_kind, at, begins, event_id
    FROM changes
    ORDER BY other, rel_kind, at DESC, seq DESC, effect DESC
) latest
WHERE begins
ORDER BY other, rel_kind;
