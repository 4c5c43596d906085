# mv_sum on a logical replica: t1 is published with
# publish_via_partition_root, mv_sum is not published at all.  The
# subscriber's own mv_sum triggers (ENABLE ALWAYS) fire in the tablesync
# COPY and in the apply worker, so after catch-up its mv_sum equals both the
# aggregate of its own t1 and the primary's mv_sum, through every kind of
# change the primary makes.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 'logical');
$primary->start;

my $replica = PostgreSQL::Test::Cluster->new('replica');
$replica->init;
$replica->start;

for my $node ($primary, $replica)
{
	$node->safe_psql('postgres', 'CREATE DATABASE ops');
	$node->safe_psql('ops', 'CREATE EXTENSION pg_opsdemo');
}

$primary->safe_psql('ops',
	"SELECT opsdemo_generate(30000, '2026-01-01', '2026-04-01', seed => 3, "
	  . "clients => 40, processed_share => 0.3)");
$primary->safe_psql('ops',
	'CREATE PUBLICATION pub_t1 FOR TABLE t1 WITH (publish_via_partition_root = true)');
my $connstr = $primary->connstr . ' dbname=ops';
$replica->safe_psql('ops',
	"CREATE SUBSCRIPTION sub_t1 CONNECTION '$connstr' PUBLICATION pub_t1");

sub caught_up
{
	$replica->poll_query_until('ops',
		"SELECT count(*) = 0 FROM pg_subscription_rel WHERE srsubstate NOT IN ('r', 's')")
	  or die 'initial table sync did not finish';
	$primary->wait_for_catchup('sub_t1');
}

my $mv_sum_text = 'SELECT string_agg(format(\'%s|%s|%s|%s\', client_id, operation_type, '
  . 'total_sum, row_count), \',\' ORDER BY client_id, operation_type) FROM mv_sum';
my $t1_text = 'SELECT count(*) || \':\' || coalesce(sum(hashtext(id::text || date::text || '
  . 'amount::text || status::text || operation_guid::text || message::text)), 0) FROM t1';

sub replica_matches
{
	my ($what) = @_;
	caught_up();
	is($replica->safe_psql('ops', $t1_text),
		$primary->safe_psql('ops', $t1_text), "$what: replica t1 equals primary t1");
	is($replica->safe_psql('ops', 'SELECT count(*) FROM opsdemo_mv_sum_verify()'),
		'0', "$what: replica mv_sum is exact for its t1");
	is($replica->safe_psql('ops', $mv_sum_text),
		$primary->safe_psql('ops', $mv_sum_text), "$what: replica mv_sum equals primary mv_sum");
}

is($primary->safe_psql('ops',
		"SELECT string_agg(tablename, ',') FROM pg_publication_tables WHERE pubname = 'pub_t1'"),
	't1', 'only t1 is published (mv_sum is maintained on each node, never replicated)');

replica_matches('initial copy');
isnt($replica->safe_psql('ops', 'SELECT count(*) FROM mv_sum'), '0',
	'the initial copy filled the replica mv_sum');

# The jobs: pending inserts, then even and odd flips.
$primary->safe_psql('ops', 'SELECT opsdemo_insert_tick() FROM generate_series(1, 5)');
$primary->safe_psql('ops', "SELECT opsdemo_update_tick('2026-11-21 10:00:00+00')");
$primary->safe_psql('ops', "SELECT opsdemo_update_tick('2026-11-21 10:00:03+00')");
replica_matches('insert and update ticks');

# Every other kind of change.
$primary->safe_psql('ops', 'UPDATE t1 SET status = 0 WHERE id % 9 = 0');
$primary->safe_psql('ops', 'UPDATE t1 SET amount = amount + 0.01 WHERE id % 7 = 0');
$primary->safe_psql('ops',
	"UPDATE t1 SET message = message || '{\"client_id\": 77, \"operation_type\": \"offline\"}' "
	  . 'WHERE id % 11 = 0');
$primary->safe_psql('ops',
	"UPDATE t1 SET date = date + interval '1 month', "
	  . "operation_guid = opsdemo_guid(date + interval '1 month') WHERE id % 13 = 0");
$primary->safe_psql('ops', 'DELETE FROM t1 WHERE id % 17 = 0');
$primary->safe_psql('ops', 'BEGIN; UPDATE t1 SET status = 1 WHERE id % 19 = 0; ROLLBACK');
replica_matches('flips back, amount, client, partition moves, deletes');

# Rows in one transaction on the primary arrive in one apply transaction;
# a bulk flip of everything still pending.
$primary->safe_psql('ops', 'UPDATE t1 SET status = 1 WHERE status = 0');
replica_matches('bulk flip');

$primary->safe_psql('ops', 'TRUNCATE t1');
replica_matches('TRUNCATE');
is($replica->safe_psql('ops', 'SELECT count(*) FROM mv_sum'), '0',
	'replica mv_sum is empty after TRUNCATE');

done_testing();
