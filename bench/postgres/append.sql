-- One new event per transaction (durable: fsync and synchronous_commit on):
-- a relation start between two declared entities, with a payload of the
-- workload's size. pgbench sets :subject, :object (never equal), :day.
INSERT INTO events (event_id, recorded_at, valid_from, valid_to, kind, subject, object,
                    rel_kind, op, payload)
VALUES (gen_random_uuid(), now(), DATE '1900-01-01' + (:day)::int, NULL, 'trade_start',
        :subject, :object, 'trade', 'start',
        '{"source":"src-042","confidence":0.42,"lang":"en","ref":"0123456789abcdef","note":"treaty summit border talks envoy accord trade tariff troops embassy sanction pact crisis vote aid minister treaty summit border talks"}');
