# The built-in scheduler seen from outside: it inserts and flips on its
# wall-clock slots, survives termination and failing ticks, follows
# configuration reloads, idles on a hot standby until promotion, refuses
# to write on a logical replica of t1, and the pg_cron mode says what
# the installed pg_cron can do.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

# Shorter intervals than the default 5 s and 3 s, so that every wait for a
# slot is short.  The update interval stays odd (1 s), so that consecutive
# update slots still alternate between even and odd seconds; the tick's
# budget (the shorter interval) is 1 s, its lock_timeout half of that.
my $scheduler_conf = <<'EOC';
shared_preload_libraries = 'pg_opsdemo'
opsdemo.database = 'ops'
opsdemo.insert_interval = '2s'
opsdemo.update_interval = '1s'
EOC

sub status_of
{
	my ($node, $job, $column) = @_;
	return $node->safe_psql('ops',
		"SELECT $column FROM opsdemo_status() WHERE job = '$job'");
}

# A new cluster with its database "ops" made before the scheduler is
# loaded with $conf: its worker connects at once (the primary below shows
# the wait for a missing database, which costs two 5 s restart delays).
sub node_with_ops_database
{
	my ($name, $conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->start;
	$node->safe_psql('postgres', 'CREATE DATABASE ops');
	$node->append_conf('postgresql.conf', $conf);
	$node->restart;
	return $node;
}

sub poll_status
{
	my ($node, $condition, $what) = @_;
	ok( $node->poll_query_until(
			'ops', "SELECT bool_and($condition) FROM opsdemo_status()"),
		$what);
}

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 'logical');
$primary->append_conf('postgresql.conf', $scheduler_conf);
$primary->start;

# The clusters of the logical replica and pg_cron sections below are made
# while the primary's worker waits out its two restart delays (5 s each).
# The replica's scheduler is off until its subscription exists: a slot
# between CREATE EXTENSION and CREATE SUBSCRIPTION would run.
my $replica = node_with_ops_database('replica',
	$scheduler_conf . "opsdemo.scheduler = off\n");

# opsdemo.database does not exist yet: one failed connection, then the
# worker waits quietly until it does.
$primary->wait_for_log(
	qr/pg_opsdemo scheduler: waiting: database "ops" does not exist/);
pass('without its database the worker waits, and says so in the log');
$primary->safe_psql('postgres', 'CREATE DATABASE ops');

my $pkglibdir = `pg_config --pkglibdir`;
chomp $pkglibdir;
my $cron;
$cron = node_with_ops_database('cron', <<'EOC') if -e "$pkglibdir/pg_cron.so";
shared_preload_libraries = 'pg_cron,pg_opsdemo'
cron.database_name = 'ops'
# The test cluster listens on a unix socket only, and pg_cron's default is a
# libpq connection to localhost: run its jobs in background workers.
cron.use_background_workers = on
max_worker_processes = 16
opsdemo.database = 'ops'
opsdemo.scheduler = 'pg_cron'
opsdemo.insert_interval = '2s'
opsdemo.update_interval = '1s'
EOC

ok( $primary->poll_query_until(
		'postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity "
		  . "WHERE backend_type = 'pg_opsdemo scheduler' AND datname = 'ops'"),
	'the worker connects to opsdemo.database');
$primary->wait_for_log(
	qr/pg_opsdemo scheduler: waiting: extension "pg_opsdemo" is not installed in database "ops"/
);
pass('before CREATE EXTENSION the worker waits, and says so in the log');
my $log = slurp_file($primary->logfile);
my $fatals = () = $log =~ /FATAL:  database "ops" does not exist/g;
is($fatals, 1, 'the missing database made exactly one connection attempt fail');
$primary->safe_psql('ops', 'CREATE EXTENSION pg_opsdemo');

# ---- pg_cron mode ----------------------------------------------------------

# On the cron cluster, while the primary's jobs run the slots checked below.
SKIP:
{
	skip 'pg_cron is not installed', 7 unless $cron;

	$cron->safe_psql('ops', 'CREATE EXTENSION pg_cron');
	$cron->safe_psql('ops', 'CREATE EXTENSION pg_opsdemo');
	my $version = $cron->safe_psql('ops',
		"SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'");
	my ($major, $minor) = $version =~ /^(\d+)\.(\d+)/;

	if ($major > 1 || ($major == 1 && $minor >= 5))
	{
		is($cron->safe_psql('ops', 'SELECT opsdemo_schedule_cron()'),
			'2', "pg_cron $version: both jobs scheduled");
		ok( $cron->poll_query_until(
				'ops',
				"SELECT count(*) >= 2 AND count(*) FILTER (WHERE status = 1) > 0 FROM t1"
			),
			'pg_cron runs the insert and update jobs');
		ok( $cron->poll_query_until(
				'ops',
				"SELECT count(DISTINCT job) = 2 FROM opsdemo_job_history WHERE scheduler = 'pg_cron'"
			),
			'its runs are recorded in the history');
		is($cron->safe_psql('ops', 'SELECT opsdemo_unschedule_cron()'),
			'2', 'both jobs unscheduled');
	}
	else
	{
		my ($ret, $stdout, $stderr) =
		  $cron->psql('ops', 'SELECT opsdemo_schedule_cron()');
		isnt($ret, 0, "pg_cron $version: opsdemo_schedule_cron() fails");
		like(
			$stderr,
			qr/ERROR:  pg_cron \Q$version\E cannot run jobs every few seconds/,
			'the error says why');
		like($stderr, qr/HINT:  Use the built-in scheduler/,
			'and names the built-in worker');
	}
	# opsdemo_status() counts pg_cron's runs too (pg_cron >= 1.5 ran some
	# above): the worker's own runs are the history rows it wrote.
	my $worker_runs =
	  q{(SELECT count(*) FROM opsdemo_job_history WHERE scheduler = 'worker')};
	ok( $cron->poll_query_until(
			'ops',
			q{SELECT bool_and(state = 'idle: opsdemo.scheduler is "pg_cron"') }
			  . "AND $worker_runs = 0 FROM opsdemo_status()"),
		'with opsdemo.scheduler = pg_cron the worker stays idle');

	# Switched back to the worker while the pg_cron jobs still exist (made
	# by hand here, so that this works with any pg_cron version): the
	# worker refuses to run the jobs a second time until they are gone.
	$cron->safe_psql('ops',
		"SELECT cron.schedule('opsdemo_update_tick', '* * * * *', 'SELECT 1')");
	$cron->safe_psql('ops',
		"ALTER SYSTEM SET opsdemo.scheduler = 'worker'; SELECT pg_reload_conf()");
	ok( $cron->poll_query_until(
			'ops',
			q{SELECT bool_and(state LIKE 'refused: the jobs are scheduled in pg_cron too%') }
			  . "AND $worker_runs = 0 FROM opsdemo_status()"),
		'the worker does not run jobs that pg_cron runs');
	is($cron->safe_psql('ops', 'SELECT opsdemo_unschedule_cron()'),
		'1', 'opsdemo_unschedule_cron() removes them');
	ok( $cron->poll_query_until(
			'ops',
			q{SELECT bool_and(state = 'running') }
			  . "AND $worker_runs > 0 FROM opsdemo_status()"),
		'then the worker takes over');
	$cron->stop;
}

# ---- normal operation: 4 insert and 7 update runs ---------------------------

poll_status($primary,
	"runs >= CASE job WHEN 'insert' THEN 4 ELSE 7 END AND failures = 0",
	'both jobs run repeatedly without failures');
my $checks = $primary->safe_psql(
	'ops', q{
	SELECT
	  -- every run sits on a slot of its interval (whole seconds for the
	  -- update job: not the moment a previous run ended or the worker
	  -- started)
	  bool_and(extract(epoch FROM scheduled_at)::numeric
	           % CASE job WHEN 'insert' THEN 2 ELSE 1 END = 0),
	  -- no slot ran twice
	  count(*) = count(DISTINCT (job, scheduled_at)),
	  bool_and(ok)
	FROM opsdemo_job_history});
is($checks, 't|t|t', 'runs on multiples of 2 s and 1 s, none twice, all ok');

# The insert job inserted one row per run; the update job flipped exactly
# the rows it reported.
my $rows = $primary->safe_psql(
	'ops', q{
	SELECT (SELECT count(*) FROM t1)
	       = (SELECT count(*) FROM opsdemo_job_history WHERE job = 'insert'),
	       (SELECT count(*) FROM t1 WHERE status = 1)
	       = (SELECT sum(result) FROM opsdemo_job_history WHERE job = 'update')});
is($rows, 't|t', 'one row per insert run; flipped rows = rows reported');

# Parity comes from the slot: a row of parity p dated before the last
# update slot of parity p has been flipped, and consecutive slots
# alternate between even and odd.
my $parity = $primary->safe_psql(
	'ops', q{
	WITH u AS (
	  SELECT scheduled_at,
	         extract(epoch FROM scheduled_at)::bigint % 2 AS p,
	         lag(scheduled_at) OVER (ORDER BY scheduled_at) AS prev_at,
	         lag(extract(epoch FROM scheduled_at)::bigint % 2)
	           OVER (ORDER BY scheduled_at) AS prev_p
	    FROM opsdemo_job_history WHERE job = 'update')
	SELECT (SELECT count(DISTINCT p) FROM u),
	       (SELECT bool_and(p <> prev_p) FROM u
	         WHERE scheduled_at - prev_at = interval '1 s'),
	       (SELECT count(*) FROM t1
	          JOIN (SELECT p, max(scheduled_at) AS last_at FROM u GROUP BY p) l
	            ON t1.id % 2 = l.p
	         WHERE t1.date < l.last_at AND t1.status = 0)});
is($parity, '2|t|0',
	'both parities used, consecutive slots alternate, nothing left behind');

# ---- SIGHUP: a new interval takes effect without a restart ---------------

$primary->safe_psql('ops',
	"ALTER SYSTEM SET opsdemo.insert_interval = '1s'; SELECT pg_reload_conf()"
);
ok( $primary->poll_query_until(
		'ops',
		"SELECT count(*) > 0 FROM opsdemo_job_history WHERE job = 'insert' "
		  . "AND extract(epoch FROM scheduled_at)::numeric % 2 <> 0"),
	'after a reload the insert job runs on 1 s slots');
is(status_of($primary, 'insert', 'interval'),
	'00:00:01', 'the status shows the new interval');
$primary->safe_psql('ops',
	"ALTER SYSTEM SET opsdemo.insert_batch_size = 3; SELECT pg_reload_conf()"
);
ok( $primary->poll_query_until(
		'ops', 'SELECT count(*) > 0 FROM (SELECT date FROM t1 GROUP BY date HAVING count(*) = 3) b'),
	'opsdemo.insert_batch_size = 3 inserts three rows per run');
$primary->safe_psql('ops',
	"ALTER SYSTEM RESET opsdemo.insert_interval; "
	  . "ALTER SYSTEM RESET opsdemo.insert_batch_size; SELECT pg_reload_conf()");

# ---- pg_terminate_backend: it comes back ---------------------------------

my $pid = status_of($primary, 'insert', 'worker_pid');
my $runs = status_of($primary, 'insert', 'runs');
my $pm_start = $primary->safe_psql('ops', 'SELECT pg_postmaster_start_time()');
$primary->safe_psql('ops', "SELECT pg_terminate_backend($pid)");

# ---- logical replica of t1: refuses unless forced ------------------------

# On the replica's cluster, while the postmaster waits its 5 s before it
# starts the primary's worker again.  Inserts only: how updates of t1
# replicate (replica identity) is the lab's business, not the scheduler's.
$primary->safe_psql('ops',
	"CREATE PUBLICATION pub_t1 FOR TABLE t1 "
	  . "WITH (publish = 'insert', publish_via_partition_root)");
$replica->safe_psql('ops', 'CREATE EXTENSION pg_opsdemo');
my $pub = $primary->connstr . ' dbname=ops';
$replica->safe_psql('ops',
	"CREATE SUBSCRIPTION sub_t1 CONNECTION '$pub' PUBLICATION pub_t1");
$replica->safe_psql('ops',
	"ALTER SYSTEM SET opsdemo.scheduler = worker; SELECT pg_reload_conf()");
ok( $replica->poll_query_until(
		'ops',
		"SELECT bool_and(state LIKE 'refused: this node is a logical replica of t1 (subscription \"sub_t1\")%') "
		  . "FROM opsdemo_status()"),
	'on a subscriber of t1 the worker refuses to write');
$primary->wait_for_catchup('sub_t1');
is( $replica->safe_psql(
		'ops',
		'SELECT sum(runs), (SELECT count(*) FROM opsdemo_job_history) FROM opsdemo_status()'
	),
	'0|0',
	'and runs nothing');
is($replica->safe_psql('ops', 'SELECT count(*) > 0 FROM t1'),
	't', 'while the replicated rows arrive');
$replica->safe_psql('ops',
	"ALTER SYSTEM SET opsdemo.force_on_subscriber = on; SELECT pg_reload_conf()"
);
poll_status($replica, "state = 'running' AND runs > 0",
	'opsdemo.force_on_subscriber = on lets it write');
$replica->stop;

# ---- hot standby: idle, then promoted: works ------------------------------

# Made now too, while the primary's worker is still to come back.
$primary->backup('bk');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'bk', has_streaming => 1);
$standby->start;
ok( $standby->poll_query_until(
		'ops',
		"SELECT bool_and(state = 'idle: hot standby, waiting for promotion') "
		  . "FROM opsdemo_status()"),
	'on a hot standby the worker idles');
is($standby->safe_psql('ops', 'SELECT sum(runs) FROM opsdemo_status()'),
	'0', 'and runs nothing');
$standby->promote;
poll_status($standby, "state = 'running' AND runs > 0",
	'after promotion it runs, without a restart');
$standby->stop;

# ---- pg_terminate_backend: the worker is back ------------------------------

poll_status($primary,
	"worker_pid IS NOT NULL AND worker_pid <> $pid "
	  . "AND (job <> 'insert' OR runs > $runs)",
	'a terminated worker is started again and goes on');

# ---- failing ticks: the worker survives and recovers ---------------------

# A lock the ticks cannot get: lock_timeout fails them.
$pid = status_of($primary, 'insert', 'worker_pid');
my $failures = status_of($primary, 'update', 'failures');
my $locker = $primary->background_psql('ops');
$locker->query_safe('BEGIN; LOCK TABLE t1 IN ACCESS EXCLUSIVE MODE');
ok( $primary->poll_query_until(
		'ops',
		"SELECT failures > $failures AND last_error LIKE '%lock timeout%' "
		  . "FROM opsdemo_status() WHERE job = 'update'"),
	'a tick blocked by a lock fails with lock_timeout');
$locker->query_safe('ROLLBACK');
$locker->quit;
poll_status($primary, 'consecutive_failures = 0 AND runs > 0',
	'after the lock is gone both jobs succeed again');
is(status_of($primary, 'insert', 'worker_pid'),
	$pid, 'the same worker process handled the failures');

# A tick slower than the shorter interval is cancelled by statement_timeout.
$failures = status_of($primary, 'insert', 'failures');
$primary->safe_psql(
	'ops', q{
	CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS
	  $$ BEGIN PERFORM pg_sleep(30); RETURN NEW; END $$;
	CREATE TRIGGER slow_insert BEFORE INSERT ON t1
	  FOR EACH ROW EXECUTE FUNCTION slow_insert()});
ok( $primary->poll_query_until(
		'ops',
		"SELECT failures > $failures AND last_error LIKE '%statement timeout%' "
		  . "FROM opsdemo_status() WHERE job = 'insert'"),
	'a tick that takes too long is cancelled by statement_timeout');
$primary->safe_psql('ops',
	'DROP TRIGGER slow_insert ON t1; DROP FUNCTION slow_insert()');
poll_status($primary, 'consecutive_failures = 0',
	'and the job runs normally once it is fast again');

# t1 renamed: every tick fails with 42P01 until it is back.
$failures = status_of($primary, 'insert', 'failures');
$primary->safe_psql('ops', 'ALTER TABLE t1 RENAME TO t1_away');
ok( $primary->poll_query_until(
		'ops',
		"SELECT failures > $failures AND last_error LIKE '%(SQLSTATE 42P01)' "
		  . "FROM opsdemo_status() WHERE job = 'insert'"),
	'ticks fail while t1 is missing; the error is kept in the status');
ok( $primary->poll_query_until(
		'ops',
		"SELECT count(*) > 0 FROM opsdemo_job_history "
		  . "WHERE NOT ok AND error LIKE '%42P01%'"),
	'the failure is in the history');
$primary->safe_psql('ops', 'ALTER TABLE t1_away RENAME TO t1');
poll_status($primary, 'consecutive_failures = 0',
	'the jobs recover once t1 is back (after back-off)');

# This month's partition dropped: the insert job creates it again.
my $month = $primary->safe_psql('ops',
	"SELECT format('t1_%s', to_char(now() AT TIME ZONE 'UTC', 'YYYY_MM'))");
$primary->safe_psql('ops', "DROP TABLE $month");
ok( $primary->poll_query_until(
		'ops',
		"SELECT count(*) > 0 FROM opsdemo_partitions WHERE partition = '$month'"
	),
	'a dropped current partition is created again by the insert job');
ok( $primary->poll_query_until(
		'ops', "SELECT count(*) > 0 FROM $month WHERE status = 0 OR status = 1"),
	'new rows land in it');
is( $primary->safe_psql('ops', 'SELECT pg_postmaster_start_time()'),
	$pm_start, 'the cluster never restarted');

# ---- stop and start from SQL ---------------------------------------------

# The worker terminated: the postmaster starts it again after its restart
# delay, which has begun once no scheduler process is left.
sub terminate_worker
{
	my ($node, $worker_pid) = @_;
	$node->safe_psql('ops', "SELECT pg_terminate_backend($worker_pid)");
	ok( $node->poll_query_until(
			'ops',
			"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pg_opsdemo scheduler'"
		),
		'the terminated worker is gone, its restart pending');
	return;
}

# The restart the postmaster makes 5 s after a worker died has come: it
# exited at once, saying so in the log after $offset, or it runs and shows
# as a scheduler backend (other than $leaving, a stopped one still on its
# way out).  What the tests below assert about the time after the restart
# delay, they assert once this is true; they would see a restart that runs.
sub restart_came
{
	my ($node, $offset, $leaving) = @_;
	$leaving //= 0;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		return 1
		  if slurp_file($node->logfile, $offset) =~
		  /pg_opsdemo scheduler stopped by opsdemo_worker_stop\(\) at its restart/;
		return 1
		  if $node->safe_psql('ops',
			"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_opsdemo scheduler' "
			  . "AND pid <> $leaving") ne '0';
		usleep(100_000);
	}
	return 0;
}

sub start_worker_again
{
	my ($node) = @_;
	is($node->safe_psql('ops', 'SELECT opsdemo_worker_start()'),
		't', 'opsdemo_worker_start() starts it again');
	poll_status($node, "state = 'running'", 'and it runs the jobs');
	return;
}

is($primary->safe_psql('ops', 'SELECT opsdemo_worker_stop()'),
	't', 'opsdemo_worker_stop() stops the running worker');
is( $primary->safe_psql(
		'ops',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_opsdemo scheduler'"
	),
	'0',
	'no scheduler process is left');
start_worker_again($primary);

# A worker in its restart delay (terminated here; a worker exiting to
# connect once its role exists is the same) is stopped at its restart.
$pid = status_of($primary, 'insert', 'worker_pid');
my $log_offset = -s $primary->logfile;
terminate_worker($primary, $pid);
is($primary->safe_psql('ops', 'SELECT opsdemo_worker_stop()'),
	't', 'opsdemo_worker_stop() in the restart delay asks the restart');
my $schedulers = $primary->safe_psql('ops',
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_opsdemo scheduler'");
ok(restart_came($primary, $log_offset), 'the restart came');
is( $schedulers . "\n"
	  . $primary->safe_psql(
		'ops',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_opsdemo scheduler'"
		  . "; SELECT DISTINCT state FROM opsdemo_status()"),
	"0\n0\nstopped",
	'no scheduler runs after the restart delay, its state is stopped');
is($primary->safe_psql('ops', 'SELECT opsdemo_worker_stop()'),
	'f', 'a second stop finds nothing to stop');
start_worker_again($primary);

# A restart still pending while another worker took over (the lab's up:
# the preloaded worker exits to connect once its role exists, and
# opsdemo_worker_start() starts one before the postmaster restarts it): a
# stop of the running one outlasts that restart too.
$pid = status_of($primary, 'insert', 'worker_pid');
$log_offset = -s $primary->logfile;
terminate_worker($primary, $pid);
is($primary->safe_psql('ops', 'SELECT opsdemo_worker_start()'),
	't', 'opsdemo_worker_start() starts another one meanwhile');
my $other = status_of($primary, 'insert', 'worker_pid');
is($primary->safe_psql('ops', 'SELECT opsdemo_worker_stop()'),
	't', 'which opsdemo_worker_stop() stops');
ok(restart_came($primary, $log_offset, $other), 'the pending restart came');
ok( $primary->poll_query_until(
		'ops',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $other"),
	'the stopped one has left');
is( $primary->safe_psql(
		'ops',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_opsdemo scheduler'"
		  . "; SELECT DISTINCT state FROM opsdemo_status()"),
	"0\nstopped",
	'the pending restart exits too: no scheduler after the restart delay');
like(
	substr(slurp_file($primary->logfile), $log_offset),
	qr/pg_opsdemo scheduler stopped by opsdemo_worker_stop\(\) at its restart/,
	'the restart says why it exits');
start_worker_again($primary);

# opsdemo.role names a role that does not exist (yet): the worker restarts
# to connect as it, fails once, and its state says so for the restart
# delay (not "connecting", which read as a hanging attempt); then it waits
# for the role, and connects once the setting names one that exists.
$log_offset = -s $primary->logfile;
$primary->safe_psql('ops',
	"ALTER SYSTEM SET opsdemo.role = 'regress_no_such_role'; SELECT pg_reload_conf()");
poll_status($primary,
	q{state = 'restarting in 5 s: could not connect to database "ops" as role "regress_no_such_role" (server log)'},
	'a failed connection shows as a restart with the database and role');
poll_status($primary,
	q{state = 'waiting: role "regress_no_such_role" does not exist'},
	'then the worker waits for the role');
like(
	substr(slurp_file($primary->logfile), $log_offset),
	qr/FATAL:  role "regress_no_such_role" does not exist/,
	'the server log has the failed connection');
$primary->safe_psql('ops',
	'ALTER SYSTEM RESET opsdemo.role; SELECT pg_reload_conf()');
poll_status($primary, "state = 'running'",
	'with a role that exists it connects and runs the jobs again');
$primary->stop;

done_testing();
