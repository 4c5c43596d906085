-- opsdemo_generate: bulk rows, COPY-style, with the semantics of COPY.
SET client_min_messages = warning;
SET timezone = 'UTC';
CREATE EXTENSION pg_opsdemo;

SELECT opsdemo_generate(20000, '2026-01-10', '2026-04-20', seed => 7);

-- rows inside the period, spread over its months, partitions made for it
SELECT count(*), min(date) >= '2026-01-10' AS after_start, max(date) < '2026-04-20' AS before_end
  FROM t1;
SELECT tableoid::regclass AS partition, count(*) > 0 AS filled FROM t1 GROUP BY 1 ORDER BY 1;
SELECT count(*) AS in_default FROM t1_default;
-- every row valid: unique GUIDs carrying their dates, pending status
SELECT count(DISTINCT operation_guid) AS guids, count(DISTINCT id) AS ids,
       bool_and(opsdemo_guid_time(operation_guid) = date) AS guids_encode_dates,
       bool_and(status = 0) AS all_pending
  FROM t1;
-- realistic content: both types, online the majority, many clients,
-- 20-digit accounts, a stable account per client, positive amounts
SELECT operation_type, count(*) > 5000 AS plenty FROM t1 GROUP BY 1 ORDER BY 1;
SELECT count(*) FILTER (WHERE operation_type = 'online') > count(*) FILTER (WHERE operation_type = 'offline') AS online_majority,
       count(DISTINCT client_id) > 900 AS many_clients,
       min(client_id) >= 1 AND max(client_id) <= 1000 AS client_range,
       bool_and(message ->> 'account_number' ~ '^[0-9]{20}$') AS accounts_well_formed,
       min(amount) > 0 AS positive_amounts,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY amount) BETWEEN 20 AND 100 AS median_plausible
  FROM t1;
SELECT max(accounts) <= 3 AS at_most_three_accounts_per_client
  FROM (SELECT client_id, count(DISTINCT message ->> 'account_number') AS accounts
          FROM t1 GROUP BY client_id) s;
-- skewed activity: the busiest tenth of clients make more than a tenth of operations
SELECT sum(n) FILTER (WHERE client_id <= 100) > 0.2 * sum(n) AS skewed
  FROM (SELECT client_id, count(*) AS n FROM t1 GROUP BY 1) s;

-- the same seed gives the same data set (ids aside)
CREATE TABLE first_run AS
SELECT date, amount, status, operation_guid, message FROM t1;
TRUNCATE t1;
SELECT opsdemo_generate(20000, '2026-01-10', '2026-04-20', seed => 7);
SELECT count(*) AS differing_rows FROM (
    (SELECT date, amount, status, operation_guid, message FROM t1
     EXCEPT ALL SELECT * FROM first_run)
    UNION ALL
    (SELECT * FROM first_run
     EXCEPT ALL SELECT date, amount, status, operation_guid, message FROM t1)) d;
-- ... and generating it twice into one table collides on operation_guid,
-- leaving nothing behind
SELECT opsdemo_generate(20000, '2026-01-10', '2026-04-20', seed => 7);
SELECT count(*) FROM t1;
-- another seed gives other rows
SELECT opsdemo_generate(1000, '2026-01-10', '2026-04-20', seed => 8);
SELECT count(*), count(DISTINCT operation_guid) FROM t1;
DROP TABLE first_run;

-- options: number of clients and share of processed rows
TRUNCATE t1;
SELECT opsdemo_generate(4000, '2026-02-01', '2026-02-02', seed => 1, clients => 5, processed_share => 0.25);
SELECT count(DISTINCT client_id) AS clients, max(client_id) AS max_client,
       round(avg(status), 1) AS processed_share
  FROM t1;
-- without a period: three months up to now
TRUNCATE t1;
SELECT opsdemo_generate(1000);
SELECT min(date) >= now() - interval '3 months' AS from_three_months_ago,
       max(date) < now() AS up_to_now,
       max(date) - min(date) > interval '80 days' AS spread
  FROM t1;

-- triggers fire as for COPY: statement, row and transition-table triggers
TRUNCATE t1;
CREATE TABLE trigger_log (kind text, n bigint);
CREATE FUNCTION log_stmt() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO trigger_log VALUES (TG_WHEN || ' statement', 1); RETURN NULL; END $$;
CREATE FUNCTION log_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO trigger_log VALUES ('after row', 1); RETURN NULL; END $$;
CREATE FUNCTION log_new_table() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO trigger_log SELECT 'new table', count(*) FROM new_rows; RETURN NULL; END $$;
CREATE TRIGGER before_stmt BEFORE INSERT ON t1 FOR EACH STATEMENT EXECUTE FUNCTION log_stmt();
CREATE TRIGGER after_stmt AFTER INSERT ON t1 FOR EACH STATEMENT EXECUTE FUNCTION log_stmt();
CREATE TRIGGER after_row AFTER INSERT ON t1 FOR EACH ROW EXECUTE FUNCTION log_row();
CREATE TRIGGER new_table AFTER INSERT ON t1 REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION log_new_table();
SELECT opsdemo_generate(2500, '2026-01-20', '2026-03-10', seed => 3);
SELECT kind, count(*), sum(n) FROM trigger_log GROUP BY kind ORDER BY kind;
-- the same as COPY of those rows does
CREATE TABLE copied AS SELECT date, amount, status, operation_guid, message FROM t1;
TRUNCATE t1, trigger_log;
SELECT '/tmp/opsdemo_regress_copied_' || pg_backend_pid() || '.dat' AS copy_file \gset
COPY copied TO :'copy_file';
COPY t1 (date, amount, status, operation_guid, message) FROM :'copy_file';
-- the file is the server's; where psql runs beside it (the host's suite),
-- remove it: nothing of the test is left in /tmp
\setenv OPSDEMO_REGRESS_FILES :copy_file
\! rm -f "$OPSDEMO_REGRESS_FILES"
SELECT kind, count(*), sum(n) FROM trigger_log GROUP BY kind ORDER BY kind;
DROP TRIGGER before_stmt ON t1;
DROP TRIGGER after_stmt ON t1;
DROP TRIGGER after_row ON t1;
DROP TRIGGER new_table ON t1;
DROP TABLE copied;

-- a BEFORE ROW trigger on a partition can change or skip rows
TRUNCATE t1, trigger_log;
CREATE FUNCTION skip_small() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.amount < 10 THEN RETURN NULL; END IF;
    NEW.status := 1;
    RETURN NEW;
END $$;
CREATE TRIGGER skip_small BEFORE INSERT ON t1_2026_02 FOR EACH ROW EXECUTE FUNCTION skip_small();
SELECT opsdemo_generate(3000, '2026-01-20', '2026-03-10', seed => 3) AS inserted;
SELECT tableoid::regclass AS partition, min(amount) >= 10 AS small_skipped,
       bool_and(status = 1) AS changed
  FROM t1 GROUP BY 1 ORDER BY 1;
SELECT count(*) < 3000 AS some_skipped FROM t1;
DROP TRIGGER skip_small ON t1_2026_02;
DROP FUNCTION skip_small();
DROP TABLE trigger_log;
DROP FUNCTION log_stmt();
DROP FUNCTION log_row();
DROP FUNCTION log_new_table();

-- the error context names the failing row; nothing stays behind
TRUNCATE t1;
ALTER TABLE t1 ADD CONSTRAINT small_amounts CHECK (amount < 500);
SELECT opsdemo_generate(5000, '2026-01-20', '2026-03-10', seed => 3);
SELECT count(*) FROM t1;
ALTER TABLE t1 DROP CONSTRAINT small_amounts;

-- columns added by the user get their defaults
ALTER TABLE t1 ADD COLUMN note text DEFAULT 'generated';
SELECT opsdemo_generate(10, '2026-01-20', '2026-03-10', seed => 3);
SELECT note, count(*) FROM t1 GROUP BY 1;
ALTER TABLE t1 DROP COLUMN note;
TRUNCATE t1;

-- bad input: clear errors, no rows, no partitions created
SELECT count(*) AS partitions_before FROM opsdemo_partitions;
SELECT opsdemo_generate(0);
SELECT opsdemo_generate(-5);
SELECT opsdemo_generate(NULL);
SELECT opsdemo_generate(1000000000000);
SELECT opsdemo_generate(10, '2030-03-01', '2030-01-01');
SELECT opsdemo_generate(10, '2030-03-01', '2030-03-01');
SELECT opsdemo_generate(10, '-infinity', '2030-03-01');
SELECT opsdemo_generate(10, '1960-01-01', '1960-02-01');
SELECT opsdemo_generate(10, '2000-01-01', '2030-02-01');
SELECT opsdemo_generate(10, '2030-01-01', '2030-02-01', clients => 0);
SELECT opsdemo_generate(10, '2030-01-01', '2030-02-01', processed_share => 1.5);
SELECT opsdemo_generate(10, '2030-01-01', '2030-02-01', processed_share => 'NaN');
SELECT count(*) AS rows, (SELECT count(*) FROM opsdemo_partitions) AS partitions_after FROM t1;

-- Months without a partition are loaded into a table of their own, indexed
-- when complete and attached at the end (issue 14): the partition is the
-- same as one created empty, no load table or bound constraint is left,
-- and mv_sum counts the status-1 rows exactly.
SELECT opsdemo_generate(3000, '2040-01-10', '2040-03-01', seed => 11, processed_share => 0.5);
SELECT partition, bounds FROM opsdemo_partitions WHERE partition::text LIKE 't1_2040%' ORDER BY 1;
SELECT c.relname, pg_get_indexdef(i.indexrelid) AS definition
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE i.indrelid IN ('t1_2040_01'::regclass, 't1_2040_02'::regclass) ORDER BY 1;
SELECT conrelid::regclass AS partition, conname, contype FROM pg_constraint
 WHERE conrelid IN ('t1_2040_01'::regclass, 't1_2040_02'::regclass) AND contype <> 'n'
 ORDER BY 1, 2;
SELECT tgrelid::regclass AS partition, tgname FROM pg_trigger
 WHERE tgrelid = 't1_2040_01'::regclass ORDER BY 2;
SELECT count(*) AS load_tables_left FROM pg_class WHERE relname LIKE '%\_load%';
SELECT tableoid::regclass AS partition, count(*), sum(status) AS processed
  FROM t1 WHERE date >= '2040-01-01' GROUP BY 1 ORDER BY 1;
SELECT * FROM opsdemo_mv_sum_verify();

-- A duplicate GUID leaves nothing behind: the row below waits in the
-- default partition with the GUID seed 12 gives its first row; the load's
-- month must take it in, and the unique index refuses the pair.
SELECT opsdemo_generate(500, '2041-01-01', '2041-02-01', seed => 12, processed_share => 0.5);
SELECT date AS dup_date, operation_guid AS dup_guid FROM t1
 WHERE date >= '2041-01-01' ORDER BY date LIMIT 1 \gset
DROP TABLE t1_2041_01;
INSERT INTO t1 (date, amount, status, operation_guid, message)
VALUES (:'dup_date', 7, 1, :'dup_guid',
        '{"client_id": 3, "account_number": "3", "operation_type": "online"}');
SELECT count(*) AS mv_sum_groups_before FROM mv_sum;
\set VERBOSITY terse
SELECT opsdemo_generate(500, '2041-01-01', '2041-02-01', seed => 12, processed_share => 0.5);
\set VERBOSITY default
SELECT count(*) AS partitions_2041 FROM opsdemo_partitions WHERE partition::text LIKE 't1_2041%';
SELECT count(*) AS load_tables_left FROM pg_class WHERE relname LIKE '%\_load%';
SELECT tableoid::regclass AS partition, count(*) FROM t1 WHERE date >= '2041-01-01' GROUP BY 1;
SELECT count(*) AS mv_sum_groups_after FROM mv_sum;
SELECT * FROM opsdemo_mv_sum_verify();

-- The month's rows in the default partition without a clash: the month is
-- created around them and the loaded rows go in through t1.
DELETE FROM t1 WHERE date >= '2041-01-01';
INSERT INTO t1 (date, amount, status, operation_guid, message)
VALUES ('2041-01-31 12:00+00', 7, 1, opsdemo_guid('2041-01-31 12:00+00'),
        '{"client_id": 3, "account_number": "3", "operation_type": "online"}');
SELECT opsdemo_generate(500, '2041-01-01', '2041-02-01', seed => 13, processed_share => 0.5);
SELECT tableoid::regclass AS partition, count(*) FROM t1 WHERE date >= '2041-01-01' GROUP BY 1;
SELECT count(*) AS load_tables_left FROM pg_class WHERE relname LIKE '%\_load%';
SELECT * FROM opsdemo_mv_sum_verify();

-- Another trigger on t1: the months are created first and rows go through
-- t1 (the trigger sees every one).
CREATE TABLE row_count (n bigint);
INSERT INTO row_count VALUES (0);
CREATE FUNCTION count_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN UPDATE row_count SET n = n + 1; RETURN NULL; END $$;
CREATE TRIGGER count_row AFTER INSERT ON t1 FOR EACH ROW EXECUTE FUNCTION count_row();
SELECT opsdemo_generate(200, '2044-01-01', '2044-02-01', seed => 16);
SELECT n AS rows_seen_by_trigger FROM row_count;
DROP TRIGGER count_row ON t1;
DROP FUNCTION count_row();
DROP TABLE row_count;
TRUNCATE t1;

-- Constraints known to hold for generated rows are not evaluated; one that
-- only looks like the extension's (its name, another expression) is, and
-- so is NOT NULL of a column the user added.
SELECT opsdemo_partitions_ensure('2046-01-01 00:00+00', '2046-02-01 00:00+00');
ALTER TABLE t1 DROP CONSTRAINT t1_status_check;
ALTER TABLE t1 ADD CONSTRAINT t1_status_check CHECK (status = 0);
\set VERBOSITY terse
SELECT opsdemo_generate(100, '2046-01-01 00:00+00', '2046-02-01 00:00+00', seed => 18, processed_share => 0.5);
\set VERBOSITY default
ALTER TABLE t1 DROP CONSTRAINT t1_status_check;
ALTER TABLE t1 ADD CONSTRAINT t1_status_check CHECK (status IN (0, 1));
ALTER TABLE t1 ADD COLUMN must_have text NOT NULL DEFAULT 'x';
ALTER TABLE t1 ALTER COLUMN must_have DROP DEFAULT;
\set VERBOSITY terse
SELECT opsdemo_generate(100, '2046-01-01 00:00+00', '2046-02-01 00:00+00', seed => 18);
\set VERBOSITY default
ALTER TABLE t1 DROP COLUMN must_have;
SELECT opsdemo_generate(100, '2046-01-01 00:00+00', '2046-02-01 00:00+00', seed => 18, processed_share => 0.5);
SELECT count(*), sum(status) FROM t1 WHERE date >= '2046-01-01 00:00+00';
SELECT * FROM opsdemo_mv_sum_verify();
TRUNCATE t1;

-- a renamed or dropped t1, or a renamed column
ALTER TABLE t1 RENAME TO t1_renamed;
SELECT opsdemo_generate(10, '2030-01-01', '2030-02-01');
SELECT opsdemo_insert_tick();
SELECT opsdemo_update_tick();
ALTER TABLE t1_renamed RENAME TO t1;
ALTER TABLE t1 RENAME COLUMN amount TO amount_renamed;
SELECT opsdemo_generate(10, '2030-01-01', '2030-02-01');
ALTER TABLE t1 RENAME COLUMN amount_renamed TO amount;
SELECT count(*) FROM t1;
-- t1 is a member of the extension; dropping it needs the extension's consent
DROP TABLE t1;
ALTER EXTENSION pg_opsdemo DROP TABLE t1;
ALTER EXTENSION pg_opsdemo DROP TABLE t1_default;
ALTER EXTENSION pg_opsdemo DROP SEQUENCE t1_id_seq;
ALTER EXTENSION pg_opsdemo DROP VIEW opsdemo_partitions;
DROP TABLE t1 CASCADE;
SELECT opsdemo_generate(10, '2030-01-01', '2030-02-01');
SELECT opsdemo_insert_tick();
DROP EXTENSION pg_opsdemo;
