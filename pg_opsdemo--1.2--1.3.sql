/* pg_opsdemo--1.2--1.3.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_opsdemo UPDATE TO '1.3'" to load this file. \quit

-- Every change to the SQL objects between 1.2 and 1.3.  A fresh 1.3 install
-- (pg_opsdemo--1.3.sql) and 1.0 + 1.0--1.1 + 1.1--1.2 + this script must
-- give the same catalog: test/t/004_upgrade.pl compares their schema-only
-- dumps.

--------------------------------------------------------------------------
-- mv_sum: the extension's own statements count their rows at once, without
-- queueing a trigger event per row (src/mv_sum_now.c).
--------------------------------------------------------------------------

-- Called by the WHEN clauses of mv_sum_insert and mv_sum_update (below) for
-- every row they let through.  While one of the extension's own statements
-- runs (the jobs' INSERT and UPDATE, opsdemo_generate, COPY FROM into t1
-- without a WHERE clause), it adds the row's change to the pending deltas
-- at once and returns true, so that no trigger event is queued for the
-- row (which PostgreSQL would store, then fetch the row again to fire);
-- at any other time, or called any other way, it does nothing and returns
-- false, and the row trigger counts the row.  Every writer of t1 evaluates
-- the WHEN clauses, so everyone may execute it (see src/mv_sum_now.c for
-- why a direct call cannot forge a change).
CREATE FUNCTION @extschema@.opsdemo_mv_sum_count_now(
    row_table oid, row_ctid tid,
    old_status smallint, old_amount numeric, old_client_id bigint, old_operation_type text,
    new_status smallint, new_amount numeric, new_client_id bigint, new_operation_type text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'opsdemo_mv_sum_count_now'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION @extschema@.opsdemo_mv_sum_count_now(oid, tid, smallint, numeric, bigint, text, smallint, numeric, bigint, text) IS
'internal, for the WHEN clauses of t1''s mv_sum triggers: counts the row''s change at once while one of the extension''s own statements runs, else returns false';

-- A trigger's WHEN clause cannot be altered: both triggers are made anew
-- (on t1 and, as clones, on every partition).  Takes SHARE ROW EXCLUSIVE on
-- t1 and its partitions until the update commits: writers of t1 wait.
DROP TRIGGER mv_sum_insert ON @extschema@.t1;
DROP TRIGGER mv_sum_update ON @extschema@.t1;
CREATE TRIGGER mv_sum_insert AFTER INSERT ON @extschema@.t1
    FOR EACH ROW
    WHEN (NEW.status = 1
          AND NOT @extschema@.opsdemo_mv_sum_count_now(
                NEW.tableoid, NEW.ctid, NULL, NULL, NULL, NULL,
                NEW.status, NEW.amount, NEW.client_id, NEW.operation_type))
    EXECUTE FUNCTION @extschema@.opsdemo_mv_sum_row_trigger();
CREATE TRIGGER mv_sum_update AFTER UPDATE ON @extschema@.t1
    FOR EACH ROW
    WHEN ((OLD.status = 1 OR NEW.status = 1)
          AND (OLD.status, OLD.amount, OLD.client_id, OLD.operation_type)
              IS DISTINCT FROM (NEW.status, NEW.amount, NEW.client_id, NEW.operation_type)
          AND NOT @extschema@.opsdemo_mv_sum_count_now(
                NEW.tableoid, NEW.ctid,
                OLD.status, OLD.amount, OLD.client_id, OLD.operation_type,
                NEW.status, NEW.amount, NEW.client_id, NEW.operation_type))
    EXECUTE FUNCTION @extschema@.opsdemo_mv_sum_row_trigger();
ALTER TABLE @extschema@.t1 ENABLE ALWAYS TRIGGER mv_sum_insert;
ALTER TABLE @extschema@.t1 ENABLE ALWAYS TRIGGER mv_sum_update;
