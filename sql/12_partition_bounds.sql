-- Partition creation hardening: bounds independent of the session's
-- settings, a bound on the number of partitions, the creation lock's own
-- key space, unseeded GUIDs, and no planted function or operator is used.
SET client_min_messages = warning;
SET timezone = 'UTC';
CREATE EXTENSION pg_opsdemo;

-- Bounds do not follow DateStyle, TimeZone or IntervalStyle: consecutive
-- months created under odd settings attach (an overlap would make the next
-- ATTACH fail) and are UTC months.
SET datestyle = Postgres;
SET timezone = 'Asia/Kolkata';
SELECT opsdemo_partitions_ensure('2031-02-10 00:00:00+00', '2031-04-01 00:00:00+00');
SET datestyle = 'SQL, DMY';
SET timezone = 'America/St_Johns';
SET intervalstyle = sql_standard;
SELECT opsdemo_partitions_ensure('2031-04-01 00:00:00+00', '2031-04-02 00:00:00+00');
SET datestyle = German;
SET timezone = 'Pacific/Chatham';
SET intervalstyle = iso_8601;
SELECT opsdemo_partitions_ensure('2031-05-15 00:00:00+00', '2031-07-01 00:00:00+00');
-- rows already in the default partition move to their month under odd
-- settings too
SET datestyle = ISO;
SET timezone = 'UTC';
INSERT INTO t1 (date, amount, operation_guid, message)
SELECT d, 1, opsdemo_guid(d), '{"client_id": 1, "account_number": "1", "operation_type": "online"}'
  FROM (VALUES ('2031-08-01 00:00:00+00'::timestamptz),
               ('2031-08-31 23:59:59.999999+00')) v(d);
SET datestyle = Postgres;
SET timezone = 'Asia/Kolkata';
SELECT opsdemo_partitions_ensure('2031-08-01 00:00:00+00', '2031-09-01 00:00:00+00');
RESET datestyle;
RESET intervalstyle;
SET datestyle = ISO;
SET timezone = 'UTC';
SELECT partition, bounds FROM opsdemo_partitions WHERE partition LIKE 't1_2031%' ORDER BY 1;
-- rows at the edges of the months land in their UTC month
INSERT INTO t1 (date, amount, operation_guid, message)
SELECT d, 1, opsdemo_guid(d), '{"client_id": 1, "account_number": "1", "operation_type": "online"}'
  FROM (VALUES ('2031-02-28 23:59:59.999999+00'::timestamptz),
               ('2031-03-01 00:00:00+00'),
               ('2031-03-31 23:59:59.999999+00'),
               ('2031-04-01 00:00:00+00'),
               ('2031-06-30 23:59:59.999999+00'),
               ('2031-07-01 00:00:00+00')) v(d);
SELECT tableoid::regclass AS partition, date FROM t1 ORDER BY date;

-- The creation lock is a transaction-level advisory lock in the two-int4
-- key space (class 1869640548 = 'opsd', object 1), apart from the
-- one-bigint keys applications use.  Shown here where the caller's own
-- transaction creates the month (it has read the default partition).
BEGIN;
SELECT count(*) FROM t1_default;
SELECT opsdemo_partitions_ensure('2031-10-01', '2031-11-01');
SELECT locktype, classid, objid, objsubid, mode FROM pg_locks
 WHERE locktype = 'advisory' AND pid = pg_backend_pid();
ROLLBACK;

-- opsdemo.max_partitions bounds the monthly partitions pg_opsdemo creates
-- (superuser-only setting; the default partition does not count)
SELECT setting, context FROM pg_settings WHERE name = 'opsdemo.max_partitions';
SELECT count(*) AS monthly_partitions FROM opsdemo_partitions WHERE partition <> 't1_default';
SET opsdemo.max_partitions = 9;
SELECT opsdemo_partitions_ensure('2040-01-01', '2040-03-01');
-- one month too many: refused, and none of the range is created
SELECT opsdemo_partitions_ensure('2041-01-01', '2041-03-01');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS monthly_partitions FROM opsdemo_partitions WHERE partition <> 't1_default';
-- last, this and next month are always created: the insert job needs them
SET opsdemo.max_partitions = 0;
SELECT opsdemo_insert_tick() > 0 AS inserted;
SELECT count(*) AS current_months
  FROM opsdemo_partitions
 WHERE partition IN (to_char(now() AT TIME ZONE 'UTC', '"t1_"YYYY_MM'),
                     to_char((now() AT TIME ZONE 'UTC') + interval '1 month', '"t1_"YYYY_MM'));
SELECT tableoid::regclass = ('t1_' || to_char(now() AT TIME ZONE 'UTC', 'YYYY_MM'))::regclass AS routed
  FROM t1 WHERE date BETWEEN now() - interval '1 minute' AND now();
RESET opsdemo.max_partitions;
-- a role that may only INSERT can neither raise the bound nor loop past it
CREATE ROLE opsdemo_bounds_inserter;
GRANT INSERT ON t1 TO opsdemo_bounds_inserter;
GRANT EXECUTE ON FUNCTION opsdemo_partitions_ensure(timestamptz, timestamptz) TO opsdemo_bounds_inserter;
SET opsdemo.max_partitions = 20;
SET ROLE opsdemo_bounds_inserter;
SET opsdemo.max_partitions = 100000;
DO $$
BEGIN
    FOR m IN 0..599 LOOP
        PERFORM opsdemo_partitions_ensure(
            make_timestamptz(2050 + m / 12, m % 12 + 1, 1, 0, 0, 0, 'UTC'),
            make_timestamptz(2050 + m / 12, m % 12 + 1, 2, 0, 0, 0, 'UTC'));
    END LOOP;
END
$$;
RESET ROLE;
SELECT count(*) AS monthly_partitions FROM opsdemo_partitions WHERE partition <> 't1_default';
SELECT count(*) AS months_of_2050 FROM opsdemo_partitions WHERE partition LIKE 't1_2050%';
RESET opsdemo.max_partitions;

-- GUIDs minted without a seed (random bits from pg_strong_random): 3000
-- rows within one millisecond still get distinct, valid GUIDs
TRUNCATE t1;
SELECT opsdemo_generate(3000, '2031-03-05 00:00:00+00', '2031-03-05 00:00:00.001+00');
SELECT count(*) AS rows, count(DISTINCT operation_guid) AS guids,
       bool_and(opsdemo_guid_time(operation_guid) = date) AS guids_encode_dates,
       bool_and(substr(operation_guid::text, 15, 1) = '7') AS version_7,
       bool_and(substr(operation_guid::text, 20, 1) IN ('8', '9', 'a', 'b')) AS variant
  FROM t1;
-- the random bits are not repeated by another unseeded run of the same period
CREATE TABLE first_guids AS SELECT operation_guid FROM t1;
TRUNCATE t1;
SELECT opsdemo_generate(3000, '2031-03-05 00:00:00+00', '2031-03-05 00:00:00.001+00');
SELECT count(*) AS repeated FROM t1 JOIN first_guids USING (operation_guid);
DROP TABLE first_guids;
SELECT count(DISTINCT opsdemo_guid('2031-03-05 00:00:00+00')) AS distinct_guids
  FROM generate_series(1, 5000);

-- Functions and operators planted in public (the extension's schema here)
-- and put first on the search path are never called by partition creation
-- (worker or calling transaction) or by the generator.
TRUNCATE t1;
INSERT INTO t1 (date, amount, status, operation_guid, message)
VALUES ('2031-12-10 00:00:00+00', 3, 1, opsdemo_guid('2031-12-10 00:00:00+00'),
        '{"client_id": 7, "account_number": "7", "operation_type": "online"}');
CREATE FUNCTION public.planted() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'a planted function or operator was called'; END $$;
CREATE FUNCTION public.date_trunc(text, timestamp) RETURNS timestamp
    LANGUAGE sql AS 'SELECT CASE WHEN public.planted() THEN $2 END';
CREATE FUNCTION public.to_char(timestamp, text) RETURNS text
    LANGUAGE sql AS 'SELECT CASE WHEN public.planted() THEN $2 END';
CREATE FUNCTION public.to_regclass(text) RETURNS regclass
    LANGUAGE sql AS 'SELECT CASE WHEN public.planted() THEN NULL::regclass END';
CREATE FUNCTION public.format(text, text, text) RETURNS text
    LANGUAGE sql AS 'SELECT CASE WHEN public.planted() THEN $1 END';
CREATE FUNCTION public.pg_advisory_xact_lock(integer, integer) RETURNS void
    LANGUAGE sql AS 'SELECT CASE WHEN public.planted() THEN NULL END';
CREATE FUNCTION public.planted_ts_le(timestamp, timestamp) RETURNS boolean
    LANGUAGE sql AS 'SELECT public.planted()';
CREATE OPERATOR public.<= (FUNCTION = public.planted_ts_le, LEFTARG = timestamp, RIGHTARG = timestamp);
CREATE FUNCTION public.planted_tstz_ge(timestamptz, timestamptz) RETURNS boolean
    LANGUAGE sql AS 'SELECT public.planted()';
CREATE OPERATOR public.>= (FUNCTION = public.planted_tstz_ge, LEFTARG = timestamptz, RIGHTARG = timestamptz);
CREATE FUNCTION public.planted_text_cat(text, text) RETURNS text
    LANGUAGE sql AS 'SELECT CASE WHEN public.planted() THEN $1 END';
CREATE OPERATOR public.|| (FUNCTION = public.planted_text_cat, LEFTARG = text, RIGHTARG = text);
SET search_path = public, pg_catalog;
SELECT opsdemo_partitions_ensure('2031-12-01 00:00:00+00', '2032-01-01 00:00:00+00');
SELECT opsdemo_generate(100, '2032-02-01 00:00:00+00', '2032-03-01 00:00:00+00', seed => 5);
BEGIN;
SELECT count(*) FROM t1_default;
SELECT opsdemo_partitions_ensure('2032-04-01 00:00:00+00', '2032-05-01 00:00:00+00');
COMMIT;
RESET search_path;
DROP OPERATOR public.|| (text, text);
DROP OPERATOR public.>= (timestamptz, timestamptz);
DROP OPERATOR public.<= (timestamp, timestamp);
DROP FUNCTION public.planted_text_cat(text, text), public.planted_tstz_ge(timestamptz, timestamptz),
    public.planted_ts_le(timestamp, timestamp), public.pg_advisory_xact_lock(integer, integer),
    public.format(text, text, text), public.to_regclass(text), public.to_char(timestamp, text),
    public.date_trunc(text, timestamp), public.planted();
SELECT tableoid::regclass AS partition, count(*) FROM t1 GROUP BY 1 ORDER BY 1;
SELECT * FROM opsdemo_mv_sum_verify();

DROP EXTENSION pg_opsdemo;
DROP ROLE opsdemo_bounds_inserter;
