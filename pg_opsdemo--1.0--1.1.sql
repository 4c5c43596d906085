/* pg_opsdemo--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_opsdemo UPDATE TO '1.1'" to load this file. \quit

-- Every change to the SQL objects between 1.0 and 1.1.  A fresh 1.1 install
-- (pg_opsdemo--1.1.sql) and 1.0 + this script must give the same catalog:
-- test/t/004_upgrade.pl compares their schema-only dumps.

--------------------------------------------------------------------------
-- mv_sum: trigger functions not executable by PUBLIC; retention
--------------------------------------------------------------------------

REVOKE ALL ON FUNCTION @extschema@.opsdemo_mv_sum_row_trigger() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.opsdemo_mv_sum_statement_trigger() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.opsdemo_mv_sum_truncate_trigger() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.opsdemo_mv_sum_rebuild() FROM PUBLIC;

-- Retention (src/mv_sum_retention.c): old months leave t1 only with their
-- rows subtracted from mv_sum.
CREATE FUNCTION @extschema@.opsdemo_partitions_drop(before timestamptz)
RETURNS integer
AS 'MODULE_PATHNAME', 'opsdemo_partitions_drop'
LANGUAGE C VOLATILE STRICT;
REVOKE ALL ON FUNCTION @extschema@.opsdemo_partitions_drop(timestamptz) FROM PUBLIC;

COMMENT ON FUNCTION @extschema@.opsdemo_partitions_drop(timestamptz) IS
'detach and drop the partitions of t1 whose range ends at or before "before", subtracting their rows from mv_sum; returns how many were dropped';

CREATE FUNCTION @extschema@.opsdemo_partition_guard()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'opsdemo_partition_guard'
LANGUAGE C;
REVOKE ALL ON FUNCTION @extschema@.opsdemo_partition_guard() FROM PUBLIC;

-- A bare DROP TABLE or DETACH PARTITION of a t1 partition subtracts its
-- rows from mv_sum first; DETACH ... CONCURRENTLY is refused.  ALWAYS, like
-- the row triggers: a session with session_replication_role = replica
-- still keeps mv_sum exact.
CREATE EVENT TRIGGER opsdemo_partition_guard ON ddl_command_start
    WHEN TAG IN ('DROP TABLE', 'ALTER TABLE')
    EXECUTE FUNCTION @extschema@.opsdemo_partition_guard();
ALTER EVENT TRIGGER opsdemo_partition_guard ENABLE ALWAYS;

--------------------------------------------------------------------------
-- Partition creation takes its advisory lock in the two-int4 key space,
-- formats bounds in ISO/UTC whatever the caller's DateStyle/TimeZone/
-- IntervalStyle, and refuses a look-alike table in a month's place.
-- Signature and privileges are unchanged (CREATE OR REPLACE keeps the
-- REVOKE of 1.0).
--------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION @extschema@.opsdemo_partitions_create(range_from timestamptz,
                                                      range_to timestamptz)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET datestyle = 'ISO, YMD'
SET timezone = 'UTC'
SET intervalstyle = 'postgres'
AS $$
DECLARE
    month_start timestamp;      -- UTC wall time of the month's first instant
    last_month  timestamp;
    lo          timestamptz;
    hi          timestamptz;
    part_name   text;
    part        regclass;
    created     integer := 0;
    moving      boolean;
BEGIN
    -- One creator at a time; others wait and then find the work done.  The
    -- key is in the two-int4 advisory key space, apart from the one-bigint
    -- keys applications use: class 1869640548 ('opsd'), object 1.
    PERFORM pg_advisory_xact_lock(1869640548, 1);

    month_start := date_trunc('month', range_from AT TIME ZONE 'UTC');
    last_month := date_trunc('month', (range_to - interval '1 microsecond') AT TIME ZONE 'UTC');

    WHILE month_start <= last_month LOOP
        lo := month_start AT TIME ZONE 'UTC';
        hi := (month_start + interval '1 month') AT TIME ZONE 'UTC';
        part_name := format('t1_%s', to_char(month_start, 'YYYY_MM'));
        part := to_regclass(format('%s.%I', '@extschema@', part_name));

        -- Skipping a look-alike would leave the month in the default
        -- partition for good.
        IF part IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM pg_inherits
                 WHERE inhrelid = part
                   AND inhparent = '@extschema@.t1'::regclass) THEN
            RAISE EXCEPTION 'relation "%" already exists and is not a partition of t1',
                            part_name
                USING ERRCODE = 'duplicate_table',
                      HINT = 'Drop or rename it so that the month''s partition can be created.';
        END IF;

        IF part IS NULL THEN
            -- Rows of this month in the default partition are moved through
            -- t1 itself, so triggers and logical replication see the move.
            moving := EXISTS (SELECT 1 FROM @extschema@.t1_default
                               WHERE date >= lo AND date < hi);
            IF moving THEN
                EXECUTE format('CREATE UNLOGGED TABLE %s.%I (LIKE @extschema@.t1 INCLUDING GENERATED)',
                               '@extschema@', part_name || '_moving');
                EXECUTE format(
                    'WITH moved AS (DELETE FROM @extschema@.t1 WHERE date >= $1 AND date < $2 '
                    'RETURNING id, date, amount, status, operation_guid, message) '
                    'INSERT INTO %s.%I (id, date, amount, status, operation_guid, message) '
                    'SELECT * FROM moved', '@extschema@', part_name || '_moving')
                USING lo, hi;
            END IF;

            -- ATTACH takes SHARE UPDATE EXCLUSIVE on t1 and ACCESS
            -- EXCLUSIVE on the default partition, until this transaction
            -- ends: hence the short transaction of a worker.
            EXECUTE format('CREATE TABLE %s.%I (LIKE @extschema@.t1 INCLUDING DEFAULTS '
                           'INCLUDING GENERATED INCLUDING CONSTRAINTS INCLUDING STORAGE)',
                           '@extschema@', part_name);
            PERFORM @extschema@.opsdemo_partition_prepare(
                format('%s.%I', '@extschema@', part_name)::regclass);
            EXECUTE format('ALTER TABLE @extschema@.t1 ATTACH PARTITION %s.%I '
                           'FOR VALUES FROM (%L) TO (%L)',
                           '@extschema@', part_name,
                           to_char(month_start, 'YYYY-MM-DD HH24:MI:SS') || '+00',
                           to_char(month_start + interval '1 month', 'YYYY-MM-DD HH24:MI:SS') || '+00');

            IF moving THEN
                EXECUTE format(
                    'INSERT INTO @extschema@.t1 (id, date, amount, status, operation_guid, message) '
                    'OVERRIDING SYSTEM VALUE '
                    'SELECT id, date, amount, status, operation_guid, message FROM %s.%I',
                    '@extschema@', part_name || '_moving');
                EXECUTE format('DROP TABLE %s.%I', '@extschema@', part_name || '_moving');
            END IF;
            created := created + 1;
        END IF;
        month_start := month_start + interval '1 month';
    END LOOP;
    RETURN created;
END
$$;

--------------------------------------------------------------------------
-- Scheduler, job bodies, pg_cron mode: no SQL object
-- changes.  The batched update job uses 1.0's pending index, and the new
-- setting opsdemo.update_batch_size lives in the library.
