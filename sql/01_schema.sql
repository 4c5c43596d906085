-- The objects CREATE EXTENSION makes, reachable unqualified.
SET client_min_messages = warning;
CREATE EXTENSION pg_opsdemo;

-- t1 is range-partitioned on date, with a default partition from the start
SELECT c.relkind, pg_get_partkeydef(c.oid) AS partition_key
  FROM pg_class c WHERE c.oid = 't1'::regclass;
SELECT partition, bounds FROM opsdemo_partitions;

-- columns, types, defaults and generated expressions
SELECT attname, format_type(atttypid, atttypmod) AS type, attnotnull,
       attidentity, attgenerated,
       pg_get_expr(d.adbin, d.adrelid) AS default_or_expression
  FROM pg_attribute a
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE attrelid = 't1'::regclass AND attnum > 0 AND NOT attisdropped
 ORDER BY attnum;

-- constraints and indexes (NOT NULL is attnotnull above; PostgreSQL 18
-- catalogs it as a constraint too, contype 'n')
SELECT conname, contype, pg_get_constraintdef(oid) AS definition
  FROM pg_constraint WHERE conrelid = 't1'::regclass AND contype <> 'n' ORDER BY conname;
-- indexes are per partition (t1 itself has none, so pg_restore works):
-- primary key, unique GUID key and the pending-rows index, on the default
-- partition and on every monthly partition
SELECT count(*) AS parent_indexes FROM pg_index WHERE indrelid = 't1'::regclass;
SELECT indexrelid::regclass AS index, pg_get_indexdef(indexrelid) AS definition
  FROM pg_index WHERE indrelid = 't1_default'::regclass ORDER BY indexrelid;  -- creation order
SELECT opsdemo_partitions_ensure('2026-01-01 UTC', '2026-01-02 UTC');
SELECT indexrelid::regclass AS index, pg_get_indexdef(indexrelid) AS definition
  FROM pg_index WHERE indrelid = 't1_2026_01'::regclass ORDER BY indexrelid;  -- creation order
SELECT conname, contype FROM pg_constraint
 WHERE conrelid = 't1_2026_01'::regclass AND contype <> 'n' ORDER BY conname;

-- mv_sum has the contract columns
SELECT attname, format_type(atttypid, atttypmod) AS type
  FROM pg_attribute
 WHERE attrelid = 'mv_sum'::regclass AND attnum > 0 AND NOT attisdropped
 ORDER BY attnum;

-- the SQL contract's functions resolve unqualified
SELECT 'opsdemo_generate'::regproc::regprocedure AS generate,
       'opsdemo_insert_tick'::regproc::regprocedure AS insert_tick,
       'opsdemo_update_tick'::regproc::regprocedure AS update_tick,
       'opsdemo_partitions_ensure'::regproc::regprocedure AS ensure,
       'opsdemo_mv_sum_rebuild'::regproc::regprocedure AS rebuild;

-- dump configuration: the default partition, the id sequence and mv_sum
SELECT unnest(extconfig)::regclass AS dumped FROM pg_extension
 WHERE extname = 'pg_opsdemo' ORDER BY 1::text;

-- the internal partition creator is not callable by everybody
SELECT has_function_privilege('public',
       'opsdemo_partitions_create(timestamptz, timestamptz)', 'EXECUTE') AS public_can_execute;

-- client_id and operation_type are stored, read without parsing JSON
INSERT INTO t1 (amount, message)
VALUES (10.50, '{"client_id": 7, "account_number": "40817810000000000001", "operation_type": "offline"}');
SELECT client_id, operation_type, status, amount,
       opsdemo_guid_time(operation_guid) = date AS guid_encodes_date
  FROM t1;

-- bad messages are rejected with the constraint's name
\set VERBOSITY terse
INSERT INTO t1 (amount, message)
VALUES (1, '{"client_id": 7, "account_number": "1", "operation_type": "teleport"}');
INSERT INTO t1 (amount, message)
VALUES (1, '{"client_id": 7, "operation_type": "online"}');
INSERT INTO t1 (amount, message)
VALUES (1, '{"account_number": "1", "operation_type": "online"}');
INSERT INTO t1 (amount, status, message)
VALUES (1, 2, '{"client_id": 7, "account_number": "1", "operation_type": "online"}');
-- id is generated, not user-supplied
INSERT INTO t1 (id, amount, message)
VALUES (1, 1, '{"client_id": 7, "account_number": "1", "operation_type": "online"}');
\set VERBOSITY default
SELECT count(*) FROM t1;

-- DROP EXTENSION removes everything, including partitions created later
SELECT opsdemo_partitions_ensure('2026-01-01 UTC', '2026-03-01 UTC');
DROP EXTENSION pg_opsdemo;
SELECT count(*) AS leftover_relations FROM pg_class
 WHERE relname ~ '^(t1|mv_sum|opsdemo_)' AND relnamespace = 'public'::regnamespace;
SELECT count(*) AS leftover_functions FROM pg_proc WHERE proname ~ '^opsdemo_';

-- and it installs again cleanly, into another schema too
CREATE SCHEMA ops;
CREATE EXTENSION pg_opsdemo SCHEMA ops;
SELECT ops.opsdemo_generate(10, '2026-01-01 UTC', '2026-01-02 UTC', seed => 1);
SELECT count(*) FROM ops.t1;
DROP EXTENSION pg_opsdemo;
DROP SCHEMA ops;
