-- Least-privilege access for the PayFlow ChatOps bot. Run ONCE per PayFlow database, as a
-- superuser (pg_stat_statements is not a trusted extension), e.g.
--     psql -U postgres -d payflow -v ON_ERROR_STOP=1 -f deploy/sql/payflow-bot.sql
-- then give the login role a password (and the bot a DSN with it):
--     psql -U postgres -d payflow -c "\password payflow_bot"
-- The server must preload the extension: shared_preload_libraries = 'pg_stat_statements'
-- (a restart), and pg_stat_statements.track = all to see statements inside functions.
-- Re-running the file is safe: it re-applies the same grants in one transaction.
--
-- What the bot can do with this, and nothing else:
--   * read server statistics (pg_monitor: pg_stat_activity, pg_stat_statements, sizes);
--   * read users.email, users.locked_until, users.failed_attempts (never password_hash or any
--     other column, never wallets or transactions);
--   * unlock ONE currently locked user through payflow_bot.unlock_user(email), which runs as
--     payflow_bot_definer: a NOLOGIN role that may only clear those two columns.
BEGIN;

CREATE EXTENSION IF NOT EXISTS pg_stat_statements;

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'payflow_bot') THEN
        CREATE ROLE payflow_bot LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE CONNECTION LIMIT 10;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'payflow_bot_definer') THEN
        CREATE ROLE payflow_bot_definer NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
    END IF;
END
$roles$;

GRANT pg_monitor TO payflow_bot;
-- A runaway statement from chat must not hold a connection or a lock for long.
ALTER ROLE payflow_bot SET statement_timeout = '10s';
ALTER ROLE payflow_bot SET lock_timeout = '2s';
ALTER ROLE payflow_bot SET idle_in_transaction_session_timeout = '30s';

GRANT USAGE ON SCHEMA public TO payflow_bot, payflow_bot_definer;
REVOKE ALL ON users FROM payflow_bot, payflow_bot_definer;
GRANT SELECT (email, locked_until, failed_attempts) ON users TO payflow_bot;
-- The definer needs to find the row (email, locked_until) and clear the lock; nothing more.
GRANT SELECT (email, locked_until), UPDATE (locked_until, failed_attempts) ON users TO payflow_bot_definer;

CREATE SCHEMA IF NOT EXISTS payflow_bot AUTHORIZATION payflow_bot_definer;
ALTER SCHEMA payflow_bot OWNER TO payflow_bot_definer;
REVOKE ALL ON SCHEMA payflow_bot FROM PUBLIC;
GRANT USAGE ON SCHEMA payflow_bot TO payflow_bot;

-- Unlocks exactly one user whose lock is in force, in one UPDATE, and returns 1. Otherwise it
-- raises and changes nothing (an exception undoes the statement):
--   22023 invalid_parameter_value  the email is empty or longer than 320 characters
--   P0002 no_data_found            no user has this email
--   55000 object_not_in_prerequisite_state  the user exists but is not locked now
--   P0003 too_many_rows            more than one row matched (emails are unique: a broken schema)
-- The messages name no email: they end up in the server log.
CREATE OR REPLACE FUNCTION payflow_bot.unlock_user(p_email text) RETURNS integer
    LANGUAGE plpgsql
    VOLATILE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    changed integer;
BEGIN
    IF p_email IS NULL OR length(p_email) = 0 OR length(p_email) > 320 THEN
        RAISE EXCEPTION 'unlock_user: the email must be 1 to 320 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE public.users
       SET locked_until = NULL, failed_attempts = 0
     WHERE email = p_email AND locked_until > now();
    GET DIAGNOSTICS changed = ROW_COUNT;
    IF changed > 1 THEN
        RAISE EXCEPTION 'unlock_user: % users matched one email; nothing was changed', changed
            USING ERRCODE = 'too_many_rows';
    ELSIF changed = 0 THEN
        IF EXISTS (SELECT 1 FROM public.users WHERE email = p_email) THEN
            RAISE EXCEPTION 'unlock_user: this user is not locked; nothing was changed'
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        RAISE EXCEPTION 'unlock_user: no user has this email; nothing was changed'
            USING ERRCODE = 'no_data_found';
    END IF;
    RETURN changed;
END
$fn$;

ALTER FUNCTION payflow_bot.unlock_user(text) OWNER TO payflow_bot_definer;
REVOKE ALL ON FUNCTION payflow_bot.unlock_user(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION payflow_bot.unlock_user(text) TO payflow_bot;

COMMIT;
