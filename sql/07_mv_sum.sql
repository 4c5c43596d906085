-- mv_sum: a full rebuild gives the exact aggregate of processed rows.
SET client_min_messages = warning;
SET timezone = 'UTC';
CREATE EXTENSION pg_opsdemo;
SELECT opsdemo_generate(5000, '2026-01-01', '2026-03-01', seed => 9, clients => 50, processed_share => 0.5);

SELECT opsdemo_mv_sum_rebuild() AS groups;
SELECT count(*) AS differing_groups FROM (
    (SELECT client_id, operation_type, total_sum, row_count FROM mv_sum
     EXCEPT
     SELECT client_id, operation_type, sum(amount), count(*) FROM t1 WHERE status = 1 GROUP BY 1, 2)
    UNION ALL
    (SELECT client_id, operation_type, sum(amount), count(*) FROM t1 WHERE status = 1 GROUP BY 1, 2
     EXCEPT
     SELECT client_id, operation_type, total_sum, row_count FROM mv_sum)) d;
SELECT sum(total_sum) = (SELECT sum(amount) FROM t1 WHERE status = 1) AS totals_match FROM mv_sum;

-- idempotent
SELECT opsdemo_mv_sum_rebuild() AS groups;
SELECT count(*) FROM mv_sum;

-- follows the data: flip everything, rebuild
SELECT opsdemo_update_tick('2026-01-01 00:00:00+00') + opsdemo_update_tick('2026-01-01 00:00:01+00') > 0 AS flipped;
SELECT opsdemo_mv_sum_rebuild() AS groups;
SELECT sum(row_count) AS rows_counted, sum(total_sum) = (SELECT sum(amount) FROM t1) AS totals_match FROM mv_sum;
-- groups with no processed rows disappear
DELETE FROM t1 WHERE client_id = 1;
SELECT opsdemo_mv_sum_rebuild() AS groups;
SELECT count(*) AS client_1_groups FROM mv_sum WHERE client_id = 1;
DROP EXTENSION pg_opsdemo;
