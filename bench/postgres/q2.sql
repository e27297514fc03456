-- Q2: state of entity :x at day :t in one round trip: the latest value per
-- attribute key (rows 'a'), plus the relations of Q1 (rows 'r').
WITH attributes AS (
    SELECT DISTINCT ON (attr_key) attr_key, attr_value, valid_from, event_id
    FROM events
    WHERE subject = :x AND attr_key IS NOT NULL
      AND valid_from <= DATE '1900-01-01' + (:t)::int
    ORDER BY attr_key DESC, valid_from DESC, seq DESC
), changes AS (
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
), relations AS (
    SELECT DISTINCT ON (other, rel_kind) other, rel_kind, at, begins, event_id
    FROM changes
    ORDER BY other, rel_kind, at DESC, seq DESC, effect DESC
)
SELECT 'a' AS part, NULL::int AS other, attr_key AS key, attr_value AS value,
       valid_from AS since, event_id
FROM attributes
UNION ALL
SELECT 'r', other, rel_kind, NULL, at, event_id
FROM relations
WHERE begins
ORDER BY part, other, key;
