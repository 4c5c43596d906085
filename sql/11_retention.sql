-- Retention: old months leave t1 with their rows subtracted from mv_sum,
-- through opsdemo_partitions_drop() or a bare DROP TABLE / DETACH PARTITION.
SET client_min_messages = warning;
SET timezone = 'UTC';
CREATE EXTENSION pg_opsdemo;
SELECT opsdemo_generate(3000, '2026-01-01', '2026-05-01', seed => 11, clients => 30,
                        processed_share => 0.5);
-- a pending row in t1_default, which retention never touches
INSERT INTO t1 (date, amount, status, operation_guid, message)
SELECT d, 4.00, 1, opsdemo_guid(d),
       '{"account_number": "A1", "client_id": 1, "operation_type": "online"}'
  FROM (VALUES ('2020-06-01 00:00:00+00'::timestamptz)) v(d);
SELECT partition, bounds FROM opsdemo_partitions;
CREATE TEMP TABLE months AS
SELECT date_trunc('month', date) AS month, count(*) FILTER (WHERE status = 1) AS counted
  FROM t1 GROUP BY 1;

-- nothing ends before January: nothing dropped
SELECT opsdemo_partitions_drop('2026-01-31 23:59:59+00') AS dropped;
-- January ends exactly at February's start
SELECT opsdemo_partitions_drop('2026-02-01 00:00:00+00') AS dropped;
SELECT partition FROM opsdemo_partitions;
SELECT * FROM opsdemo_mv_sum_verify();
SELECT sum(row_count) = (SELECT sum(counted) FROM months WHERE month >= '2026-02-01'
                                                  OR month < '2026-01-01') AS counts_match
  FROM mv_sum;

-- rolled back, it leaves the month and mv_sum as they were
BEGIN;
SELECT opsdemo_partitions_drop('2026-03-01') AS dropped;
ROLLBACK;
SELECT partition FROM opsdemo_partitions;
SELECT * FROM opsdemo_mv_sum_verify();

-- in a transaction that changed the month's rows before, and under
-- REPEATABLE READ (the subtraction reads the rows as they are now)
BEGIN ISOLATION LEVEL REPEATABLE READ;
UPDATE t1 SET status = 1 WHERE date < '2026-03-01' AND id % 3 = 0;
SELECT opsdemo_partitions_drop('2026-03-01') AS dropped;
COMMIT;
SELECT * FROM opsdemo_mv_sum_verify();

-- only for those it is granted to; then as t1's owner
CREATE ROLE regress_opsdemo_retention;
SET ROLE regress_opsdemo_retention;
SELECT opsdemo_partitions_drop('2026-04-01');
RESET ROLE;
GRANT EXECUTE ON FUNCTION opsdemo_partitions_drop(timestamptz) TO regress_opsdemo_retention;
SET ROLE regress_opsdemo_retention;
SELECT opsdemo_partitions_drop('2026-04-01') AS dropped;
RESET ROLE;
SELECT partition FROM opsdemo_partitions;
SELECT * FROM opsdemo_mv_sum_verify();

-- a bare DROP TABLE of a partition takes its rows out of mv_sum too
SELECT opsdemo_partitions_ensure('2026-05-01', '2026-07-01') AS created;
UPDATE t1 SET date = date + interval '1 month', operation_guid = opsdemo_guid(date + interval '1 month')
 WHERE id % 5 = 0;
SELECT count(*) > 0 AS processed_rows_in_may FROM t1_2026_05 WHERE status = 1;
DROP TABLE t1_2026_05;
SELECT * FROM opsdemo_mv_sum_verify();
-- ... and a bare DETACH; the detached table keeps its rows, outside mv_sum,
-- and no longer subtracts them when truncated
ALTER TABLE t1 DETACH PARTITION t1_2026_04;
SELECT * FROM opsdemo_mv_sum_verify();
SELECT count(*) > 0 AS rows_kept FROM t1_2026_04 WHERE status = 1;
CREATE TEMP TABLE before_truncate AS SELECT * FROM mv_sum;
TRUNCATE t1_2026_04;
SELECT count(*) AS changed_groups FROM (TABLE mv_sum EXCEPT TABLE before_truncate) d;
DROP TABLE t1_2026_04;
-- a failed DROP leaves mv_sum alone
SELECT opsdemo_partitions_ensure('2026-07-01', '2026-08-01') AS created;
INSERT INTO t1 (date, amount, status, operation_guid, message)
SELECT d, 5.00, 1, opsdemo_guid(d),
       '{"account_number": "A1", "client_id": 2, "operation_type": "offline"}'
  FROM (VALUES ('2026-07-02 00:00:00+00'::timestamptz)) v(d);
CREATE VIEW july AS SELECT * FROM t1_2026_07;
DROP TABLE t1_2026_07;
DROP VIEW july;
SELECT * FROM opsdemo_mv_sum_verify();
-- a non-owner's DROP fails before anything is locked or subtracted
SET ROLE regress_opsdemo_retention;
DROP TABLE t1_2026_07;
ALTER TABLE t1 DETACH PARTITION t1_2026_07;
RESET ROLE;
-- DETACH CONCURRENTLY cannot be made exact: refused, nothing lost
ALTER TABLE t1 DETACH PARTITION t1_2026_07 CONCURRENTLY;
SELECT partition FROM opsdemo_partitions;
SELECT * FROM opsdemo_mv_sum_verify();
SELECT count(*) AS groups, sum(row_count) = (SELECT count(*) FROM t1 WHERE status = 1) AS counts_match
  FROM mv_sum;

-- other DROP TABLE and ALTER TABLE are untouched
CREATE TABLE unrelated (a int) PARTITION BY RANGE (a);
CREATE TABLE unrelated_1 PARTITION OF unrelated FOR VALUES FROM (1) TO (10);
ALTER TABLE unrelated DETACH PARTITION unrelated_1;
DROP TABLE unrelated, unrelated_1;
DROP TABLE IF EXISTS no_such_table;

-- the event trigger is the extension's, enabled ALWAYS
SELECT evtname, evtevent, evtenabled, evttags FROM pg_event_trigger;
SELECT opsdemo_partition_guard();

REVOKE EXECUTE ON FUNCTION opsdemo_partitions_drop(timestamptz) FROM regress_opsdemo_retention;
DROP ROLE regress_opsdemo_retention;
DROP EXTENSION pg_opsdemo;
SELECT count(*) AS event_triggers_left FROM pg_event_trigger;
