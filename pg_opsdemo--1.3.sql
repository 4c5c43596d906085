/* pg_opsdemo--1.3.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION pg_opsdemo" to load this file. \quit

--------------------------------------------------------------------------
-- Operation GUIDs: UUIDv7 whose timestamp is the row's date (see README)
--------------------------------------------------------------------------

CREATE FUNCTION @extschema@.opsdemo_guid(at timestamptz)
RETURNS uuid
AS 'MODULE_PATHNAME', 'opsdemo_guid'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.opsdemo_guid(timestamptz) IS
'a new operation GUID for a row dated "at" (UUIDv7 carrying "at" to the microsecond)';

CREATE FUNCTION @extschema@.opsdemo_guid_time(guid uuid)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'opsdemo_guid_time'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.opsdemo_guid_time(uuid) IS
'the date an operation GUID encodes, NULL if the UUID is not an operation GUID';

--------------------------------------------------------------------------
-- t1: the operations table
--------------------------------------------------------------------------

-- Indexes live on the partitions, not on t1 (see opsdemo_partition_prepare):
-- t1 belongs to the extension, so pg_restore recreates it, indexes and
-- all, before it attaches the dumped partitions; parent-level indexes would
-- then be built twice and the restore would fail.
CREATE TABLE @extschema@.t1 (
    id              bigint GENERATED ALWAYS AS IDENTITY,
    date            timestamptz NOT NULL DEFAULT statement_timestamp(),
    amount          numeric(12,2) NOT NULL,
    status          smallint NOT NULL DEFAULT 0,
    operation_guid  uuid NOT NULL
                    DEFAULT @extschema@.opsdemo_guid(statement_timestamp()),
    message         jsonb NOT NULL,
    client_id       bigint NOT NULL
                    GENERATED ALWAYS AS ((message ->> 'client_id')::bigint) STORED,
    operation_type  text NOT NULL
                    GENERATED ALWAYS AS (message ->> 'operation_type') STORED,
    CONSTRAINT t1_operation_guid_encodes_date
        CHECK (@extschema@.opsdemo_guid_time(operation_guid) IS NOT DISTINCT FROM date),
    CONSTRAINT t1_status_check CHECK (status IN (0, 1)),
    CONSTRAINT t1_message_check
        CHECK (message ? 'account_number'
               AND jsonb_typeof(message -> 'account_number') = 'string'),
    CONSTRAINT t1_operation_type_check
        CHECK (operation_type IN ('online', 'offline'))
) PARTITION BY RANGE (date);

-- Publishing t1 with publish_via_partition_root sends changes as t1's, and
-- t1 has no index to serve as replica identity (see above); FULL marks every
-- column as identity, so a subscriber can match rows by its partitions'
-- primary keys.  The partitions keep their default identity (the primary
-- key), so the WAL carries only (id, date) of old rows.
ALTER TABLE @extschema@.t1 REPLICA IDENTITY FULL;

COMMENT ON TABLE @extschema@.t1 IS
'operations, partitioned by UTC month of date; see opsdemo_partitions_ensure()';
COMMENT ON CONSTRAINT t1_operation_guid_encodes_date ON @extschema@.t1 IS
'operation_guid must be an operation GUID for this row''s date: use opsdemo_guid(date) or omit both columns';

-- mv_sum maintenance (src/mv_sum.c): row triggers record each changed
-- row's contribution; the deltas reach mv_sum at commit, sorted by group.
CREATE FUNCTION @extschema@.opsdemo_mv_sum_row_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'opsdemo_mv_sum_row_trigger'
LANGUAGE C;

CREATE FUNCTION @extschema@.opsdemo_mv_sum_statement_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'opsdemo_mv_sum_statement_trigger'
LANGUAGE C;

CREATE FUNCTION @extschema@.opsdemo_mv_sum_truncate_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'opsdemo_mv_sum_truncate_trigger'
LANGUAGE C;

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

-- Trigger functions need EXECUTE only at CREATE TRIGGER time: t1's writers
-- fire them without it, and nobody else has any use for them.
REVOKE ALL ON FUNCTION @extschema@.opsdemo_mv_sum_row_trigger() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.opsdemo_mv_sum_statement_trigger() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.opsdemo_mv_sum_truncate_trigger() FROM PUBLIC;

-- Every partition's indexes and TRUNCATE trigger.  Uniqueness of
-- operation_guid across t1 comes from the CHECK above: equal GUIDs have
-- equal dates, so they always meet in one partition's unique index on
-- (operation_guid, date).  Row triggers need nothing here: PostgreSQL
-- clones t1's to every partition.
CREATE FUNCTION @extschema@.opsdemo_partition_prepare(part regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    name text := (SELECT relname FROM pg_class WHERE oid = part);
BEGIN
    EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I PRIMARY KEY (id, date)',
                   part, name || '_pkey');
    EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I UNIQUE (operation_guid, date)',
                   part, name || '_operation_guid_key');
    -- The update job reads only pending rows, by id parity.
    EXECUTE format('CREATE INDEX %I ON %s ((id %% 2)) WHERE status = 0',
                   name || '_pending_idx', part);
    -- TRUNCATE fires no row triggers, and statement triggers are not
    -- cloned to partitions: each partition takes its groups out of mv_sum.
    EXECUTE format('CREATE TRIGGER mv_sum_truncate BEFORE TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.opsdemo_mv_sum_truncate_trigger()',
                   part);
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER mv_sum_truncate', part);
END
$$;

REVOKE ALL ON FUNCTION @extschema@.opsdemo_partition_prepare(regclass) FROM PUBLIC;

-- ENABLE ALWAYS: a logical replication apply worker fires them too, so a
-- subscriber keeps its own mv_sum exact from the replicated rows (mv_sum
-- itself must then not be replicated).  The WHEN clauses keep rows that
-- cannot change mv_sum (status 0 before and after) out of the trigger
-- queue altogether, and so are the rows opsdemo_mv_sum_count_now() has
-- just counted.
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
CREATE TRIGGER mv_sum_delete AFTER DELETE ON @extschema@.t1
    FOR EACH ROW WHEN (OLD.status = 1)
    EXECUTE FUNCTION @extschema@.opsdemo_mv_sum_row_trigger();
-- Only for opsdemo.mv_sum_apply = statement; correctness never depends on
-- it (statement triggers do not fire in an apply worker).
CREATE TRIGGER mv_sum_statement AFTER INSERT OR UPDATE OR DELETE ON @extschema@.t1
    FOR EACH STATEMENT
    EXECUTE FUNCTION @extschema@.opsdemo_mv_sum_statement_trigger();
ALTER TABLE @extschema@.t1 ENABLE ALWAYS TRIGGER mv_sum_insert;
ALTER TABLE @extschema@.t1 ENABLE ALWAYS TRIGGER mv_sum_update;
ALTER TABLE @extschema@.t1 ENABLE ALWAYS TRIGGER mv_sum_delete;
ALTER TABLE @extschema@.t1 ENABLE ALWAYS TRIGGER mv_sum_statement;

-- Catches dates that have no monthly partition, so inserts never fail.
CREATE TABLE @extschema@.t1_default PARTITION OF @extschema@.t1 DEFAULT;
SELECT @extschema@.opsdemo_partition_prepare('@extschema@.t1_default');

SELECT pg_catalog.pg_extension_config_dump('@extschema@.t1_default', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.t1_id_seq', '');

--------------------------------------------------------------------------
-- mv_sum: total amount of processed operations per client and type
--------------------------------------------------------------------------

CREATE TABLE @extschema@.mv_sum (
    client_id       bigint NOT NULL,
    operation_type  text NOT NULL,
    total_sum       numeric NOT NULL,
    row_count       bigint NOT NULL,
    PRIMARY KEY (client_id, operation_type)
);

COMMENT ON TABLE @extschema@.mv_sum IS
'sum(amount) and count(*) of t1 rows with status = 1, per client_id and operation_type';

-- Not dumped: pg_restore loads t1's rows through the triggers above,
-- which rebuild mv_sum; dumped rows would be counted twice.

CREATE FUNCTION @extschema@.opsdemo_mv_sum_flush()
RETURNS integer
AS 'MODULE_PATHNAME', 'opsdemo_mv_sum_flush'
LANGUAGE C VOLATILE STRICT;

COMMENT ON FUNCTION @extschema@.opsdemo_mv_sum_flush() IS
'apply this transaction''s pending t1 changes to mv_sum now instead of at commit; returns the groups written';

-- Internal: forgets the pending deltas that a recompute is about to cover.
CREATE FUNCTION @extschema@.opsdemo_mv_sum_absorb()
RETURNS void
AS 'MODULE_PATHNAME', 'opsdemo_mv_sum_absorb'
LANGUAGE C VOLATILE STRICT;

REVOKE ALL ON FUNCTION @extschema@.opsdemo_mv_sum_absorb() FROM PUBLIC;

-- Rewrites all of mv_sum: the caller needs mv_sum's owner's rights.
CREATE FUNCTION @extschema@.opsdemo_mv_sum_rebuild()
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    groups bigint;
BEGIN
    -- Block concurrent writers of mv_sum (their commits would apply deltas
    -- to rows we are replacing), not its readers.
    LOCK TABLE @extschema@.mv_sum IN EXCLUSIVE MODE;
    PERFORM @extschema@.opsdemo_mv_sum_absorb();
    DELETE FROM @extschema@.mv_sum;
    INSERT INTO @extschema@.mv_sum (client_id, operation_type, total_sum, row_count)
    SELECT client_id, operation_type, sum(amount), count(*)
      FROM @extschema@.t1
     WHERE status = 1
     GROUP BY client_id, operation_type;
    GET DIAGNOSTICS groups = ROW_COUNT;
    RETURN groups;
END
$$;

REVOKE ALL ON FUNCTION @extschema@.opsdemo_mv_sum_rebuild() FROM PUBLIC;

COMMENT ON FUNCTION @extschema@.opsdemo_mv_sum_rebuild() IS
'recompute mv_sum from t1; returns the number of groups';

CREATE FUNCTION @extschema@.opsdemo_mv_sum_verify()
RETURNS TABLE (client_id bigint, operation_type text,
               mv_total_sum numeric, mv_row_count bigint,
               t1_total_sum numeric, t1_row_count bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Compare what this transaction will commit, not what it has so far.
    PERFORM @extschema@.opsdemo_mv_sum_flush();
    RETURN QUERY
    WITH actual AS (
        SELECT t.client_id, t.operation_type, sum(t.amount) AS total_sum,
               count(*) AS row_count
          FROM @extschema@.t1 t
         WHERE t.status = 1
         GROUP BY t.client_id, t.operation_type)
    SELECT coalesce(m.client_id, a.client_id), coalesce(m.operation_type, a.operation_type),
           m.total_sum, m.row_count, a.total_sum, a.row_count
      FROM @extschema@.mv_sum m
      FULL JOIN actual a
        ON a.client_id = m.client_id AND a.operation_type = m.operation_type
     WHERE m.total_sum IS DISTINCT FROM a.total_sum
        OR m.row_count IS DISTINCT FROM a.row_count
     ORDER BY 1, 2;
END
$$;

COMMENT ON FUNCTION @extschema@.opsdemo_mv_sum_verify() IS
'groups where mv_sum differs from the aggregate of t1 (none when exact)';

--------------------------------------------------------------------------
-- Partition management
--------------------------------------------------------------------------

-- Internal: runs as t1's owner, called by opsdemo_partitions_ensure() (in a
-- background worker of its own, see src/partition_worker.c).  The SET
-- clauses make the bounds independent of the caller's DateStyle, TimeZone
-- and IntervalStyle; they are written in ISO format with an explicit UTC
-- offset all the same.
CREATE FUNCTION @extschema@.opsdemo_partitions_create(range_from timestamptz,
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

REVOKE ALL ON FUNCTION @extschema@.opsdemo_partitions_create(timestamptz, timestamptz)
    FROM PUBLIC;

CREATE FUNCTION @extschema@.opsdemo_partitions_ensure(range_from timestamptz,
                                                      range_to timestamptz)
RETURNS integer
AS 'MODULE_PATHNAME', 'opsdemo_partitions_ensure'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION @extschema@.opsdemo_partitions_ensure(timestamptz, timestamptz) IS
'create the missing monthly (UTC) partitions of t1 covering [range_from, range_to); returns how many were created';

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

CREATE VIEW @extschema@.opsdemo_partitions AS
SELECT c.relname::text AS partition,
       pg_get_expr(c.relpartbound, c.oid) AS bounds,
       c.reltuples::bigint AS estimated_rows,
       pg_total_relation_size(c.oid) AS total_bytes
  FROM pg_catalog.pg_inherits i
  JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = '@extschema@.t1'::regclass
 ORDER BY c.relname;

--------------------------------------------------------------------------
-- Bulk generator
--------------------------------------------------------------------------

CREATE FUNCTION @extschema@.opsdemo_generate(
    n bigint,
    period_start timestamptz DEFAULT NULL,
    period_end timestamptz DEFAULT NULL,
    seed bigint DEFAULT NULL,
    clients integer DEFAULT 1000,
    processed_share double precision DEFAULT 0)
RETURNS bigint
AS 'MODULE_PATHNAME', 'opsdemo_generate'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION @extschema@.opsdemo_generate(bigint, timestamptz, timestamptz, bigint, integer, double precision) IS
'insert n synthetic operations dated over [period_start, period_end) (default: the 3 months up to now); returns rows inserted';

-- Progress of running opsdemo_generate calls (pg_stat_progress_copy shows
-- them too, as COPY FROM of type CALLBACK, but without the row target).
CREATE VIEW @extschema@.opsdemo_generate_progress AS
SELECT p.pid,
       p.relid::regclass AS relation,
       p.param3 AS rows_done,
       p.param11 AS rows_total,
       round(100.0 * p.param3 / nullif(p.param11, 0), 1) AS percent
  FROM pg_catalog.pg_stat_get_progress_info('COPY') AS p
 WHERE p.param5 = 1            -- COPY FROM
   AND p.param6 = 4            -- callback source
   AND p.param11 > 0
   AND p.datid = (SELECT oid FROM pg_catalog.pg_database
                   WHERE datname = pg_catalog.current_database());

--------------------------------------------------------------------------
-- Job bodies, shared by every scheduler
--------------------------------------------------------------------------

CREATE FUNCTION @extschema@.opsdemo_insert_tick()
RETURNS bigint
AS 'MODULE_PATHNAME', 'opsdemo_insert_tick'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION @extschema@.opsdemo_insert_tick() IS
'the 5-second job: insert one operation with status 0 dated now; returns its id';

CREATE FUNCTION @extschema@.opsdemo_update_tick(at timestamptz DEFAULT now())
RETURNS bigint
AS 'MODULE_PATHNAME', 'opsdemo_update_tick'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION @extschema@.opsdemo_update_tick(timestamptz) IS
'the 3-second job: set status 1 on pending rows with even ids if the seconds of "at" are even, odd ids otherwise; returns rows flipped';

--------------------------------------------------------------------------
-- Scheduler: background worker and pg_cron mode
--------------------------------------------------------------------------

-- One row per run of a job by the built-in worker.  The worker deletes
-- rows older than opsdemo.history_retention (pg_cron's job_run_details is
-- never trimmed by itself).
CREATE TABLE @extschema@.opsdemo_job_history (
    job           text NOT NULL,
    scheduler     text NOT NULL,
    scheduled_at  timestamptz NOT NULL,
    started_at    timestamptz NOT NULL,
    duration      interval NOT NULL,
    ok            boolean NOT NULL,
    result        bigint,
    error         text
);
CREATE INDEX opsdemo_job_history_started_at
    ON @extschema@.opsdemo_job_history (started_at);
REVOKE ALL ON @extschema@.opsdemo_job_history FROM PUBLIC;
GRANT SELECT ON @extschema@.opsdemo_job_history TO pg_monitor;

COMMENT ON TABLE @extschema@.opsdemo_job_history IS
'runs of the insert and update jobs by the built-in scheduler; kept for opsdemo.history_retention';

CREATE FUNCTION @extschema@.opsdemo_worker_start()
RETURNS boolean
AS 'MODULE_PATHNAME', 'opsdemo_worker_start'
LANGUAGE C VOLATILE STRICT;
REVOKE ALL ON FUNCTION @extschema@.opsdemo_worker_start() FROM PUBLIC;

COMMENT ON FUNCTION @extschema@.opsdemo_worker_start() IS
'start the built-in scheduler as a background worker; false if it is already running';

CREATE FUNCTION @extschema@.opsdemo_worker_stop()
RETURNS boolean
AS 'MODULE_PATHNAME', 'opsdemo_worker_stop'
LANGUAGE C VOLATILE STRICT;
REVOKE ALL ON FUNCTION @extschema@.opsdemo_worker_stop() FROM PUBLIC;

COMMENT ON FUNCTION @extschema@.opsdemo_worker_stop() IS
'stop the built-in scheduler after its current tick, until opsdemo_worker_start() or a restart; false if it was not running';

CREATE FUNCTION @extschema@.opsdemo_status(
    OUT job text,
    OUT scheduler text,
    OUT state text,
    OUT worker_pid int,
    OUT "interval" interval,
    OUT runs bigint,
    OUT failures bigint,
    OUT skipped bigint,
    OUT last_start timestamptz,
    OUT last_duration interval,
    OUT next_due timestamptz,
    OUT last_error text,
    OUT consecutive_failures bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'opsdemo_status'
LANGUAGE C VOLATILE STRICT;
REVOKE ALL ON FUNCTION @extschema@.opsdemo_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.opsdemo_status() TO pg_monitor;

COMMENT ON FUNCTION @extschema@.opsdemo_status() IS
'state of the built-in scheduler, one row per job, from shared memory';

CREATE FUNCTION @extschema@.opsdemo_schedule_cron()
RETURNS integer
AS 'MODULE_PATHNAME', 'opsdemo_schedule_cron'
LANGUAGE C VOLATILE STRICT;
REVOKE ALL ON FUNCTION @extschema@.opsdemo_schedule_cron() FROM PUBLIC;

COMMENT ON FUNCTION @extschema@.opsdemo_schedule_cron() IS
'register the insert and update jobs with pg_cron (1.5 or later); returns the number of jobs';

CREATE FUNCTION @extschema@.opsdemo_unschedule_cron()
RETURNS integer
AS 'MODULE_PATHNAME', 'opsdemo_unschedule_cron'
LANGUAGE C VOLATILE STRICT;
REVOKE ALL ON FUNCTION @extschema@.opsdemo_unschedule_cron() FROM PUBLIC;

COMMENT ON FUNCTION @extschema@.opsdemo_unschedule_cron() IS
'remove the jobs opsdemo_schedule_cron() registered; returns how many it removed';

CREATE FUNCTION @extschema@.opsdemo_cron_tick(job text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'opsdemo_cron_tick'
LANGUAGE C VOLATILE STRICT;
REVOKE ALL ON FUNCTION @extschema@.opsdemo_cron_tick(text) FROM PUBLIC;

COMMENT ON FUNCTION @extschema@.opsdemo_cron_tick(text) IS
'what the pg_cron jobs run: the insert or update job body, counted in opsdemo_status() and recorded in opsdemo_job_history';

--------------------------------------------------------------------------
-- Read-only guard (src/read_only_guard.c): a table whose rows are written
-- on another node and arrive by logical replication refuses local writes
-- (seed 003's read-only copies).
--------------------------------------------------------------------------

CREATE FUNCTION @extschema@.opsdemo_read_only_guard()
RETURNS trigger
AS 'MODULE_PATHNAME', 'opsdemo_read_only_guard'
LANGUAGE C;
REVOKE ALL ON FUNCTION @extschema@.opsdemo_read_only_guard() FROM PUBLIC;

COMMENT ON FUNCTION @extschema@.opsdemo_read_only_guard() IS
'trigger (BEFORE INSERT OR UPDATE OR DELETE FOR EACH ROW, BEFORE TRUNCATE) with one argument, the node that writes the table: local writes fail with SQLSTATE 25006, logical replication''s pass; install it with opsdemo_make_read_only()';

-- The triggers are always named opsdemo_read_only (row) and
-- opsdemo_read_only_truncate.  Runs as the caller: only the table's owner
-- may do it (checked here, as ALTER TABLE does; CREATE TRIGGER alone would
-- accept any holder of the TRIGGER privilege, and DROP TRIGGER in
-- opsdemo_make_writable() needs ownership anyway), and the caller needs
-- EXECUTE on opsdemo_read_only_guard() as CREATE TRIGGER requires.
--
-- A partitioned table: PostgreSQL clones the row trigger to every
-- partition, present and future, but not TRUNCATE triggers, so each
-- partition present now gets its own; a partition added later is guarded
-- against INSERT, UPDATE and DELETE at once, against TRUNCATE of its own
-- name only after this function runs again.  A partition on its own is
-- refused (its partitioned table is guarded, or not, as a whole), and so
-- is a temporary table, which no replication can write.
--
-- Running it again replaces the triggers' node name; the triggers end up
-- enabled, ENABLE ALWAYS if they were so before, ENABLE otherwise.
-- Takes SHARE ROW EXCLUSIVE on the table and its partitions: it waits for
-- writers in progress, and their writes that follow are refused.
CREATE FUNCTION @extschema@.opsdemo_make_read_only(tbl regclass, owner_node text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    guard       oid := '@extschema@.opsdemo_read_only_guard()'::regprocedure;
    relkind     "char";
    persistence "char";
    is_part     boolean;
    owner_id    oid;
    part        regclass;
    trg         record;
    always      text[] := '{}';
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'tbl must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF owner_node IS NULL OR owner_node = '' THEN
        RAISE EXCEPTION 'owner_node must not be %',
                        CASE WHEN owner_node IS NULL THEN 'null' ELSE 'empty' END
            USING ERRCODE = CASE WHEN owner_node IS NULL
                                 THEN 'null_value_not_allowed'
                                 ELSE 'invalid_parameter_value' END,
                  DETAIL = 'It names the node whose writes reach the table by logical replication.';
    END IF;

    SELECT c.relkind, c.relpersistence, c.relispartition, c.relowner
      INTO relkind, persistence, is_part, owner_id
      FROM pg_class c WHERE c.oid = tbl;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'relation with OID % does not exist', tbl::oid
            USING ERRCODE = 'undefined_table';
    END IF;
    IF relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'cannot make % read-only', tbl
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = format('It is %s; only tables and partitioned tables can be made read-only.',
                                  CASE relkind
                                      WHEN 'v' THEN 'a view'
                                      WHEN 'm' THEN 'a materialized view'
                                      WHEN 'f' THEN 'a foreign table'
                                      WHEN 'S' THEN 'a sequence'
                                      WHEN 'i' THEN 'an index'
                                      WHEN 'I' THEN 'a partitioned index'
                                      WHEN 'c' THEN 'a composite type'
                                      WHEN 't' THEN 'a TOAST table'
                                      ELSE format('of relkind %s', relkind) END);
    END IF;
    IF persistence = 't' THEN
        RAISE EXCEPTION 'cannot make temporary table % read-only', tbl
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = 'Logical replication cannot write into a temporary table.';
    END IF;
    IF is_part THEN
        RAISE EXCEPTION 'cannot make partition % read-only on its own', tbl
            USING ERRCODE = 'wrong_object_type',
                  HINT = format('Make its partitioned table %s read-only: the guard covers every partition.',
                                pg_partition_root(tbl));
    END IF;
    IF NOT pg_has_role(current_user, owner_id, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', tbl
            USING ERRCODE = 'insufficient_privilege';
    END IF;

    -- The partitions cannot change until the end of the transaction.
    EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', tbl);

    SELECT tree.relid INTO part
      FROM pg_partition_tree(tbl) tree JOIN pg_class c ON c.oid = tree.relid
     WHERE c.relkind = 'f' LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'cannot make % read-only', tbl
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = format('Its partition %s is a foreign table.', part);
    END IF;

    -- Only the guard's own triggers are replaced.  pg_partition_tree()
    -- lists a partitioned table and its partitions, and nothing for a table
    -- that is neither: the table itself is added.
    FOR trg IN
        SELECT t.tgrelid::regclass AS rel, t.tgname, t.tgfoid, t.tgenabled
          FROM (SELECT tbl AS relid, 0 AS level
                UNION ALL
                SELECT tree.relid, tree.level FROM pg_partition_tree(tbl) tree
                 WHERE tree.relid <> tbl) p
          JOIN pg_trigger t ON t.tgrelid = p.relid
         WHERE t.tgname IN ('opsdemo_read_only', 'opsdemo_read_only_truncate')
           AND t.tgparentid = 0
    LOOP
        IF trg.tgfoid <> guard THEN
            RAISE EXCEPTION 'trigger "%" for relation % already exists', trg.tgname, trg.rel
                USING ERRCODE = 'duplicate_object',
                      DETAIL = 'It does not run opsdemo_read_only_guard(), and the guard needs its name.';
        END IF;
        IF trg.tgenabled = 'A' THEN
            always := always || format('%s %I', trg.rel, trg.tgname);
        END IF;
    END LOOP;

    EXECUTE format('CREATE OR REPLACE TRIGGER opsdemo_read_only '
                   'BEFORE INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW '
                   'EXECUTE FUNCTION @extschema@.opsdemo_read_only_guard(%L)',
                   tbl, owner_node);
    EXECUTE format('ALTER TABLE %s ENABLE %s TRIGGER opsdemo_read_only', tbl,
                   CASE WHEN format('%s %I', tbl, 'opsdemo_read_only') = ANY (always)
                        THEN 'ALWAYS' ELSE '' END);
    FOR part IN
        SELECT p.relid
          FROM (SELECT tbl AS relid, 0 AS level
                UNION ALL
                SELECT tree.relid, tree.level FROM pg_partition_tree(tbl) tree
                 WHERE tree.relid <> tbl) p
         ORDER BY p.level, p.relid::regclass::text
    LOOP
        EXECUTE format('CREATE OR REPLACE TRIGGER opsdemo_read_only_truncate '
                       'BEFORE TRUNCATE ON %s FOR EACH STATEMENT '
                       'EXECUTE FUNCTION @extschema@.opsdemo_read_only_guard(%L)',
                       part, owner_node);
        EXECUTE format('ALTER TABLE %s ENABLE %s TRIGGER opsdemo_read_only_truncate', part,
                       CASE WHEN format('%s %I', part, 'opsdemo_read_only_truncate') = ANY (always)
                            THEN 'ALWAYS' ELSE '' END);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION @extschema@.opsdemo_make_read_only(regclass, text) FROM PUBLIC;

COMMENT ON FUNCTION @extschema@.opsdemo_make_read_only(regclass, text) IS
'make a table (or a partitioned table and its partitions) refuse local writes: triggers opsdemo_read_only and opsdemo_read_only_truncate running opsdemo_read_only_guard(owner_node); again to change the node or cover new partitions';

-- Drops what opsdemo_make_read_only() created; false if there was nothing.
-- Same rules: the table's owner, a table or partitioned table, not a
-- partition on its own.
CREATE FUNCTION @extschema@.opsdemo_make_writable(tbl regclass)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    guard       oid := '@extschema@.opsdemo_read_only_guard()'::regprocedure;
    relkind     "char";
    is_part     boolean;
    owner_id    oid;
    trg         record;
    dropped     boolean := false;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'tbl must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT c.relkind, c.relispartition, c.relowner
      INTO relkind, is_part, owner_id
      FROM pg_class c WHERE c.oid = tbl;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'relation with OID % does not exist', tbl::oid
            USING ERRCODE = 'undefined_table';
    END IF;
    IF relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'cannot make % writable', tbl
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = 'Only tables and partitioned tables are made read-only.';
    END IF;
    IF is_part THEN
        RAISE EXCEPTION 'cannot make partition % writable on its own', tbl
            USING ERRCODE = 'wrong_object_type',
                  HINT = format('Make its partitioned table %s writable.',
                                pg_partition_root(tbl));
    END IF;
    IF NOT pg_has_role(current_user, owner_id, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', tbl
            USING ERRCODE = 'insufficient_privilege';
    END IF;

    EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', tbl);

    -- The row trigger's clones on the partitions go with it.
    FOR trg IN
        SELECT t.tgrelid::regclass AS rel, t.tgname
          FROM (SELECT tbl AS relid, 0 AS level
                UNION ALL
                SELECT tree.relid, tree.level FROM pg_partition_tree(tbl) tree
                 WHERE tree.relid <> tbl) p
          JOIN pg_trigger t ON t.tgrelid = p.relid
         WHERE t.tgname IN ('opsdemo_read_only', 'opsdemo_read_only_truncate')
           AND t.tgparentid = 0
           AND t.tgfoid = guard
         ORDER BY p.level, t.tgrelid::regclass::text, t.tgname
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', trg.tgname, trg.rel);
        dropped := true;
    END LOOP;
    RETURN dropped;
END
$$;
REVOKE ALL ON FUNCTION @extschema@.opsdemo_make_writable(regclass) FROM PUBLIC;

COMMENT ON FUNCTION @extschema@.opsdemo_make_writable(regclass) IS
'drop the read-only guard opsdemo_make_read_only() installed on a table (and its partitions); false if it had none';
