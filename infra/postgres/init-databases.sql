-- One database per service (INTERFACE.md), as devstack/postgres.py DATABASES creates them
-- natively. The postgres image runs this once, on an empty data directory, as POSTGRES_USER
-- (instagen), who therefore owns them. Each service applies its own migrations at start.
CREATE DATABASE "keys";
CREATE DATABASE "audit";
CREATE DATABASE "usage";
