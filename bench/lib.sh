# shellcheck shell=bash
# shellcheck disable=SC2154  # bench_name, settings, shown_settings: see below
# Shared by the bench/ scripts that run on a throwaway PostgreSQL server
# (sourced, not run): the server (lib/pgserver.sh), the report header that
# records the machine, the server and its settings, and bench/report.sh.
#
# The sourcing script sets bench_name before sourcing, and before it calls
# start_server and report_header:
#   settings        array of postgresql.conf lines for the server
#   shown_settings  array of setting names the report prints
# and may define bench_cleanup_hook, called first on exit.
# After sourcing it has: $repo $bench_dir $report $work $port,
# psql_bench (psql on database opsdemo_bench), start_server,
# report_header, bench/report.sh's helpers (die, out, note, calc, median,
# ratio, report_target, positive_int, ...) and lib/pgserver.sh's functions
# (as_server_user runs a command as the server's user).
#
# It uses the PostgreSQL of $PG_CONFIG (default: pg_config on PATH) and the
# pg_opsdemo installed into it.  Inside a container of bench/container.sh
# (BENCH_CONTAINER_IMAGE set) those are the image's, and the report goes
# to $BENCH_RESULTS_DIR there (the host half copies it from stdout).

# Failures inside $(...) count too (values are computed in assignments).
shopt -s inherit_errexit

# shellcheck source=lib/pgserver.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/pgserver.sh"

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bench_dir=$repo/bench
results_dir=${BENCH_RESULTS_DIR:-$bench_dir/results}
report=$results_dir/$bench_name-latest.txt
# shellcheck source=bench/report.sh
source "$bench_dir/report.sh"

# Untranslated messages, UTF8 cluster (as test/run-tests does).
pgserver_locale
pgserver_pg_config "bench/$bench_name" || exit 1
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSERVICE PGOPTIONS

[[ -f $("$PG_CONFIG" --sharedir)/extension/pg_opsdemo.control ]] ||
	die "pg_opsdemo is not installed into $("$PG_CONFIG" --bindir)/..; run 'make && make install' first"

bench_user=opsdemo_bench
port=54330 # only names the socket file, which lives in our private directory

# As root, the server runs as this user (PostgreSQL refuses to run as root).
pgserver_user "$bench_user"

# Under /tmp: the server's unix socket lives in it, and socket paths are
# limited to ~100 bytes.
work=$(mktemp -d "/tmp/opsdemo-bench-$bench_name.XXXXXX")
pgserver_home=$work
pgserver_caller=bench/$bench_name

# shellcheck disable=SC2317  # only reached through the EXIT trap
bench_cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	if declare -F bench_cleanup_hook >/dev/null; then
		bench_cleanup_hook
	fi
	if ((pgserver_running)); then
		if ((rc != 0)) && [[ -f $work/server.log ]]; then
			echo "---- server log (last 30 lines)" >&2
			tail -n 30 "$work/server.log" >&2
		fi
		pgserver_stop immediate 2>/dev/null
	fi
	if ((rc != 0)) && [[ -f $report ]]; then
		echo "bench/$bench_name FAILED (exit status $rc); this report is incomplete" >>"$report"
	fi
	rm -rf "$work"
	exit "$rc"
}
trap bench_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ((EUID == 0)); then
	chown "$bench_user:" "$work"
fi

mkdir -p "$results_dir"
: >"$report"

# psql on the benchmark database; SQL on stdin or in -c.
psql_bench() {
	psql -X -q -At -v ON_ERROR_STOP=1 -h "$work" -p "$port" -U postgres \
		-d opsdemo_bench "$@"
}

start_server() {
	note "initdb and start a throwaway server in $work"
	pgserver_init "$work" "$port" "${settings[@]}" || die "initdb failed"
	pgserver_start >/dev/null || die "could not start the server"
	psql -X -q -v ON_ERROR_STOP=1 -h "$work" -p "$port" -U postgres -d postgres \
		-c 'CREATE DATABASE opsdemo_bench'
}

# The machine, the server and the build the figures belong to.
report_header() {
	local installed_so so_note server_user where
	installed_so=$("$PG_CONFIG" --pkglibdir)/pg_opsdemo.so
	so_note=
	if [[ -z ${BENCH_CONTAINER_IMAGE-} && -f $repo/pg_opsdemo.so ]] &&
		! cmp -s "$repo/pg_opsdemo.so" "$installed_so"; then
		so_note="  (WARNING: differs from the checkout's build; run make install)"
	fi
	server_user=$bench_user
	((EUID == 0)) || server_user=$(id -un)
	where=
	[[ -z ${BENCH_CONTAINER_IMAGE-} ]] || where=", in a container of $BENCH_CONTAINER_IMAGE"

	report_machine ""
	out "postgresql:  $(psql_bench -c 'SELECT version()')"
	out "extension:   pg_opsdemo at checkout $(checkout_revision)"
	out "library:     $installed_so, $(date -u -r "$installed_so" '+%Y-%m-%d %H:%M:%S UTC')$so_note"
	out "server:      throwaway cluster, unix socket only, run as $server_user$where"
	out "settings:"
	out "$(psql_bench -c "$(settings_sql "${shown_settings[@]}")")"
}
