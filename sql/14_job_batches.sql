-- The update job whatever the worker's batch size, pg_cron runs counted by
-- their transaction's outcome, and history written whatever rights the
-- job's role has.
SET client_min_messages = warning;
SET timezone = 'UTC';
CREATE EXTENSION pg_opsdemo;

-- opsdemo_update_tick() flips every pending row of its parity, whatever
-- the worker's batch size: 25 pending rows, batches of 4
SELECT opsdemo_generate(25, '2026-02-01', '2026-02-02', seed => 3);
SET opsdemo.update_batch_size = 4;
SELECT count(*) FILTER (WHERE id % 2 = 0) AS even_pending,
       count(*) FILTER (WHERE id % 2 = 1) AS odd_pending
  FROM t1 WHERE status = 0 \gset
SELECT opsdemo_update_tick('2026-11-21 10:00:02+00') = :even_pending AS flipped_all_even;
SELECT count(*) FILTER (WHERE status = 1 AND id % 2 = 1) AS odd_flipped,
       count(*) FILTER (WHERE status = 0 AND id % 2 = 0) AS even_left
  FROM t1;
SELECT opsdemo_update_tick('2026-11-21 10:00:03+00') = :odd_pending AS flipped_all_odd;
SELECT count(*) FILTER (WHERE status = 0) AS pending FROM t1;
SELECT count(*) AS wrong_groups FROM opsdemo_mv_sum_verify();
-- a batch exactly as large as the backlog, then an empty one
INSERT INTO t1 (date, amount, operation_guid, message)
SELECT d, 1, opsdemo_guid(d), '{"client_id": 1, "account_number": "1", "operation_type": "online"}'
  FROM generate_series('2026-02-01 00:00:00+00'::timestamptz, '2026-02-01 00:00:07+00', '1 second') d;
SELECT opsdemo_update_tick('2026-11-21 10:00:04+00') AS four_even;
SELECT opsdemo_update_tick('2026-11-21 10:00:06+00') AS none_left;

-- a trigger that suppresses the flip: nothing flipped, and no spinning on
-- rows that stay pending
CREATE FUNCTION keep_pending() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER keep_pending BEFORE UPDATE ON t1
  FOR EACH ROW WHEN (OLD.amount = 1) EXECUTE FUNCTION keep_pending();
SELECT opsdemo_update_tick('2026-11-21 10:00:05+00') AS suppressed;
DROP TRIGGER keep_pending ON t1;
DROP FUNCTION keep_pending();
SELECT opsdemo_update_tick('2026-11-21 10:00:05+00') AS four_odd;
RESET opsdemo.update_batch_size;
-- the batch size is for superusers to change
CREATE ROLE regress_opsdemo_batcher;
SET ROLE regress_opsdemo_batcher;
SET opsdemo.update_batch_size = 1;
RESET ROLE;
-- out of range
SET opsdemo.update_batch_size = 0;

-- ---- pg_cron runs count when their transaction ends ------------------------

TRUNCATE opsdemo_job_history;
CREATE VIEW insert_counts AS
  SELECT runs, failures, consecutive_failures, last_error
    FROM opsdemo_status() WHERE job = 'insert';
SELECT runs AS runs0, failures AS failures0 FROM insert_counts \gset
-- a run that commits
SELECT opsdemo_cron_tick('insert') > 0 AS inserted;
SELECT runs - :runs0 AS runs, failures - :failures0 AS failures FROM insert_counts;
-- a run whose body succeeds but whose transaction fails at COMMIT (here a
-- deferred trigger; mv_sum is written at that point too) is a failure,
-- with the error that failed it
CREATE FUNCTION fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'no commit for row %', NEW.id % 1 USING ERRCODE = 'P0099'; END $$;
CREATE CONSTRAINT TRIGGER fail_at_commit AFTER INSERT ON t1
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_at_commit();
\set VERBOSITY terse
SELECT opsdemo_cron_tick('insert') > 0 AS inserted;
\set VERBOSITY default
SELECT runs - :runs0 AS runs, failures - :failures0 AS failures,
       consecutive_failures, last_error FROM insert_counts;
DROP TRIGGER fail_at_commit ON t1;
DROP FUNCTION fail_at_commit();
-- rolled back by the caller
BEGIN;
SELECT opsdemo_cron_tick('insert') > 0 AS inserted;
ROLLBACK;
SELECT runs - :runs0 AS runs, failures - :failures0 AS failures,
       consecutive_failures, last_error FROM insert_counts;
-- in a subtransaction rolled back, of a transaction that commits
BEGIN;
SAVEPOINT s;
SELECT opsdemo_cron_tick('insert') > 0 AS inserted;
ROLLBACK TO SAVEPOINT s;
SELECT opsdemo_cron_tick('insert') > 0 AS inserted_again;
COMMIT;
SELECT runs - :runs0 AS runs, failures - :failures0 AS failures,
       consecutive_failures FROM insert_counts;
-- in a released subtransaction: counted with the commit
BEGIN;
SAVEPOINT s;
SELECT opsdemo_cron_tick('insert') > 0 AS inserted;
RELEASE SAVEPOINT s;
SELECT runs - :runs0 AS runs_before_commit FROM insert_counts;
COMMIT;
SELECT runs - :runs0 AS runs, failures - :failures0 AS failures FROM insert_counts;
-- only the committed runs left history rows
SELECT job, scheduler, ok, count(*) FROM opsdemo_job_history GROUP BY 1, 2, 3 ORDER BY 1;

-- ---- a least-privilege job role -------------------------------------------

-- INSERT and UPDATE on t1, and SELECT on the columns the job's statements
-- read (RETURNING id; the batch's WHERE and FOR UPDATE): no rights at all
-- on opsdemo_job_history, yet its runs are recorded
CREATE ROLE regress_opsdemo_jobs;
GRANT INSERT, UPDATE ON t1 TO regress_opsdemo_jobs;
GRANT SELECT (id, date, status) ON t1 TO regress_opsdemo_jobs;
GRANT EXECUTE ON FUNCTION opsdemo_cron_tick(text) TO regress_opsdemo_jobs;
TRUNCATE opsdemo_job_history;
SET ROLE regress_opsdemo_jobs;
SELECT opsdemo_cron_tick('insert') > 0 AS inserted;
SELECT opsdemo_cron_tick('update') >= 0 AS updated;
SELECT count(*) FROM opsdemo_job_history;
RESET ROLE;
SELECT job, scheduler, ok FROM opsdemo_job_history ORDER BY job;
SELECT has_table_privilege('regress_opsdemo_jobs', 'opsdemo_job_history', 'SELECT, INSERT, DELETE')
       AS job_role_has_history_rights;

DROP VIEW insert_counts;
DROP OWNED BY regress_opsdemo_jobs;
DROP ROLE regress_opsdemo_jobs;
DROP ROLE regress_opsdemo_batcher;
DROP EXTENSION pg_opsdemo;
