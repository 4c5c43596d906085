# The upgrade paths from 1.0 and from 1.1 to the current version.
#
#  - The new library runs under 1.0's SQL objects (the state between
#    `make install` and ALTER EXTENSION UPDATE): the ticks, the generator
#    and the built-in worker keep working, and nothing crashes the server.
#  - ALTER EXTENSION pg_opsdemo UPDATE keeps every row and an exact mv_sum.
#  - The upgraded catalog equals a fresh install's: pg_dump --schema-only
#    --binary-upgrade (which, unlike a plain dump, lists every member object
#    of an extension with its definition, ACL and comment) of both, with
#    only OIDs and LSNs taken out, must be identical.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'pg_opsdemo'
opsdemo.database = 'old'
opsdemo.insert_interval = '1s'
opsdemo.update_interval = '1s'
});
$node->start;

my $current = $node->safe_psql('postgres',
	"SELECT default_version FROM pg_available_extensions WHERE name = 'pg_opsdemo'");
isnt($current, '1.0', "the current version ($current) is not 1.0");

$node->safe_psql('postgres', 'CREATE DATABASE old');
$node->safe_psql('postgres', 'CREATE DATABASE fresh');

# ---- 1.0's SQL objects over the new library -------------------------------

$node->safe_psql('old', "CREATE EXTENSION pg_opsdemo VERSION '1.0'");
is($node->safe_psql('old',
		"SELECT extversion FROM pg_extension WHERE extname = 'pg_opsdemo'"),
	'1.0', 'version 1.0 installs with the new library');

my $data = q{
	SELECT opsdemo_generate(20000, '2026-01-01', '2026-04-01', seed => 7,
	                        processed_share => 0.5);
	SELECT opsdemo_insert_tick();
	SELECT opsdemo_update_tick('2026-01-01 00:00:02+00');
	SELECT opsdemo_update_tick('2026-01-01 00:00:03+00');
};
my ($rc, $out, $err) = $node->psql('old', $data);
is($rc, 0, 'generator and both ticks work under 1.0\'s objects')
  or diag($err);

ok( $node->poll_query_until(
		'old',
		"SELECT bool_and(runs >= 2 AND failures = 0) FROM opsdemo_status()"),
	'the worker runs both jobs under 1.0\'s objects without failures');
is($node->safe_psql('old',
		'SELECT count(*) FROM opsdemo_mv_sum_verify()'),
	'0', 'mv_sum is exact under 1.0\'s objects');

# The state the update must keep: the worker stops writing first.
$node->safe_psql('old', 'SELECT opsdemo_worker_stop()');
my $rows_sql = q{
	SELECT count(*), md5(string_agg(t1::text, ',' ORDER BY id))
	  FROM t1};
my $mv_sql = q{
	SELECT md5(string_agg(m::text, ',' ORDER BY client_id, operation_type))
	  FROM mv_sum m};
my $rows_before = $node->safe_psql('old', $rows_sql);
my $mv_before = $node->safe_psql('old', $mv_sql);

# ---- the update ----------------------------------------------------------

($rc, $out, $err) = $node->psql('old', 'ALTER EXTENSION pg_opsdemo UPDATE');
is($rc, 0, 'ALTER EXTENSION pg_opsdemo UPDATE succeeds') or diag($err);
is($node->safe_psql('old',
		"SELECT extversion FROM pg_extension WHERE extname = 'pg_opsdemo'"),
	$current, "the extension is now at $current");
is($node->safe_psql('old', $rows_sql), $rows_before,
	'every row of t1 is kept, unchanged');
is($node->safe_psql('old', $mv_sql), $mv_before, 'mv_sum is kept');
is($node->safe_psql('old', 'SELECT count(*) FROM opsdemo_mv_sum_verify()'),
	'0', 'mv_sum is exact after the update');

# The upgraded extension works: ticks, generator, mv_sum.
($rc, $out, $err) = $node->psql(
	'old', q{
	SELECT opsdemo_insert_tick();
	SELECT opsdemo_update_tick('2026-01-01 00:00:04+00');
	SELECT opsdemo_generate(1000, '2026-02-01', '2026-03-01', seed => 8,
	                        processed_share => 0.5);
});
is($rc, 0, 'ticks and generator work after the update') or diag($err);
is($node->safe_psql('old', 'SELECT count(*) FROM opsdemo_mv_sum_verify()'),
	'0', 'mv_sum stays exact after the update');

# ---- catalog: upgraded == fresh -------------------------------------------

# The same partitions on both sides: the same generated months, and the
# months the insert tick keeps (this one and the next).
$node->safe_psql('fresh', 'CREATE EXTENSION pg_opsdemo');
$node->safe_psql(
	'fresh', q{
	SELECT opsdemo_generate(100, '2026-01-01', '2026-04-01', seed => 7);
	SELECT opsdemo_insert_tick();
});

# Everything that names an OID, an LSN, a transaction ID, a sequence value
# or a dump's random key differs between any two databases; the rest is
# the catalog.
sub catalog_dump
{
	my ($db) = @_;
	my ($stdout, $stderr) = ('', '');
	my $ok = IPC::Run::run(
		[
			'pg_dump', '--schema-only', '--binary-upgrade', '--no-sync',
			'-d', $node->connstr($db)
		],
		'>', \$stdout, '2>', \$stderr);
	die "pg_dump $db failed: $stderr" unless $ok;
	my @lines;
	for my $line (split /\n/, $stdout)
	{
		next if $line =~ /^\\(?:un)?restrict /;
		next if $line =~ /binary_upgrade_set_next_/;
		$line =~ s/'\{[0-9,]+\}'/'{OIDS}'/
		  if $line =~ /binary_upgrade_create_empty_extension/;
		$line =~ s/relfrozenxid = '\d+', relminmxid = '\d+'/relfrozenxid = XID, relminmxid = MXID/;
		$line =~ s/^WHERE oid = '\d+';/WHERE oid = OID;/;
		# the id sequence is dumped as extension configuration
		$line =~ s/(pg_catalog\.setval\('[^']+', )\d+/${1}N/;
		push @lines, $line;
	}
	return join("\n", @lines) . "\n";
}

# $what's catalog equals a fresh install's, or the difference is shown.
sub same_catalog
{
	my ($upgraded, $fresh, $what) = @_;
	if ($upgraded eq $fresh)
	{
		pass("$what: the upgraded catalog equals a fresh install's");
		return;
	}
	my $dir = PostgreSQL::Test::Utils::tempdir;
	PostgreSQL::Test::Utils::append_to_file("$dir/upgraded.sql", $upgraded);
	PostgreSQL::Test::Utils::append_to_file("$dir/fresh.sql", $fresh);
	my ($diff, $differr) = ('', '');
	IPC::Run::run([ 'diff', '-u', "$dir/fresh.sql", "$dir/upgraded.sql" ],
		'>', \$diff, '2>', \$differr);
	fail("$what: the upgraded catalog equals a fresh install's");
	diag($diff);
	return;
}

my $fresh = catalog_dump('fresh');
like($fresh, qr/CREATE TABLE public\.t1 /,
	'the binary-upgrade dump lists the extension\'s member objects');
same_catalog(catalog_dump('old'), $fresh, '1.0');

# ---- from 1.1, the version before the read-only guard ----------------------

$node->safe_psql('postgres', 'CREATE DATABASE v11');
$node->safe_psql('v11', "CREATE EXTENSION pg_opsdemo VERSION '1.1'");
$node->safe_psql(
	'v11', q{
	SELECT opsdemo_generate(100, '2026-01-01', '2026-04-01', seed => 7);
	SELECT opsdemo_insert_tick();
});
is($node->safe_psql('v11',
		"SELECT to_regprocedure('opsdemo_make_read_only(regclass, text)') IS NULL"),
	't', '1.1 has no read-only guard');
($rc, $out, $err) = $node->psql('v11', 'ALTER EXTENSION pg_opsdemo UPDATE');
is($rc, 0, "1.1: ALTER EXTENSION pg_opsdemo UPDATE to $current succeeds")
  or diag($err);
same_catalog(catalog_dump('v11'), $fresh, '1.1');
($rc, $out, $err) = $node->psql(
	'v11', q{
	CREATE TABLE copy (id int PRIMARY KEY);
	SELECT opsdemo_make_read_only('copy', 'node1');
	INSERT INTO copy VALUES (1);
});
like($err, qr/ERROR:  table public\.copy is read-only on this node/,
	'1.1: after the update the guard refuses a local write');

# Nothing above may have crashed a backend.
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|server process .* was terminated/,
	'no backend crashed');

$node->stop;
done_testing();
