# shellcheck shell=bash
# shellcheck disable=SC2154  # bench_name, settings, shown_settings: see below
# Shared by the bench/ scripts (sourced, not run): a throwaway PostgreSQL
# server (lib/pgserver.sh), the report header that records the machine, and
# small helpers.
#
# The sourcing script sets before sourcing:
#   bench_name   its name, e.g. generate (messages, report file name)
#   settings     array of postgresql.conf lines for the server
#   shown_settings  array of setting names the report prints
# and may define bench_cleanup_hook, called first on exit.
# After sourcing it has: $repo $bench_dir $report $work $port,
# psql_bench (psql on database opsdemo_bench), out, note, die, calc, median,
# short_count, positive_int, start_server, report_header, and lib/pgserver.sh's
# functions (as_server_user runs a command as the server's user).

# Failures inside $(...) count too (values are computed in assignments).
shopt -s inherit_errexit

die() {
	echo "bench/$bench_name: $*" >&2
	exit 1
}

positive_int() { # name value
	[[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer, got '$2'"
}

# shellcheck source=lib/pgserver.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/pgserver.sh"

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bench_dir=$repo/bench
results_dir=$bench_dir/results
report=$results_dir/$bench_name-latest.txt

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

# shellcheck source=bench/report.sh
source "$bench_dir/report.sh"

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
	local cpu_model mem_total_kb revision installed_so so_note now ram_gib
	local pg_version so_date server_user settings_in settings_used
	cpu_model=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') || true
	mem_total_kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
	revision=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null) || revision=unknown
	if [[ $revision != unknown && -n $(git -C "$repo" status --porcelain 2>/dev/null) ]]; then
		revision="$revision + uncommitted changes"
	fi
	installed_so=$("$PG_CONFIG" --pkglibdir)/pg_opsdemo.so
	so_note=
	if [[ -f $repo/pg_opsdemo.so ]] && ! cmp -s "$repo/pg_opsdemo.so" "$installed_so"; then
		so_note="  (WARNING: differs from the checkout's build; run make install)"
	fi
	now=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
	ram_gib=$(calc '%.1f' 'kb / 1048576' kb="$mem_total_kb")
	pg_version=$(psql_bench -c 'SELECT version()')
	so_date=$(date -u -r "$installed_so" '+%Y-%m-%d %H:%M:%S UTC')
	server_user=$bench_user
	((EUID == 0)) || server_user=$(id -un)
	settings_in=$(printf "'%s'," "${shown_settings[@]}")
	settings_used=$(psql_bench -c "SELECT '  ' || rpad(name, 22) || current_setting(name)
		FROM pg_settings WHERE name IN (${settings_in%,}) ORDER BY name")

	out "pg_opsdemo bench/$bench_name"
	out "date:        $now"
	out "machine:     $(nproc) CPUs, ${cpu_model:-unknown CPU}, $ram_gib GiB RAM"
	out "kernel:      $(uname -sr)"
	out "load:        $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15-min load average at the start)"
	out "postgresql:  $pg_version"
	out "extension:   pg_opsdemo at checkout $revision"
	out "library:     $installed_so, $so_date$so_note"
	out "server:      throwaway cluster, unix socket only, run as $server_user"
	out "settings:"
	out "$settings_used"
}
