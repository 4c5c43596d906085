/* pg_opsdemo--1.1--1.2.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_opsdemo UPDATE TO '1.2'" to load this file. \quit

-- Every change to the SQL objects between 1.1 and 1.2.  A fresh 1.2 install
-- (pg_opsdemo--1.2.sql) and 1.0 + 1.0--1.1 + this script must give the same
-- catalog: test/t/004_upgrade.pl compares their schema-only dumps.

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
