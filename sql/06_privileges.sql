-- Who may do what.
SET client_min_messages = warning;
SET timezone = 'UTC';
CREATE EXTENSION pg_opsdemo;
CREATE ROLE regress_opsdemo_writer;
CREATE ROLE regress_opsdemo_reader;
GRANT INSERT, SELECT ON t1 TO regress_opsdemo_writer;
GRANT SELECT ON t1 TO regress_opsdemo_reader;

-- a role without INSERT: a clear error, no rows and no partitions
SET ROLE regress_opsdemo_reader;
SELECT opsdemo_generate(100, '2026-01-01', '2026-03-01');
SELECT opsdemo_partitions_ensure('2026-01-01', '2026-03-01');
SELECT opsdemo_insert_tick();
SELECT opsdemo_partitions_create('2026-01-01', '2026-03-01');
RESET ROLE;
SELECT count(*) AS rows, (SELECT count(*) FROM opsdemo_partitions) AS partitions FROM t1;

-- a role with INSERT (not the owner) may generate; the partitions it needs
-- are created as t1's owner, and belong to it
SET ROLE regress_opsdemo_writer;
SELECT opsdemo_generate(100, '2026-01-01', '2026-03-01', seed => 1);
SELECT opsdemo_insert_tick() > 0 AS tick_ok;
RESET ROLE;
SELECT count(*) FROM t1;
SELECT partition, pg_get_userbyid(c.relowner) = current_user AS owned_by_t1_owner
  FROM opsdemo_partitions p JOIN pg_class c ON c.relname = p.partition
 WHERE partition IN ('t1_2026_01', 't1_2026_02');

-- column privileges count like they do for INSERT
REVOKE INSERT ON t1 FROM regress_opsdemo_writer;
GRANT INSERT (date, amount, status, operation_guid) ON t1 TO regress_opsdemo_writer;
SET ROLE regress_opsdemo_writer;
SELECT opsdemo_generate(100, '2026-01-01', '2026-03-01', seed => 2);
RESET ROLE;
GRANT INSERT (message) ON t1 TO regress_opsdemo_writer;
SET ROLE regress_opsdemo_writer;
SELECT opsdemo_generate(100, '2026-01-01', '2026-03-01', seed => 2);
RESET ROLE;

-- flipping status needs UPDATE
SET ROLE regress_opsdemo_reader;
SELECT opsdemo_update_tick('2026-01-01 00:00:00+00');
RESET ROLE;

-- row-level security is not bypassed
ALTER TABLE t1 ENABLE ROW LEVEL SECURITY;
CREATE POLICY writer_all ON t1 TO regress_opsdemo_writer USING (true) WITH CHECK (true);
GRANT INSERT ON t1 TO regress_opsdemo_writer;
SET ROLE regress_opsdemo_writer;
SELECT opsdemo_generate(100, '2026-01-01', '2026-03-01', seed => 3);
RESET ROLE;
ALTER TABLE t1 DISABLE ROW LEVEL SECURITY;
DROP POLICY writer_all ON t1;
SELECT count(*) FROM t1;

-- a hostile search_path cannot redirect the extension's writes
CREATE SCHEMA evil;
CREATE TABLE evil.t1 (LIKE t1);
SET search_path = evil, public;
SELECT opsdemo_generate(5, '2026-01-01', '2026-03-01', seed => 4);
SELECT opsdemo_insert_tick() > 0 AS tick_ok;
SELECT count(*) AS evil_rows FROM evil.t1;
RESET search_path;
DROP SCHEMA evil CASCADE;

DROP EXTENSION pg_opsdemo;
DROP ROLE regress_opsdemo_writer;
DROP ROLE regress_opsdemo_reader;
