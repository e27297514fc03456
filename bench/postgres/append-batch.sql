-- 1,000 new events in one transaction (one statement, one commit).
INSERT INTO events (event_id, recorded_at, valid_from, valid_to, kind, subject, object,
                    rel_kind, op, payload)
SELECT gen_random_uuid(), now(), DATE '1900-01-01' + r.day, NULL, 'trade_start',
       r.subject, 1 + (r.subject + r.offset_) % 1000, 'trade', 'start',
       '{"source":"src-042","confidence":0.42,"lang":"en","ref":"0123456789abcdef","note":"treaty summit border talks envoy accord trade tariff troops embassy sanction pact crisis vote aid minister treaty summit border talks"}'::json
FROM generate_series(1, 1000) AS g (i)
CROSS JOIN LATERAL (
    SELECT 1 + (random() * 999)::int AS subject,
           (random() * 998)::int AS offset_,
           (random() * 46020)::int AS day,
           g.i AS i
) AS r;
