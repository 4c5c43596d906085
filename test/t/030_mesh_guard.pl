# The mesh topology of seed 003, as the lab builds it, on three clusters:
# node1 writes `test` and publishes it (test_pub), node2 writes `test2`
# (test2_pub), each reads the other's table through a subscription, and
# node3 subscribes to both and to t1 of node1 (publish_via_partition_root),
# keeping its own exact mv_sum.  Every read-only copy carries pg_opsdemo's
# guard: local INSERT, UPDATE, DELETE and TRUNCATE fail with SQLSTATE 25006
# and change nothing, while the apply worker's changes, TRUNCATE included,
# pass.  Then what the seed got wrong (a table without a primary key cannot
# publish UPDATE or DELETE), the two-way table `shared` with origin = none
# on 16+, and a conflict: the same key written on both sides, the apply
# worker failing and retrying, disable_on_error, and ALTER SUBSCRIPTION
# ... SKIP to resume.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use OpsdemoTAP;

# Apply workers that fail are restarted by the launcher after
# wal_retrieve_retry_interval (5 s by default): short here, so the retries
# of the conflict section come quickly.
my $node_conf = <<'EOC';
max_logical_replication_workers = 8
max_worker_processes = 16
wal_retrieve_retry_interval = '500ms'
EOC

my %node;
for my $name (qw(node1 node2 node3))
{
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => 'logical');
	$node->append_conf('postgresql.conf', $node_conf);
	$node->start;
	# The guard is part of the extension: every node that has a read-only
	# copy needs it; node1 also has t1, node3 its own mv_sum.
	query($node, 'CREATE EXTENSION pg_opsdemo');
	query($node,
		'CREATE TABLE test (id int PRIMARY KEY, note text NOT NULL); '
		  . 'CREATE TABLE test2 (id int PRIMARY KEY, note text NOT NULL)');
	$node{$name} = $node;
}
my ($node1, $node2, $node3) = @node{qw(node1 node2 node3)};

# ---- the topology ------------------------------------------------------------

query($node1, 'SELECT opsdemo_generate(3000, seed => 30)');
query($node1, "INSERT INTO test SELECT g, 'node1 row ' || g FROM generate_series(1, 10) g");
query($node2, "INSERT INTO test2 SELECT g, 'node2 row ' || g FROM generate_series(1, 10) g");

query($node1, 'CREATE PUBLICATION test_pub FOR TABLE test');
query($node1,
	'CREATE PUBLICATION t1_pub FOR TABLE t1 WITH (publish_via_partition_root = true)');
query($node2, 'CREATE PUBLICATION test2_pub FOR TABLE test2');

# A subscription's slot on the publisher is named like the subscription:
# node2 and node3 both subscribe to test_pub, so their subscriptions need
# different names.
sub subscribe
{
	my ($subscriber, $subname, $publisher, $pubname) = @_;
	my $conn = $publisher->connstr . ' dbname=postgres';
	query($subscriber,
		"CREATE SUBSCRIPTION $subname CONNECTION '$conn' PUBLICATION $pubname");
	return;
}
subscribe($node1, 'test2_sub',       $node2, 'test2_pub');
subscribe($node2, 'test_sub',        $node1, 'test_pub');
subscribe($node3, 'node3_test_sub',  $node1, 'test_pub');
subscribe($node3, 'node3_test2_sub', $node2, 'test2_pub');
subscribe($node3, 'node3_t1_sub',    $node1, 't1_pub');

# The guard on every read-only copy: the owner is the node that writes it.
query($node1, "SELECT opsdemo_make_read_only('test2', 'node2')");
query($node2, "SELECT opsdemo_make_read_only('test', 'node1')");
query($node3, "SELECT opsdemo_make_read_only('test', 'node1')");
query($node3, "SELECT opsdemo_make_read_only('test2', 'node2')");

# Which subscription reads which table from which node: the copies and
# the slots on the writers.
my %copies = (
	test  => [ $node1, [ [ $node2, 'test_sub' ],   [ $node3, 'node3_test_sub' ] ] ],
	test2 => [ $node2, [ [ $node1, 'test2_sub' ],  [ $node3, 'node3_test2_sub' ] ] ],
	t1    => [ $node1, [ [ $node3, 'node3_t1_sub' ] ] ]);

# Every copy has caught up with its writer (initial copy done, then every
# change the writer has committed so far applied).
sub caught_up
{
	for my $table (sort keys %copies)
	{
		my ($writer, $readers) = @{ $copies{$table} };
		for my $reader (@$readers)
		{
			my ($node, $subname) = @$reader;
			$node->wait_for_subscription_sync($writer, $subname);
		}
	}
	return;
}

# Every copy of $table equals its writer's.
sub copies_equal
{
	my ($table, $what) = @_;
	my ($writer, $readers) = @{ $copies{$table} };
	my $expected = fingerprint($writer, $table);
	for my $reader (@$readers)
	{
		my ($node, $subname) = @$reader;
		is(fingerprint($node, $table), $expected,
			"$what: $table on " . $node->name . ' equals ' . $writer->name . "'s ($expected)");
	}
	return;
}

caught_up();

is( query(
		$node1,
		"SELECT string_agg(pubname || ':' || tablename, ',' ORDER BY pubname) "
		  . 'FROM pg_publication_tables'),
	't1_pub:t1,test_pub:test',
	'node1 publishes test (test_pub) and t1 (t1_pub)');
is( query(
		$node1,
		"SELECT pubviaroot FROM pg_publication WHERE pubname = 't1_pub'"),
	't',
	't1_pub publishes via the partition root: t1 arrives as t1, whatever the partitions');
is( query(
		$node2,
		"SELECT string_agg(pubname || ':' || tablename, ',') FROM pg_publication_tables"),
	'test2_pub:test2',
	'node2 publishes test2 (test2_pub)');

my $subs_query =
  "SELECT string_agg(s.subname || ':' || s.subenabled || ':' || (w.pid IS NOT NULL), ',' "
  . 'ORDER BY s.subname) FROM pg_subscription s '
  . 'LEFT JOIN pg_stat_subscription w ON w.subid = s.oid AND w.relid IS NULL';
is(query($node1, $subs_query), 'test2_sub:true:true',
	'node1: one subscription (test2), enabled, its apply worker running');
is(query($node2, $subs_query), 'test_sub:true:true',
	'node2: one subscription (test), enabled, its apply worker running');
is( query($node3, $subs_query),
	'node3_t1_sub:true:true,node3_test2_sub:true:true,node3_test_sub:true:true',
	'node3: test, test2 and t1 subscribed, every apply worker running');
is( query(
		$node3,
		"SELECT string_agg(srrelid::regclass || ':' || srsubstate::text, ',' ORDER BY srrelid::regclass::text COLLATE \"C\") "
		  . 'FROM pg_subscription_rel'),
	't1:r,test:r,test2:r',
	'node3: every subscribed table is ready (t1 as one table, not its partitions)');
is( query(
		$node1,
		"SELECT string_agg(slot_name || ':' || slot_type || ':' || active, ',' ORDER BY slot_name) "
		  . 'FROM pg_replication_slots'),
	'node3_t1_sub:logical:true,node3_test_sub:logical:true,test_sub:logical:true',
	'node1: one active logical slot per subscriber of its publications');

copies_equal($_, 'initial copy') for sort keys %copies;

# t1 on node3: its own mv_sum, kept exact by its own triggers from the
# replicated changes, through the jobs' ticks and the generator.
query($node1, 'SELECT opsdemo_insert_tick() FROM generate_series(1, 5)');
query($node1, "SELECT opsdemo_update_tick('2026-11-21 10:00:00+00')");
query($node1, "SELECT opsdemo_update_tick('2026-11-21 10:00:03+00')");
query($node1, 'SELECT opsdemo_generate(500, seed => 31)');
caught_up();
copies_equal('t1', 'after the ticks and the generator');
for my $node ($node1, $node3)
{
	is(query($node, 'SELECT count(*) FROM opsdemo_mv_sum_verify()'),
		'0', $node->name . ': mv_sum exact (opsdemo_mv_sum_verify() finds nothing)');
}
isnt(query($node3, "SELECT count(*) FROM mv_sum WHERE total_sum <> 0"),
	'0', 'node3: its mv_sum is not empty');

# ---- the guard: local writes rejected on every read-only copy ------------------

# Each statement in a psql of its own, with VERBOSITY verbose so that the
# error shows its SQLSTATE.
sub rejected
{
	my ($node, $table, $owner, $sql, $what) = @_;
	my $before = fingerprint($node, $table);
	my ($rc, $out, $err) =
	  $node->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	my $name = $node->name;
	isnt($rc, 0, "$name: $what on $table fails");
	like($err, qr/ERROR:  25006: .*\btest2?\b.*read-only/,
		"$name: ... with SQLSTATE 25006 naming the table");
	like($err, qr/\Q$owner\E/, "$name: ... and the owning node $owner");
	is(fingerprint($node, $table), $before, "$name: ... and $table is unchanged");
	return $err;
}

my @read_only = (
	[ $node1, 'test2', 'node2' ],
	[ $node2, 'test',  'node1' ],
	[ $node3, 'test',  'node1' ],
	[ $node3, 'test2', 'node2' ]);
my $shown;
for my $copy (@read_only)
{
	my ($node, $table, $owner) = @$copy;
	my $err = rejected($node, $table, $owner,
		"INSERT INTO $table VALUES (1000, 'local')", 'INSERT');
	$shown //= $err;
	rejected($node, $table, $owner,
		"UPDATE $table SET note = 'local' WHERE id = 1", 'UPDATE');
	rejected($node, $table, $owner, "DELETE FROM $table WHERE id = 2", 'DELETE');
	rejected($node, $table, $owner, "TRUNCATE $table",                 'TRUNCATE');
}
note "the guard's error on node1:\n$shown";

# ---- replicated changes pass the guard ---------------------------------------

# The apply worker runs with session_replication_role = replica, in which
# ordinary triggers do not fire: INSERT, UPDATE, DELETE and TRUNCATE of
# the writer arrive on every guarded copy.
for my $table ('test', 'test2')
{
	my $writer = $copies{$table}[0];
	query($writer, "INSERT INTO $table SELECT g, 'more ' || g FROM generate_series(11, 20) g");
	query($writer, "UPDATE $table SET note = note || ' updated' WHERE id % 3 = 0");
	query($writer, "DELETE FROM $table WHERE id % 4 = 0");
}
caught_up();
copies_equal($_, 'INSERT, UPDATE, DELETE replicated through the guard')
  for ('test', 'test2');
is(query($node3, 'SELECT count(*) FROM test WHERE note LIKE \'%updated\''),
	query($node1, 'SELECT count(*) FROM test WHERE note LIKE \'%updated\''),
	'node3: the updated rows of test are there');

query($node1, 'TRUNCATE test');
query($node2, 'TRUNCATE test2');
caught_up();
copies_equal($_, 'TRUNCATE replicated through the guard') for ('test', 'test2');
for my $copy (@read_only)
{
	my ($node, $table) = @$copy;
	is(query($node, "SELECT count(*) FROM $table"), '0',
		$node->name . ": $table empty after the writer's TRUNCATE");
}
query($node1, "INSERT INTO test SELECT g, 'after truncate ' || g FROM generate_series(1, 5) g");
query($node2, "INSERT INTO test2 SELECT g, 'after truncate ' || g FROM generate_series(1, 5) g");
caught_up();
copies_equal($_, 'writes after the TRUNCATE') for ('test', 'test2');

# ---- the seed's defect: a table without a primary key -------------------------

# The seed's tables had no primary key.  A publication publishes INSERT,
# UPDATE, DELETE and TRUNCATE by default, and the publisher needs a
# replica identity (by default the primary key) to say which row an
# UPDATE or DELETE changed: without one it refuses those statements on
# its own table, at once, subscribers or not.  INSERT works, which is why
# the seed did not notice.
query($node1, 'CREATE TABLE seed_test (id int, note text)');
query($node1, 'CREATE PUBLICATION seed_pub FOR TABLE seed_test');
query($node1, "INSERT INTO seed_test VALUES (1, 'inserted')");
my ($rc, $out, $err) =
  $node1->psql('postgres', "UPDATE seed_test SET note = 'updated' WHERE id = 1");
like(
	$err,
	qr/ERROR:  cannot update table "seed_test" because it does not have a replica identity and publishes updates/,
	'no primary key: UPDATE on the published table fails on the writer');
like($err, qr/HINT:  To enable updating the table, set REPLICA IDENTITY using ALTER TABLE\./,
	'... with the hint to set REPLICA IDENTITY');
($rc, $out, $err) = $node1->psql('postgres', 'DELETE FROM seed_test WHERE id = 1');
like(
	$err,
	qr/ERROR:  cannot delete from table "seed_test" because it does not have a replica identity and publishes deletes/,
	'... and so does DELETE');
is(query($node1, 'SELECT note FROM seed_test'), 'inserted', '... the row unchanged');
query($node1, 'ALTER TABLE seed_test ADD PRIMARY KEY (id)');
query($node1, "UPDATE seed_test SET note = 'updated' WHERE id = 1");
is(query($node1, 'SELECT note FROM seed_test'), 'updated',
	'with a primary key the same UPDATE works');
query($node1, 'DROP PUBLICATION seed_pub');

# ---- the two-way table `shared` (16+) ----------------------------------------

SKIP:
{
	# Before 16 a subscription applies every change its publisher
	# publishes, including the ones that publisher applied from us: a row
	# written on node1 goes to node2 and comes back to node1, where its
	# key already exists (an apply error, retried for ever); without a
	# primary key it would loop.  origin = none (16+) publishes only
	# changes made on the node itself.
	skip 'the two-way table needs the subscription option origin (PostgreSQL 16+)', 7
	  if $node1->pg_version < 16;

	for my $node ($node1, $node2)
	{
		query($node,
			'CREATE TABLE shared (id int PRIMARY KEY, written_on text NOT NULL); '
			  . 'CREATE PUBLICATION shared_pub FOR TABLE shared');
	}
	# Both sides start empty: copy_data = false, nothing to copy, and
	# origin = none would otherwise warn about copying a table that is
	# itself subscribed.
	for my $pair ([ $node1, $node2 ], [ $node2, $node1 ])
	{
		my ($subscriber, $publisher) = @$pair;
		my $conn = $publisher->connstr . ' dbname=postgres';
		query($subscriber,
			'CREATE SUBSCRIPTION shared_from_' . $publisher->name
			  . " CONNECTION '$conn' PUBLICATION shared_pub "
			  . 'WITH (origin = none, copy_data = false)');
	}
	is( query(
			$node1,
			"SELECT suborigin FROM pg_subscription WHERE subname = 'shared_from_node2'"),
		'none',
		'node1 subscribes node2\'s shared with origin = none');
	query($node1, "INSERT INTO shared SELECT g, 'node1' FROM generate_series(1, 5) g");
	query($node2, "INSERT INTO shared SELECT g, 'node2' FROM generate_series(101, 105) g");
	query($node1, "UPDATE shared SET written_on = 'node1, updated' WHERE id = 1");
	query($node2, 'DELETE FROM shared WHERE id = 105');
	# shared_from_node1 is node2's subscription, its slot on node1.  Each
	# side's applied changes are in its WAL: a loop would send them back,
	# so after one round each way, wait for a second round and then look.
	for (1 .. 2)
	{
		$node1->wait_for_catchup('shared_from_node1');
		$node2->wait_for_catchup('shared_from_node2');
	}
	my $expected = "1|node1, updated\n2|node1\n3|node1\n4|node1\n5|node1\n"
	  . "101|node2\n102|node2\n103|node2\n104|node2";
	for my $node ($node1, $node2)
	{
		my $name = $node->name;
		is(query($node, 'SELECT id, written_on FROM shared ORDER BY id'),
			$expected, "$name: shared has each node's rows, each exactly once");
		is( query(
				$node,
				'SELECT apply_error_count FROM pg_stat_subscription_stats '
				  . "WHERE subname LIKE 'shared_from_%'"),
			'0',
			"$name: no apply error: no change came back");
	}
	is(fingerprint($node1, 'shared'), fingerprint($node2, 'shared'),
		'node1 and node2 hold the same shared');
	is( query(
			$node1,
			"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'shared_from_node1' AND active"),
		'1',
		'node2\'s subscription reads through its own slot on node1');
}

# ---- a conflict: the same key written on both sides ---------------------------

# A superuser bypasses the guard with session_replication_role = replica
# (the apply worker's own setting): node2 gets a local row in test with
# key 100, then node1 writes key 100 too.  PostgreSQL does not resolve
# conflicts: the apply worker fails on the unique index, the launcher
# restarts it, it fails again on the same transaction, for ever, and
# everything node1 writes after it waits behind it.
my $offset = -s $node2->logfile;
query($node2,
	"SET session_replication_role = replica; INSERT INTO test VALUES (100, 'node2, local')");
is(query($node2, 'SELECT note FROM test WHERE id = 100'), 'node2, local',
	'session_replication_role = replica: a superuser writes through the guard');
query($node1, "INSERT INTO test VALUES (100, 'node1')");
query($node1, "INSERT INTO test VALUES (101, 'node1, after the conflict')");

# PostgreSQL 18 detects the conflict before the unique index does and
# names it (insert_exists), with both rows in the DETAIL; before 18 the
# unique index raises the error.
my $conflict =
  $node2->pg_version >= 18
  ? qr/ERROR:  conflict detected on relation "public\.test": conflict=insert_exists\n.*DETAIL:  Key already exists in unique index "test_pkey"/
  : qr/ERROR:  duplicate key value violates unique constraint "test_pkey"/;
$offset = log_appears($node2, $conflict, $offset,
	"node2: the apply worker fails: $conflict");
log_appears($node2, $conflict, $offset,
	'node2: ... and fails again after the launcher restarts it');
ok( $node2->poll_query_until(
		'postgres',
		'SELECT apply_error_count >= 2 FROM pg_stat_subscription_stats '
		  . "WHERE subname = 'test_sub'"),
	'node2: pg_stat_subscription_stats counts the apply errors');
if ($node2->pg_version >= 18)
{
	cmp_ok(
		query($node2,
			"SELECT confl_insert_exists FROM pg_stat_subscription_stats WHERE subname = 'test_sub'"),
		'>=', 2, 'node2 (18+): ... and counts them as insert_exists conflicts');
}
is(query($node2, 'SELECT count(*) FROM test WHERE id = 101'), '0',
	'node2: node1\'s later row waits behind the failing transaction');
is(query($node2, "SELECT subenabled FROM pg_subscription WHERE subname = 'test_sub'"),
	't', 'node2: the subscription stays enabled and keeps retrying');

# disable_on_error: the next failure disables the subscription instead of
# retrying, so the error stays in the log and nothing spins.
$offset = -s $node2->logfile;
query($node2, 'ALTER SUBSCRIPTION test_sub SET (disable_on_error = true)');
my $disabled = qr/subscription "test_sub" has been disabled because of an error/;
$node2->wait_for_log($disabled, $offset);
ok($node2->poll_query_until('postgres',
		"SELECT NOT subenabled FROM pg_subscription WHERE subname = 'test_sub'"),
	'node2: with disable_on_error = true the failing subscription disables itself');
my $log = slurp_file($node2->logfile, $offset);
note "node2's log:\n$log";

# The failing transaction's LSN is in the error's context ("... finished
# at 0/..."), not in pg_stat_subscription_stats (which counts only): SKIP
# drops that one remote transaction, the subscription goes on after it.
my ($skip_lsn) = $log =~ /$conflict.*?finished at ([0-9A-F]+\/[0-9A-F]+)/s;
ok(defined $skip_lsn, "node2: the log names the failing transaction's end LSN ("
	  . ($skip_lsn // 'none') . ')');
$offset = -s $node2->logfile;
query($node2, "ALTER SUBSCRIPTION test_sub SKIP (lsn = '$skip_lsn')");
is(query($node2, "SELECT subskiplsn FROM pg_subscription WHERE subname = 'test_sub'"),
	$skip_lsn, 'node2: SKIP records the LSN to skip');
query($node2, 'ALTER SUBSCRIPTION test_sub ENABLE');
log_appears($node2,
	qr/logical replication completed skipping transaction at LSN \Q$skip_lsn\E/,
	$offset, 'node2: the apply worker skips exactly that transaction');
$node1->wait_for_catchup('test_sub');
is(query($node2, 'SELECT note FROM test WHERE id IN (100, 101) ORDER BY id'),
	"node2, local\nnode1, after the conflict",
	'node2: replication goes on after it; key 100 keeps the local row (node1\'s was skipped)');
is(query($node2, "SELECT subskiplsn FROM pg_subscription WHERE subname = 'test_sub'"),
	'0/0', 'node2: the skip LSN is cleared once used');
isnt(fingerprint($node2, 'test'), fingerprint($node1, 'test'),
	'SKIP leaves the copies different: the repair is up to the DBA');

# The repair: the writer's row, written through the guard the same way.
query($node2,
	"SET session_replication_role = replica; UPDATE test SET note = 'node1' WHERE id = 100");
is(fingerprint($node2, 'test'), fingerprint($node1, 'test'),
	'node2: test equals node1\'s again after the repair');

done_testing();
