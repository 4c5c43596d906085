-- The read-only guard: opsdemo_read_only_guard() and the helpers
-- opsdemo_make_read_only() / opsdemo_make_writable().  After each refused
-- write, psql's SQLSTATE variable shows the SQLSTATE, and the rows show
-- that nothing changed.  The logical replication worker's path is tested in a
-- single server through session_replication_role = replica, which is how
-- the apply worker runs.
SET client_min_messages = warning;
CREATE EXTENSION pg_opsdemo;
\set SHOW_CONTEXT never

CREATE VIEW guard_triggers AS
SELECT t.tgrelid::regclass AS rel, t.tgname, t.tgenabled, t.tgparentid <> 0 AS cloned,
       pg_get_triggerdef(t.oid) AS def
  FROM pg_trigger t
 WHERE t.tgfoid = 'opsdemo_read_only_guard()'::regprocedure
   AND NOT t.tgisinternal;

CREATE TABLE test (id int PRIMARY KEY, v text);
INSERT INTO test VALUES (1, 'a'), (2, 'b');
SELECT opsdemo_make_read_only('test', 'node1');
SELECT rel, tgname, tgenabled, def FROM guard_triggers ORDER BY 1, 2;

-- ---- every kind of local write is refused with 25006 --------------------
INSERT INTO test VALUES (3, 'c');
\echo :SQLSTATE
UPDATE test SET v = 'x' WHERE id = 1;
\echo :SQLSTATE
DELETE FROM test WHERE id = 2;
\echo :SQLSTATE
TRUNCATE test;
\echo :SQLSTATE
COPY test FROM STDIN;
3	c
\.
\echo :SQLSTATE
INSERT INTO test VALUES (1, 'y') ON CONFLICT (id) DO UPDATE SET v = excluded.v;
\echo :SQLSTATE
MERGE INTO test t USING (VALUES (2, 'z')) s(id, v) ON t.id = s.id
 WHEN MATCHED THEN UPDATE SET v = s.v;
\echo :SQLSTATE
SELECT id, v FROM test ORDER BY id;
-- a statement that changes no row writes nothing, and is not refused
UPDATE test SET v = 'x' WHERE id = 99;

-- names are schema-qualified and quoted as PostgreSQL quotes them
CREATE SCHEMA "Odd Schema";
CREATE TABLE "Odd Schema"."Mixed Case" (id int);
SELECT opsdemo_make_read_only('"Odd Schema"."Mixed Case"', 'node "2"');
INSERT INTO "Odd Schema"."Mixed Case" VALUES (1);
\echo :SQLSTATE
DROP SCHEMA "Odd Schema" CASCADE;

-- ---- the logical replication worker's path -------------------------------
-- An ordinary trigger does not fire under session_replication_role =
-- replica, the apply worker's setting: its changes pass.  The same goes
-- for a superuser who sets it: PostgreSQL's design, and README material.
SET session_replication_role = replica;
INSERT INTO test VALUES (3, 'replicated');
UPDATE test SET v = 'replicated' WHERE id = 1;
DELETE FROM test WHERE id = 2;
RESET session_replication_role;
SELECT id, v FROM test ORDER BY id;

-- ENABLE ALWAYS: the guard fires under replica too and lets only a logical
-- replication worker through; this session is none.
ALTER TABLE test ENABLE ALWAYS TRIGGER opsdemo_read_only;
ALTER TABLE test ENABLE ALWAYS TRIGGER opsdemo_read_only_truncate;
SET session_replication_role = replica;
INSERT INTO test VALUES (4, 'd');
\echo :SQLSTATE
TRUNCATE test;
\echo :SQLSTATE
RESET session_replication_role;
SELECT count(*) FROM test;

-- Again with another node: the triggers are replaced, and stay ALWAYS.
SELECT opsdemo_make_read_only('test', 'node2');
SELECT rel, tgname, tgenabled, def FROM guard_triggers ORDER BY 1, 2;
DELETE FROM test;
\echo :SQLSTATE

-- DISABLE TRIGGER (the owner's or a superuser's) lets writes through;
-- ENABLE refuses them again.
ALTER TABLE test DISABLE TRIGGER opsdemo_read_only;
INSERT INTO test VALUES (4, 'while disabled');
ALTER TABLE test ENABLE TRIGGER opsdemo_read_only;
INSERT INTO test VALUES (5, 'e');
\echo :SQLSTATE
SELECT id, v FROM test ORDER BY id;
-- the helper enables a disabled guard
ALTER TABLE test DISABLE TRIGGER opsdemo_read_only;
ALTER TABLE test DISABLE TRIGGER opsdemo_read_only_truncate;
SELECT opsdemo_make_read_only('test', 'node1');
SELECT rel, tgname, tgenabled FROM guard_triggers ORDER BY 1, 2;

-- make_writable drops both triggers; writes pass; a second call finds none
SELECT opsdemo_make_writable('test');
SELECT count(*) FROM guard_triggers;
INSERT INTO test VALUES (5, 'e');
TRUNCATE test;
SELECT opsdemo_make_writable('test');

-- ---- partitioned tables ----------------------------------------------------
-- Row triggers are cloned to every partition, present and future; TRUNCATE
-- triggers are not: the helper gives each partition present its own.
CREATE TABLE pt (id int, d date, PRIMARY KEY (id, d)) PARTITION BY RANGE (d);
CREATE TABLE pt_01 PARTITION OF pt FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE pt_02 PARTITION OF pt FOR VALUES FROM ('2026-02-01') TO ('2026-03-01')
    PARTITION BY HASH (id);
CREATE TABLE pt_02_h0 PARTITION OF pt_02 FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE pt_02_h1 PARTITION OF pt_02 FOR VALUES WITH (MODULUS 2, REMAINDER 1);
INSERT INTO pt SELECT i, date '2026-01-10' + i * 10 FROM generate_series(1, 4) i;
SELECT opsdemo_make_read_only('pt', 'node1');
SELECT rel, tgname, tgenabled, cloned FROM guard_triggers ORDER BY rel::text, tgname;

INSERT INTO pt VALUES (10, '2026-01-15');
\echo :SQLSTATE
INSERT INTO pt_02_h0 VALUES (2, '2026-02-15');
\echo :SQLSTATE
UPDATE pt SET d = '2026-02-20' WHERE id = 1;
\echo :SQLSTATE
DELETE FROM pt_02;
\echo :SQLSTATE
TRUNCATE pt;
\echo :SQLSTATE
TRUNCATE pt_01;
\echo :SQLSTATE
TRUNCATE pt_02;
\echo :SQLSTATE
TRUNCATE pt_02_h1;
\echo :SQLSTATE
SELECT tableoid::regclass, id, d FROM pt ORDER BY id;

-- A partition added later: INSERT, UPDATE and DELETE are refused at once
-- (the cloned row trigger), TRUNCATE of its own name only after the helper
-- runs again.
CREATE TABLE pt_03 PARTITION OF pt FOR VALUES FROM ('2026-03-01') TO ('2026-04-01');
INSERT INTO pt VALUES (20, '2026-03-05');
\echo :SQLSTATE
SET session_replication_role = replica;
INSERT INTO pt VALUES (20, '2026-03-05'), (21, '2026-03-06');
RESET session_replication_role;
TRUNCATE pt_03;
SELECT count(*) FROM pt_03;
SET session_replication_role = replica;
INSERT INTO pt VALUES (20, '2026-03-05');
RESET session_replication_role;
SELECT opsdemo_make_read_only('pt', 'node1');
TRUNCATE pt_03;
\echo :SQLSTATE
SELECT count(*) FROM pt_03;

-- a partition on its own is refused, either way
SELECT opsdemo_make_read_only('pt_01', 'node1');
\echo :SQLSTATE
SELECT opsdemo_make_read_only('pt_02_h0', 'node1');
\echo :SQLSTATE
SELECT opsdemo_make_writable('pt_01');
\echo :SQLSTATE

SELECT opsdemo_make_writable('pt');
SELECT count(*) FROM guard_triggers;
INSERT INTO pt VALUES (30, '2026-01-30');
TRUNCATE pt_03;
DROP TABLE pt;

-- ---- bad uses of the helpers -------------------------------------------------
CREATE TABLE plain (id int);
SELECT opsdemo_make_read_only(NULL, 'node1');
\echo :SQLSTATE
SELECT opsdemo_make_read_only('plain', NULL);
\echo :SQLSTATE
SELECT opsdemo_make_read_only('plain', '');
\echo :SQLSTATE
SELECT opsdemo_make_read_only(0::oid::regclass, 'node1');
\echo :SQLSTATE
SELECT opsdemo_make_writable(NULL);
\echo :SQLSTATE
CREATE VIEW plain_view AS SELECT * FROM plain;
SELECT opsdemo_make_read_only('plain_view', 'node1');
\echo :SQLSTATE
SELECT opsdemo_make_writable('plain_view');
\echo :SQLSTATE
CREATE MATERIALIZED VIEW plain_mv AS SELECT * FROM plain;
SELECT opsdemo_make_read_only('plain_mv', 'node1');
\echo :SQLSTATE
CREATE SEQUENCE plain_seq;
SELECT opsdemo_make_read_only('plain_seq', 'node1');
\echo :SQLSTATE
CREATE INDEX plain_idx ON plain (id);
SELECT opsdemo_make_read_only('plain_idx', 'node1');
\echo :SQLSTATE
CREATE FOREIGN DATA WRAPPER guard_fdw;
CREATE SERVER guard_server FOREIGN DATA WRAPPER guard_fdw;
CREATE FOREIGN TABLE plain_foreign (id int) SERVER guard_server;
SELECT opsdemo_make_read_only('plain_foreign', 'node1');
\echo :SQLSTATE
CREATE TABLE mixed (id int) PARTITION BY LIST (id);
CREATE TABLE mixed_local PARTITION OF mixed FOR VALUES IN (1);
CREATE FOREIGN TABLE mixed_remote PARTITION OF mixed FOR VALUES IN (2) SERVER guard_server;
SELECT opsdemo_make_read_only('mixed', 'node1');
\echo :SQLSTATE
CREATE TEMP TABLE plain_temp (id int);
SELECT opsdemo_make_read_only('plain_temp', 'node1');
\echo :SQLSTATE
-- a trigger of the same name that is not the guard is not replaced
CREATE FUNCTION plain_noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER opsdemo_read_only_truncate BEFORE TRUNCATE ON plain
    FOR EACH STATEMENT EXECUTE FUNCTION plain_noop();
SELECT opsdemo_make_read_only('plain', 'node1');
\echo :SQLSTATE
SELECT tgname, tgfoid::regproc FROM pg_trigger WHERE tgrelid = 'plain'::regclass;
SELECT opsdemo_make_writable('plain');
SELECT tgname, tgfoid::regproc FROM pg_trigger WHERE tgrelid = 'plain'::regclass;
DROP TRIGGER opsdemo_read_only_truncate ON plain;
-- nothing was left on any of them
SELECT count(*) FROM guard_triggers;
DROP TABLE mixed, plain_temp;
DROP MATERIALIZED VIEW plain_mv;
DROP SEQUENCE plain_seq;
DROP SERVER guard_server CASCADE;
DROP FOREIGN DATA WRAPPER guard_fdw;

-- ---- bad uses of the trigger function ----------------------------------------
-- PostgreSQL calls a trigger function only when the trigger fires, so a
-- wrong definition is accepted by CREATE TRIGGER and refused by the first
-- write, which changes nothing.  (A view's statement triggers do not fire
-- when the view is automatically updatable, so a view is shown with
-- INSTEAD OF.)
SELECT opsdemo_read_only_guard();
\echo :SQLSTATE

CREATE TRIGGER bad AFTER INSERT ON plain
    FOR EACH ROW EXECUTE FUNCTION opsdemo_read_only_guard('node1');
INSERT INTO plain VALUES (1);
\echo :SQLSTATE
DROP TRIGGER bad ON plain;

CREATE TRIGGER bad AFTER TRUNCATE ON plain
    FOR EACH STATEMENT EXECUTE FUNCTION opsdemo_read_only_guard('node1');
TRUNCATE plain;
\echo :SQLSTATE
DROP TRIGGER bad ON plain;

CREATE TRIGGER bad BEFORE UPDATE ON plain
    FOR EACH STATEMENT EXECUTE FUNCTION opsdemo_read_only_guard('node1');
UPDATE plain SET id = 2;
\echo :SQLSTATE
DROP TRIGGER bad ON plain;

CREATE TRIGGER bad BEFORE INSERT ON plain
    FOR EACH ROW EXECUTE FUNCTION opsdemo_read_only_guard();
INSERT INTO plain VALUES (1);
\echo :SQLSTATE
DROP TRIGGER bad ON plain;

CREATE TRIGGER bad BEFORE DELETE ON plain
    FOR EACH ROW EXECUTE FUNCTION opsdemo_read_only_guard('node1', 'node2');
INSERT INTO plain VALUES (1);  -- a row for the DELETEs to refuse
DELETE FROM plain;
\echo :SQLSTATE
DROP TRIGGER bad ON plain;

CREATE TRIGGER bad BEFORE DELETE ON plain
    FOR EACH ROW EXECUTE FUNCTION opsdemo_read_only_guard('');
DELETE FROM plain;
\echo :SQLSTATE
DROP TRIGGER bad ON plain;
SELECT id FROM plain;

CREATE TRIGGER bad INSTEAD OF INSERT ON plain_view
    FOR EACH ROW EXECUTE FUNCTION opsdemo_read_only_guard('node1');
INSERT INTO plain_view VALUES (2);
\echo :SQLSTATE
DROP TRIGGER bad ON plain_view;

SELECT id FROM plain;

-- In the replica role, with ENABLE ALWAYS, a wrong definition still
-- refuses this session's writes: it is no logical replication worker.
CREATE TRIGGER bad AFTER INSERT ON plain
    FOR EACH ROW EXECUTE FUNCTION opsdemo_read_only_guard('node1');
ALTER TABLE plain ENABLE ALWAYS TRIGGER bad;
SET session_replication_role = replica;
INSERT INTO plain VALUES (3);
\echo :SQLSTATE
RESET session_replication_role;
DROP TRIGGER bad ON plain;
DROP VIEW plain_view;

-- ---- privileges ----------------------------------------------------------------
-- None of the three is PUBLIC's (09_public_functions checks that too).  The
-- helpers run as the caller, who must own the table, and CREATE TRIGGER
-- needs EXECUTE on the guard function as well.
CREATE ROLE regress_guard_owner;
CREATE ROLE regress_guard_other;
SELECT p.oid::regprocedure AS function,
       has_function_privilege('regress_guard_other', p.oid, 'EXECUTE') AS other_may_execute
  FROM pg_proc p
 WHERE p.proname IN ('opsdemo_read_only_guard', 'opsdemo_make_read_only', 'opsdemo_make_writable')
 ORDER BY p.proname;
SET ROLE regress_guard_other;
SELECT opsdemo_make_read_only('plain', 'node1');
\echo :SQLSTATE
RESET ROLE;

GRANT EXECUTE ON FUNCTION opsdemo_make_read_only(regclass, text),
                          opsdemo_make_writable(regclass)
   TO regress_guard_owner, regress_guard_other;
-- TRIGGER privilege without ownership is not enough
GRANT TRIGGER ON plain TO regress_guard_other;
SET ROLE regress_guard_other;
SELECT opsdemo_make_read_only('plain', 'node1');
\echo :SQLSTATE
SELECT opsdemo_make_writable('plain');
\echo :SQLSTATE
RESET ROLE;

CREATE TABLE owned (id int);
ALTER TABLE owned OWNER TO regress_guard_owner;
SET ROLE regress_guard_owner;
-- the owner, without EXECUTE on the guard function: CREATE TRIGGER refuses
SELECT opsdemo_make_read_only('owned', 'node1');
\echo :SQLSTATE
RESET ROLE;
GRANT EXECUTE ON FUNCTION opsdemo_read_only_guard() TO regress_guard_owner;
SET ROLE regress_guard_owner;
SELECT opsdemo_make_read_only('owned', 'node1');
INSERT INTO owned VALUES (1);
\echo :SQLSTATE
SELECT opsdemo_make_writable('owned');
INSERT INTO owned VALUES (1);
RESET ROLE;
SELECT count(*) FROM guard_triggers;

-- ---- a guarded t1: pg_opsdemo's own month creation moves rows past it ---
-- On a subscriber, rows of a month it has no partition for land in
-- t1_default (here put there as the apply worker would, in replica role).
-- Creating that month moves them through t1: DELETE and INSERT of the same
-- rows, which the guard lets pass; other local writes stay refused.
SELECT opsdemo_make_read_only('t1', 'node1');
SET session_replication_role = replica;
INSERT INTO t1 (date, amount, operation_guid, message)
SELECT d, 10, opsdemo_guid(d), jsonb_build_object('account_number', '40817810000000000001', 'client_id', 1, 'operation_type', 'online')
  FROM (VALUES (timestamptz '2031-05-10 12:00+00'), ('2031-05-20 12:00+00')) v(d);
RESET session_replication_role;
SELECT tableoid::regclass, count(*), sum(amount), count(DISTINCT operation_guid) FROM t1 GROUP BY 1;
SELECT opsdemo_partitions_ensure('2031-05-01 00:00+00', '2031-06-01 00:00+00');
SELECT tableoid::regclass, count(*), sum(amount), count(DISTINCT operation_guid) FROM t1 GROUP BY 1;
INSERT INTO t1 (date, amount, message)
VALUES ('2031-05-11 12:00+00', 1, '{"account_number": "40817810000000000001", "client_id": 1, "operation_type": "online"}');
\echo :SQLSTATE
SELECT opsdemo_make_writable('t1');
DELETE FROM t1;
DROP TABLE t1_2031_05;

DROP TABLE owned, plain, test;
DROP FUNCTION plain_noop();
DROP VIEW guard_triggers;
REVOKE ALL ON FUNCTION opsdemo_make_read_only(regclass, text),
                       opsdemo_make_writable(regclass),
                       opsdemo_read_only_guard()
  FROM regress_guard_owner, regress_guard_other;
DROP ROLE regress_guard_owner, regress_guard_other;
DROP EXTENSION pg_opsdemo;
