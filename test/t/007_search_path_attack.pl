# Objects planted on the search_path are never called by pg_opsdemo.
#
# A role with CREATE on public (the default before PostgreSQL 15) and on the
# extension's schema plants look-alikes of the functions, aggregates and
# operators that SQL run by the extension could name: same names, same
# argument types as every pg_catalog original, and operators whose argument
# types match better than any builtin (bigint % integer).  The database's
# search_path puts both schemas BEFORE pg_catalog, so every unqualified name
# would resolve to the planted object.  Every look-alike bumps a sequence
# (sequences are not transactional, so even a call that later fails is
# seen) and tries to make its owner superuser.
#
# Then a superuser runs everything the extension does with that search_path:
# the generator (creating months, seeded and not), both ticks, partition
# creation that moves rows out of the default partition, mv_sum
# maintenance, verify, rebuild and TRUNCATE, retention and the event
# trigger that corrects a bare DROP or DETACH, the pg_cron job body and, where
# pg_cron >= 1.5 is installed, pg_cron mode; and the built-in worker runs
# both jobs and trims its history.  Not one planted object may be called.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $pkglibdir = `pg_config --pkglibdir`;
chomp $pkglibdir;
my $have_cron = -e "$pkglibdir/pg_cron.so";

my $node = PostgreSQL::Test::Cluster->new('attack');
$node->init;
$node->append_conf(
	'postgresql.conf',
	"shared_preload_libraries = '"
	  . ($have_cron ? 'pg_cron,' : '')
	  . "pg_opsdemo'\n" . q{
opsdemo.database = 'ops'
opsdemo.insert_interval = '1s'
opsdemo.update_interval = '1s'
opsdemo.history_retention = '1s'
});
$node->append_conf(
	'postgresql.conf', q{
cron.database_name = 'ops'
cron.use_background_workers = on
max_worker_processes = 16
}) if $have_cron;
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE ops');
$node->safe_psql(
	'ops', q{
	CREATE SCHEMA ops;
	CREATE EXTENSION pg_opsdemo SCHEMA ops;
	CREATE ROLE attacker LOGIN;
	GRANT CREATE ON SCHEMA public, ops TO attacker;
	GRANT USAGE ON SCHEMA ops TO attacker;
	-- pg_cron mode's jobs are handed to a role with the job bodies' rights
	-- only, as the lab does (see the pg_cron section).
	CREATE ROLE cronjob LOGIN;
	GRANT USAGE ON SCHEMA ops TO cronjob;
	GRANT INSERT, SELECT (id, date, status), UPDATE (status) ON ops.t1 TO cronjob;
	GRANT EXECUTE ON FUNCTION ops.opsdemo_cron_tick(text) TO cronjob;
});
$node->safe_psql('ops', 'CREATE EXTENSION pg_cron') if $have_cron;
my $cron_version =
  $have_cron
  ? $node->safe_psql('ops',
	"SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'")
  : '';

# ---- the attacker plants ---------------------------------------------------

# Functions and aggregates that SQL in an extension like this one plausibly
# names without a schema.
my @function_names = qw(
  now statement_timestamp clock_timestamp make_interval date_trunc to_char
  format quote_ident quote_literal to_regclass unnest count sum
  pg_advisory_xact_lock pg_advisory_lock pg_partition_tree
  pg_get_expr jsonb_typeof jsonb_build_object numeric int8 int4 text
  set_config current_setting coalesce nullif greatest least
  string_agg array_agg exists generate_series random);
my $names = join(',', map { "'$_'" } @function_names);

my $plant = <<"EOSQL";
SET ROLE attacker;
CREATE SEQUENCE public.trap_hits;
GRANT USAGE ON SEQUENCE public.trap_hits TO PUBLIC;
CREATE FUNCTION public.trap(what text) RETURNS void
LANGUAGE plpgsql AS \$\$
BEGIN
    PERFORM pg_catalog.nextval('public.trap_hits');
    RAISE WARNING 'planted object called: %', what;
    EXECUTE 'ALTER ROLE attacker SUPERUSER';
EXCEPTION WHEN insufficient_privilege THEN
    NULL;
END
\$\$;
DO \$\$
DECLARE
    p record;
    s text;
    n int := 0;
    argdecl text;
BEGIN
    FOREACH s IN ARRAY ARRAY['public', 'ops'] LOOP
        -- every plain function overload of those names, same argument types
        FOR p IN
            SELECT f.proname, f.oid,
                   pg_catalog.pg_get_function_identity_arguments(f.oid) AS args,
                   pg_catalog.format_type(f.prorettype, NULL) AS rettype,
                   f.proretset
              FROM pg_catalog.pg_proc f
             WHERE f.pronamespace = 'pg_catalog'::regnamespace
               AND f.proname IN ($names)
               AND f.prokind = 'f'
               AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(f.proargtypes::oid[]) t
                                WHERE t IN ('internal'::regtype, 'cstring'::regtype,
                                            '"any"'::regtype))
               AND f.prorettype NOT IN ('internal'::regtype, 'cstring'::regtype,
                                        'trigger'::regtype)
        LOOP
            BEGIN
                EXECUTE pg_catalog.format(
                    'CREATE FUNCTION %I.%I(%s) RETURNS %s%s LANGUAGE plpgsql AS %L',
                    s, p.proname, p.args,
                    CASE WHEN p.proretset THEN 'SETOF ' ELSE '' END, p.rettype,
                    pg_catalog.format('BEGIN PERFORM public.trap(%L); RETURN%s; END',
                                      s || '.' || p.proname,
                                      CASE WHEN p.proretset THEN '' ELSE ' NULL' END));
                n := n + 1;
            EXCEPTION WHEN OTHERS THEN
                NULL;   -- a signature plpgsql cannot take (variadic "any", ...)
            END;
        END LOOP;
        -- aggregates
        EXECUTE pg_catalog.format(
            'CREATE FUNCTION %I.trap_sfunc(state bigint) RETURNS bigint '
            'LANGUAGE plpgsql AS %L', s,
            'BEGIN PERFORM public.trap(''count(*)''); RETURN 0; END');
        EXECUTE pg_catalog.format(
            'CREATE AGGREGATE %I.count(*) (sfunc = %I.trap_sfunc, stype = bigint)', s, s);
        EXECUTE pg_catalog.format(
            'CREATE FUNCTION %I.trap_sfunc2(state numeric, v numeric) RETURNS numeric '
            'LANGUAGE plpgsql AS %L', s,
            'BEGIN PERFORM public.trap(''sum(numeric)''); RETURN 0; END');
        EXECUTE pg_catalog.format(
            'CREATE AGGREGATE %I.sum(numeric) (sfunc = %I.trap_sfunc2, stype = numeric)', s, s);
        EXECUTE pg_catalog.format(
            'CREATE FUNCTION %I.trap_sfunc3(state bigint, v anyelement) RETURNS bigint '
            'LANGUAGE plpgsql AS %L', s,
            'BEGIN PERFORM public.trap(''count(x)''); RETURN 0; END');
        EXECUTE pg_catalog.format(
            'CREATE AGGREGATE %I.count(anyelement) (sfunc = %I.trap_sfunc3, stype = bigint)', s, s);
        -- every operator of these names between concrete types, plus
        -- mixed-type ones that beat the builtins' implicit casts
        FOR p IN
            SELECT o.oprname,
                   pg_catalog.format_type(o.oprleft, NULL) AS l,
                   pg_catalog.format_type(o.oprright, NULL) AS r,
                   pg_catalog.format_type(o.oprresult, NULL) AS res
              FROM pg_catalog.pg_operator o
             WHERE o.oprnamespace = 'pg_catalog'::regnamespace
               AND o.oprname IN ('%', '=', '<>', '<', '<=', '>', '>=', '+', '-',
                                 '*', '/', '||', '?', '->', '->>', '~~')
               AND o.oprleft <> 0 AND o.oprright <> 0
               AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type t
                                WHERE t.oid IN (o.oprleft, o.oprright, o.oprresult)
                                  AND t.typtype = 'p')
            UNION
            SELECT op, l, r, res FROM (VALUES
                ('%', 'bigint', 'integer', 'bigint'),
                ('=', 'bigint', 'integer', 'boolean'),
                ('=', 'smallint', 'integer', 'boolean'),
                ('=', 'regclass', 'regclass', 'boolean'),
                ('=', 'oid', 'regclass', 'boolean'),
                ('<', 'timestamp with time zone', 'timestamp with time zone', 'boolean'),
                ('+', 'numeric', 'numeric', 'numeric')) v(op, l, r, res)
        LOOP
            n := n + 1;
            EXECUTE pg_catalog.format(
                'CREATE FUNCTION %I.trap_op_%s(a %s, b %s) RETURNS %s LANGUAGE plpgsql AS %L',
                s, n, p.l, p.r, p.res,
                pg_catalog.format('BEGIN PERFORM public.trap(%L); RETURN NULL; END',
                                  s || '.' || p.oprname || '(' || p.l || ',' || p.r || ')'));
            BEGIN
                EXECUTE pg_catalog.format(
                    'CREATE OPERATOR %I.%s (leftarg = %s, rightarg = %s, function = %I.trap_op_%s)',
                    s, p.oprname, p.l, p.r, s, n);
            EXCEPTION WHEN duplicate_function THEN
                NULL;
            END;
        END LOOP;
    END LOOP;
    RAISE NOTICE 'planted % objects', n;
END
\$\$;
RESET ROLE;
ALTER DATABASE ops SET search_path = public, ops, pg_catalog;
EOSQL
my ($rc, $out, $err) = $node->psql('ops', $plant);
is($rc, 0, 'the attacker planted the look-alikes') or diag($err);
my ($planted) = $err =~ /planted (\d+) objects/;
cmp_ok($planted // 0, '>', 200, 'hundreds of functions and operators planted');

# The trap works: a query that resolves through this search_path calls it
# (run as the attacker, so that it cannot promote itself).
($rc, $out, $err) = $node->psql('ops', 'SET ROLE attacker; SELECT now()');
like($err, qr/planted object called: public\.now/,
	'the trap fires for an unqualified call under this search_path');
$node->safe_psql('ops', "SELECT pg_catalog.setval('public.trap_hits', 1, false)");

# ---- the victim runs everything ------------------------------------------

my @victim = (
	"SELECT ops.opsdemo_generate(3000, '2031-01-01', '2031-03-01', seed => 1, processed_share => 0.5)",
	"SELECT ops.opsdemo_generate(500, '2031-02-01', '2031-04-01', processed_share => 0.5)",
	'SELECT ops.opsdemo_insert_tick()',
	"SELECT ops.opsdemo_update_tick('2031-01-01 00:00:02+00')",
	"SELECT ops.opsdemo_update_tick('2031-01-01 00:00:03+00')",
	# a row in the default partition, then its month is created: moved
	"INSERT INTO ops.t1 (date, amount, status, operation_guid, message) "
	  . "SELECT d, 10, 1, ops.opsdemo_guid(d), "
	  . "'{\"account_number\": \"40817\", \"client_id\": 7, \"operation_type\": \"online\"}' "
	  . "FROM (SELECT timestamptz '2035-06-15 12:00:00+00' AS d) s",
	"SELECT ops.opsdemo_partitions_ensure('2035-06-01', '2035-08-01')",
	# the victim's own statements qualify their operators
	"UPDATE ops.t1 SET status = 0 WHERE id OPERATOR(pg_catalog.=) ANY "
	  . "(ARRAY(SELECT id FROM ops.t1 WHERE status OPERATOR(pg_catalog.=) 1 LIMIT 5))",
	'SELECT ops.opsdemo_mv_sum_flush()',
	'SELECT * FROM ops.opsdemo_mv_sum_verify()',
	'SELECT ops.opsdemo_mv_sum_rebuild()',
	'TRUNCATE ops.t1_2031_03',
	# retention, and the event trigger's correction of a bare DROP / DETACH
	"SELECT ops.opsdemo_partitions_drop('2031-02-01')",
	'ALTER TABLE ops.t1 DETACH PARTITION ops.t1_2035_06',
	'DROP TABLE ops.t1_2035_07',
	"SELECT ops.opsdemo_cron_tick('insert')",
	"SELECT ops.opsdemo_cron_tick('update')",
	'SELECT * FROM ops.opsdemo_status()');
for my $sql (@victim)
{
	($rc, $out, $err) = $node->psql('ops', $sql);
	is($rc, 0, "victim: $sql") or diag($err);
}

# The built-in worker: both jobs, and the history purge (retention 1 s).
ok( $node->poll_query_until(
		'ops',
		'SELECT pg_catalog.bool_and(runs OPERATOR(pg_catalog.>=) 3 '
		  . 'AND failures OPERATOR(pg_catalog.=) 0) FROM ops.opsdemo_status()'),
	'the worker runs both jobs without failures under this search_path');

# Everything of ours so far, the worker included, called nothing planted.
is($node->safe_psql('ops', 'SELECT is_called FROM public.trap_hits'),
	'f', 'no planted function, aggregate or operator was called by the extension or its worker');

# pg_cron mode.  pg_cron's own bookkeeping (UPDATE cron.job_run_details ...
# WHERE runid = $n, seen with pg_cron 1.6.8 on PostgreSQL 18) runs under
# the database's search_path as the job's owner: with a superuser owning
# the jobs, a planted "=" would run as superuser.  Hence the lab (and this
# test) hand the jobs to a role with the job bodies' rights only, in a
# statement run with search_path = pg_catalog (cron.alter_job runs SQL of
# its own too).  Our part, opsdemo_cron_tick, must call nothing planted;
# pg_cron's calls are counted apart below.
#
# pg_cron 1.6.5 (PostgreSQL 17 on trixie) runs the same bookkeeping in its
# launcher, which is connected as the bootstrap superuser: under this
# database's search_path a planted "=" would run as superuser there,
# whoever owns the jobs.  A DBA who lets such a search_path stand must pin
# the launcher's: a setting for that role in that database wins over the
# database's, and the launcher takes it when it connects (here: at the
# restart).  The test's own superuser statements below set the hostile
# search_path themselves.
SKIP:
{
	skip 'pg_cron >= 1.5 is not installed', 3
	  unless $have_cron && $cron_version =~ /^1\.([5-9]|\d\d)/;
	my $bootstrap = $node->safe_psql('ops',
		'SELECT rolname FROM pg_catalog.pg_roles WHERE oid OPERATOR(pg_catalog.=) 10');
	$node->safe_psql('ops',
		"ALTER ROLE \"$bootstrap\" IN DATABASE ops SET search_path = pg_catalog, public");
	$node->safe_psql('ops',
		"ALTER SYSTEM SET opsdemo.scheduler = 'pg_cron'; SELECT pg_catalog.pg_reload_conf()"
	);
	$node->restart;
	$node->poll_query_until('ops',
		"SELECT pg_catalog.current_setting('opsdemo.scheduler') OPERATOR(pg_catalog.=) 'pg_cron'"
	);
	is( $node->safe_psql(
			'ops',
			'SET search_path = public, ops, pg_catalog; SELECT ops.opsdemo_schedule_cron()'),
		'2', 'pg_cron mode: jobs scheduled under this search_path');
	is( $node->safe_psql(
			'ops',
			"SET search_path = pg_catalog; SELECT count(cron.alter_job(jobid, username => 'cronjob')) "
			  . "FROM cron.job WHERE jobname LIKE 'opsdemo%'"),
		'2',
		'pg_cron mode: the jobs handed to a role with the job bodies\' rights only');
	ok( $node->poll_query_until(
			'ops',
			"SELECT pg_catalog.count(DISTINCT job) OPERATOR(pg_catalog.=) 2 "
			  . "FROM ops.opsdemo_job_history WHERE scheduler OPERATOR(pg_catalog.=) 'pg_cron'"
		),
		'pg_cron runs both job bodies');
	$node->safe_psql('ops', 'SELECT ops.opsdemo_unschedule_cron()');
}

# ---- verdict --------------------------------------------------------------

is($node->safe_psql('ops',
		"SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'attacker'"),
	'f', 'the attacker is not superuser');
# Every planted call in the log with the statement it came from: the
# deliberate one above, pg_cron's own bookkeeping, and nothing else.
my $log = slurp_file($node->logfile);
my (@ours, @pg_cron);
while ($log =~ /WARNING:  planted object called: (\S+)\n((?:(?!\d{4}-\d\d-\d\d ).*\n)*)/g)
{
	my ($what, $context) = ($1, $2);
	if ($context =~ /cron\.job_run_details/) { push @pg_cron, $what; }
	else { push @ours, $what; }
}
is(scalar(@ours), 1,
	'the server log shows only the deliberate trap test, besides pg_cron\'s bookkeeping')
  or diag(join("\n", @ours));
note(scalar(@pg_cron)
	  . " planted calls by pg_cron's own job_run_details statements (as the unprivileged job owner)");

$node->stop;
done_testing();
