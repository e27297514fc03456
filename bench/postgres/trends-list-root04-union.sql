-- annals: list_root04 (covering indexes; see trends-count-union.sql).
\set m random(0, 119)
SELECT *
FROM (
    SELECT * FROM gdelt
    WHERE actor1countrycode = '@A@' AND actor2countrycode = '@B@'
      AND day BETWEEN make_date(2015 + (:m)::int / 12, (:m)::int % 12 + 1, 1)
          AND (make_date(2015 + (:m)::int / 12, (:m)::int % 12 + 1, 1) + interval '1 month - 1 day')::date
      AND eventrootcode = '04'
    UNION ALL
    SELECT * FROM gdelt
    WHERE actor1countrycode = '@B@' AND actor2countrycode = '@A@'
      AND day BETWEEN make_date(2015 + (:m)::int / 12, (:m)::int % 12 + 1, 1)
          AND (make_date(2015 + (:m)::int / 12, (:m)::int % 12 + 1, 1) + interval '1 month - 1 day')::date
      AND eventrootcode = '04'
) dyad
ORDER BY day, globaleventid
LIMIT 100;
