-- The extension's own statements count their rows into mv_sum as the rows
-- are written (opsdemo_mv_sum_count_now() in the WHEN clauses), so no
-- trigger event is queued for them: COPY FROM into t1 without a WHERE
-- clause, the jobs, the generator.  Every other writer goes through the
-- row trigger as before.  pg_stat_xact_user_functions shows which way a
-- row went (track_functions = all counts C functions too).
SET client_min_messages = warning;
SET timezone = 'UTC';
CREATE EXTENSION pg_opsdemo;
SELECT opsdemo_generate(1000, '2026-01-01', '2026-03-01', seed => 16, clients => 10,
                        processed_share => 0.5);
SET track_functions = 'all';

-- calls of the row trigger and of count_now (true or false) in this
-- transaction; pg_stat_force_next_flush() before each BEGIN below makes the
-- counters start there
CREATE FUNCTION pg_temp.calls(OUT row_trigger bigint, OUT count_now bigint)
LANGUAGE sql AS $$
    SELECT coalesce(sum(calls) FILTER (WHERE funcname = 'opsdemo_mv_sum_row_trigger'), 0),
           coalesce(sum(calls) FILTER (WHERE funcname = 'opsdemo_mv_sum_count_now'), 0)
      FROM pg_stat_xact_user_functions
$$;
CREATE TEMP TABLE rows_file AS
SELECT date, amount, status, operation_guid, message FROM t1 ORDER BY id LIMIT 200;
SELECT count(*) FILTER (WHERE status = 1) AS status_1_rows FROM rows_file;
-- files the server writes and reads, one set per backend
SELECT '/tmp/opsdemo_regress_16_' || pg_backend_pid() AS file_prefix \gset
\set rows_path :file_prefix'_rows.copy'
-- the copies need GUIDs of their own
UPDATE rows_file SET operation_guid = opsdemo_guid(date);
COPY rows_file TO :'rows_path';

-- COPY FROM: every status-1 row counted by count_now, no trigger event
SELECT pg_stat_force_next_flush() \gset
BEGIN;
COPY t1 (date, amount, status, operation_guid, message) FROM :'rows_path';
SELECT * FROM pg_temp.calls();
SELECT * FROM opsdemo_mv_sum_verify();
ROLLBACK;

-- COPY FROM ... WHERE evaluates the caller's expression: the trigger counts
SELECT pg_stat_force_next_flush() \gset
BEGIN;
COPY t1 (date, amount, status, operation_guid, message) FROM :'rows_path'
    WHERE amount > 0;
SELECT * FROM pg_temp.calls();
SELECT * FROM opsdemo_mv_sum_verify();
ROLLBACK;

-- into a partition directly: counted as it is written too
SELECT pg_stat_force_next_flush() \gset
BEGIN;
CREATE TEMP TABLE january AS
SELECT nextval(pg_get_serial_sequence('t1', 'id')) AS id, *
  FROM rows_file WHERE date < '2026-02-01';
\set january_path :file_prefix'_january.copy'
COPY january TO :'january_path';
COPY t1_2026_01 (id, date, amount, status, operation_guid, message)
    FROM :'january_path';
SELECT row_trigger FROM pg_temp.calls();
SELECT * FROM opsdemo_mv_sum_verify();
ROLLBACK;

-- a COPY that fails halfway (a duplicate GUID) leaves mv_sum as it was,
-- also when only its savepoint rolls back
SELECT pg_stat_force_next_flush() \gset
BEGIN;
SAVEPOINT s;
COPY t1 (date, amount, status, operation_guid, message) FROM :'rows_path';
\set VERBOSITY terse
COPY t1 (date, amount, status, operation_guid, message) FROM :'rows_path';
\set VERBOSITY default
ROLLBACK TO SAVEPOINT s;
SELECT * FROM opsdemo_mv_sum_verify();
COPY t1 (date, amount, status, operation_guid, message) FROM :'rows_path';
COMMIT;
SELECT * FROM opsdemo_mv_sum_verify();

-- an INSERT statement of the caller's own: the trigger counts
SELECT pg_stat_force_next_flush() \gset
BEGIN;
INSERT INTO t1 (date, amount, status, operation_guid, message)
SELECT date, amount, status, opsdemo_guid(date), message FROM rows_file;
SELECT row_trigger > 0 AS trigger_counted, count_now FROM pg_temp.calls();
SELECT * FROM opsdemo_mv_sum_verify();
COMMIT;

-- the update tick and the generator (into months that exist): no events
SELECT pg_stat_force_next_flush() \gset
BEGIN;
SELECT opsdemo_update_tick('2026-11-21 00:00:00+00') > 0 AS flipped_even;
SELECT opsdemo_update_tick('2026-11-21 00:00:01+00') > 0 AS flipped_odd;
SELECT opsdemo_generate(300, '2026-01-01', '2026-03-01', seed => 17, clients => 10,
                        processed_share => 0.5);
SELECT row_trigger FROM pg_temp.calls();
SELECT * FROM opsdemo_mv_sum_verify();
COMMIT;
SELECT count(*) AS pending FROM t1 WHERE status = 0;

-- amounts of every size and sign (mv_sum.c adds them as integers of
-- 1/10000), and enough of the largest to overflow the int64 they are added
-- in (about 92,000 of 9999999999.99): exact by COPY (counted as written),
-- by INSERT (the trigger), by a flip back and forth, and rolled back
CREATE TEMP TABLE amounts AS
SELECT r.date, a.amount, 1::int2 AS status, opsdemo_guid(r.date) AS operation_guid,
       r.message
  FROM (SELECT date, message FROM t1 WHERE status = 1 ORDER BY id LIMIT 1) r,
       LATERAL (SELECT unnest('{0, 0.01, -0.01, 0.5, 1, 9999.99, 10000, 10000.01,
                                -123456.78, 99999999.99, -9999999999.99}'::numeric[])
                UNION ALL
                SELECT 9999999999.99 FROM generate_series(1, 100000)) a(amount);
\set amounts_path :file_prefix'_amounts.copy'
COPY amounts TO :'amounts_path';
SELECT pg_stat_force_next_flush() \gset
BEGIN;
COPY t1 (date, amount, status, operation_guid, message) FROM :'amounts_path';
SELECT row_trigger FROM pg_temp.calls();
SELECT * FROM opsdemo_mv_sum_verify();
INSERT INTO t1 (date, amount, status, operation_guid, message)
SELECT date, -amount, status, opsdemo_guid(date), message FROM amounts;
SELECT row_trigger > 0 AS trigger_counted FROM pg_temp.calls();
SELECT * FROM opsdemo_mv_sum_verify();
SAVEPOINT flip;
UPDATE t1 SET status = 0 WHERE amount > 1000;
SELECT * FROM opsdemo_mv_sum_verify();
ROLLBACK TO SAVEPOINT flip;
COMMIT;
SELECT * FROM opsdemo_mv_sum_verify();
SELECT total_sum, row_count FROM mv_sum
 WHERE (client_id, operation_type) = (SELECT client_id, operation_type FROM t1
                                       WHERE amount = -123456.78);

-- with opsdemo.mv_sum_apply = statement, mv_sum holds the COPY's rows as
-- soon as it ends
SELECT pg_stat_force_next_flush() \gset
BEGIN;
SET LOCAL opsdemo.mv_sum_apply = statement;
CREATE TEMP TABLE before_copy AS SELECT sum(row_count) AS n FROM mv_sum;
UPDATE rows_file SET operation_guid = opsdemo_guid(date);
COPY rows_file TO :'rows_path';
COPY t1 (date, amount, status, operation_guid, message) FROM :'rows_path';
SELECT sum(row_count) - (SELECT n FROM before_copy) AS counted_at_once FROM mv_sum;
ROLLBACK;

-- a disabled trigger evaluates no WHEN clause: COPY counts nothing, as
-- with any write that bypasses the triggers; opsdemo_mv_sum_rebuild() mends
SELECT pg_stat_force_next_flush() \gset
BEGIN;
ALTER TABLE t1 DISABLE TRIGGER mv_sum_insert;
COPY t1 (date, amount, status, operation_guid, message) FROM :'rows_path';
SELECT * FROM pg_temp.calls();
SELECT count(*) > 0 AS mv_sum_differs FROM opsdemo_mv_sum_verify();
SELECT opsdemo_mv_sum_rebuild() > 0 AS rebuilt;
SELECT * FROM opsdemo_mv_sum_verify();
ROLLBACK;

-- a trigger function runs one trigger level deeper than the COPY that
-- fired it: count_now refuses to count there, and the rows it writes into
-- t1 go through the trigger
CREATE TABLE copy_log (n int);
CREATE FUNCTION pg_temp.copy_twice() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 1 AND NEW.amount > 0 THEN
        INSERT INTO copy_log VALUES (1);
        PERFORM opsdemo_mv_sum_count_now('t1_2026_02'::regclass, '(0,1)', NULL, NULL, NULL, NULL,
                                         1::int2, 1000000, 424242, 'online');
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER copy_twice BEFORE INSERT ON t1_2026_01
    FOR EACH ROW EXECUTE FUNCTION pg_temp.copy_twice();
SELECT pg_stat_force_next_flush() \gset
BEGIN;
UPDATE rows_file SET operation_guid = opsdemo_guid(date);
COPY rows_file TO :'rows_path';
COPY t1 (date, amount, status, operation_guid, message) FROM :'rows_path';
SELECT count(*) > 0 AS trigger_ran FROM copy_log;
COMMIT;
SELECT count(*) AS forged_groups FROM mv_sum WHERE client_id = 424242;
SELECT * FROM opsdemo_mv_sum_verify();
DROP TRIGGER copy_twice ON t1_2026_01;
DROP TABLE copy_log;

-- a role with the TRIGGER privilege on t1 can put the call into WHEN
-- clauses of its own: the row's own values are counted once however many
-- clauses hold the call, and values of its choosing not at all
CREATE ROLE regress_opsdemo_trigger_maker;
GRANT INSERT, TRIGGER ON t1 TO regress_opsdemo_trigger_maker;
-- a row trigger on t1 is made on every partition too
SELECT format('GRANT TRIGGER ON %s TO regress_opsdemo_trigger_maker', inhrelid::regclass)
  FROM pg_inherits WHERE inhparent = 't1'::regclass ORDER BY 1 \gexec
GRANT SELECT ON rows_file TO regress_opsdemo_trigger_maker;
CREATE FUNCTION pg_temp.noop() RETURNS trigger LANGUAGE plpgsql
    AS $$BEGIN RETURN NULL; END$$;
GRANT EXECUTE ON FUNCTION pg_temp.noop() TO regress_opsdemo_trigger_maker;
SET ROLE regress_opsdemo_trigger_maker;
CREATE TRIGGER a_same_call AFTER INSERT ON t1 FOR EACH ROW
    WHEN (opsdemo_mv_sum_count_now(NEW.tableoid, NEW.ctid, NULL, NULL, NULL, NULL,
          NEW.status, NEW.amount, NEW.client_id, NEW.operation_type))
    EXECUTE FUNCTION pg_temp.noop();
CREATE TRIGGER b_chosen_values AFTER INSERT ON t1 FOR EACH ROW
    WHEN (opsdemo_mv_sum_count_now(NEW.tableoid, NEW.ctid, NULL, NULL, NULL, NULL,
          1::int2, NEW.amount * 1000, 424242::bigint, NEW.operation_type))
    EXECUTE FUNCTION pg_temp.noop();
CREATE TRIGGER z_same_call AFTER INSERT ON t1 FOR EACH ROW
    WHEN (opsdemo_mv_sum_count_now(NEW.tableoid, NEW.ctid, NULL, NULL, NULL, NULL,
          NEW.status, NEW.amount, NEW.client_id, NEW.operation_type))
    EXECUTE FUNCTION pg_temp.noop();
COPY t1 (date, amount, status, operation_guid, message) FROM stdin;
2026-01-15 10:00:00+00	77.70	1	019bc119-0100-7000-a729-eeb2be048627	{"client_id": 3, "account_number": "40817810000000000003", "operation_type": "online"}
2026-01-15 10:00:01+00	0.30	1	019bc119-04e8-7000-85c1-e44f7d4f7936	{"client_id": 3, "account_number": "40817810000000000003", "operation_type": "online"}
\.
RESET ROLE;
SELECT count(*) AS forged_groups FROM mv_sum WHERE client_id = 424242;
SELECT * FROM opsdemo_mv_sum_verify();
DROP TRIGGER a_same_call ON t1;
DROP TRIGGER b_chosen_values ON t1;
DROP TRIGGER z_same_call ON t1;
REVOKE ALL ON t1 FROM regress_opsdemo_trigger_maker;
SELECT format('REVOKE ALL ON %s FROM regress_opsdemo_trigger_maker', inhrelid::regclass)
  FROM pg_inherits WHERE inhparent = 't1'::regclass ORDER BY 1 \gexec
REVOKE ALL ON rows_file FROM regress_opsdemo_trigger_maker;
DROP FUNCTION pg_temp.noop();
DROP ROLE regress_opsdemo_trigger_maker;

-- the files are the server's; where psql runs beside it (the host's
-- suite), remove them: nothing of the test is left in /tmp
\setenv OPSDEMO_REGRESS_FILES :file_prefix
\! rm -f "$OPSDEMO_REGRESS_FILES"_rows.copy "$OPSDEMO_REGRESS_FILES"_january.copy "$OPSDEMO_REGRESS_FILES"_amounts.copy

DROP EXTENSION pg_opsdemo;
