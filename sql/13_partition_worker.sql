-- Partitions are created by a background worker in a short transaction of
-- its own, so that a long load does not hold the default partition's
-- ACCESS EXCLUSIVE lock (and block every reader of t1) until it commits.
-- test/isolation/specs/partition_worker.spec shows the concurrency.
SET client_min_messages = warning;
SET timezone = 'UTC';
CREATE EXTENSION pg_opsdemo;

-- a load that creates its month holds no lock on the default partition and
-- goes on routing its rows to the new month
BEGIN;
SELECT opsdemo_generate(500, '2032-01-01', '2032-02-01', seed => 1);
SELECT mode FROM pg_locks
 WHERE relation = 't1_default'::regclass AND pid = pg_backend_pid();
SELECT tableoid::regclass AS partition, count(*) FROM t1 GROUP BY 1;
ROLLBACK;
-- the month was committed by the worker: it stays, empty, after a rollback
SELECT partition FROM opsdemo_partitions ORDER BY 1;
SELECT count(*) FROM t1;

-- under REPEATABLE READ, with the snapshot taken before the month exists
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FROM t1;
SELECT opsdemo_generate(500, '2032-03-01', '2032-04-01', seed => 2);
SELECT tableoid::regclass AS partition, count(*) FROM t1 GROUP BY 1;
COMMIT;

-- committed rows of the month waiting in the default partition are moved
-- by the worker
INSERT INTO t1 (date, amount, status, operation_guid, message)
VALUES ('2032-05-10 00:00:00+00', 4, 1, opsdemo_guid('2032-05-10 00:00:00+00'),
        '{"client_id": 9, "account_number": "9", "operation_type": "offline"}');
SELECT opsdemo_partitions_ensure('2032-05-01', '2032-06-01');
SELECT tableoid::regclass AS partition, date FROM t1 WHERE date >= '2032-05-01';
SELECT * FROM opsdemo_mv_sum_verify();

-- A transaction that has used the default partition creates the month
-- itself (the worker could not lock the default partition before it ends):
-- its own rows of the month move, and a rollback takes the month back.
BEGIN;
INSERT INTO t1 (date, amount, operation_guid, message)
VALUES ('2033-05-10 00:00:00+00', 1, opsdemo_guid('2033-05-10 00:00:00+00'),
        '{"client_id": 1, "account_number": "1", "operation_type": "online"}');
SELECT opsdemo_partitions_ensure('2033-05-01', '2033-06-01');
SELECT tableoid::regclass AS partition, date FROM t1 WHERE date >= '2033-01-01';
SELECT mode FROM pg_locks
 WHERE relation = 't1_default'::regclass AND pid = pg_backend_pid() ORDER BY 1;
ROLLBACK;
SELECT count(*) AS t1_2033_05 FROM opsdemo_partitions WHERE partition = 't1_2033_05';
-- likewise while holding a lock on t1 that ATTACH PARTITION would wait for
BEGIN;
LOCK TABLE t1 IN SHARE UPDATE EXCLUSIVE MODE;
SELECT opsdemo_partitions_ensure('2033-07-01', '2033-08-01');
ROLLBACK;
-- ... or the partition creation lock
BEGIN;
SELECT pg_advisory_xact_lock(1869640548, 1);
SELECT opsdemo_partitions_ensure('2033-08-01', '2033-09-01');
ROLLBACK;
SELECT count(*) AS months_of_2033 FROM opsdemo_partitions WHERE partition LIKE 't1_2033%';

-- nothing is created or written in a read-only transaction
BEGIN READ ONLY;
SELECT opsdemo_partitions_ensure('2035-01-01', '2035-02-01');
ROLLBACK;
BEGIN READ ONLY;
SELECT opsdemo_generate(10, '2032-01-01', '2032-02-01', seed => 3);
ROLLBACK;
SET default_transaction_read_only = on;
SELECT opsdemo_generate(10, '2035-01-01', '2035-02-01', seed => 3);
RESET default_transaction_read_only;
SELECT count(*) AS months_of_2035 FROM opsdemo_partitions WHERE partition LIKE 't1_2035%';
SELECT count(*) AS rows_of_2032_01 FROM t1 WHERE date < '2032-02-01';

-- an error in the worker comes back with its SQLSTATE, message and hint,
-- and names the worker in the context
CREATE TABLE t1_2036_01 (x int);
SELECT opsdemo_partitions_ensure('2036-01-01', '2036-02-01');
\echo :LAST_ERROR_SQLSTATE
DROP TABLE t1_2036_01;
SELECT opsdemo_partitions_ensure('2036-01-01', '2036-02-01');

-- a role that may only INSERT gets months created (owned by t1's owner)
CREATE ROLE opsdemo_worker_inserter;
GRANT INSERT ON t1 TO opsdemo_worker_inserter;
GRANT EXECUTE ON FUNCTION opsdemo_partitions_ensure(timestamptz, timestamptz) TO opsdemo_worker_inserter;
SET ROLE opsdemo_worker_inserter;
SELECT opsdemo_partitions_ensure('2037-01-01', '2037-03-01');
RESET ROLE;
SELECT tablename, tableowner FROM pg_tables WHERE tablename LIKE 't1_2037%' ORDER BY 1;

-- the insert tick creates its months through the worker as well
SELECT count(*) AS this_month_before
  FROM opsdemo_partitions WHERE partition = to_char(now() AT TIME ZONE 'UTC', '"t1_"YYYY_MM');
BEGIN;
SELECT opsdemo_insert_tick() > 0 AS inserted;
SELECT count(*) AS this_month
  FROM opsdemo_partitions WHERE partition = to_char(now() AT TIME ZONE 'UTC', '"t1_"YYYY_MM');
SELECT count(*) AS exclusive_locks_on_default FROM pg_locks
 WHERE relation = 't1_default'::regclass AND pid = pg_backend_pid()
   AND mode = 'AccessExclusiveLock';
COMMIT;

DROP EXTENSION pg_opsdemo;
DROP ROLE opsdemo_worker_inserter;
