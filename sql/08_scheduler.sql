-- The scheduler's SQL interface: status, start/stop, privileges, GUC
-- validation and the pg_cron mode without pg_cron.  This server does not
-- preload pg_opsdemo, so the worker is started as a dynamic background
-- worker; it works in opsdemo.database ('postgres'), where the extension
-- is not installed, so it only waits there.
SET client_min_messages = warning;
SET timezone = 'UTC';
CREATE EXTENSION pg_opsdemo;

CREATE FUNCTION sqlstate_of(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;

-- one status row per job, with the configured intervals
SELECT job, scheduler, "interval", runs, failures, skipped
  FROM opsdemo_status() ORDER BY job;
SELECT count(*) AS history_rows FROM opsdemo_job_history;

-- the GUCs and their defaults
SELECT name, setting, unit, context, vartype
  FROM pg_settings WHERE name LIKE 'opsdemo.%' ORDER BY name;
SELECT enumvals FROM pg_settings WHERE name = 'opsdemo.scheduler';

-- start and stop without shared_preload_libraries; both are idempotent
SELECT opsdemo_worker_start() AS started;
SELECT opsdemo_worker_start() AS started_again;
-- the worker holds its slot before it shows in pg_stat_activity: wait (up to
-- 30 s) until it does
DO $$
BEGIN
    FOR i IN 1..300 LOOP
        PERFORM pg_stat_clear_snapshot();
        EXIT WHEN EXISTS (SELECT 1 FROM pg_stat_activity
                           WHERE backend_type = 'pg_opsdemo scheduler');
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SELECT count(*) AS scheduler_processes
  FROM pg_stat_activity WHERE backend_type = 'pg_opsdemo scheduler';
SELECT DISTINCT worker_pid IS NOT NULL AS has_pid FROM opsdemo_status();
SELECT opsdemo_worker_stop() AS stopped;
SELECT opsdemo_worker_stop() AS stopped_again;
SELECT DISTINCT state, worker_pid FROM opsdemo_status();

-- bad GUC values are rejected (ALTER SYSTEM validates; nothing is written)
ALTER SYSTEM SET opsdemo.scheduler = 'cron';
ALTER SYSTEM SET opsdemo.insert_interval = 0;
ALTER SYSTEM SET opsdemo.update_interval = '50ms';
ALTER SYSTEM SET opsdemo.update_interval = '2h';
ALTER SYSTEM SET opsdemo.insert_batch_size = 0;
ALTER SYSTEM SET opsdemo.history_retention = -1;
ALTER SYSTEM SET opsdemo.force_on_subscriber = 'maybe';
ALTER SYSTEM SET opsdemo.no_such_setting = 1;
-- they are server-wide (reload), not per session
SELECT sqlstate_of('SET opsdemo.update_interval = ''4s''') AS set_in_session;
SELECT sqlstate_of('SET opsdemo.scheduler = off') AS set_scheduler_in_session;

-- pg_cron mode needs pg_cron here; removing nothing is fine
SELECT opsdemo_schedule_cron();
SELECT opsdemo_unschedule_cron() AS removed;

-- what the pg_cron jobs run: the job bodies, counted and recorded
SELECT sum(runs) AS runs_before FROM opsdemo_status() \gset
SELECT opsdemo_cron_tick('insert') AS inserted_id \gset
SELECT count(*) = 1 AS one_row, bool_and(id = :inserted_id) AS returned_id,
       bool_and(status = 0) AS pending
  FROM t1;
SELECT opsdemo_cron_tick('update') = (:inserted_id % 2 = floor(extract(second FROM now()))::int % 2)::int
       AS flipped_by_parity_of_now;
SELECT job, scheduler, ok, scheduled_at <= started_at AS ordered, error
  FROM opsdemo_job_history ORDER BY job;
SELECT sum(runs) - :runs_before AS new_runs FROM opsdemo_status();
SELECT opsdemo_cron_tick('vacuum');
ALTER TABLE t1 RENAME TO t1_away;
SELECT opsdemo_cron_tick('update');
SELECT failures > 0 AS counted, last_error
  FROM opsdemo_status() WHERE job = 'update';
ALTER TABLE t1_away RENAME TO t1;
SELECT count(*) AS history_rows FROM opsdemo_job_history;

-- privileges: only the owner / superuser and whoever they grant may control
-- the scheduler; pg_monitor may read its state
CREATE ROLE regress_opsdemo_nobody;
CREATE ROLE regress_opsdemo_monitor IN ROLE pg_monitor;
SET ROLE regress_opsdemo_nobody;
SELECT sqlstate_of('SELECT opsdemo_worker_start()') AS start,
       sqlstate_of('SELECT opsdemo_worker_stop()') AS stop,
       sqlstate_of('SELECT opsdemo_status()') AS status,
       sqlstate_of('SELECT opsdemo_schedule_cron()') AS schedule,
       sqlstate_of('SELECT opsdemo_unschedule_cron()') AS unschedule,
       sqlstate_of('SELECT opsdemo_cron_tick(''insert'')') AS cron_tick,
       sqlstate_of('SELECT * FROM opsdemo_job_history') AS history;
SET ROLE regress_opsdemo_monitor;
SELECT sqlstate_of('SELECT opsdemo_worker_stop()') AS stop,
       sqlstate_of('SELECT opsdemo_status()') AS status,
       sqlstate_of('SELECT * FROM opsdemo_job_history') AS history;
RESET ROLE;

DROP ROLE regress_opsdemo_nobody;
DROP ROLE regress_opsdemo_monitor;
DROP FUNCTION sqlstate_of(text);
DROP EXTENSION pg_opsdemo;
