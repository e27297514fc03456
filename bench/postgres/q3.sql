-- Q3: Q1 as known at annals seq :s, i.e. only events recorded up to
-- workload event :s - 1 (by recorded_at, strictly increasing with seq).
WITH known AS (
    SELECT recorded_at AS until FROM events WHERE seq = (:s)::int - 1
), changes AS (
    SELECT e.object AS other, e.rel_kind, c.at, e.seq, c.effect, c.begins, e.event_id
    FROM events e
    CROSS JOIN LATERAL (VALUES (e.valid_from, 0, e.op = 'start'), (e.valid_to, 1, false))
        AS c (at, effect, begins)
    WHERE e.subject = :x AND e.rel_kind IS NOT NULL
      AND e.valid_from <= DATE '1900-01-01' + (:t)::int
      AND c.at <= DATE '1900-01-01' + (:t)::int
      AND e.recorded_at <= (SELECT until FROM known)
    UNION ALL
    SELECT e.subject, e.rel_kind, c.at, e.seq, c.effect, c.begins, e.event_id
    FROM events e
    CROSS JOIN LATERAL (VALUES (e.valid_from, 0, e.op = 'start'), (e.valid_to, 1, false))
        AS c (at, effect, begins)
    WHERE e.object = :x AND e.rel_kind IS NOT NULL
      AND e.valid_from <= DATE '1900-01-01' + (:t)::int
      AND c.at <= DATE '1900-01-01' + (:t)::int
      AND e.recorded_at <= (SELECT until FROM known)
)
SELECT other, rel_kind, at AS since, event_id
FROM (
    SELECT DISTINCT ON (other, rel_kind) other, rel_kind, at, begins, event_id
    FROM changes
    ORDER BY other, rel_kind, at DESC, seq DESC, effect DESC
) latest
WHERE begins
ORDER BY other, rel_kind;
