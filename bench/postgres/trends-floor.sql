-- annals: floor. A statement that reads nothing: what a call costs alone
-- (pgbench, libpq, the protocol, a backend's round), as annals's floor is
-- a health check. Either variant.
SELECT 1;
