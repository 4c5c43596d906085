# shellcheck shell=bash
# Basic helpers shared by the lab driver (lab/lab), the container tests
# (test/container/run, lab/*/test.sh) and the benches: messages, bounded
# waits, exit hooks, SQL literals.  Sourced; defines functions only.
#
# Expects: msg_prefix (default: the script's name) for die/say.

die() {
	echo "${msg_prefix:-${0##*/}}: $*" >&2
	exit 1
}

say() { echo "${msg_prefix:-${0##*/}}: $*"; }

# Polls "command..." once a second until it succeeds or limit seconds have
# passed.  On time-out the command runs once more with its output shown, so
# the caller's message has the last state next to it; returns 1.
wait_until() { # limit-seconds command...
	local start=$SECONDS deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			"$@" || true
			return 1
		fi
		# Most waits end within a second or two (a standby connecting, a
		# server starting): look often at first, then once a second.
		if ((SECONDS - start < 3)); then sleep 0.2; else sleep 1; fi
	done
}

# Exit hooks: run in reverse order of registration on every exit path
# (normal end, error under errexit, INT, TERM).  The first call installs
# the traps; the exit status is kept.
exit_hooks=()
on_exit() { # command (one string, evaluated at exit)
	if ((${#exit_hooks[@]} == 0)); then
		trap run_exit_hooks EXIT
		trap 'exit 130' INT
		trap 'exit 143' TERM
	fi
	exit_hooks+=("$1")
}
# shellcheck disable=SC2317  # reached through the EXIT trap
run_exit_hooks() {
	local rc=$? i
	set +e
	trap - EXIT INT TERM
	for ((i = ${#exit_hooks[@]} - 1; i >= 0; i--)); do
		eval "${exit_hooks[i]}"
	done
	exit "$rc"
}

# A temporary file removed on exit.
temp_file() { # variable-name [template]
	local f
	f=$(mktemp "${2:-/tmp/opsdemo.XXXXXX}")
	on_exit "rm -f '$f'"
	printf -v "$1" '%s' "$f"
}

sql_literal() { printf "'%s'" "${1//\'/\'\'}"; }
