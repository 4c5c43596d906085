-- Functions of the extension that PUBLIC may execute.  Everything else is
-- revoked: a new function must either be added to the intended list below
-- (and be safe for every role) or be REVOKEd in the install script.
SET client_min_messages = warning;
CREATE EXTENSION pg_opsdemo;

CREATE TEMP VIEW public_functions AS
SELECT p.oid::regprocedure::text AS function
  FROM pg_depend d
  JOIN pg_proc p ON p.oid = d.objid
 WHERE d.classid = 'pg_proc'::regclass
   AND d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_opsdemo')
   AND d.deptype = 'e'
   AND has_function_privilege('public', p.oid, 'EXECUTE');

SELECT function FROM public_functions ORDER BY 1;

-- why each is meant for everyone
CREATE TEMP TABLE intended (function text PRIMARY KEY, reason text);
INSERT INTO intended VALUES
    ('opsdemo_guid(timestamp with time zone)',
     't1''s DEFAULT: every writer of t1 runs it'),
    ('opsdemo_guid_time(uuid)',
     't1''s CHECK: every writer of t1 runs it'),
    ('opsdemo_generate(bigint,timestamp with time zone,timestamp with time zone,bigint,integer,double precision)',
     'checks the caller''s INSERT privilege on t1'),
    ('opsdemo_insert_tick()',
     'checks the caller''s INSERT privilege on t1'),
    ('opsdemo_update_tick(timestamp with time zone)',
     'runs as the caller, needs UPDATE on t1'),
    ('opsdemo_partitions_ensure(timestamp with time zone,timestamp with time zone)',
     'checks the caller''s INSERT privilege on t1'),
    ('opsdemo_mv_sum_flush()',
     'applies only the caller''s own pending changes'),
    ('opsdemo_mv_sum_verify()',
     'runs as the caller, needs SELECT on t1 and mv_sum'),
    ('opsdemo_mv_sum_count_now(oid,tid,smallint,numeric,bigint,text,smallint,numeric,bigint,text)',
     't1''s WHEN clauses: every writer of t1 runs it; counts only in the extension''s own statements (07_mv_sum)');

-- differences either way: none
SELECT coalesce(p.function, i.function) AS function,
       CASE WHEN i.function IS NULL THEN 'executable by PUBLIC, not intended'
            ELSE 'intended, not executable by PUBLIC' END AS problem
  FROM public_functions p
  FULL JOIN intended i ON i.function = p.function
 WHERE p.function IS NULL OR i.function IS NULL
 ORDER BY 1;

DROP EXTENSION pg_opsdemo;
