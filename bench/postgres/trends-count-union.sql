-- annals: count (covering indexes). Each order of the dyad on its own, so
-- that each is an index-only scan; a row is in one of the two (A <> B).
SELECT date_trunc('month', day) AS month, count(*)
FROM (
    SELECT day FROM gdelt
    WHERE actor1countrycode = '@A@' AND actor2countrycode = '@B@'
      AND day BETWEEN DATE '2015-01-01' AND DATE '2024-12-31'
    UNION ALL
    SELECT day FROM gdelt
    WHERE actor1countrycode = '@B@' AND actor2countrycode = '@A@'
      AND day BETWEEN DATE '2015-01-01' AND DATE '2024-12-31'
) dyad
GROUP BY 1 ORDER BY 1;
