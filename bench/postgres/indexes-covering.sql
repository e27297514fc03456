-- Covering indexes: per side and kind of change, INCLUDE-ing the answer
-- columns, so that Q1-Q3 are index-only scans (what a determined user does;
-- appends pay for it). Q4 keeps the plain per-side indexes.
CREATE INDEX events_relations_by_subject ON events (subject, valid_from, seq)
    INCLUDE (object, rel_kind, op, valid_to, recorded_at, event_id)
    WHERE rel_kind IS NOT NULL;
CREATE INDEX events_relations_by_object ON events (object, valid_from, seq)
    INCLUDE (subject, rel_kind, op, valid_to, recorded_at, event_id)
    WHERE rel_kind IS NOT NULL;
CREATE INDEX events_attributes ON events (subject, attr_key, valid_from, seq)
    INCLUDE (attr_value, event_id)
    WHERE attr_key IS NOT NULL;
CREATE INDEX events_subject_time ON events (subject, valid_from, seq);
CREATE INDEX events_object_time ON events (object, valid_from, seq);
CREATE INDEX events_subject_until ON events (subject, valid_to)
    WHERE op = 'occur' AND valid_to IS NOT NULL;
CREATE INDEX events_object_until ON events (object, valid_to)
    WHERE op = 'occur' AND valid_to IS NOT NULL;
