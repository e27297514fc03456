-- annals: list_root04. The first 100 consultations of the dyad in a month
-- drawn from 2015-01 .. 2024-12, in valid-time order, whole rows.
\set m random(0, 119)
SELECT *
FROM gdelt
WHERE ((actor1countrycode = '@A@' AND actor2countrycode = '@B@')
    OR (actor1countrycode = '@B@' AND actor2countrycode = '@A@'))
  AND day BETWEEN make_date(2015 + (:m)::int / 12, (:m)::int % 12 + 1, 1)
      AND (make_date(2015 + (:m)::int / 12, (:m)::int % 12 + 1, 1) + interval '1 month - 1 day')::date
  AND eventrootcode = '04'
ORDER BY day, globaleventid
LIMIT 100;
