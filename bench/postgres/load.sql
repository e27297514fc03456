-- Bulk load (psql variables: entities_csv, events_csv), then the keys.
COPY entities FROM :'entities_csv' WITH (FORMAT csv, HEADER true);
COPY events (seq, event_id, recorded_at, valid_from, valid_to, kind, subject, object,
             rel_kind, op, attr_key, attr_value, payload)
    FROM :'events_csv' WITH (FORMAT csv, HEADER true);
ALTER TABLE events ADD PRIMARY KEY (seq);
ALTER TABLE events ADD CONSTRAINT events_event_id_key UNIQUE (event_id);
-- annals refuses effects naming undeclared entities; so does this schema.
ALTER TABLE events ADD CONSTRAINT events_subject_fkey FOREIGN KEY (subject) REFERENCES entities (id);
ALTER TABLE events ADD CONSTRAINT events_object_fkey FOREIGN KEY (object) REFERENCES entities (id);
SELECT setval(pg_get_serial_sequence('events', 'seq'), (SELECT max(seq) FROM events));
