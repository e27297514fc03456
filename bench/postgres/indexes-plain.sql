-- Plain indexes (WORKLOAD.md): per side, by (entity, valid time, seq); and
-- partial indexes on valid_to for multi-day point events (Q4 overlap).
CREATE INDEX events_subject_time ON events (subject, valid_from, seq);
CREATE INDEX events_object_time ON events (object, valid_from, seq);
CREATE INDEX events_subject_until ON events (subject, valid_to)
    WHERE op = 'occur' AND valid_to IS NOT NULL;
CREATE INDEX events_object_until ON events (object, valid_to)
    WHERE op = 'occur' AND valid_to IS NOT NULL;
