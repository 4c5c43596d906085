# Failover of the streaming topology without re-cloning anything: a
# standby is promoted with pg_promote(wait => true), the other standby is
# pointed at it and follows the new timeline from its own data directory,
# pg_opsdemo's worker idles on standbys and starts its ticks on the new
# primary without a restart, and the old primary, which wrote on after the
# divergence, comes back as a standby of the new one through a real
# pg_rewind: its diverged rows gone, the new primary's rows there, mv_sum
# exact on both.
use strict;
use warnings;

use File::Copy;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use OpsdemoTAP;

# What every node of the lab runs with; a standby gets the primary's file
# in its base backup.  pg_rewind needs two things from its target:
# wal_log_hints (allows_streaming sets it too; it is here because the
# rewind depends on it), to see every page that changed, and its own WAL
# back to the last checkpoint before the divergence.  That checkpoint
# came before the old primary's last ones (its shutdown checkpoint at the
# latest), which recycle older WAL: wal_keep_size holds it, as RewindTest
# does (the slots do not: their standbys had read further).  Ticks every
# second keep the waits for the worker short.
my $node_conf = <<'EOC';
shared_preload_libraries = 'pg_opsdemo'
opsdemo.database = 'postgres'
opsdemo.insert_interval = '1s'
opsdemo.update_interval = '1s'
wal_log_hints = on
wal_keep_size = '160MB'
max_slot_wal_keep_size = '1GB'
EOC

# A physical slot for a standby, holding WAL from now on.
sub create_slot
{
	my ($upstream, $name) = @_;
	$upstream->safe_psql('postgres',
		"SELECT pg_create_physical_replication_slot('$name', true)");
	return;
}

sub worker_state
{
	my ($node) = @_;
	return query($node,
		"SELECT state, worker_pid, runs FROM opsdemo_status() WHERE job = 'insert'");
}

sub wal_receiver_on_tli
{
	my ($node, $tli) = @_;
	return $node->poll_query_until('postgres',
		"SELECT status = 'streaming' AND received_tli = $tli FROM pg_stat_wal_receiver"
	);
}

my $t1_text =
  "SELECT count(*) || ':' || coalesce(sum(hashtext(t1::text)), 0) FROM t1";
my $mv_sum_exact = 'SELECT count(*) = 0 FROM opsdemo_mv_sum_verify()';
my $idle_on_standby =
  "state = 'idle: hot standby, waiting for promotion' AND runs = 0";

# ---- primary, two standbys -------------------------------------------------

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', $node_conf);
$primary->start;
query($primary, 'CREATE EXTENSION pg_opsdemo');
query($primary, 'SELECT opsdemo_generate(20000, seed => 11)');
query($primary, 'CREATE TABLE marker (note text PRIMARY KEY)');
query($primary, "INSERT INTO marker VALUES ('before the failover')");
my $sysid = query($primary, 'SELECT system_identifier FROM pg_control_system()');

my %standby;
for my $name ('s1', 's2')
{
	create_slot($primary, $name);
	$primary->backup("bk_$name");
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init_from_backup($primary, "bk_$name");
	stream_from($node, $primary);
	$node->set_standby_mode;
	$node->start;
	$standby{$name} = $node;
}
my ($s1, $s2) = @standby{ 's1', 's2' };

ok( $primary->poll_query_until(
		'postgres',
		"SELECT runs >= 3 FROM opsdemo_status() WHERE job = 'insert'"),
	'the worker ticks on the primary');
$primary->wait_for_catchup($_) for ($s1, $s2);
for my $node ($s1, $s2)
{
	ok( $node->poll_query_until(
			'postgres', "SELECT bool_and($idle_on_standby) FROM opsdemo_status()"),
		$node->name . ': on a standby the worker idles and runs nothing');
}
is( query(
		$primary,
		"SELECT string_agg(slot_name || ':' || active, ',' ORDER BY slot_name) "
		  . 'FROM pg_replication_slots'),
	's1:true,s2:true',
	'each standby streams through its own slot');

# ---- promotion of s1 -------------------------------------------------------

# s2 stops first and s1 then catches up past everything the primary has
# written: s2 can only be behind the switchpoint of s1's new timeline, as
# a standby must be to follow it.  The primary keeps running (and its
# worker writing), so the two timelines diverge from here on.
$s2->stop;
$primary->wait_for_catchup($s1);
my ($idle_state, $worker_pid) = split /\|/, worker_state($s1);
my $s1_started = query($s1, 'SELECT pg_postmaster_start_time()');
my $max_id = query($s1, 'SELECT max(id) FROM t1');

is(query($s1, 'SELECT pg_promote(wait => true)'), 't',
	'pg_promote(wait => true) promotes s1');
is(query($s1, 'SELECT pg_is_in_recovery()'), 'f', 's1 is a primary now');

# The end-of-recovery checkpoint is only requested at promotion: without it
# pg_control still names timeline 1, and a pg_rewind from this source (up
# to PostgreSQL 15) finds "no rewind required".  RewindTest does the same.
query($s1, 'CHECKPOINT');
is(query($s1, 'SELECT timeline_id FROM pg_control_checkpoint()'),
	'2', 's1 writes timeline 2');

# pg_opsdemo's worker: the process that idled goes on, the ticks start.
ok( $s1->poll_query_until(
		'postgres',
		"SELECT state = 'running' AND runs > 0 FROM opsdemo_status() WHERE job = 'insert'"
	),
	'after promotion the worker ticks, without a restart');
is( query(
		$s1,
		"SELECT worker_pid FROM opsdemo_status() WHERE job = 'insert'; "
		  . 'SELECT pg_postmaster_start_time()'),
	"$worker_pid\n$s1_started",
	'... in the same worker process, the server never restarted');
ok( $s1->poll_query_until(
		'postgres', "SELECT count(*) > 0 FROM t1 WHERE id > $max_id"),
	'the insert tick adds rows to t1 on the new primary');
is($idle_state, 'idle: hot standby, waiting for promotion',
	'(it had idled on s1 before)');

# Everything the new primary writes from here on is compared row for row
# below: its worker stops (after the ticks proved themselves above).
is(query($s1, 'SELECT opsdemo_worker_stop()'), 't',
	'worker stopped on the new primary for the comparisons');
ok( $s1->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pg_opsdemo scheduler'"
	),
	'... and gone');
query($s1, "INSERT INTO marker VALUES ('written on the new primary')");
query($s1, 'SELECT opsdemo_generate(300, seed => 12)');

# ---- s2 follows the new timeline, no re-clone ------------------------------

create_slot($s1, 's2');
stream_from($s2, $s1);
$s2->start;
ok(wal_receiver_on_tli($s2, 2),
	's2, repointed to s1, streams timeline 2 from its own data directory');
$s1->wait_for_catchup($s2);
query($s2, 'CHECKPOINT');
is( query(
		$s2,
		'SELECT timeline_id FROM pg_control_checkpoint(); '
		  . 'SELECT system_identifier FROM pg_control_system()'),
	"2\n$sysid",
	's2 has restarted at a checkpoint of timeline 2, same system');
is(query($s2, $t1_text), query($s1, $t1_text),
	's2: t1 equals the new primary\'s, its new rows included');
is( query($s2, "SELECT count(*) FROM marker WHERE note = 'written on the new primary'"),
	'1', 's2: the new primary\'s marker row arrived');
is(query($s2, "SELECT bool_and($idle_on_standby) FROM opsdemo_status()"),
	't', 's2: the worker still idles');

# ---- the old primary: diverged, rewound, a standby of s1 --------------------

# Still a primary on timeline 1: its worker ticks and it takes writes.
query($primary, "INSERT INTO marker VALUES ('old primary after the divergence')");
query($primary, 'SELECT opsdemo_generate(500, seed => 13)');
my $old_t1 = query($primary, $t1_text);
isnt($old_t1, query($s1, $t1_text), 'the old primary has diverged');

# pg_rewind wants a cleanly shut down target, as RewindTest's targets are.
$primary->stop;

# The lab's flags: --target-pgdata, --source-server and -R
# (--write-recovery-conf, PostgreSQL 13 and later), which writes
# standby.signal and primary_conninfo from the --source-server string, so
# the application_name goes in there.  pg_rewind copies the configuration
# files from the source: the node's own postgresql.conf is kept aside, as
# RewindTest does, and gets the slot on the new primary.
create_slot($s1, 'primary');
my $pgdata = $primary->data_dir;
my $conf_kept = PostgreSQL::Test::Utils::tempdir . '/postgresql.conf';
copy("$pgdata/postgresql.conf", $conf_kept) or die "copy: $!";
my $source = sprintf('host=%s port=%d dbname=postgres application_name=primary',
	$s1->host, $s1->port);
my ($stdout, $stderr) = run_command(
	[
		'pg_rewind', "--target-pgdata=$pgdata", "--source-server=$source",
		'--write-recovery-conf', '--progress'
	]);
note "pg_rewind:\n$stdout$stderr";
like(
	$stderr,
	qr/servers diverged at WAL location [0-9A-F]+\/[0-9A-F]+ on timeline 1/,
	'pg_rewind found where the servers diverged');
like($stderr, qr/Done!/, 'pg_rewind finished');
my ($copied, $total) =
  $stderr =~ /need to copy (\d+) MB \(total source directory size is (\d+) MB\)/;
ok(defined $copied && $copied < $total,
	"it copied what changed (${\($copied // '?')} MB), "
	  . "not the whole source (${\($total // '?')} MB)");
ok(-e "$pgdata/standby.signal", '-R wrote standby.signal');
like(slurp_file("$pgdata/postgresql.auto.conf"),
	qr/primary_conninfo = .*application_name=primary/,
	'-R wrote primary_conninfo with the application_name');

copy($conf_kept, "$pgdata/postgresql.conf") or die "copy: $!";
$primary->append_conf('postgresql.conf', "primary_slot_name = 'primary'");
$primary->start;

ok(wal_receiver_on_tli($primary, 2),
	'the old primary streams timeline 2 from s1');
is( query(
		$s1,
		"SELECT active FROM pg_replication_slots WHERE slot_name = 'primary'; "
		  . "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'primary'"
	),
	"t\nasync",
	'... through its slot, under its application_name');
$s1->wait_for_catchup($primary);
is(query($primary, 'SELECT pg_is_in_recovery()'), 't', 'it is a standby');
is(query($primary, 'SELECT system_identifier FROM pg_control_system()'),
	$sysid, 'same system identifier: rewound, not initialized anew');
is( query($primary, 'SELECT string_agg(note, \',\' ORDER BY note) FROM marker'),
	'before the failover,written on the new primary',
	'the row it wrote after the divergence is gone, the new primary\'s is there');
is(query($primary, $t1_text), query($s1, $t1_text),
	't1 equals the new primary\'s: the diverged rows gone, the new ones there');
is(query($_, $mv_sum_exact), 't', $_->name . ': mv_sum exact')
  for ($s1, $primary, $s2);
ok( $primary->poll_query_until(
		'postgres', "SELECT bool_and($idle_on_standby) FROM opsdemo_status()"),
	'the rewound node\'s worker idles as a standby');

done_testing();
