-- annals: count_goldstein. Per month: events, sum and mean Goldstein.
SELECT date_trunc('month', day) AS month, count(*), sum(goldsteinscale), avg(goldsteinscale)
FROM gdelt
WHERE ((actor1countrycode = '@A@' AND actor2countrycode = '@B@')
    OR (actor1countrycode = '@B@' AND actor2countrycode = '@A@'))
  AND day BETWEEN DATE '2015-01-01' AND DATE '2024-12-31'
GROUP BY 1 ORDER BY 1;
