# node4 of seed 003: a physical hot standby of node3, the node that
# subscribes to node1's `test` and node2's `test2`.  The problems the seed
# author met and did not write down, each shown and, where PostgreSQL
# allows, solved:
#  1. subscriptions do not run on a standby: node4 has node3's data only
#     through node3's WAL, its replay lag adds to the logical lag;
#  2. promoting node4 while node3 is alive: both want the same slots on
#     the publishers ("replication slot ... is active for PID ...");
#     the safe path disables node3's subscriptions first;
#  3. node3 dies: node4 is promoted and takes over the subscriptions; rows
#     node3 had confirmed to a publisher but node4 had not received are
#     lost (the publisher does not send them again), even with node4 a
#     synchronous standby, because apply workers commit with the
#     subscription's synchronous_commit, off by default; with it on, none;
#  4. on 17+, failover slots protect a standby of the publisher, not of
#     the subscriber.
# Each scenario gets its own node3/node4 pair (subscriptions with their
# own slots on node1 and node2): a promoted node4 cannot go back.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use OpsdemoTAP;

my $node_conf = <<'EOC';
max_logical_replication_workers = 8
max_worker_processes = 16
wal_retrieve_retry_interval = '500ms'
EOC

# The writers: node1 writes test, node2 writes test2.
my $node1 = PostgreSQL::Test::Cluster->new('node1');
my $node2 = PostgreSQL::Test::Cluster->new('node2');
for my $node ($node1, $node2)
{
	$node->init(allows_streaming => 'logical');
	$node->append_conf('postgresql.conf', $node_conf);
	$node->start;
}
query($node1, 'CREATE TABLE test (id int PRIMARY KEY, note text NOT NULL)');
query($node1, 'CREATE PUBLICATION test_pub FOR TABLE test');
query($node2, 'CREATE TABLE test2 (id int PRIMARY KEY, note text NOT NULL)');
query($node2, 'CREATE PUBLICATION test2_pub FOR TABLE test2');
my %writer = (test => $node1, test2 => $node2);

# Rows $from..$to into both writers' tables, one transaction each.
sub write_rows
{
	my ($from, $to, $note) = @_;
	for my $table (sort keys %writer)
	{
		query($writer{$table},
			"INSERT INTO $table SELECT g, '$note' FROM generate_series($from, $to) g");
	}
	return;
}
write_rows(1, 10, 'before node3');

my $pg17 = $node1->pg_version >= 17;

# node3$tag subscribes to both writers (subscriptions ${tag}_test_sub and
# ${tag}_test2_sub, so slots of that name on node1 and node2) with
# %$sub_options, and node4$tag is its hot standby: a base backup, a
# physical slot, application_name node4 (what synchronous_standby_names
# names).  On 17+ node4 is set up for slot synchronization too
# (sync_replication_slots needs the slot, hot_standby_feedback and a
# dbname in primary_conninfo), to show below what it finds to sync.
sub subscriber_pair
{
	my ($tag, $sync_names, $sub_options) = @_;
	my $node3 = PostgreSQL::Test::Cluster->new("node3$tag");
	# wal_level = logical only for node4's slot synchronization on 17+.
	$node3->init(allows_streaming => 'logical');
	$node3->append_conf('postgresql.conf', $node_conf);
	$node3->start;
	query($node3,
		'CREATE TABLE test (id int PRIMARY KEY, note text NOT NULL); '
		  . 'CREATE TABLE test2 (id int PRIMARY KEY, note text NOT NULL)');
	for my $table (sort keys %writer)
	{
		my $conn = $writer{$table}->connstr . ' dbname=postgres';
		query($node3,
			"CREATE SUBSCRIPTION ${tag}_${table}_sub CONNECTION '$conn' "
			  . "PUBLICATION ${table}_pub WITH ($sub_options)");
	}
	$node3->wait_for_subscription_sync($writer{$_}, "${tag}_${_}_sub")
	  for sort keys %writer;

	query($node3, "SELECT pg_create_physical_replication_slot('node4')");
	$node3->backup("bk_$tag");
	my $node4 = PostgreSQL::Test::Cluster->new("node4$tag");
	$node4->init_from_backup($node3, "bk_$tag");
	stream_from($node4, $node3, 'node4',
		conninfo => 'dbname=postgres',
		conf => "hot_standby_feedback = on\n"
		  . ($pg17 ? "sync_replication_slots = on\n" : ''));
	$node4->set_standby_mode;
	$node4->start;
	standby_caught_up($node3, 'node4');
	# Only now: with a synchronous standby named that is not there, every
	# commit on node3 (CREATE SUBSCRIPTION's too) would wait for it.  Set
	# after the base backup, the setting is not in node4's copy of the
	# configuration (one made before would be, and would make the promoted
	# node4 wait for itself: the lab resets it at failover).
	if ($sync_names)
	{
		query($node3,
			"ALTER SYSTEM SET synchronous_standby_names = '$sync_names'; SELECT pg_reload_conf()");
		$node3->poll_query_until('postgres',
			"SELECT sync_state = 'sync' FROM pg_stat_replication WHERE application_name = 'node4'")
		  or die 'node4 did not become synchronous';
	}
	return ($node3, $node4);
}

# Every writer's rows are on $node, each once: same count and checksum.
sub equals_writers
{
	my ($node, $what) = @_;
	for my $table (sort keys %writer)
	{
		is(fingerprint($node, $table), fingerprint($writer{$table}, $table),
			"$what: $table on " . $node->name . ' equals the writer\'s');
	}
	return;
}

# The subscriptions of a node have applied everything their writers have
# committed so far.
# node3's standby $standby has all of node3's WAL up to now ($mode as in
# wait_for_catchup, default replay).  The write position (wait_for_catchup's
# default) would not do: an apply worker's commit under synchronous_commit =
# off may not be written out yet.  Nor would the insert position: right
# after a WAL switch (every base backup ends with one) it lies past the next
# page header, where no record ends, and the standby reaches it only once
# other WAL follows (the bgwriter's next running-xacts record, up to 15 s
# later).  So the target is the end of a record written now, after all the
# others: a logical message (no effect on a node without logical slots) in
# a transaction whose commit flushes it.
sub standby_caught_up
{
	my ($node3, $standby, $mode) = @_;
	my $target =
	  query($node3, "SELECT pg_logical_emit_message(true, 'opsdemo', 'caught up?')");
	$node3->wait_for_catchup($standby, $mode // 'replay', $target);
	return;
}

sub subscriptions_caught_up
{
	my ($tag) = @_;
	$writer{$_}->wait_for_catchup("${tag}_${_}_sub") for sort keys %writer;
	return;
}

# The whole node dies at once, as when its machine or container does:
# SIGKILL to every process of the server, not only to the postmaster
# (kill9).  After a postmaster-only SIGKILL the apply workers live on for
# a moment: a worker waiting for its synchronous standby gives up the wait
# when it sees the postmaster gone, and its commit can still be confirmed
# to the publisher; nothing can make that case safe.
sub kill_whole_node
{
	my ($node) = @_;
	my @pids = split /\n/,
	  query($node, 'SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()');
	kill 'KILL', @pids, $node->{_pid};
	$node->kill9;
	return;
}

my $workers = 'SELECT count(pid) FROM pg_stat_subscription WHERE relid IS NULL';

# ---- 1. node4 gets the subscribed data only through node3's WAL --------------

my ($node3a, $node4a) = subscriber_pair('a', undef, 'enabled = true');
equals_writers($node3a, 'node3 subscribed');
equals_writers($node4a, 'node4 replayed node3\'s WAL');

is(query($node4a, 'SELECT pg_is_in_recovery()'), 't', 'node4 is a hot standby');
is(query($node4a, 'SELECT count(*) FROM pg_subscription WHERE subenabled'),
	'2', 'node4 has node3\'s subscriptions in its catalog, enabled (a physical copy)');
is(query($node4a, $workers), '0',
	'node4: pg_stat_subscription shows no worker: subscriptions do not run on a standby');
is(query($node3a, $workers), '2', 'node3: its two apply workers run');
is( query(
		$node1,
		"SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'a_test_sub' AND active"),
	'1', 'node1: node3\'s slot is active (node3\'s walsender), node4 has none');

# The lag adds up: with node4's replay paused, a row node3 has applied is
# not on node4; it appears once node4 replays node3's WAL.
query($node4a, 'SELECT pg_wal_replay_pause()');
write_rows(11, 11, 'replay paused');
subscriptions_caught_up('a');
is(query($node3a, 'SELECT count(*) FROM test WHERE id = 11'),
	'1', 'a row written on node1 is applied on node3');
is(query($node4a, 'SELECT count(*) FROM test WHERE id = 11'),
	'0', '... and is not on node4 while its replay lags');
query($node4a, 'SELECT pg_wal_replay_resume()');
standby_caught_up($node3a, 'node4');
is(query($node4a, 'SELECT count(*) FROM test WHERE id = 11'),
	'1', '... it is once node4 has replayed node3\'s WAL');

# ---- 4 (17+). failover slots: for a standby of the publisher ------------------

SKIP:
{
	skip 'failover slots and sync_replication_slots are PostgreSQL 17+', 5
	  unless $pg17;

	# A standby of node1 that synchronizes node1's failover slots.  A
	# slot is a publisher's object: it records how far a subscriber has
	# confirmed.  With failover = true on the subscription its slot is
	# copied to node1's standby, so that the subscriber can go on against
	# that standby if node1 fails.
	query($node1, "SELECT pg_create_physical_replication_slot('node1s')");
	$node1->backup('bk_node1');
	my $node1s = PostgreSQL::Test::Cluster->new('node1s');
	$node1s->init_from_backup($node1, 'bk_node1');
	stream_from($node1s, $node1, 'node1s',
		conninfo => 'dbname=postgres',
		conf => "hot_standby_feedback = on\nsync_replication_slots = on\n");
	$node1s->set_standby_mode;
	$node1s->start;

	query($node3a, 'ALTER SUBSCRIPTION a_test_sub DISABLE');
	$node1->poll_query_until('postgres',
		"SELECT NOT active FROM pg_replication_slots WHERE slot_name = 'a_test_sub'")
	  or die 'slot a_test_sub still active';
	query($node3a, 'ALTER SUBSCRIPTION a_test_sub SET (failover = true)');
	query($node3a, 'ALTER SUBSCRIPTION a_test_sub ENABLE');
	is( query(
			$node1,
			"SELECT failover FROM pg_replication_slots WHERE slot_name = 'a_test_sub'"),
		't', 'node1: the subscription\'s slot is a failover slot now');
	ok( $node1s->poll_query_until(
			'postgres',
			"SELECT synced AND failover FROM pg_replication_slots WHERE slot_name = 'a_test_sub'"
		),
		'node1\'s standby has a synchronized copy of it');

	# node4 runs the same slot synchronization against node3, and finds
	# nothing: a subscriber keeps its progress in replication origins
	# (pg_replication_origin_status), which node4 has through node3's WAL
	# anyway; node3 has no logical slot for anyone.  Failover slots do
	# nothing for the problems of this file.
	standby_caught_up($node3a, 'node4');
	is(query($node3a, "SELECT count(*) FROM pg_replication_slots WHERE slot_type = 'logical'"),
		'0', 'node3 (the subscriber) has no logical slot');
	ok( $node4a->poll_query_until(
			'postgres',
			"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'slotsync worker'"),
		'node4 runs the slot synchronization worker');
	is(query($node4a, 'SELECT count(*) FROM pg_replication_slots'),
		'0', 'node4 with sync_replication_slots = on has no slot to synchronize');
	$node1s->teardown_node;
	query($node1, "SELECT pg_drop_replication_slot('node1s')");
}

# ---- 2. promoting node4 while node3 is alive -----------------------------------

# The subscriptions node4 has from node3's catalog are enabled: the moment
# node4 is a primary its launcher starts them, and they ask node1 and
# node2 for node3's slots, which node3's walsenders hold.
my $offset = -s $node4a->logfile;
$node4a->promote;
my $active = qr/replication slot "a_test2?_sub" is active for PID (\d+)/;
log_appears($node4a, $active, $offset,
	'promoted node4 while node3 runs: its apply worker fails: replication slot ... is active for PID');
my ($pid) = slurp_file($node4a->logfile, $offset) =~ $active;
$pid //= 'none';
like( query(
		$node1,
		"SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'a_test_sub'")
	  . '|'
	  . query($node2,
		"SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'a_test2_sub'"),
	qr/(^|\|)$pid(\||$)/,
	'... the PID is the walsender that serves node3 on the publisher');
is(query($node3a, $workers), '2', 'node3\'s apply workers still run');
# node4 retries every wal_retrieve_retry_interval: the moment node3's
# connection drops it gets the slot, and from then on the two nodes take
# turns with the same slot, each applying some of the writers' changes.
$node4a->teardown_node;

# The safe path: disable node3's subscriptions first.  The disabled state
# is in node3's catalog, so it reaches a standby through the WAL: once the
# standby has replayed it, it is promoted with its subscriptions disabled,
# and enabled there, on the slots node3 released.
query($node3a, "SELECT pg_create_physical_replication_slot('node4b')");
$node3a->backup('bk_a2');
my $node4a2 = PostgreSQL::Test::Cluster->new('node4a2');
$node4a2->init_from_backup($node3a, 'bk_a2', has_streaming => 1);
$node4a2->append_conf('postgresql.conf', "primary_slot_name = 'node4b'");
$node4a2->start;
query($node3a, 'ALTER SUBSCRIPTION a_test_sub DISABLE; ALTER SUBSCRIPTION a_test2_sub DISABLE');
for my $table (sort keys %writer)
{
	ok( $writer{$table}->poll_query_until(
			'postgres',
			"SELECT NOT active FROM pg_replication_slots WHERE slot_name = 'a_${table}_sub'"),
		"switchover: node3's subscription to $table disabled, its slot released");
}
write_rows(12, 20, 'during the switchover');
standby_caught_up($node3a, $node4a2);
$node4a2->promote;
is(query($node4a2, 'SELECT count(*) FROM pg_subscription WHERE subenabled'),
	'0', 'switchover: the new node4 comes up with the subscriptions disabled');
query($node4a2, 'ALTER SUBSCRIPTION a_test_sub ENABLE; ALTER SUBSCRIPTION a_test2_sub ENABLE');
write_rows(21, 25, 'after the switchover');
subscriptions_caught_up('a');
equals_writers($node4a2, 'switchover: every row, each once');
is(query($node4a2, $workers), '2', 'switchover: node4 runs the apply workers now');
$node3a->teardown_node;
$node4a2->teardown_node;
$node1->safe_psql('postgres', "SELECT pg_drop_replication_slot('a_test_sub')");
$node2->safe_psql('postgres', "SELECT pg_drop_replication_slot('a_test2_sub')");

# ---- 3. node3 dies: the window node3 confirmed and node4 never received -------

# node3 dies, node4 is promoted and its subscriptions (enabled in node3's
# catalog) start on their own.  Each asks the publisher to start where
# node4's replication origin stands; the publisher starts at the slot's
# confirmed_flush_lsn when that is further: what node3 had confirmed.
# Whatever node3 applied and confirmed and node4 never received is gone
# for node4.  $sub_sync is the subscriptions' synchronous_commit.
sub failover_window
{
	my ($tag, $sub_sync) = @_;
	my ($node3, $node4) = subscriber_pair(
		$tag,
		'node4',
		"synchronous_commit = '$sub_sync'");
	is(query($node3, "SELECT string_agg(DISTINCT subsynccommit, ',') FROM pg_subscription"),
		$sub_sync, "$sub_sync: the subscriptions' synchronous_commit is $sub_sync");
	is(query($node3, 'SELECT application_name, sync_state FROM pg_stat_replication'),
		'node4|sync', "$sub_sync: node4 is node3's synchronous standby");
	my $base = query($node1, 'SELECT max(id) FROM test');

	# Paused replay is no window: node4 still receives and flushes the WAL
	# and replays all of it when promoted.
	query($node4, 'SELECT pg_wal_replay_pause()');
	write_rows($base + 1, $base + 5, 'received, replay paused');
	subscriptions_caught_up($tag);
	standby_caught_up($node3, 'node4', 'flush');

	# node4 loses its connection to node3, as in a network partition:
	# node3 refuses its replication connections and ends the current one
	# (until it stays gone: the walreceiver may have retried before the
	# reload).  Changing node4's primary_conninfo would not do: a standby
	# whose replay is paused does not act on it.
	my $hba = $node3->data_dir . '/pg_hba.conf';
	my $hba_lines = slurp_file($hba);
	open my $fh, '>', $hba or die "$hba: $!";
	print $fh "local replication all reject\nhost replication all all reject\n$hba_lines";
	close $fh;
	query($node3, 'SELECT pg_reload_conf()');
	ok( $node3->poll_query_until(
			'postgres',
			'SELECT count(*) = 0 FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_replication) t'
		),
		"$sub_sync: node4 disconnected from node3");
	write_rows($base + 6, $base + 10, 'never received by node4');
	my %target = map { $_ => $writer{$_}->lsn('insert') } sort keys %writer;

	my %confirmed;
	if ($sub_sync eq 'off')
	{
		# The apply worker commits without waiting for node4 and tells the
		# publishers the rows are flushed (on node3's disk only).
		subscriptions_caught_up($tag);
		is(query($node3, 'SELECT count(*) FROM test WHERE id > ' . ($base + 5)),
			'5', 'off: node3 applied the rows node4 never received');
		for my $table (sort keys %writer)
		{
			ok( eval {
					$writer{$table}->wait_for_slot_catchup("${tag}_${table}_sub",
						'confirmed_flush', $target{$table});
					1;
				},
				"off: node3 confirmed them to " . $writer{$table}->name);
		}
	}
	else
	{
		# The apply worker's commit waits for node4, like any synchronous
		# commit: nothing is confirmed to the publishers meanwhile.
		ok( $node3->poll_query_until(
				'postgres',
				"SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type LIKE 'logical replication%' "
				  . "AND wait_event = 'SyncRep'"),
			"$sub_sync: both apply workers wait for node4 (wait_event SyncRep)");
		for my $table (sort keys %writer)
		{
			is( query(
					$writer{$table},
					'SELECT confirmed_flush_lsn < ' . "'$target{$table}' FROM pg_replication_slots "
					  . "WHERE slot_name = '${tag}_${table}_sub'"),
				't',
				"$sub_sync: " . $writer{$table}->name . ' has no confirmation for them');
		}
	}
	$confirmed{$_} = query($writer{$_},
		"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '${tag}_${_}_sub'")
	  for sort keys %writer;

	# node3 dies; node4 is promoted and starts the subscriptions itself.
	kill_whole_node($node3);
	for my $table (sort keys %writer)
	{
		$writer{$table}->poll_query_until('postgres',
			"SELECT NOT active FROM pg_replication_slots WHERE slot_name = '${tag}_${table}_sub'")
		  or die "slot ${tag}_${table}_sub still active";
	}
	my $offset1 = -s $node1->logfile;
	$node4->promote;
	my %origin = map {
		my $sub = "${tag}_${_}_sub";
		$_ => query($node4,
			'SELECT remote_lsn FROM pg_replication_origin_status o '
			  . 'JOIN pg_subscription s ON o.external_id = \'pg_\' || s.oid '
			  . "WHERE s.subname = '$sub'")
	} sort keys %writer;
	note "$sub_sync: node4's origins at promotion: "
	  . join(', ', map { "$_ $origin{$_}" } sort keys %origin)
	  . '; confirmed by node3: '
	  . join(', ', map { "$_ $confirmed{$_}" } sort keys %confirmed);
	write_rows($base + 11, $base + 12, 'after the failover');
	subscriptions_caught_up($tag);

	# Which of the writers' rows node4 lacks, as "count:first-last".
	my %missing;
	for my $table (sort keys %writer)
	{
		$missing{$table} = query($node4,
			"SELECT count(*) || ':' || coalesce(min(id) - $base || '-' || max(id) - $base, '') "
			  . "FROM generate_series(1, $base + 12) g(id) "
			  . "WHERE NOT EXISTS (SELECT FROM $table t WHERE t.id = g.id)");
	}
	is(query($node4, 'SELECT count(*) FROM test WHERE id > ' . ($base + 10)),
		'2', "$sub_sync: node4 applies what node1 writes after the failover");
	is( query(
			$node4,
			'SELECT sum(apply_error_count) FROM pg_stat_subscription_stats'),
		'0',
		"$sub_sync: no apply error on node4: nothing applied twice");
	return ($node4, \%missing, slurp_file($node1->logfile, $offset1));
}

my ($node4b, $missing, $node1_log) = failover_window('b', 'off');
# The 5 rows per table written while node4 was cut off (6..10 after the
# base), not the 5 written while its replay was paused (1..5).
is_deeply(
	$missing,
	{ test => '5:6-10', test2 => '5:6-10' },
	'off: node4 lacks exactly the rows node3 confirmed and node4 never received');
like(
	$node1_log,
	qr/[0-9A-F]+\/[0-9A-F]+ has been already streamed, forwarding to [0-9A-F]+\/[0-9A-F]+/,
	'off: node1 says why: the slot forwards node4\'s request to node3\'s confirmed position');
isnt(fingerprint($node4b, 'test'), fingerprint($node1, 'test'),
	'off: node4\'s test differs from node1\'s for good');

my ($node4c, $missing_c) = failover_window('c', 'on');
is_deeply($missing_c, { test => '0:', test2 => '0:' },
	'on: node4 lacks no row: the publishers send again what node3 had not confirmed');
equals_writers($node4c, 'on: after the failover');

done_testing();
