/* pg_opsdemo--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_opsdemo UPDATE TO '1.1'" to load this file. \quit

-- Every change to the SQL objects between 1.0 and 1.1.  A fresh 1.1 install
-- (pg_opsdemo--1.1.sql) and 1.0 + this script must give the same catalog:
-- test/t/004_upgrade.pl compares their schema-only dumps.

--------------------------------------------------------------------------
-- stream mvsum: mv_sum trigger functions, retention
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
