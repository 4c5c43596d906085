# The built-in scheduler under real load and the edges of its lifecycle:
# a stop asked while no worker runs or is coming leaves nothing behind; a
# failing tick's full error report (DETAIL, CONTEXT) reaches the log; a
# backlog of pending rows many times what one tick can flip drains with no
# failed tick and the parity rule intact, the jobs running as a role with
# no rights beyond INSERT and UPDATE on t1;
# concurrent writers that move, change and delete pending rows do not make
# ticks fail, neither the worker's nor opsdemo_update_tick()'s.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# The database and the extension exist before the scheduler is loaded, so
# that its worker connects at once (a missing database costs two 5 s
# restart delays; TAP 003 shows that wait).  The intervals are shorter than
# the default 5 s and 3 s, the update one still odd, so that consecutive
# update slots alternate between even and odd seconds: the tick's budget
# (the shorter interval) is 1 s.  Update batches of at most 2,000 rows
# (default 10,000) keep the first batch of a run as far from that deadline
# as 10,000-row batches are from the default 3 s one (a first batch cut off
# by the deadline fails the run).
my $node = PostgreSQL::Test::Cluster->new('load');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE ops');
$node->safe_psql('ops', 'CREATE EXTENSION pg_opsdemo');
$node->append_conf(
	'postgresql.conf', <<'EOC');
shared_preload_libraries = 'pg_opsdemo'
opsdemo.database = 'ops'
opsdemo.insert_interval = '2s'
opsdemo.update_interval = '1s'
opsdemo.update_batch_size = 2000
max_wal_size = '4GB'
# The postmaster logs a background worker's exit with code 0 at DEBUG1 only.
log_min_messages = debug1
EOC
$node->restart;

sub poll_status
{
	my ($condition, $what) = @_;
	ok( $node->poll_query_until(
			'ops', "SELECT bool_and($condition) FROM opsdemo_status()"),
		$what);
}

poll_status("state = 'running' AND runs > 0", 'the worker runs');

# ---- a stop asked of no worker ---------------------------------------------

# A stopped worker exits cleanly and is not started again; a second stop
# finds no worker running or coming (false), and the stop it leaves in
# force ends with the next start, which runs.  (A worker in its restart
# delay counts as coming: TAP 003 stops one there.)  The postmaster starts
# a background worker again only after an exit code other than 0 (1: after
# its restart delay of 5 s); its own log line on the stopped worker's exit
# tells that none comes back, without waiting out the delay.
my $pid = $node->safe_psql('ops',
	"SELECT worker_pid FROM opsdemo_status() WHERE job = 'insert'");
my $log_offset = -s $node->logfile;
is($node->safe_psql('ops', 'SELECT opsdemo_worker_stop()'),
	't', 'opsdemo_worker_stop() stops the running worker');
ok( defined eval {
		$node->wait_for_log(
			qr/background worker "pg_opsdemo scheduler" \(PID $pid\) exited with exit code 0\b/,
			$log_offset);
	},
	'it exits with code 0, so the postmaster does not start it again');
is( $node->safe_psql(
		'ops', 'SELECT opsdemo_worker_stop(); '
		  . "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_opsdemo scheduler'"
	),
	"f\n0",
	'a second stop returns false, and no worker comes back');
my $runs = $node->safe_psql('ops',
	"SELECT runs FROM opsdemo_status() WHERE job = 'update'");
is($node->safe_psql('ops', 'SELECT opsdemo_worker_start()'),
	't', 'opsdemo_worker_start() starts it again');
poll_status(
	"worker_pid IS NOT NULL AND worker_pid <> $pid AND state = 'running' "
	  . "AND (job <> 'update' OR runs > $runs)",
	'the worker started next runs the jobs: no stop request was left behind');

# ---- a failing tick: the whole error report in the log ----------------------

$log_offset = -s $node->logfile;
$node->safe_psql('ops',
	'ALTER TABLE t1 ADD CONSTRAINT no_flips CHECK (status = 0) NOT VALID');
$node->wait_for_log(qr/ERROR:  new row for relation "t1_\d{4}_\d{2}" violates check constraint "no_flips"/,
	$log_offset);
my $log = slurp_file($node->logfile, $log_offset);
like(
	$log,
	qr/violates check constraint "no_flips"\n[^\n]*DETAIL:  Failing row contains \(/,
	'a failed tick logs the error with its DETAIL');
like(
	$log,
	qr/CONTEXT:  [^\n]*(\n\t[^\n]*)*\n\tpg_opsdemo update tick scheduled at \d{4}-/,
	'and a CONTEXT naming the tick');
$node->safe_psql('ops', 'ALTER TABLE t1 DROP CONSTRAINT no_flips');
poll_status('consecutive_failures = 0', 'the jobs succeed again');

# ---- a backlog of pending rows, drained by a least-privilege job role ------

# The backlog is as large against the 1 s budget as 1M rows are against
# the default 3 s: a tick flips a small part of it (some 20,000 rows on a
# 2-core machine), so each parity takes several slots (asserted below),
# and a tick that tried to flip all rows of its parity at once would hit
# its statement timeout.  The batches are bounded by
# opsdemo.update_batch_size, whatever the size.
my $backlog_rows = 300000;
my $batch_rows = 2000;

# The new role makes the worker exit to connect as opsdemo_jobs, and the
# postmaster starts it again 5 s later: the backlog is generated meanwhile
# (the old worker has gone first, so that no tick runs as the old role),
# and the exact count below shows that nothing was flipped while loading.
$node->safe_psql(
	'ops', q{
	CREATE ROLE opsdemo_jobs LOGIN;
	GRANT INSERT, UPDATE ON t1 TO opsdemo_jobs;
	GRANT SELECT (id, date, status) ON t1 TO opsdemo_jobs;
	ALTER SYSTEM SET opsdemo.scheduler = off;
	ALTER SYSTEM SET opsdemo.role = 'opsdemo_jobs';
	SELECT pg_reload_conf();
});
ok( $node->poll_query_until(
		'ops',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pg_opsdemo scheduler' "
		  . "AND usename <> 'opsdemo_jobs'"),
	'the worker running as the bootstrap superuser exits');

# Every flip statement notes its transaction's start, the parity of the ids
# it flipped and how many: the run it belongs to is the update run whose
# time span holds that start.
$node->safe_psql(
	'ops', q{
	CREATE TABLE flip_audit (at timestamptz, parity bigint, n bigint);
	CREATE FUNCTION audit_flips() RETURNS trigger LANGUAGE plpgsql
	SECURITY DEFINER SET search_path = public, pg_catalog AS $$
	BEGIN
	    INSERT INTO flip_audit
	    SELECT now(), n.id % 2, count(*) FROM new_rows n WHERE n.status = 1
	     GROUP BY 2;
	    RETURN NULL;
	END $$;
	CREATE TRIGGER audit_flips AFTER UPDATE ON t1
	    REFERENCING NEW TABLE AS new_rows
	    FOR EACH STATEMENT EXECUTE FUNCTION audit_flips();
});
$node->safe_psql('ops',
	"SELECT opsdemo_generate($backlog_rows, now() - interval '60 days', now() - interval '1 day', seed => 9)"
);
ok( $node->poll_query_until(
		'ops',
		q{SELECT bool_and(state = 'idle: opsdemo.scheduler is "off"') FROM opsdemo_status()}
	),
	'the worker idles while the backlog is loaded');
is( $node->safe_psql(
		'ops',
		"SELECT usename FROM pg_stat_activity WHERE backend_type = 'pg_opsdemo scheduler'"
	),
	'opsdemo_jobs',
	'the worker runs as opsdemo_jobs');
my $backlog = $node->safe_psql('ops',
	"SELECT count(*) FROM t1 WHERE status = 0 AND date < now() - interval '12 hours'"
);
is($backlog, $backlog_rows, "a backlog of $backlog_rows pending rows");

my $drain_start = $node->safe_psql('ops', 'SELECT now()');
my $failures_before = $node->safe_psql('ops', 'SELECT sum(failures) FROM opsdemo_status()');
$node->safe_psql('ops',
	"ALTER SYSTEM SET opsdemo.scheduler = worker; SELECT pg_reload_conf()");
# Counting the rows competes with the worker for the CPU: look every second.
my $left = $backlog;
for (my $waited = 0; $left ne '0' && $waited < 600; $waited += 1)
{
	sleep 1;
	$left = $node->safe_psql('ops',
		"SELECT count(*) FROM t1 WHERE status = 0 AND date < now() - interval '12 hours'"
	);
}
is($left, '0', 'the worker drains the backlog');

is($node->safe_psql('ops', 'SELECT sum(failures) FROM opsdemo_status()'),
	$failures_before, 'without a failed tick');
my $runs_check = $node->safe_psql(
	'ops', qq{
	SELECT count(*) FILTER (WHERE NOT ok),
	       count(*) FILTER (WHERE job = 'update' AND result > 0) > 2,
	       sum(result) FILTER (WHERE job = 'update') >= $backlog_rows
	  FROM opsdemo_job_history WHERE started_at >= '$drain_start'});
is($runs_check, '0|t|t',
	'the history: no failed run, the backlog spread over several update runs of a parity');

my $parity = $node->safe_psql(
	'ops', qq{
	SELECT count(*) AS flip_statements,
	       count(*) FILTER (WHERE run.scheduled_at IS NULL) AS outside_any_run,
	       count(*) FILTER (WHERE extract(epoch FROM run.scheduled_at)::bigint % 2 <> a.parity)
	         AS wrong_parity,
	       max(a.n) <= $batch_rows AS bounded_batches,
	       sum(a.n) = (SELECT sum(result) FROM opsdemo_job_history
	                    WHERE job = 'update' AND started_at >= '$drain_start')
	         AS counts_match
	  FROM flip_audit a
	  LEFT JOIN LATERAL (
	      SELECT h.scheduled_at FROM opsdemo_job_history h
	       WHERE h.job = 'update' AND a.at >= h.started_at
	         AND a.at <= h.started_at + h.duration
	       LIMIT 1) run ON true
	 WHERE a.at >= '$drain_start'});
like($parity, qr/^\d+\|0\|0\|t\|t$/,
	'every batch belongs to an update run and flips only ids of its slot\'s parity');
cmp_ok((split /\|/, $parity)[0],
	'>=', $backlog_rows / $batch_rows, "in batches of at most $batch_rows rows");
is($node->safe_psql('ops', 'SELECT count(*) FROM opsdemo_mv_sum_verify()'),
	'0', 'mv_sum is exact');
$node->safe_psql('ops', 'DROP TRIGGER audit_flips ON t1');

# ---- concurrent writers ---------------------------------------------------

# One session keeps moving pending rows between this month and the next,
# changing their amount and client, deleting and inserting them, holding
# its row locks for a moment in every transaction; another calls
# opsdemo_update_tick() over and over; the worker ticks all the while.
# 10 s of it: the worker's update ticks come every second (more of them
# than 20 s of 3 s ticks), and the caller sleeps 0.1 s between its ticks
# (as many as 20 s with 0.2 s sleeps).
my $mover_sql = q{
DO $$
DECLARE
    this_month timestamptz := date_trunc('month', now(), 'UTC');
    next_month timestamptz := date_trunc('month', now(), 'UTC') + interval '1 month';
    stop_at timestamptz := clock_timestamp() + interval '10 s';
BEGIN
    WHILE clock_timestamp() < stop_at LOOP
        BEGIN
            INSERT INTO t1 (date, amount, operation_guid, message)
            SELECT d, 2, opsdemo_guid(d),
                   jsonb_build_object('client_id', 5, 'account_number', 'A', 'operation_type', 'online')
              FROM (SELECT this_month + random() * interval '20 days' AS d
                      FROM generate_series(1, 30)) g;
            UPDATE t1
               SET date = CASE WHEN date >= next_month THEN date - interval '1 month'
                               ELSE date + interval '1 month' END,
                   operation_guid = opsdemo_guid(CASE WHEN date >= next_month
                                                      THEN date - interval '1 month'
                                                      ELSE date + interval '1 month' END)
             WHERE (id, date) IN (SELECT id, date FROM t1 WHERE status = 0
                                   AND date >= this_month ORDER BY random() LIMIT 8);
            UPDATE t1 SET amount = amount + 1
             WHERE (id, date) IN (SELECT id, date FROM t1 WHERE status = 0
                                   AND date >= this_month ORDER BY random() LIMIT 5);
            UPDATE t1 SET message = jsonb_set(message, '{client_id}', '6')
             WHERE (id, date) IN (SELECT id, date FROM t1 WHERE status = 0
                                   AND date >= this_month ORDER BY random() LIMIT 5);
            DELETE FROM t1
             WHERE (id, date) IN (SELECT id, date FROM t1 WHERE status = 0
                                   AND date >= this_month ORDER BY random() LIMIT 3);
            PERFORM pg_sleep(0.05);
        EXCEPTION WHEN serialization_failure OR deadlock_detected THEN
            -- the writer's own conflicts with the ticks are not under test
            NULL;
        END;
        COMMIT;
    END LOOP;
END $$;
};
my $ticker_sql = q{
DO $$
DECLARE
    stop_at timestamptz := clock_timestamp() + interval '10 s';
    ticks int := 0;
BEGIN
    WHILE clock_timestamp() < stop_at LOOP
        PERFORM opsdemo_update_tick(clock_timestamp());
        COMMIT;
        ticks := ticks + 1;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RAISE NOTICE 'ticks: %', ticks;
END $$;
};

my $update_runs = $node->safe_psql('ops',
	"SELECT runs FROM opsdemo_status() WHERE job = 'update'");
my $load_start = $node->safe_psql('ops', 'SELECT now()');
$failures_before = $node->safe_psql('ops', 'SELECT sum(failures) FROM opsdemo_status()');
my $connstr = $node->connstr('ops');
my ($mover_out, $mover_err, $ticker_out, $ticker_err) = ('', '', '', '');
my $mover = IPC::Run::start(
	[ 'psql', '-X', '-v', 'ON_ERROR_STOP=1', '-d', $connstr, '-c', $mover_sql ],
	'>', \$mover_out, '2>', \$mover_err);
my $ticker = IPC::Run::start(
	[ 'psql', '-X', '-v', 'ON_ERROR_STOP=1', '-d', $connstr, '-c', $ticker_sql ],
	'>', \$ticker_out, '2>', \$ticker_err);
$mover->finish;
$ticker->finish;
is($mover->result(0), 0, 'the writer ran its 10 s') or diag($mover_err);
is($ticker->result(0), 0, 'opsdemo_update_tick() never failed under the writer')
  or diag($ticker_err);
like($ticker_err, qr/ticks: \d+/, 'it ticked repeatedly');

is($node->safe_psql('ops', 'SELECT sum(failures) FROM opsdemo_status()'),
	$failures_before, 'no worker tick failed under the writer');
cmp_ok(
	$node->safe_psql(
		'ops', "SELECT runs FROM opsdemo_status() WHERE job = 'update'"),
	'>=', $update_runs + 5,
	'while the worker kept running update ticks');
is( $node->safe_psql(
		'ops',
		"SELECT count(*) FROM opsdemo_job_history WHERE NOT ok AND started_at >= '$load_start'"
	),
	'0',
	'its history has no failed run');
is($node->safe_psql('ops', 'SELECT count(*) FROM opsdemo_mv_sum_verify()'),
	'0', 'mv_sum is exact after the writer');

$node->stop;
done_testing();
