# The pitfalls a user of the streaming lab meets, each shown as it
# happens to them:
#   a. the old primary, started as a standby of the new one without
#      pg_rewind, does not stream: its history has left the new primary's;
#      pg_rewind of exactly that node fixes it;
#   b. pg_rewind refuses a target that ran without wal_log_hints and without
#      data checksums, and leaves it as it was;
#   c. synchronous_standby_names naming an application_name no standby uses:
#      every standby is async and every commit waits, until the setting is
#      fixed, which releases the waiting commits without a cancel.
use strict;
use warnings;

use Digest::MD5;
use File::Copy;
use File::Find;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use OpsdemoTAP;
use Time::HiRes qw(usleep);

sub create_slot
{
	my ($upstream, $name) = @_;
	query($upstream, "SELECT pg_create_physical_replication_slot('$name', true)");
	return;
}

sub new_standby
{
	my ($upstream, $name) = @_;
	create_slot($upstream, $name);
	$upstream->backup("bk_$name");
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init_from_backup($upstream, "bk_$name");
	stream_from($node, $upstream);
	$node->set_standby_mode;
	$node->start;
	return $node;
}

# A primary and a standby that is then promoted while the primary goes on
# writing: two timelines that diverge, the situation after a failover in
# which the old primary was not (or not yet) dead.  The old primary is
# left stopped cleanly, with the row it wrote after the divergence.
sub diverged_pair
{
	my ($prefix, $conf, %init) = @_;
	my $old = PostgreSQL::Test::Cluster->new("${prefix}_old");
	$old->init(allows_streaming => 1, %init);
	# wal_keep_size: pg_rewind reads the target's WAL back to the last
	# checkpoint before the divergence (RewindTest does the same).
	$old->append_conf('postgresql.conf', "wal_keep_size = '160MB'\n$conf");
	$old->start;
	query($old, 'CREATE TABLE marker (note text PRIMARY KEY)');
	query($old, "INSERT INTO marker VALUES ('before the failover')");
	my $new = new_standby($old, "${prefix}_new");
	$old->wait_for_catchup($new);
	is(query($new, 'SELECT pg_promote(wait => true)'),
		't', "$prefix: the standby is promoted");
	# The end-of-recovery checkpoint is only requested at promotion:
	# without it pg_control still names timeline 1 and pg_rewind (up to
	# PostgreSQL 15) sees "no rewind required".
	query($new, 'CHECKPOINT');
	query($new, "INSERT INTO marker VALUES ('written on the new primary')");
	query($old, "INSERT INTO marker VALUES ('old primary after the divergence')");
	# An old primary that ran on for a while has written WAL segments
	# (16 MB each) past the fork; so does this one: its shutdown checkpoint
	# goes into the next segment.  Had it stayed inside the fork's segment,
	# the new primary would accept its request (a walreceiver asks from the
	# start of a segment) and send the old timeline up to the fork, and
	# the standby would reconnect again and again without the ERROR below.
	query($old, 'SELECT pg_switch_wal()');
	$old->stop;
	return ($old, $new);
}

my $markers = "SELECT string_agg(note, ',' ORDER BY note) FROM marker";

# ---- a. the old primary started as a standby without pg_rewind --------------

# After a failover the old primary has usually written past the point
# where the new primary's timeline forked off: commits that never reached
# the promoted standby, at the very least its own shutdown checkpoint.
# Started as a standby of the new primary as it is, it asks the new
# primary for WAL from its own position on the old timeline, and the new
# primary cannot send it: that position is not in its history.  The node
# comes up as a hot standby and answers queries, so it looks fine, but it
# streams nothing and never will: it still holds the rows only it wrote.
# The new primary's walsender logs, and the standby's walreceiver repeats
# in a FATAL "could not start WAL streaming" at every retry:
#   ERROR:  requested starting point X/Y on timeline 1 is not in this server's history
#   DETAIL:  This server's history forked from timeline 1 at X/Z.
# and the standby's startup process adds
#   new timeline 2 forked off current database system timeline 1 before
#   current recovery point X/Y
# The cure is pg_rewind of that node from the new primary before it
# starts; the alternative, a fresh base backup, copies everything.
my ($a_old, $a_new) = diverged_pair('a', '');
my $new_log_offset = -s $a_new->logfile;
my $old_log_offset = -s $a_old->logfile;
create_slot($a_new, 'a_old');
stream_from($a_old, $a_new);
$a_old->set_standby_mode;
$a_old->start;

my $not_in_history =
  qr/requested starting point [0-9A-F]+\/[0-9A-F]+ on timeline 1 is not in this server's history\n(?:.*\n)*?.*DETAIL:  This server's history forked from timeline 1 at [0-9A-F]+\/[0-9A-F]+\./;
ok(eval { $a_new->wait_for_log($not_in_history, $new_log_offset); 1 },
	'a: the new primary refuses the old one\'s starting point');
my $new_log = slurp_file($a_new->logfile, $new_log_offset);
my ($new_said) = $new_log =~ /^(.*requested starting point.*\n(?:.*\n)*?.*DETAIL:.*)$/m;
note "a: new primary's log:\n", $new_said // '(not found)';
like($new_log, $not_in_history,
	'a: its log says the starting point is not in its history, and where it forked');
ok( eval {
		$a_old->wait_for_log(
			qr/requested starting point [0-9A-F]+\/[0-9A-F]+ on timeline 1 is not in this server's history/,
			$old_log_offset);
		1;
	},
	'a: the old primary\'s log says the same (its walreceiver got the error)');
my $old_log = slurp_file($a_old->logfile, $old_log_offset);
note "a: old primary's log:\n$old_log";
like(
	$old_log,
	qr/new timeline 2 forked off current database system timeline 1 before current recovery point [0-9A-F]+\/[0-9A-F]+/,
	'a: and that the new timeline forked off before where it is');

is(query($a_old, 'SELECT pg_is_in_recovery()'), 't',
	'a: the old primary runs as a hot standby and answers queries');
is( query(
		$a_new,
		"SELECT count(*) FROM pg_stat_replication WHERE application_name = 'a_old' AND state = 'streaming'; "
		  . "SELECT active FROM pg_replication_slots WHERE slot_name = 'a_old'"),
	"0\nf",
	'a: but the new primary streams nothing to it, its slot unused');
is( query(
		$a_old,
		"SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'"),
	'0', 'a: its walreceiver is not streaming');
is( query($a_old, $markers),
	'before the failover,old primary after the divergence',
	'a: it still has its diverged row and not the new primary\'s');

# The fix, for exactly that node (021 shows pg_rewind in full).  pg_rewind
# copies the source's configuration files: the node's own is kept aside,
# as RewindTest does.
$a_old->stop;
my $conf_kept = PostgreSQL::Test::Utils::tempdir . '/postgresql.conf';
copy($a_old->data_dir . '/postgresql.conf', $conf_kept) or die "copy: $!";
my ($stdout, $stderr) = run_command(
	[
		'pg_rewind', '--target-pgdata=' . $a_old->data_dir,
		'--source-server=' . $a_new->connstr('postgres')
	]);
like($stderr, qr/servers diverged at WAL location .* on timeline 1/,
	'a: pg_rewind of the old primary finds the divergence');
like($stderr, qr/Done!/, 'a: and rewinds it');
copy($conf_kept, $a_old->data_dir . '/postgresql.conf') or die "copy: $!";
$a_old->set_standby_mode;
$a_old->start;
ok( $a_old->poll_query_until(
		'postgres',
		"SELECT status = 'streaming' AND received_tli = 2 FROM pg_stat_wal_receiver"),
	'a: rewound, it streams timeline 2 from the new primary');
$a_new->wait_for_catchup($a_old);
is( query($a_old, $markers),
	'before the failover,written on the new primary',
	'a: its diverged row is gone, the new primary\'s is there');

# ---- b. pg_rewind without wal_log_hints or data checksums -------------------

# pg_rewind copies back only the pages the target changed after the
# divergence, and finds them in the target's WAL.  A change that sets
# only hint bits is not WAL-logged unless wal_log_hints is on (or data
# checksums are, which log them too): such a page would be missed, and a
# hint bit that says "committed" for a transaction the new primary never
# committed would survive the rewind.  So pg_rewind refuses a target whose
# pg_control says it ran with neither, before it changes anything.
# Turning wal_log_hints on now does not help: the changes since the
# divergence were made without it.  That node needs a fresh base backup;
# set wal_log_hints = on (or initdb --data-checksums) on every node from
# the start, as the lab does.  PostgreSQL 18's initdb enables data
# checksums by default; 15 and 17 do not.
my %no_checksums =
  $a_old->pg_version >= 18 ? (extra => ['--no-data-checksums']) : ();
# allows_streaming turns wal_log_hints on: off again, as on a node set up
# without it, from its first start on (pg_control records the setting the
# server last ran with, and that is what pg_rewind reads).
my ($b_old, $b_new) =
  diverged_pair('b', 'wal_log_hints = off', %no_checksums);
$b_old->start;
is( query($b_old, 'SHOW wal_log_hints; SHOW data_checksums'),
	"off\noff", 'b: the old primary runs without wal_log_hints and data checksums');
my $b_markers = query($b_old, $markers);
$b_old->stop;

# Every file of the target's data directory and its contents, to show that
# the refused rewind wrote nothing.
sub data_dir_digest
{
	my ($node) = @_;
	my $dir = $node->data_dir;
	my @files;
	find({ wanted => sub { push @files, $File::Find::name if -f }, no_chdir => 1 },
		$dir);
	my $md5 = Digest::MD5->new;
	for my $file (sort @files)
	{
		open my $fh, '<:raw', $file or die "open $file: $!";
		$md5->add(substr($file, length $dir), "\0");
		$md5->addfile($fh);
		close $fh;
	}
	return scalar(@files) . ' files, md5 ' . $md5->hexdigest;
}

my $digest_before = data_dir_digest($b_old);
my ($rewind_out, $rewind_err) = ('', '');
IPC::Run::run(
	[
		'pg_rewind', '--target-pgdata=' . $b_old->data_dir,
		'--source-server=' . $b_new->connstr('postgres')
	],
	'>', \$rewind_out, '2>', \$rewind_err);
my $rewind_exit = $? >> 8;
note "b: pg_rewind exit $rewind_exit:\n$rewind_out$rewind_err";
is($rewind_exit, 1, 'b: pg_rewind exits with 1');
like(
	$rewind_err,
	qr/^pg_rewind: error: target server needs to use either data checksums or "wal_log_hints = on"$/m,
	'b: saying the target needs data checksums or wal_log_hints = on');
is(data_dir_digest($b_old), $digest_before,
	'b: not a file of the target\'s data directory changed');
$b_old->start;
is( query($b_old, "SELECT pg_is_in_recovery(); $markers"),
	"f\n$b_markers",
	'b: the target starts as before, the primary it was, with every row it had');
is($b_markers, 'before the failover,old primary after the divergence',
	'b: (its rows: the diverged one included)');
$b_old->stop;

# ---- c. a FIRST list naming no standby that exists --------------------------

# synchronous_standby_names matches the application_name each standby
# sends in primary_conninfo, nothing else: not its host name, not its
# slot.  A name no standby uses (a typo, a host name, a standby whose
# primary_conninfo lacks application_name and so reports its cluster_name
# or "walreceiver") is accepted without a word, every standby is then
# async, and since FIRST 1 can never be met, every commit that writes
# waits for a standby that never comes, for ever (wait_event SyncRep).
# Its rows are committed locally but invisible to everyone else while it
# waits.  Nothing times out: the session hangs until the setting is fixed
# (a reload is enough), which releases the waiting commits as soon as a
# standby that now counts has confirmed them; a cancel would release
# them too, but with a WARNING that the commit might not be replicated.
my $c_primary = $a_new;
my $c_s2 = new_standby($c_primary, 'c_s2');
$c_primary->wait_for_catchup($_) for ($a_old, $c_s2);
query($c_primary, 'CREATE TABLE pending (n int PRIMARY KEY)');

my $sync_table =
  "SELECT application_name, sync_priority, sync_state FROM pg_stat_replication "
  . "ORDER BY application_name";

# Sets synchronous_standby_names and waits until pg_stat_replication shows
# the expected table: walsenders pick up a reload on their own time.
sub sync_table_is
{
	my ($primary, $setting, $expected, $what) = @_;
	query($primary,
		"ALTER SYSTEM SET synchronous_standby_names = '$setting'; SELECT pg_reload_conf()"
	);
	$primary->poll_query_until('postgres', $sync_table, $expected);
	is(query($primary, $sync_table), $expected, $what);
	return;
}

sync_table_is($c_primary, 'FIRST 1 (c_s2)', "a_old|0|async\nc_s2|1|sync",
	'c: FIRST 1 (c_s2): c_s2 is sync');
sync_table_is($c_primary, 'FIRST 1 (nosuch)', "a_old|0|async\nc_s2|0|async",
	'c: FIRST 1 (nosuch) is accepted, and every standby is async (priority 0)');

my ($out, $err) = ('', '');
my $timer = IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default);
my $insert = IPC::Run::start(
	[
		'psql', '-X', '-v', 'ON_ERROR_STOP=1', '-d',
		$c_primary->connstr('postgres') . ' application_name=pending',
		'-c', 'INSERT INTO pending VALUES (1)'
	],
	'>', \$out, '2>', \$err, $timer);
my $waiting =
  "SELECT wait_event FROM pg_stat_activity WHERE application_name = 'pending'";
ok($c_primary->poll_query_until('postgres', $waiting, 'SyncRep'),
	'c: a commit waits for synchronous replication (wait_event SyncRep)');
# Proving a hang takes looking for a while: 3 s is longer than anything
# a standby on this machine would need to confirm it.
usleep(3_000_000);
$insert->pump_nb;
is(query($c_primary, $waiting), 'SyncRep', 'c: ... and still waits 3 s later');
is($out, '', 'c: the INSERT has not returned to its client');
is(query($c_primary, 'SELECT count(*) FROM pending'),
	'0', 'c: its row, committed locally, is not visible to other sessions');

# The fix: name the standby as it calls itself.  The walsender releases
# the waiting commit at the standby's next reply, which with no new WAL
# comes at wal_receiver_status_interval (10 s by default).
my $fixed_at = time;
query($c_primary,
	"ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 (c_s2)'; SELECT pg_reload_conf()");
ok($insert->finish, 'c: once the setting names c_s2 the INSERT returns, no cancel');
note 'c: released ', time - $fixed_at, ' s after the reload';
is($out, "INSERT 0 1\n", 'c: it reports its row inserted');
is($err, '', 'c: without a WARNING');
is(query($c_primary, $sync_table), "a_old|0|async\nc_s2|1|sync",
	'c: c_s2 is the sync standby');
$c_primary->wait_for_catchup($c_s2);
is(query($c_s2, 'SELECT count(*) FROM pending'), '1',
	'c: the row is on the standby');

done_testing();
