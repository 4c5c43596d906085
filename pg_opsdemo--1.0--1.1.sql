/* pg_opsdemo--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_opsdemo UPDATE TO '1.1'" to load this file. \quit

-- Every change to the SQL objects between 1.0 and 1.1.  A fresh 1.1 install
-- (pg_opsdemo--1.1.sql) and 1.0 + this script must give the same catalog:
-- test/t/004_upgrade.pl compares their schema-only dumps.

-- Stream "sched" (scheduler, job bodies, pg_cron mode): no SQL object
-- changes.  The batched update job uses 1.0's pending index, and the new
-- setting opsdemo.update_batch_size lives in the library.
