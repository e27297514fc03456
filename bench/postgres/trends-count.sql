-- annals: count. The dyad's events per month over the ten years, with the
-- plain indexes: "naming A and B" as one OR of both orders (a BitmapOr);
-- a row matches one order only, so it counts once (A <> B).
SELECT date_trunc('month', day) AS month, count(*)
FROM gdelt
WHERE ((actor1countrycode = '@A@' AND actor2countrycode = '@B@')
    OR (actor1countrycode = '@B@' AND actor2countrycode = '@A@'))
  AND day BETWEEN DATE '2015-01-01' AND DATE '2024-12-31'
GROUP BY 1 ORDER BY 1;
