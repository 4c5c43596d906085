# opsdemo_generate seen from outside: the final NOTICE, progress visible
# from another session while it runs, and a pg_dump/pg_restore round trip
# of a database that uses the extension.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE ops');
$node->safe_psql('ops', 'CREATE EXTENSION pg_opsdemo');

# The NOTICE reports rows and rows/s.
my ($stdout, $stderr);
$node->psql(
	'ops',
	"SELECT opsdemo_generate(20000, '2026-01-01', '2026-04-01', seed => 1)",
	stdout => \$stdout,
	stderr => \$stderr);
is($stdout, '20000', 'generate returns the rows inserted');
like(
	$stderr,
	qr/NOTICE:  opsdemo_generate: inserted 20000 rows in [0-9.]+ s \([0-9]+ rows\/s\)/,
	'final NOTICE gives rows and rate');

# A long run is visible in opsdemo_generate_progress and in
# pg_stat_progress_copy while it runs.  Rows come in date order, one month's
# partition after the other: a session holding August's partition in SHARE
# mode (which conflicts with the ROW EXCLUSIVE lock a write into it takes)
# holds the generation at its first August row, with June and July written
# and reported, for as long as the checks below take, however fast the
# machine.
$node->safe_psql('ops', "SELECT opsdemo_partitions_ensure('2025-06-01', '2025-09-01')");
my $gate = $node->background_psql('ops');
$gate->query_safe('BEGIN; LOCK TABLE t1_2025_08 IN SHARE MODE');
my ($bg_out, $bg_err) = ('', '');
my $bg = IPC::Run::start(
	[
		'psql', '-XAtq', '-d', $node->connstr('ops'), '-c',
		"SELECT opsdemo_generate(150000, '2025-06-01', '2025-09-01', seed => 2)"
	],
	'>', \$bg_out, '2>', \$bg_err);

ok( $node->poll_query_until(
		'ops',
		'SELECT count(*) = 1 FROM opsdemo_generate_progress '
		  . 'WHERE rows_done > 0 AND rows_done < rows_total AND rows_total = 150000'),
	'progress view shows a running generation');
my $copy_progress = $node->safe_psql('ops',
	"SELECT command, type, relid::regclass FROM pg_stat_progress_copy");
is($copy_progress, 'COPY FROM|CALLBACK|t1',
	'pg_stat_progress_copy shows it as COPY FROM a callback into t1');
my $percent = $node->safe_psql('ops',
	'SELECT percent > 0 AND percent < 100 FROM opsdemo_generate_progress');
is($percent, 't', 'percent done is between 0 and 100 mid-run');

$gate->query_safe('ROLLBACK');
$gate->quit;
$bg->finish;
chomp $bg_out;
is($bg_out, '150000', 'the long generation completes');
is($node->safe_psql('ops', 'SELECT count(*) FROM opsdemo_generate_progress'),
	'0', 'progress entry is gone afterwards');

# pg_dump + pg_restore brings the rows, partitions, mv_sum and the id
# sequence back.  mv_sum is not dumped: the restored rows pass through its
# triggers, which rebuild it.
$node->safe_psql('ops',
	"SELECT opsdemo_update_tick('2026-01-01 00:00:00+00');"
	  . "INSERT INTO t1 (date, amount, operation_guid, message) SELECT d, 3, opsdemo_guid(d), "
	  . "'{\"client_id\": 1, \"account_number\": \"1\", \"operation_type\": \"online\"}' "
	  . "FROM (VALUES ('2031-05-05 00:00:00+00'::timestamptz)) v(d)");

my $fingerprint = q{
	SELECT count(*), sum(amount), sum(status),
	       md5(string_agg(id || '/' || date || '/' || operation_guid || '/' || message::text,
	                      ',' ORDER BY id)),
	       (SELECT string_agg(partition || ' ' || bounds, ',') FROM opsdemo_partitions),
	       (SELECT md5(string_agg(client_id || operation_type || total_sum || row_count, ','
	                              ORDER BY client_id, operation_type)) FROM mv_sum),
	       (SELECT count(*) FROM t1_default)
	  FROM t1};
my $before = $node->safe_psql('ops', $fingerprint);

my $dump = $node->basedir . '/ops.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-d', $node->connstr('ops'), '-f', $dump ],
	'pg_dump of a database using the extension');
$node->safe_psql('postgres', 'CREATE DATABASE ops_restored');
$node->command_ok(
	[ 'pg_restore', '--exit-on-error', '-d', $node->connstr('ops_restored'), $dump ],
	'pg_restore into a new database');

is($node->safe_psql('ops_restored', $fingerprint),
	$before, 'rows, partitions, default partition and mv_sum are restored');
is($node->safe_psql('ops_restored', 'SELECT count(*) FROM opsdemo_mv_sum_verify()'),
	'0', 'restored mv_sum is exact');
is( $node->safe_psql(
		'ops_restored',
		'SELECT max(id) < opsdemo_insert_tick() FROM t1'),
	't',
	'the id sequence continues after the restored ids');
is( $node->safe_psql(
		'ops_restored',
		"SELECT opsdemo_generate(100, '2026-01-01', '2026-04-01', seed => 99)"),
	'100',
	'generation works in the restored database');

$node->stop;
done_testing();
