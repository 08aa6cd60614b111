-- The two roles wfe runs with on PostgreSQL. Run once as a superuser, then
-- `wfe migrate` as wfe_owner (WFE_ADMIN_DATABASE_URL) grants wfe_service what it needs.
CREATE ROLE wfe_owner LOGIN NOSUPERUSER NOBYPASSRLS;
CREATE ROLE wfe_service LOGIN NOSUPERUSER NOBYPASSRLS;  -- owns nothing; row-level security binds it
CREATE DATABASE wfe OWNER wfe_owner;
