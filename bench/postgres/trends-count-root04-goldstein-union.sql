-- annals: count_root04_goldstein (covering indexes; see trends-count-union.sql).
SELECT date_trunc('month', day) AS month, count(*), sum(goldsteinscale), avg(goldsteinscale)
FROM (
    SELECT day, goldsteinscale FROM gdelt
    WHERE actor1countrycode = '@A@' AND actor2countrycode = '@B@'
      AND day BETWEEN DATE '2015-01-01' AND DATE '2024-12-31' AND eventrootcode = '04'
    UNION ALL
    SELECT day, goldsteinscale FROM gdelt
    WHERE actor1countrycode = '@B@' AND actor2countrycode = '@A@'
      AND day BETWEEN DATE '2015-01-01' AND DATE '2024-12-31' AND eventrootcode = '04'
) dyad
GROUP BY 1 ORDER BY 1;
