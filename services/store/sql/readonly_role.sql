-- LineWatch: a read-only Postgres role for history queries (quality engineers, BI tools).
--
-- Run as a superuser or the database owner, connected to the LineWatch database:
--   psql "postgresql://postgres@db-host/linewatch" \
--        -v ro_role=linewatch_ro -v ro_password=choose-a-secret \
--        -f services/store/sql/readonly_role.sql
-- Re-running it is safe. ALTER DEFAULT PRIVILEGES covers tables that the role running this
-- script creates later (run it as the role that runs `linewatch db upgrade`); otherwise run
-- it again after each migration. On Postgres < 15 also run, once, as the database owner:
--   REVOKE CREATE ON SCHEMA public FROM PUBLIC;

\if :{?ro_role}
\else
  \set ro_role linewatch_ro
\endif

SELECT format('CREATE ROLE %I LOGIN', :'ro_role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'ro_role') \gexec

\if :{?ro_password}
SELECT format('ALTER ROLE %I PASSWORD %L', :'ro_role', :'ro_password') \gexec
\endif

-- No write, no DDL: a read-only default, no CREATE anywhere, SELECT only.
SELECT format('ALTER ROLE %I SET default_transaction_read_only = on', :'ro_role') \gexec
SELECT format('REVOKE ALL ON SCHEMA public FROM %I', :'ro_role') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), :'ro_role') \gexec
SELECT format('GRANT USAGE ON SCHEMA public TO %I', :'ro_role') \gexec
SELECT format('REVOKE ALL ON ALL TABLES IN SCHEMA public FROM %I', :'ro_role') \gexec
SELECT format('GRANT SELECT ON ALL TABLES IN SCHEMA public TO %I', :'ro_role') \gexec
SELECT format('ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO %I',
              :'ro_role') \gexec
