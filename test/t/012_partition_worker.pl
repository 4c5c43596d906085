# Partition creation where its background worker cannot help: no worker
# slot free (the caller's transaction creates the months itself) and a hot
# standby (a clear error, nothing half-done).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_opsdemo');

# The worker creates the month and commits: it stays after a rollback.
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT opsdemo_generate(100, '2032-01-01', '2032-02-01', seed => 1);
	ROLLBACK;
});
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM opsdemo_partitions WHERE partition = 't1_2032_01'"),
	'1',
	'with a worker slot free, a month outlives the rolled-back load');

# A standby refuses clearly and changes nothing.
$node->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($node, 'backup', has_streaming => 1);
$standby->start;
$node->wait_for_catchup($standby);

my ($ret, $stdout, $stderr) = $standby->psql('postgres',
	"SELECT opsdemo_partitions_ensure('2032-03-01', '2032-04-01')");
isnt($ret, 0, 'partition creation fails on a standby');
like(
	$stderr,
	qr/ERROR:  cannot create partitions of "t1" during recovery/,
	'... with a clear message');
($ret, $stdout, $stderr) = $standby->psql('postgres',
	"SELECT opsdemo_generate(10, '2032-01-01', '2032-02-01', seed => 2)");
isnt($ret, 0, 'generation fails on a standby');
like(
	$stderr,
	qr/ERROR:  cannot execute opsdemo_generate\(\) in a read-only transaction/,
	'... with a clear message');
$standby->stop;

# No worker slot free: the caller's transaction creates the month itself,
# so the month goes when that transaction rolls back, and a load still works.
$node->append_conf('postgresql.conf', 'max_worker_processes = 0');
$node->restart;
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT opsdemo_generate(100, '2032-05-01', '2032-06-01', seed => 3);
	ROLLBACK;
});
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM opsdemo_partitions WHERE partition = 't1_2032_05'"),
	'0',
	'without a worker slot, the month is created in the rolled-back transaction');
like(
	slurp_file($node->logfile),
	qr/LOG:  no background worker could be started to create partitions of "t1"; creating them in the calling transaction/,
	'... which the server log says');
is( $node->safe_psql('postgres', q{
		SET client_min_messages = warning;
		SELECT opsdemo_generate(100, '2032-05-01', '2032-06-01', seed => 3);
		SELECT tableoid::regclass || ' ' || count(*) FROM t1 GROUP BY tableoid;
	}),
	"100\nt1_2032_05 100",
	'... and a load creates its month and lands in it');
is( $node->safe_psql('postgres', 'SELECT opsdemo_insert_tick() > 0'),
	't', 'the insert tick works without a worker slot');

$node->stop;
done_testing();
