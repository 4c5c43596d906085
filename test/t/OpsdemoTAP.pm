# Helpers shared by the TAP tests of several nodes (test/t/0[23]*.pl).
#
# The tests load it with
#   use FindBin;
#   use lib $FindBin::RealBin;
#   use OpsdemoTAP;
# since prove runs them from the repository's root.

package OpsdemoTAP;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(query fingerprint stream_from log_appears);

# One statement (or several) on the node's postgres database; dies on error.
sub query
{
	my ($node, $sql) = @_;
	return $node->safe_psql('postgres', $sql);
}

# Count and an order-independent checksum of every row: equal on two
# nodes means the same rows (a difference in any column shows).
sub fingerprint
{
	my ($node, $table) = @_;
	return query($node,
		"SELECT count(*) || ':' || coalesce(sum(hashtext(t::text)), 0) FROM $table t");
}

# Makes $node stream from $upstream through the physical slot there named
# $name (default: the node's name), under $name as application_name: what
# FIRST/ANY, pg_stat_replication and the slot see.  %extra: conninfo
# (appended to primary_conninfo, e.g. 'dbname=postgres' for slot
# synchronization) and conf (more settings).  Settings later in the file
# win, so this also repoints a standby; the caller creates the slot and
# starts or reloads the node.
sub stream_from
{
	my ($node, $upstream, $name, %extra) = @_;
	$name //= $node->name;
	my $conninfo = sprintf('host=%s port=%d application_name=%s',
		$upstream->host, $upstream->port, $name);
	$conninfo .= " $extra{conninfo}" if defined $extra{conninfo};
	$node->append_conf('postgresql.conf',
		"primary_conninfo = '$conninfo'\nprimary_slot_name = '$name'\n"
		  . ($extra{conf} // ''));
	return;
}

# A test that the node's log shows $re after $offset within the default
# timeout (a failed test, not a die, when it does not); returns the offset
# after the match (the same offset when there was none).
sub log_appears
{
	my ($node, $re, $offset, $what) = @_;
	my $after = eval { $node->wait_for_log($re, $offset) };
	ok(defined $after, $what);
	return $after // $offset;
}

1;
