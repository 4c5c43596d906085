-- operation_guid is unique across the whole of t1, not per partition.
SET client_min_messages = warning;
SET timezone = 'UTC';
CREATE EXTENSION pg_opsdemo;
SELECT opsdemo_partitions_ensure('2026-01-01', '2026-04-01');

-- a GUID carries its date to the microsecond, and is a version 7 UUID
SELECT opsdemo_guid_time(opsdemo_guid('2026-02-03 04:05:06.789012+00')) AS decoded,
       substr(opsdemo_guid('2026-02-03 04:05:06.789012+00')::text, 15, 1) AS version;
SELECT opsdemo_guid_time(opsdemo_guid('1970-01-01 00:00:00+00')) AS epoch;
-- GUIDs minted for the same instant differ
SELECT count(DISTINCT opsdemo_guid('2026-02-03 00:00:00+00')) FROM generate_series(1, 1000);
-- time order is kept: later dates give larger GUIDs
SELECT opsdemo_guid('2026-02-03 00:00:00.000001+00') > opsdemo_guid('2026-02-03 00:00:00+00') AS ordered;
-- not an operation GUID: version 4, or a sub-millisecond field out of range
SELECT opsdemo_guid_time('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11') IS NULL AS v4_is_null,
       opsdemo_guid_time('01a025cc-3a15-7fff-8087-54855a65ddb2') IS NULL AS bad_micros_is_null;
-- dates a GUID cannot hold
SELECT opsdemo_guid('1969-12-31 23:59:59+00');
SELECT opsdemo_guid('infinity');

-- same GUID, same date: the partition's unique index rejects it
INSERT INTO t1 (date, amount, operation_guid, message)
VALUES ('2026-02-10 12:00:00+00', 5, '019c476c-3600-7000-8000-000000000001',
        '{"client_id": 1, "account_number": "1", "operation_type": "online"}');
SELECT opsdemo_guid_time('019c476c-3600-7000-8000-000000000001');
INSERT INTO t1 (date, amount, operation_guid, message)
VALUES ('2026-02-10 12:00:00+00', 6, '019c476c-3600-7000-8000-000000000001',
        '{"client_id": 2, "account_number": "2", "operation_type": "offline"}');

-- same GUID in another partition (March): rejected too, because a GUID
-- determines its date
INSERT INTO t1 (date, amount, operation_guid, message)
VALUES ('2026-03-10 12:00:00+00', 6, '019c476c-3600-7000-8000-000000000001',
        '{"client_id": 2, "account_number": "2", "operation_type": "offline"}');
-- ... and in the default partition
INSERT INTO t1 (date, amount, operation_guid, message)
VALUES ('2031-03-10 12:00:00+00', 6, '019c476c-3600-7000-8000-000000000001',
        '{"client_id": 2, "account_number": "2", "operation_type": "offline"}');
-- moving the existing row to another month cannot create a duplicate either
UPDATE t1 SET date = '2026-03-10 12:00:00+00'
 WHERE operation_guid = '019c476c-3600-7000-8000-000000000001';
-- a random (version 4) UUID is not an operation GUID
\set VERBOSITY terse
INSERT INTO t1 (date, amount, operation_guid, message)
VALUES ('2026-02-10 12:00:00+00', 6, gen_random_uuid(),
        '{"client_id": 2, "account_number": "2", "operation_type": "offline"}');
\set VERBOSITY default

-- opsdemo_guid(date) is how a client mints one for its own date
INSERT INTO t1 (date, amount, operation_guid, message)
VALUES ('2026-03-10 12:00:00+00', 7, opsdemo_guid('2026-03-10 12:00:00+00'),
        '{"client_id": 3, "account_number": "3", "operation_type": "online"}');
SELECT tableoid::regclass AS partition, amount FROM t1 ORDER BY date;
SELECT count(*) = count(DISTINCT operation_guid) AS all_unique FROM t1;
DROP EXTENSION pg_opsdemo;
