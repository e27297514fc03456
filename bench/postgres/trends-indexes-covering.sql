-- As indexes-plain, carrying what the counts read (Goldstein, root code),
-- so that they are answered by index-only scans.
DROP INDEX IF EXISTS gdelt_dyad, gdelt_dyad_reverse;
CREATE INDEX gdelt_dyad ON gdelt (actor1countrycode, actor2countrycode, day)
    INCLUDE (goldsteinscale, eventrootcode);
CREATE INDEX gdelt_dyad_reverse ON gdelt (actor2countrycode, actor1countrycode, day)
    INCLUDE (goldsteinscale, eventrootcode);
