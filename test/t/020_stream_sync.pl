# Synchronous replication as the streaming lab sets it up: an asynchronous
# standby s1 and two synchronous candidates s2 and s3.  Each setting of
# synchronous_standby_names gives the sync_state / sync_priority table that
# PostgreSQL's own 007_sync_rep.pl asserts for it; the potential standby
# takes over when the sync one stops; with both candidates gone a commit
# waits, and cancelling it leaves a locally committed row and a WARNING.
# Then the guarantee: the primary is killed with SIGKILL under a writer,
# the sync standby is promoted, and no commit the writer saw return is
# missing there.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

# The lab's node settings (pg_opsdemo with its worker, whose ticks commit
# under synchronous replication like any other session), plus the ones a
# standby set needs: a slot per standby with a cap on the WAL it holds.
my $node_conf = <<'EOC';
shared_preload_libraries = 'pg_opsdemo'
opsdemo.database = 'postgres'
wal_log_hints = on
max_slot_wal_keep_size = '1GB'
EOC

sub query { my ($node, $sql) = @_; return $node->safe_psql('postgres', $sql); }

# A standby of $primary with its own slot and its name as application_name
# in primary_conninfo: what FIRST and ANY match on.
sub new_standby
{
	my ($primary, $name) = @_;
	query($primary, "SELECT pg_create_physical_replication_slot('$name', true)");
	$primary->backup("bk_$name");
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init_from_backup($primary, "bk_$name");
	$node->append_conf(
		'postgresql.conf', sprintf(
			"primary_conninfo = 'host=%s port=%d application_name=%s'\n"
			  . "primary_slot_name = '%s'",
			$primary->host, $primary->port, $name, $name));
	$node->set_standby_mode;
	$node->start;
	return $node;
}

my $sync_table =
  "SELECT application_name, sync_priority, sync_state FROM pg_stat_replication "
  . "ORDER BY application_name";

# Sets synchronous_standby_names (undef: leaves it) and waits until
# pg_stat_replication shows the expected table: walsenders pick up a
# reload on their own time.
sub sync_table_is
{
	my ($primary, $setting, $expected, $what) = @_;
	query($primary,
		"ALTER SYSTEM SET synchronous_standby_names = '$setting'; SELECT pg_reload_conf()"
	) if defined $setting;
	$primary->poll_query_until('postgres', $sync_table, $expected);
	is(query($primary, $sync_table), $expected, $what);
	return;
}

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', $node_conf);
$primary->start;
query($primary, 'CREATE EXTENSION pg_opsdemo');
query($primary, 'SELECT opsdemo_generate(10000, seed => 21)');
query($primary, 'CREATE TABLE sync_block (n int PRIMARY KEY)');
query($primary, 'CREATE TABLE acked (n int PRIMARY KEY)');
my %node = map { $_ => new_standby($primary, $_) } qw(s1 s2 s3);
my ($s1, $s2, $s3) = @node{qw(s1 s2 s3)};
$primary->wait_for_catchup($_) for ($s1, $s2, $s3);

# ---- the sync_state table of 007_sync_rep.pl --------------------------------

# Listed standbys get their list position as priority; the first connected
# one is sync, the others potential; s1, not listed, stays async.
sync_table_is($primary, 'FIRST 1 (s2, s3)',
	"s1|0|async\ns2|1|sync\ns3|2|potential",
	'FIRST 1 (s2, s3): s2 sync, s3 potential, s1 async');

# Quorum: every listed standby is a candidate with priority 1.
sync_table_is($primary, 'ANY 1 (s2, s3)',
	"s1|0|async\ns2|1|quorum\ns3|1|quorum",
	'ANY 1 (s2, s3): s2 and s3 quorum with priority 1, s1 async');

sync_table_is($primary, '',
	"s1|0|async\ns2|0|async\ns3|0|async",
	'empty synchronous_standby_names: all async, priority 0');

sync_table_is($primary, 'FIRST 1 (s2, s3)',
	"s1|0|async\ns2|1|sync\ns3|2|potential",
	'FIRST 1 (s2, s3) again');

# The sync standby stops: the potential one becomes sync, keeping its
# priority, and commits go on.
$s2->stop;
sync_table_is($primary, undef, "s1|0|async\ns3|2|sync",
	's2 stopped: s3 is sync (priority 2)');
query($primary, 'INSERT INTO sync_block VALUES (1)');
$primary->wait_for_catchup($s3);
is(query($s3, 'SELECT count(*) FROM sync_block'),
	'1', 'a commit with s3 as the sync standby returns and is on s3');

# ---- both candidates down: a commit waits, a cancel leaves it local -----------

$s3->stop;
sync_table_is($primary, undef, 's1|0|async',
	's3 stopped too: only the async standby is left');

my ($out, $err) = ('', '');
my $blocked = IPC::Run::start(
	[
		'psql', '-X', '-v', 'ON_ERROR_STOP=1', '-d',
		$primary->connstr('postgres') . ' application_name=blocked',
		'-c', 'INSERT INTO sync_block VALUES (2)'
	],
	'>', \$out, '2>', \$err);
ok( $primary->poll_query_until(
		'postgres',
		"SELECT wait_event FROM pg_stat_activity WHERE application_name = 'blocked'",
		'SyncRep'),
	'with no sync standby connected the commit waits (wait_event SyncRep)');
is( query(
		$primary,
		"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'blocked'"
	),
	't',
	'the waiting backend is cancelled');
ok($blocked->finish, 'the INSERT returns');
like(
	$err,
	qr/WARNING:  canceling wait for synchronous replication due to user request\n.*DETAIL:  The transaction has already committed locally, but might not have been replicated to the standby\./s,
	'with the WARNING that it committed locally but might not be replicated');
is(query($primary, 'SELECT count(*) FROM sync_block WHERE n = 2'),
	'1', 'the row is visible on the primary');

# s2 is back: sync again, and the row committed only locally reaches it.
$s2->start;
sync_table_is($primary, undef, "s1|0|async\ns2|1|sync",
	's2 back: sync again');
$primary->wait_for_catchup($s2);
is(query($s2, 'SELECT count(*) FROM sync_block'),
	'2', 'the locally committed row reaches s2 once it is back');
$s3->start;
sync_table_is($primary, undef, "s1|0|async\ns2|1|sync\ns3|2|potential",
	's3 back: potential again');

# ---- no acknowledged commit lost -------------------------------------------

# A writer commits numbered rows one INSERT at a time (autocommit: the
# INSERT returns after its COMMIT, which under synchronous_commit = on
# waits for s2 to flush it) and echoes each number only once its INSERT
# has returned; ON_ERROR_STOP ends it at the first failure.  So the
# numbers it printed are exactly the acknowledged commits.
my $script = PostgreSQL::Test::Utils::tempdir . '/writer.sql';
append_to_file($script,
	join('', map { "INSERT INTO acked VALUES ($_);\n\\echo ack $_\n" } 1 .. 100000));
is(query($primary, 'SHOW synchronous_commit'), 'on', 'synchronous_commit is on');
($out, $err) = ('', '');
my $writer = IPC::Run::start(
	[
		'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d',
		$primary->connstr('postgres') . ' application_name=writer',
		'-f', $script
	],
	'>', \$out, '2>', \$err);
ok($primary->poll_query_until('postgres', 'SELECT count(*) >= 100 FROM acked'),
	'the writer commits');
usleep(2_000_000);

# SIGKILL of the postmaster (kill9): no shutdown, no last WAL sent.  A
# backend waiting for s2 sees the postmaster die and exits without telling
# its client that the commit happened.
$primary->kill9;
ok(!$writer->finish, 'the writer lost its connection mid-stream');
note "writer: $err";
my @acked = $out =~ /^ack (\d+)$/mg;
my $last = $acked[-1] // 0;
is_deeply(\@acked, [ 1 .. $last ],
	"the writer saw $last commits return, in order, none twice");
cmp_ok($last, '>=', 100, 'and at least the ones seen before the kill');

is(query($s2, 'SELECT pg_promote(wait => true)'), 't', 's2 promoted');
my ($rows, $distinct, $max) =
  split /\|/, query($s2, 'SELECT count(*), count(DISTINCT n), max(n) FROM acked');
is($distinct, $rows, 'no row twice on the new primary');
is( query(
		$s2,
		"SELECT count(*) FROM generate_series(1, $last) g(n) "
		  . 'WHERE NOT EXISTS (SELECT FROM acked a WHERE a.n = g.n)'),
	'0',
	"every acknowledged commit (1..$last) is on the new primary");

# The writer has one INSERT in flight at a time: its commit may have reached
# s2 and the primary died before the acknowledgement came back.
ok($max == $last || $max == $last + 1 && $rows == $max,
	"beyond them at most the one in flight ($rows rows, max $max)");
is(query($s2, 'SELECT count(*) FROM opsdemo_mv_sum_verify()'),
	'0', 'mv_sum exact on the new primary');

# s1 is asynchronous: commits never waited for it, so what it lacks after a
# failover is exactly the loss the synchronous setup prevents.  It is a
# figure for the report, not something to assert.
my $s1_lacks = query($s1,
	"SELECT $last - count(*) FROM acked WHERE n <= $last");
note "async s1 lacks $s1_lacks of the $last acknowledged rows "
  . '(what a failover to it would have lost)';

done_testing();
