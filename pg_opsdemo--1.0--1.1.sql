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
