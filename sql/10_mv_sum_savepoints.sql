-- mv_sum under savepoint-heavy writers: a released subtransaction's deltas
-- join its parent's, so memory stays flat however many subtransactions a
-- transaction runs, and rollbacks still take back exactly their part.
SET client_min_messages = warning;
SET timezone = 'UTC';
CREATE EXTENSION pg_opsdemo;
SELECT opsdemo_generate(2000, '2026-01-01', '2026-02-01', seed => 10, clients => 20,
                        processed_share => 1);

-- bytes held by the pending deltas: their contexts (the hash tables are
-- in them)
CREATE FUNCTION pg_temp.mv_sum_delta_bytes() RETURNS bigint LANGUAGE sql AS $$
    SELECT coalesce(sum(total_bytes), 0)::bigint FROM pg_backend_memory_contexts
     WHERE name LIKE 'opsdemo mv_sum%'
$$;
CREATE TEMP TABLE delta_bytes (after_subxacts int, bytes bigint, contexts bigint);

-- 20,000 EXCEPTION blocks, each updating a status-1 row; every seventh one
-- fails after its update and rolls it back.  The bytes after 1,000 and after
-- 20,000 may differ by at most 64 kB: the ~16,000 subtransactions released in
-- between would have to leak less than 4 bytes each to stay under that, and
-- the smallest palloc chunk is 16 bytes with its header.  Keeping a frame per
-- released subtransaction (its own 8 kB memory context plus a hash table:
-- the growth this guards against) comes to over 100 MB here, and to over
-- 1 MB at the first measurement already.  200,000 subtransactions showed
-- the same, only slower.
DO $$
DECLARE
    ids bigint[] := ARRAY(SELECT id FROM t1 WHERE status = 1 ORDER BY id);
    n int := array_length(ids, 1);
BEGIN
    FOR i IN 1..20000 LOOP
        BEGIN
            UPDATE t1 SET amount = amount + 0.01 WHERE id = ids[1 + i % n];
            IF i % 7 = 0 THEN
                PERFORM 1 / 0;
            END IF;
        EXCEPTION WHEN division_by_zero THEN
            NULL;
        END;
        IF i IN (1000, 20000) THEN
            INSERT INTO delta_bytes
            SELECT i, pg_temp.mv_sum_delta_bytes(),
                   (SELECT count(*) FROM pg_backend_memory_contexts
                     WHERE name LIKE 'opsdemo mv_sum%');
        END IF;
    END LOOP;
END
$$;
SELECT after_subxacts, bytes < 1024 * 1024 AS below_1mb, contexts FROM delta_bytes ORDER BY 1;
SELECT max(bytes) - min(bytes) <= 64 * 1024 AS no_growth FROM delta_bytes;
SELECT * FROM opsdemo_mv_sum_verify();
-- every kept cent arrived
SELECT sum(amount) - (SELECT sum(total_sum) FROM mv_sum) AS difference FROM t1 WHERE status = 1;

-- released savepoints merge into their parent, which a later rollback to
-- an outer savepoint still takes back whole
CREATE TEMP TABLE before AS SELECT * FROM mv_sum;
BEGIN;
SAVEPOINT a;
UPDATE t1 SET status = 0 WHERE id % 10 = 1;
RELEASE a;
SAVEPOINT b;
UPDATE t1 SET amount = amount + 1 WHERE id % 10 = 2;
SAVEPOINT c;
UPDATE t1 SET status = 0 WHERE id % 10 = 3;
RELEASE c;
RELEASE b;
SAVEPOINT d;
SAVEPOINT e;
DELETE FROM t1 WHERE id % 10 = 4;
RELEASE e;
ROLLBACK TO d;
UPDATE t1 SET amount = amount + 2 WHERE id % 10 = 5;
COMMIT;
SELECT * FROM opsdemo_mv_sum_verify();
SELECT count(*) AS changed_groups FROM (TABLE mv_sum EXCEPT TABLE before) d;

-- deltas applied inside a savepoint become pending again when it rolls
-- back, also after inner savepoints were released and merged
BEGIN;
UPDATE t1 SET status = 1 WHERE id % 10 = 1;
SAVEPOINT s1;
UPDATE t1 SET status = 1 WHERE id % 10 = 3;
SAVEPOINT s2;
UPDATE t1 SET amount = amount - 1 WHERE id % 10 = 5;
SELECT opsdemo_mv_sum_flush() > 0 AS applied;
RELEASE s2;
SAVEPOINT s3;
UPDATE t1 SET amount = amount - 1 WHERE id % 10 = 6;
RELEASE s3;
ROLLBACK TO s1;
SELECT * FROM opsdemo_mv_sum_verify();
SAVEPOINT s4;
UPDATE t1 SET amount = amount + 5 WHERE id % 10 = 7;
SELECT opsdemo_mv_sum_flush() > 0 AS applied;
RELEASE s4;
SAVEPOINT s5;
UPDATE t1 SET status = 0 WHERE id % 10 = 8;
ROLLBACK TO s5;
COMMIT;
SELECT * FROM opsdemo_mv_sum_verify();
SELECT count(*) AS status_1_rows, (SELECT sum(row_count) FROM mv_sum) AS counted
  FROM t1 WHERE status = 1;

DROP EXTENSION pg_opsdemo;
