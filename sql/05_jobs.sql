-- The job bodies: one implementation, called by every scheduler.
SET client_min_messages = warning;
SET timezone = 'UTC';
CREATE EXTENSION pg_opsdemo;

-- the insert tick adds one pending row dated at the statement's start,
-- creating this month's and next month's partitions on the way
SELECT count(*) AS partitions_before FROM opsdemo_partitions;
SELECT opsdemo_insert_tick() AS first_id, now() AS tick_time \gset
SELECT id = :first_id AS returned_id, status, date = :'tick_time' AS dated_now,
       opsdemo_guid_time(operation_guid) = date AS guid_encodes_date,
       operation_type IN ('online', 'offline') AS typed, amount > 0 AS positive
  FROM t1;
SELECT tableoid::regclass = format('t1_%s', to_char(now() AT TIME ZONE 'UTC', 'YYYY_MM'))::regclass
       AS in_this_months_partition
  FROM t1;
SELECT count(*) AS partitions_after,
       count(*) FILTER (WHERE partition = format('t1_%s', to_char((now() + interval '1 month') AT TIME ZONE 'UTC', 'YYYY_MM')))
       AS next_month_ready
  FROM opsdemo_partitions;
SELECT opsdemo_insert_tick() > :first_id AS ids_increase;
SELECT count(*), count(DISTINCT operation_guid) FROM t1;

-- the update tick: even seconds flip even ids, odd seconds flip odd ids
TRUNCATE t1;
SELECT opsdemo_generate(10, '2026-02-01', '2026-02-02', seed => 11);
SELECT min(id) AS base FROM t1 \gset
SELECT opsdemo_update_tick('2026-11-21 10:00:04+00') AS flipped_at_even_second;
SELECT id - :base AS rel_id, id % 2 AS parity, status FROM t1 ORDER BY id;
SELECT opsdemo_update_tick('2026-11-21 10:00:04.999+00') AS nothing_left_even;
SELECT opsdemo_update_tick('2026-11-21 10:00:07.5+00') AS flipped_at_odd_second;
SELECT count(*) FILTER (WHERE status = 0) AS pending FROM t1;
SELECT opsdemo_update_tick('2026-11-21 10:00:09+00') AS nothing_left_odd;
-- parity is that of the seconds whatever the session time zone, and
-- before 2000 too
SET timezone = 'America/St_Johns';
INSERT INTO t1 (date, amount, operation_guid, message)
SELECT d, 1, opsdemo_guid(d), '{"client_id": 1, "account_number": "1", "operation_type": "online"}'
  FROM generate_series('2026-02-01 00:00:00+00'::timestamptz, '2026-02-01 00:00:03+00', '1 second') d;
SELECT opsdemo_update_tick('1999-12-31 23:59:58.5+00') AS even_before_2000;
SELECT opsdemo_update_tick('2026-11-21 10:00:01-03:30') AS odd_in_newfoundland;
SET timezone = 'UTC';
SELECT count(*) FILTER (WHERE status = 0) AS pending FROM t1;
-- the default is now()
INSERT INTO t1 (date, amount, operation_guid, message)
SELECT d, 1, opsdemo_guid(d), '{"client_id": 1, "account_number": "1", "operation_type": "online"}'
  FROM generate_series('2026-02-01 00:00:00+00'::timestamptz, '2026-02-01 00:00:01+00', '1 second') d;
SELECT opsdemo_update_tick() = 1 AS one_flipped_now;
-- bad input
SELECT opsdemo_update_tick(NULL);
SELECT opsdemo_update_tick('infinity');

-- the update tick reads pending rows through the partial index, never by
-- scanning t1, however many processed rows there are.  pg_stat_xact_* also
-- holds not yet reported counts of earlier transactions, so tick_scans()
-- compares the counters before and after the tick within one transaction.
CREATE FUNCTION add_six_pending() RETURNS void LANGUAGE sql AS $$
    INSERT INTO t1 (date, amount, operation_guid, message)
    SELECT d, 1, opsdemo_guid(d), '{"client_id": 1, "account_number": "1", "operation_type": "online"}'
      FROM generate_series('2026-02-01 00:00:00+00'::timestamptz,
                           '2026-02-01 00:00:05+00', '1 second') d
$$;
CREATE FUNCTION tick_scans(at timestamptz, OUT flipped bigint,
                           OUT seq_scans bigint, OUT used_index boolean)
LANGUAGE plpgsql AS $$
DECLARE
    seq_before bigint;
    idx_before bigint;
BEGIN
    SELECT sum(seq_scan), sum(idx_scan) INTO seq_before, idx_before
      FROM pg_stat_xact_user_tables WHERE relname LIKE 't1%';
    flipped := opsdemo_update_tick(at);
    SELECT sum(seq_scan) - seq_before, sum(idx_scan) > idx_before INTO seq_scans, used_index
      FROM pg_stat_xact_user_tables WHERE relname LIKE 't1%';
END $$;
TRUNCATE t1;
SELECT opsdemo_generate(30000, '2026-01-01', '2026-04-01', seed => 5, processed_share => 1);
ANALYZE t1;
SELECT add_six_pending();
BEGIN;
SELECT * FROM tick_scans('2026-11-21 10:00:00+00');
ROLLBACK;
-- even right after a bulk load with no statistics at all
TRUNCATE t1;
SELECT opsdemo_generate(30000, '2026-01-01', '2026-04-01', seed => 5, processed_share => 1);
SELECT add_six_pending();
BEGIN;
SELECT * FROM tick_scans('2026-11-21 10:00:01+00');
ROLLBACK;
-- the tick leaves the session's planner settings alone
SHOW enable_seqscan;

-- a failing tick changes nothing
ALTER TABLE t1 ADD CONSTRAINT no_flips CHECK (status = 0) NOT VALID;
\set VERBOSITY terse
SELECT opsdemo_update_tick('2026-11-21 10:00:01+00');
\set VERBOSITY default
ALTER TABLE t1 DROP CONSTRAINT no_flips;
SELECT count(*) FILTER (WHERE status = 0) AS still_pending FROM t1;
DROP FUNCTION add_six_pending();
DROP FUNCTION tick_scans(timestamptz);
DROP EXTENSION pg_opsdemo;
