-- "Events naming A and B" is either order of the two actor countries: one
-- index per order, each ending with the day for the time window.
DROP INDEX IF EXISTS gdelt_dyad, gdelt_dyad_reverse;
CREATE INDEX gdelt_dyad ON gdelt (actor1countrycode, actor2countrycode, day);
CREATE INDEX gdelt_dyad_reverse ON gdelt (actor2countrycode, actor1countrycode, day);
