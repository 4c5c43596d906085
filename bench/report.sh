# shellcheck shell=bash
# shellcheck disable=SC2154  # report: set by the sourcing script
# The report and arithmetic helpers every bench/ script uses (sourced, not
# run): out (stdout and $report), note (progress on stderr), calc, median,
# short_count, verdict.  bench/lib.sh sources it with its throwaway server;
# bench/rejoin, which runs a lab instead, sources it alone.

# The report: stdout and the results file.
out() {
	printf '%s\n' "$@" | tee -a "$report"
}

# Progress: stderr only.
note() {
	printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2
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
