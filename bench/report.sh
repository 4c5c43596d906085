# shellcheck shell=bash
# shellcheck disable=SC2154  # report, bench_name, repo: set by the sourcing script
# What every bench/ script prints and checks the same way (sourced, not
# run): the report (out: stdout and $report; note: progress on stderr), its
# opening lines (report_machine, settings_sql), ratios and target lines
# (ratio, report_target, verdict), arithmetic (calc, median, short_count)
# and the check of numeric settings (positive_int).  bench/lib.sh sources
# it with its throwaway server; bench/rejoin, which runs a lab instead,
# sources it alone.
#
# The sourcing script sets bench_name and repo, and report (the results
# file) before the first out.  die is lib/common.sh's where that is sourced
# first (same messages: set msg_prefix=bench/<name>).

if ! declare -F die >/dev/null; then
	die() {
		echo "bench/$bench_name: $*" >&2
		exit 1
	}
fi

# The report: stdout and the results file.
out() {
	printf '%s\n' "$@" | tee -a "$report"
}

# Progress: stderr only.
note() {
	printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

positive_int() { # name value
	[[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer, got '$2'"
}

# Arithmetic on decimals.
calc() { # format expression [name=value...]
	local fmt=$1 expr=$2 args=() a
	shift 2
	for a in "$@"; do args+=(-v "$a"); done
	awk "${args[@]}" "BEGIN { printf \"$fmt\", ($expr) }"
}

median() { # values...
	printf '%s\n' "$@" | sort -g |
		awk '{ v[NR] = $1 }
			 END { if (NR % 2) printf "%.3f", v[(NR + 1) / 2];
				   else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# numerator / denominator, printed with the digits that matter: 0.93,
# 8.8, 446.  Reports write it with an "x" after it.
ratio() { # numerator denominator
	calc '%s' 'r < 10 ? sprintf("%.2f", r) : r < 100 ? sprintf("%.1f", r) : sprintf("%.0f", r)' \
		r="$(calc '%.6f' 'n / d' n="$1" d="$2")"
}

# 1000000 -> 1M, 200000 -> 200k
short_count() {
	local n=$1
	if ((n % 1000000 == 0)); then
		echo "$((n / 1000000))M"
	elif ((n % 1000 == 0)); then
		echo "$((n / 1000))k"
	else
		echo "$n"
	fi
}

verdict() { # value op target -> met / not met
	local yes
	yes=$(calc '%d' "v $2 t" v="$1" t="$3")
	if ((yes)); then echo met; else echo "not met"; fi
}

# One line of a report's "targets:" block:
#   "  <what>: <value><unit> (target <op> <limit><unit>) met|not met"
report_target() { # what value op limit [unit, e.g. " ms", "x", " %"]
	out "$(printf '  %s: %s%s (target %s %s%s) %s' "$1" "$2" "${5-}" "$3" "$4" "${5-}" \
		"$(verdict "$2" "$3" "$4")")"
}

# The checkout the figures belong to.  A bench that runs inside a container
# has no git there: its host half passes what it saw as BENCH_REVISION.
checkout_revision() {
	local revision
	if [[ -n ${BENCH_REVISION-} ]]; then
		echo "$BENCH_REVISION"
		return
	fi
	revision=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null) || revision=unknown
	if [[ $revision != unknown && -n $(git -C "$repo" status --porcelain 2>/dev/null) ]]; then
		revision="$revision + uncommitted changes"
	fi
	echo "$revision"
}

# The opening lines of every report: which bench, when, on what machine
# and how busy it was.  The optional argument ends the machine line (e.g.
# the Docker version of a bench that runs a lab).
report_machine() { # [more about the machine]
	local cpu_model mem_kb
	cpu_model=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') || true
	mem_kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
	out "pg_opsdemo bench/$bench_name"
	out "date:        $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	out "machine:     $(nproc) CPUs, ${cpu_model:-unknown CPU}, $(calc '%.1f' 'kb / 1048576' kb="$mem_kb") GiB RAM${1-}"
	out "kernel:      $(uname -sr)"
	out "load:        $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15-min load average at the start)"
}

# A query that prints the named settings as every report lists them under
# "settings:", one "  name  value" line each, from pg_settings: what the
# server really used.
settings_sql() { # setting-name...
	local names
	names=$(printf "'%s'," "$@")
	printf "SELECT '  ' || rpad(name, max(length(name)) OVER () + 2) || current_setting(name)
		FROM pg_settings WHERE name IN (%s) ORDER BY name" "${names%,}"
}
