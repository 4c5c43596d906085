-- mv_sum: kept exact by triggers on every kind of change to t1;
-- opsdemo_mv_sum_verify() lists the groups that differ (none when exact).
SET client_min_messages = warning;
SET timezone = 'UTC';
CREATE EXTENSION pg_opsdemo;

-- the triggers, enabled ALWAYS so that logical replication fires them too
SELECT c.relname, t.tgname, t.tgenabled
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE NOT t.tgisinternal ORDER BY 1, 2;

SELECT opsdemo_generate(5000, '2026-01-01', '2026-03-01', seed => 9, clients => 50, processed_share => 0.5);
SELECT count(*) AS groups, sum(row_count) AS rows_counted,
       sum(row_count) = (SELECT count(*) FROM t1 WHERE status = 1) AS counts_match
  FROM mv_sum;
SELECT * FROM opsdemo_mv_sum_verify();

-- 0 -> 1 flips (the update job), and 1 -> 0
SELECT opsdemo_update_tick('2026-01-01 00:00:00+00') > 0 AS flipped_even;
SELECT * FROM opsdemo_mv_sum_verify();
UPDATE t1 SET status = 0 WHERE id % 10 = 3;
SELECT * FROM opsdemo_mv_sum_verify();

-- INSERT of processed and pending rows, DELETE
INSERT INTO t1 (date, amount, status, operation_guid, message)
SELECT d, 10.25, s, opsdemo_guid(d),
       jsonb_build_object('account_number', 'A1', 'client_id', 7, 'operation_type', 'online')
  FROM (VALUES ('2026-01-05 10:00:00+00'::timestamptz, 1), ('2026-01-05 10:00:01+00', 0)) v(d, s);
SELECT * FROM opsdemo_mv_sum_verify();
DELETE FROM t1 WHERE id % 10 = 4;
SELECT * FROM opsdemo_mv_sum_verify();

-- UPDATE of amount, and of the client and type (generated from message)
UPDATE t1 SET amount = amount * 2 WHERE id % 10 = 5;
UPDATE t1 SET message = message || '{"client_id": 9999, "operation_type": "offline"}'
 WHERE id % 10 = 6;
SELECT * FROM opsdemo_mv_sum_verify();
SELECT row_count > 0 AS new_group_counted FROM mv_sum WHERE client_id = 9999;

-- moves between partitions (March has no partition yet: into t1_default)
UPDATE t1 SET date = date + interval '1 month', operation_guid = opsdemo_guid(date + interval '1 month')
 WHERE id % 10 = 7;
SELECT * FROM opsdemo_mv_sum_verify();
-- creating March moves its rows out of t1_default through t1
SELECT opsdemo_partitions_ensure('2026-03-01', '2026-04-01') AS created;
SELECT count(*) AS left_in_default FROM t1_default;
SELECT * FROM opsdemo_mv_sum_verify();

-- COPY, which keeps its multi-insert path (no transition tables); date and
-- operation_guid take their defaults
COPY t1 (amount, status, message) FROM stdin;
5.00	1	{"account_number": "A2", "client_id": 8, "operation_type": "online"}
6.00	0	{"account_number": "A2", "client_id": 8, "operation_type": "online"}
7.00	1	{"account_number": "A2", "client_id": 8, "operation_type": "offline"}
\.
SELECT row_count, total_sum FROM mv_sum WHERE client_id = 8 ORDER BY operation_type;
SELECT * FROM opsdemo_mv_sum_verify();

-- groups that fall to nothing disappear
SELECT count(*) > 0 AS client_7_counted FROM mv_sum WHERE client_id = 7;
DELETE FROM t1 WHERE client_id = 7;
SELECT count(*) AS client_7_groups FROM mv_sum WHERE client_id = 7;
UPDATE t1 SET status = 0 WHERE client_id = 8;
SELECT count(*) AS client_8_groups FROM mv_sum WHERE client_id = 8;

-- rolled back changes leave no trace; savepoints roll back their part only
BEGIN;
UPDATE t1 SET status = 1 WHERE id % 10 = 8;
ROLLBACK;
SELECT * FROM opsdemo_mv_sum_verify();
BEGIN;
UPDATE t1 SET status = 1 WHERE id % 10 = 8;
SAVEPOINT a;
UPDATE t1 SET status = 1 WHERE id % 10 = 9;
-- applied inside the savepoint, then rolled back: pending again
SELECT opsdemo_mv_sum_flush() > 0 AS applied;
ROLLBACK TO a;
SAVEPOINT b;
DELETE FROM t1 WHERE id % 10 = 1;
RELEASE b;
COMMIT;
SELECT * FROM opsdemo_mv_sum_verify();
-- an error inside a PL/pgSQL exception block rolls back only its rows
DO $$
BEGIN
    UPDATE t1 SET status = 1 WHERE id % 10 = 2 AND date < '2026-02-01';
    BEGIN
        UPDATE t1 SET status = 1 WHERE id % 10 = 2;
        PERFORM 1 / 0;
    EXCEPTION WHEN division_by_zero THEN
        NULL;
    END;
END
$$;
SELECT * FROM opsdemo_mv_sum_verify();

-- a transaction sees its own changes in mv_sum only after commit, unless it
-- flushes or asks for statement mode
BEGIN;
SELECT sum(row_count) AS before FROM mv_sum \gset
UPDATE t1 SET status = 0 WHERE id IN (SELECT id FROM t1 WHERE status = 1 ORDER BY id LIMIT 3);
SELECT sum(row_count) = :before AS unchanged_before_commit FROM mv_sum;
SELECT opsdemo_mv_sum_flush() BETWEEN 1 AND 3 AS flushed;
SELECT :before - sum(row_count) AS applied FROM mv_sum;
SET LOCAL opsdemo.mv_sum_apply = statement;
UPDATE t1 SET status = 0 WHERE id IN (SELECT id FROM t1 WHERE status = 1 ORDER BY id LIMIT 2);
SELECT :before - sum(row_count) AS applied FROM mv_sum;
COMMIT;
SELECT * FROM opsdemo_mv_sum_verify();
SET opsdemo.mv_sum_apply = 'sometimes';

-- a procedure that commits in the middle
CREATE PROCEDURE flip_in_two_commits() LANGUAGE plpgsql AS $$
BEGIN
    UPDATE t1 SET status = 0 WHERE id % 4 = 0;
    COMMIT;
    UPDATE t1 SET status = 1 WHERE id % 4 = 1;
    ROLLBACK;
END
$$;
CALL flip_in_two_commits();
SELECT * FROM opsdemo_mv_sum_verify();

-- TRUNCATE of one partition, then of t1
TRUNCATE t1_2026_01;
SELECT * FROM opsdemo_mv_sum_verify();
SELECT count(*) > 0 AS groups_left FROM mv_sum;

-- rebuild: exact and idempotent; it also absorbs pending changes
UPDATE mv_sum SET total_sum = total_sum + 1 WHERE client_id = (SELECT min(client_id) FROM mv_sum);
SELECT count(*) AS differing_groups FROM opsdemo_mv_sum_verify();
SELECT opsdemo_mv_sum_rebuild() = (SELECT count(*) FROM mv_sum) AS rebuilt;
SELECT * FROM opsdemo_mv_sum_verify();
CREATE TEMP TABLE before_rebuild AS SELECT * FROM mv_sum;
SELECT opsdemo_mv_sum_rebuild() = (SELECT count(*) FROM before_rebuild) AS rebuilt_again;
SELECT count(*) AS changed_rows FROM (
    (TABLE mv_sum EXCEPT TABLE before_rebuild) UNION ALL (TABLE before_rebuild EXCEPT TABLE mv_sum)) d;
BEGIN;
UPDATE t1 SET status = 1 WHERE status = 0;
SELECT opsdemo_mv_sum_rebuild() > 0 AS rebuilt_in_transaction;
COMMIT;
SELECT * FROM opsdemo_mv_sum_verify();

TRUNCATE t1;
SELECT count(*) AS groups_after_truncate FROM mv_sum;
SELECT * FROM opsdemo_mv_sum_verify();

-- a role that may change t1 needs no rights on mv_sum
CREATE ROLE opsdemo_mv_writer;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON t1 TO opsdemo_mv_writer;
SET ROLE opsdemo_mv_writer;
INSERT INTO t1 (amount, status, message)
VALUES (3.50, 1,
        '{"account_number": "A3", "client_id": 11, "operation_type": "online"}');
UPDATE mv_sum SET total_sum = 0;
TRUNCATE t1;
RESET ROLE;
SELECT * FROM opsdemo_mv_sum_verify();
SELECT count(*) AS groups FROM mv_sum;
SELECT count(*) AS rows_left FROM t1;

-- bad calls: the trigger functions only work as the triggers they are
SELECT opsdemo_mv_sum_row_trigger();
CREATE TABLE not_t1 (status smallint);
CREATE TRIGGER wrong_timing BEFORE INSERT ON not_t1
    FOR EACH ROW EXECUTE FUNCTION opsdemo_mv_sum_row_trigger();
INSERT INTO not_t1 VALUES (1);
DROP TRIGGER wrong_timing ON not_t1;
CREATE TRIGGER wrong_table AFTER INSERT ON not_t1
    FOR EACH ROW EXECUTE FUNCTION opsdemo_mv_sum_row_trigger();
INSERT INTO not_t1 VALUES (1);
CREATE TRIGGER wrong_level AFTER INSERT ON not_t1
    FOR EACH STATEMENT EXECUTE FUNCTION opsdemo_mv_sum_row_trigger();
DROP TRIGGER wrong_table ON not_t1;
INSERT INTO not_t1 VALUES (1);
DROP TRIGGER wrong_level ON not_t1;
CREATE TRIGGER wrong_statement_level AFTER INSERT ON not_t1
    FOR EACH ROW EXECUTE FUNCTION opsdemo_mv_sum_statement_trigger();
INSERT INTO not_t1 VALUES (1);
DROP TRIGGER wrong_statement_level ON not_t1;
CREATE TRIGGER wrong_event AFTER INSERT ON not_t1
    FOR EACH STATEMENT EXECUTE FUNCTION opsdemo_mv_sum_truncate_trigger();
INSERT INTO not_t1 VALUES (1);
SELECT count(*) AS rows_kept FROM not_t1;
-- absorbing pending changes is internal
SET ROLE opsdemo_mv_writer;
SELECT opsdemo_mv_sum_absorb();
RESET ROLE;

-- a role with nothing but TEMP cannot attach the trigger functions to a
-- look-alike table (the reproduction from issue 9), so forges nothing
CREATE ROLE opsdemo_temp_only;
SET ROLE opsdemo_temp_only;
CREATE TEMP TABLE x(amount numeric(12,2), status int2, client_id int8, operation_type text);
CREATE TRIGGER forge AFTER INSERT ON x
    FOR EACH ROW EXECUTE FUNCTION opsdemo_mv_sum_row_trigger();
CREATE TRIGGER forge_statement AFTER INSERT ON x
    FOR EACH STATEMENT EXECUTE FUNCTION opsdemo_mv_sum_statement_trigger();
CREATE TRIGGER forge_truncate BEFORE TRUNCATE ON x
    FOR EACH STATEMENT EXECUTE FUNCTION opsdemo_mv_sum_truncate_trigger();
INSERT INTO x VALUES (1000000, 1, 424242, 'online');
RESET ROLE;
SELECT count(*) AS forged_groups FROM mv_sum WHERE client_id = 424242;
-- nor can a role that may create triggers with them: only t1 and its
-- partitions are counted, whatever the columns look like
CREATE TEMP TABLE y(amount int, status int2, client_id int8, operation_type text);
CREATE TRIGGER forge AFTER INSERT ON y
    FOR EACH ROW EXECUTE FUNCTION opsdemo_mv_sum_row_trigger();
INSERT INTO y VALUES (1000000, 1, 424242, 'online');
DROP TRIGGER forge ON y;
CREATE TRIGGER forge_statement AFTER INSERT ON y
    FOR EACH STATEMENT EXECUTE FUNCTION opsdemo_mv_sum_statement_trigger();
INSERT INTO y VALUES (1000000, 1, 424242, 'online');
DROP TRIGGER forge_statement ON y;
INSERT INTO y VALUES (1000000, 1, 424242, 'online');
CREATE TRIGGER forge_truncate BEFORE TRUNCATE ON y
    FOR EACH STATEMENT EXECUTE FUNCTION opsdemo_mv_sum_truncate_trigger();
TRUNCATE y;
SELECT count(*) AS rows_kept FROM y;
SELECT count(*) AS forged_groups FROM mv_sum WHERE client_id = 424242;
-- nor with opsdemo_mv_sum_count_now(), which every writer of t1 may
-- execute (t1's WHEN clauses call it): called directly, from a user's own
-- trigger (on a COPY target that is not t1), or with a chosen table, it
-- counts nothing
SET ROLE opsdemo_temp_only;
SELECT opsdemo_mv_sum_count_now('t1_default'::regclass, '(0,1)', NULL, NULL, NULL, NULL,
                                1::int2, 1000000, 424242, 'online') AS counted;
CREATE TEMP TABLE z(amount numeric, status int2, client_id int8, operation_type text);
CREATE FUNCTION pg_temp.noop() RETURNS trigger LANGUAGE plpgsql
    AS $$BEGIN RETURN NULL; END$$;
CREATE TRIGGER forge AFTER INSERT ON z FOR EACH ROW
    WHEN (opsdemo_mv_sum_count_now(NEW.tableoid, NEW.ctid, NULL, NULL, NULL, NULL,
          NEW.status, NEW.amount, NEW.client_id, NEW.operation_type))
    EXECUTE FUNCTION pg_temp.noop();
CREATE TRIGGER forge_chosen AFTER INSERT ON z FOR EACH ROW
    WHEN (opsdemo_mv_sum_count_now('t1_default'::regclass, NEW.ctid, NULL, NULL, NULL, NULL,
          NEW.status, NEW.amount, NEW.client_id, NEW.operation_type))
    EXECUTE FUNCTION pg_temp.noop();
COPY z FROM stdin;
1000000	1	424242	online
\.
SELECT count(*) AS rows_kept FROM z;
DROP TABLE z;
DROP FUNCTION pg_temp.noop();
RESET ROLE;
SELECT count(*) AS forged_groups FROM mv_sum WHERE client_id = 424242;
-- and t1 itself is read by column type, not just by name (the WHEN
-- clauses read amount too: plain triggers stand in for them here)
BEGIN;
DROP TRIGGER mv_sum_update ON t1;
DROP TRIGGER mv_sum_insert ON t1;
ALTER TABLE t1 ALTER COLUMN amount TYPE double precision;
CREATE TRIGGER mv_sum_insert AFTER INSERT ON t1
    FOR EACH ROW EXECUTE FUNCTION opsdemo_mv_sum_row_trigger();
INSERT INTO t1 (amount, status, message)
VALUES (3.50, 1, '{"account_number": "A3", "client_id": 11, "operation_type": "online"}');
ROLLBACK;
SELECT * FROM opsdemo_mv_sum_verify();

-- Groups off the fast path (src/mv_sum.c: a client_id outside [0, 2^55),
-- a ninth operation_type in one transaction) are counted all the same,
-- beside groups on it, through a savepoint released and one rolled back.
BEGIN;
ALTER TABLE t1 DROP CONSTRAINT t1_operation_type_check;
INSERT INTO t1 (amount, status, message)
SELECT 1.25 * g, 1,
       jsonb_build_object('account_number', 'F' || g,
                          'client_id', (ARRAY[-5, 36028797018963968, 9223372036854775807, 12])[g % 4 + 1],
                          'operation_type', 'type' || (g % 10))
  FROM generate_series(1, 40) g;
SAVEPOINT s1;
INSERT INTO t1 (amount, status, message)
SELECT 0.01 * g, 1,
       jsonb_build_object('account_number', 'G' || g, 'client_id', g % 3 - 1,
                          'operation_type', 'type' || (g % 12))
  FROM generate_series(1, 30) g;
RELEASE SAVEPOINT s1;
SAVEPOINT s2;
INSERT INTO t1 (amount, status, message)
VALUES (99.99, 1, '{"account_number": "H", "client_id": 12, "operation_type": "type3"}');
ROLLBACK TO SAVEPOINT s2;
UPDATE t1 SET status = 0 WHERE message->>'account_number' IN ('F8', 'G5');
SELECT count(*) AS groups_differing FROM opsdemo_mv_sum_verify();
SELECT count(*) AS fast_and_slow_groups FROM mv_sum
 WHERE operation_type LIKE 'type%';
ROLLBACK;

DROP TABLE not_t1;
DROP PROCEDURE flip_in_two_commits();
REVOKE ALL ON t1 FROM opsdemo_mv_writer;
DROP ROLE opsdemo_mv_writer;
DROP TABLE x, y;
DROP ROLE opsdemo_temp_only;
DROP EXTENSION pg_opsdemo;
