-- Q4: the first 100 events naming entity :x whose valid time overlaps
-- [T1, T2 - 1 day], T1 = day :t, T2 = T1 + :d days, by (valid time, seq).
-- An event's valid time is valid_from, or [valid_from, valid_to] for a
-- multi-day point event (op 'occur'; a start's valid_to ends a relation).
SELECT seq, event_id, valid_from, valid_to, kind, subject, object, payload
FROM (
    (SELECT * FROM events
     WHERE subject = :x
       AND valid_from BETWEEN DATE '1900-01-01' + (:t)::int
                          AND DATE '1900-01-01' + (:t)::int + (:d)::int - 1
     ORDER BY valid_from, seq LIMIT 100)
    UNION ALL
    (SELECT * FROM events
     WHERE object = :x
       AND valid_from BETWEEN DATE '1900-01-01' + (:t)::int
                          AND DATE '1900-01-01' + (:t)::int + (:d)::int - 1
     ORDER BY valid_from, seq LIMIT 100)
    UNION ALL
    (SELECT * FROM events
     WHERE subject = :x AND op = 'occur' AND valid_to IS NOT NULL
       AND valid_to >= DATE '1900-01-01' + (:t)::int
       AND valid_from < DATE '1900-01-01' + (:t)::int)
    UNION ALL
    (SELECT * FROM events
     WHERE object = :x AND op = 'occur' AND valid_to IS NOT NULL
       AND valid_to >= DATE '1900-01-01' + (:t)::int
       AND valid_from < DATE '1900-01-01' + (:t)::int)
) overlapping
ORDER BY valid_from, seq
LIMIT 100;
