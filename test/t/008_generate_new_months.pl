# opsdemo_generate's load of months that have no partition (into tables of
# their own, attached at its end), seen from outside its session: a crash
# while it fills them or while it waits to attach them leaves nothing
# behind, and a publication of t1, even one that starts while the load
# runs, gets every row as an insert into t1.  A CHECK violation halfway
# leaves nothing behind either, and a long reader of t1_default makes the
# attach wait without making the update job wait behind it.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 'logical');
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE ops');
$node->safe_psql('ops', 'CREATE EXTENSION pg_opsdemo');
$node->safe_psql('ops',
	"SELECT opsdemo_generate(2000, '2039-01-01', '2039-02-01', seed => 1, processed_share => 0.5)"
);

# Rows, months, load tables left, mv_sum's mismatches and total.
my $state_query = q{
	SELECT (SELECT count(*) FROM t1),
	       (SELECT string_agg(partition::text, ',' ORDER BY partition::text)
	          FROM opsdemo_partitions),
	       (SELECT count(*) FROM pg_class WHERE relname LIKE 't1\_%\_load\_%'),
	       (SELECT count(*) FROM opsdemo_mv_sum_verify()),
	       (SELECT sum(total_sum) FROM mv_sum)};
my $before = $node->safe_psql('ops', $state_query);

# The lock every creator of months takes: held by another session, it
# stops a load right before its attach, with all its rows written.
my $gate_query = 'SELECT pg_advisory_xact_lock(1869640548, 1)';
my $load_waits = q{
	SELECT count(*) > 0 FROM pg_locks
	 WHERE locktype = 'advisory' AND NOT granted
	   AND classid = 1869640548 AND objid = 1 AND objsubid = 2};

sub start_load
{
	my ($sql) = @_;
	my %run = (out => '', err => '');
	$run{h} = IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('ops'), '-c', $sql ],
		'>', \$run{out}, '2>', \$run{err});
	return \%run;
}

# 1. A crash while rows go into the load tables.  Had the months been
# created first, as for a load inside a transaction block, they would
# survive it (the partition worker commits them at once).
my $load = start_load(
	"SELECT opsdemo_generate(3000000, '2040-01-01', '2040-04-01', seed => 2, processed_share => 0.5)"
);
ok( $node->poll_query_until(
		'ops', 'SELECT rows_done > 0 FROM opsdemo_generate_progress'),
	'crash mid-load: the load is under way');
$node->stop('immediate');
$load->{h}->finish;
$node->start;
is($node->safe_psql('ops', $state_query),
	$before, 'crash mid-load: no row, month, load table or mv_sum change is left');

# 2. A crash while the load, complete and indexed, waits to attach.
my $gate = $node->background_psql('ops', on_error_stop => 0);
$gate->query_safe("BEGIN; $gate_query");
$load = start_load(
	"SELECT opsdemo_generate(100000, '2040-01-01', '2040-04-01', seed => 3, processed_share => 0.5)"
);
ok($node->poll_query_until('ops', $load_waits),
	'crash before the attach: the load waits for the gate');
$node->stop('immediate');
$load->{h}->finish;
eval { $gate->quit; };
$node->start;
is($node->safe_psql('ops', $state_query),
	$before,
	'crash before the attach: no row, month, load table or mv_sum change is left');

# 3. A CHECK constraint that rows of the load's second month break: its
# first month, complete and indexed, goes with the error.
$node->safe_psql('ops',
	q{ALTER TABLE t1 ADD CONSTRAINT before_2040_02 CHECK (date < '2040-02-01 00:00+00')});
my ($ret, $stdout, $stderr) = $node->psql('ops',
	"SELECT opsdemo_generate(3000, '2040-01-01', '2040-03-01', seed => 7, processed_share => 0.5)"
);
isnt($ret, 0, 'CHECK violation: the load fails');
like(
	$stderr,
	qr/new row for relation "t1_2040_02_load_\d+" violates check constraint "before_2040_02"/,
	'CHECK violation: the error names the constraint and the month');
$node->safe_psql('ops', 'ALTER TABLE t1 DROP CONSTRAINT before_2040_02');
is($node->safe_psql('ops', $state_query),
	$before, 'CHECK violation: no row, month, load table or mv_sum change is left');

# A constraint that only looks like the extension's (its name, another
# expression) is evaluated in the load tables too.
$node->safe_psql('ops',
	'ALTER TABLE t1 DROP CONSTRAINT t1_status_check; '
	  . "ALTER TABLE t1 ADD CONSTRAINT t1_status_check CHECK (date < '2040-01-01 00:00+00')");
($ret, $stdout, $stderr) = $node->psql('ops',
	"SELECT opsdemo_generate(3000, '2040-01-01', '2040-03-01', seed => 8, processed_share => 0.5)"
);
like(
	$stderr,
	qr/new row for relation "t1_2040_01_load_\d+" violates check constraint "t1_status_check"/,
	'look-alike CHECK: evaluated, the load fails');
$node->safe_psql('ops',
	'ALTER TABLE t1 DROP CONSTRAINT t1_status_check; '
	  . 'ALTER TABLE t1 ADD CONSTRAINT t1_status_check CHECK (status IN (0, 1))');
is($node->safe_psql('ops', $state_query),
	$before, 'look-alike CHECK: nothing is left');

# 4. A transaction holding a lock on t1_default (a long reader of t1) when
# the load is ready to attach: the load waits for it without queueing, so
# the update job and other readers, who lock t1_default too, do not wait
# behind it; it attaches once that transaction ends.  Held longer than
# opsdemo.partition_lock_timeout, the load fails and leaves nothing.
$node->safe_psql('ops', "ALTER DATABASE ops SET opsdemo.partition_lock_timeout = '60s'");
my $reader = $node->background_psql('ops');
$reader->query_safe('BEGIN; SELECT count(*) FROM t1_default');
$load = start_load(
	"SELECT opsdemo_generate(2000, '2044-01-01', '2044-03-01', seed => 9, processed_share => 0.5)"
);
ok( $node->poll_query_until(
		'ops', q{SELECT count(*) = 1 FROM pg_stat_activity
		 WHERE query LIKE 'SELECT opsdemo_generate(2000,%' AND wait_event = 'PgSleep'}),
	'long reader: the load polls for the lock on t1_default');
is( $node->safe_psql('ops',
		"SET lock_timeout = '3s'; SELECT opsdemo_update_tick() >= 0, count(*) >= 0 FROM t1"),
	't|t',
	'long reader: the update job and a reader of t1 do not wait behind the load');
$reader->query_safe('COMMIT');
$load->{h}->finish;
is($load->{out}, "2000\n", 'long reader: the load attaches once the reader is gone')
  or diag($load->{err});
is( $node->safe_psql('ops',
		q{SELECT count(*) FROM opsdemo_partitions WHERE partition::text LIKE 't1\_2044\_%'}),
	'2', 'long reader: both months attached');
$node->safe_psql('ops',
	"DROP TABLE t1_2044_01, t1_2044_02; ALTER DATABASE ops SET opsdemo.partition_lock_timeout = '1s'");
$before = $node->safe_psql('ops', $state_query);
$reader->query_safe('BEGIN; SELECT count(*) FROM t1_default');
($ret, $stdout, $stderr) = $node->psql('ops',
	"SELECT opsdemo_generate(2000, '2044-01-01', '2044-03-01', seed => 9, processed_share => 0.5)"
);
like(
	$stderr,
	qr/could not lock "t1_default" to attach the months it loaded/,
	'reader past the limit: the load fails with the reason');
$reader->query_safe('COMMIT');
$reader->quit;
$node->safe_psql('ops', 'ALTER DATABASE ops RESET opsdemo.partition_lock_timeout');
is($node->safe_psql('ops', $state_query),
	$before, 'reader past the limit: nothing is left');

# 5. Publication.  pub_gen starts with another table only; a slot decodes
# what it publishes.
$node->safe_psql('ops',
	'CREATE TABLE other (x int); '
	  . 'CREATE PUBLICATION pub_gen FOR TABLE other WITH (publish_via_partition_root = true)');
$node->safe_psql('ops',
	"SELECT pg_create_logical_replication_slot('gen_slot', 'pgoutput')");
my $inserts_decoded = q{
	SELECT count(*) FROM pg_logical_slot_get_binary_changes('gen_slot', NULL, NULL,
	       'proto_version', '1', 'publication_names', 'pub_gen')
	 WHERE get_byte(data, 0) = ascii('I')};

# t1 not published: the months are attached, and nothing is decoded.
is( $node->safe_psql('ops',
		"SELECT opsdemo_generate(4000, '2041-01-01', '2041-03-01', seed => 4)"),
	'4000',
	'unpublished t1: the load completes');
is($node->safe_psql('ops', $inserts_decoded),
	'0', 'unpublished t1: no insert is published');

# t1 added to the publication while the load waits to attach: the rows go
# in through t1 and each one is decoded as an insert.
$gate = $node->background_psql('ops');
$gate->query_safe("BEGIN; $gate_query");
$load = start_load(
	"SELECT opsdemo_generate(5000, '2042-01-01', '2042-03-01', seed => 5, processed_share => 0.5)"
);
ok($node->poll_query_until('ops', $load_waits),
	'publication added mid-load: the load waits for the gate');
$node->safe_psql('ops', 'ALTER PUBLICATION pub_gen ADD TABLE t1');
$gate->query_safe('COMMIT');
$gate->quit;
$load->{h}->finish;
is($load->{out}, "5000\n", 'publication added mid-load: the load completes')
  or diag($load->{err});
is($node->safe_psql('ops', $inserts_decoded),
	'5000', 'publication added mid-load: every row is decoded as an insert');
is( $node->safe_psql('ops',
		q{SELECT count(*) FROM pg_class WHERE relname LIKE 't1\_%\_load\_%'}),
	'0',
	'publication added mid-load: no load table is left');

# Published from the start: the same.
is( $node->safe_psql('ops',
		"SELECT opsdemo_generate(3000, '2043-01-01', '2043-03-01', seed => 6)"),
	'3000',
	'published t1: the load completes');
is($node->safe_psql('ops', $inserts_decoded),
	'3000', 'published t1: every row is decoded as an insert');
is($node->safe_psql('ops', 'SELECT count(*) FROM opsdemo_mv_sum_verify()'),
	'0', 'mv_sum is exact after all of it');

$node->stop;
done_testing();
