-- LOCAL USE ONLY (deploy/compose.yaml): passwords for the roles roles.sql creates, so the
-- containers can log in over TCP. Anywhere else, set real passwords (or another auth method)
-- from your secret store and never ship these.
-- Runs after roles.sql: compose mounts the two as 10-roles.sql and 20-passwords.sql.
ALTER ROLE wfe_owner PASSWORD 'wfe_owner_local';
ALTER ROLE wfe_service PASSWORD 'wfe_service_local';
