-- Monthly partitions: created ahead, with a default partition as the net.
SET client_min_messages = warning;
SET timezone = 'UTC';
CREATE EXTENSION pg_opsdemo;

-- creates the UTC months touching [from, to), and is idempotent
SELECT opsdemo_partitions_ensure('2026-01-15', '2026-03-01');
SELECT opsdemo_partitions_ensure('2026-01-15', '2026-03-01');
SELECT opsdemo_partitions_ensure('2026-02-28 23:00', '2026-03-01 00:00:00.000001');
SELECT partition, bounds FROM opsdemo_partitions;

-- UTC months regardless of the session's time zone
SET timezone = 'Asia/Tokyo';
SELECT opsdemo_partitions_ensure('2026-05-01 08:00', '2026-05-01 10:00');
RESET timezone;
SET timezone = 'UTC';
SELECT partition, bounds FROM opsdemo_partitions WHERE partition LIKE 't1_2026_0%' ORDER BY 1;

-- a date with no monthly partition goes to the default partition
INSERT INTO t1 (date, amount, operation_guid, message)
SELECT d, 1, opsdemo_guid(d), '{"client_id": 1, "account_number": "1", "operation_type": "online"}'
  FROM (VALUES ('2027-07-04 10:00:00+00'::timestamptz),
               ('2027-07-20 10:00:00+00'),
               ('2027-08-01 00:00:00+00')) v(d);
SELECT tableoid::regclass AS partition, date FROM t1 ORDER BY date;

-- creating that month moves its rows out of the default partition, through
-- t1 (so row triggers and logical replication see a delete and an insert);
-- triggers run as t1's owner with search_path pg_catalog, pg_temp
CREATE TABLE moved_log (op text, date timestamptz);
CREATE FUNCTION log_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO public.moved_log VALUES (TG_OP, OLD.date);
        RETURN OLD;
    END IF;
    INSERT INTO public.moved_log VALUES (TG_OP, NEW.date);
    RETURN NEW;
END $$;
CREATE TRIGGER log_move AFTER INSERT OR DELETE ON t1
    FOR EACH ROW EXECUTE FUNCTION log_move();
SELECT opsdemo_partitions_ensure('2027-07-10', '2027-07-11');
SELECT tableoid::regclass AS partition, date FROM t1 ORDER BY date;
SELECT op, date FROM moved_log ORDER BY op, date;
SELECT count(*) AS leftover_scratch_tables FROM pg_class WHERE relname LIKE '%moving%';
DROP TRIGGER log_move ON t1;

-- ids and GUIDs survived the move unchanged
SELECT count(*) FROM t1 WHERE opsdemo_guid_time(operation_guid) = date;

-- bad ranges
SELECT opsdemo_partitions_ensure(NULL, '2026-01-01');
SELECT opsdemo_partitions_ensure('2026-01-01', NULL);
SELECT opsdemo_partitions_ensure('2026-03-01', '2026-01-01');
SELECT opsdemo_partitions_ensure('2026-03-01', '2026-03-01');
SELECT opsdemo_partitions_ensure('2000-01-01', '2030-01-01');
SELECT opsdemo_partitions_ensure('-infinity', '2026-01-01');
SELECT opsdemo_partitions_ensure('1960-01-01', '1960-02-01');
SELECT count(*) AS partitions FROM opsdemo_partitions;

DROP TABLE moved_log;
DROP FUNCTION log_move();
DROP EXTENSION pg_opsdemo;
