# shellcheck shell=bash
# A throwaway local PostgreSQL server (sourced, not run), shared by
# test/run-tests and the bench/ scripts.
#
# Provides (functions only; nothing runs at source time):
#   pgserver_locale           unset LC_* and LANGUAGE; LANG=C.UTF-8 (or C)
#   pgserver_pg_config WHO    PG_CONFIG made absolute, its bindir first on
#                             PATH; both exported.  Prints "WHO: pg_config
#                             not found (...)" and returns 1 when missing
#   pgserver_user NAME        the system user the server runs as when we are
#                             root (created if missing); no-op otherwise
#   as_server_user CMD...     CMD as that user when root (runuser
#                             --preserve-environment, HOME=$pgserver_home,
#                             in $pgserver_home), else CMD directly
#   pgserver_init DIR PORT [LINE...]
#                             initdb into DIR/pgdata (superuser postgres,
#                             trust local, reject host, UTF8, $LANG,
#                             --no-sync), then appends to postgresql.conf:
#                             no TCP, unix socket in DIR, PORT, the LINEs
#   pgserver_start            pg_ctl start -w -t 120 (stdout: pg_ctl's
#                             messages; on failure the log's last 50 lines
#                             go to stderr, whatever postmaster the start
#                             left is stopped, and it returns 1)
#   pgserver_stop [MODE]      pg_ctl stop -m MODE (default fast) -w if a
#                             server may be running; always returns 0
#
# Expects: pg_config on PATH or $PG_CONFIG (pgserver_pg_config), initdb and
# pg_ctl on PATH (pgserver_pg_config puts them there), and for root the
# useradd and runuser commands.  DIR must exist and be writable by the
# server user (chown it when root), and should be short and under /tmp:
# the socket lives in it, and socket paths are limited to ~100 bytes.
# PORT only names the socket file then: it cannot collide with another
# server's.
#
# Variables (the caller may set those marked "in" before calling):
#   pgserver_os_user   (set by pgserver_user) the server's system user
#   pgserver_home      (in) HOME and working directory of as_server_user
#                      when root; default: DIR of pgserver_init
#   pgserver_caller    (in) named in the "# added by ..." comment of
#                      postgresql.conf; default: the script's name
#   pgserver_logdir    (in) where initdb.log and server.log go; default: DIR
#   pgserver_dir pgserver_data pgserver_port
#                      (set by pgserver_init) DIR, DIR/pgdata, PORT
#   pgserver_running   1 while a server of pgserver_start may be running
#                      (from just before its pg_ctl start until
#                      pgserver_stop); the caller's EXIT trap calls
#                      pgserver_stop when it is 1 (pgserver_stop itself
#                      does nothing when it is 0).

pgserver_running=0

# Untranslated messages (callers grep for "warning:") and a UTF8 cluster
# with the same collation on every machine.
pgserver_locale() {
	unset LC_ALL LC_CTYPE LC_COLLATE LC_MESSAGES LC_MONETARY LC_NUMERIC LC_TIME LANGUAGE
	if locale -a 2>/dev/null | grep -qixE 'c\.utf-?8'; then
		export LANG=C.UTF-8
	else
		export LANG=C
	fi
}

pgserver_pg_config() { # who (prefix of the error message)
	local found
	# Absolute, because sudo resets PATH.
	if ! found=$(command -v "${PG_CONFIG:-pg_config}"); then
		echo "$1: pg_config not found (install postgresql-server-dev-15 or set PG_CONFIG)" >&2
		return 1
	fi
	PG_CONFIG=$found
	# Debian keeps initdb and pg_ctl out of /usr/bin.
	PATH=$("$PG_CONFIG" --bindir):$PATH || return 1
	export PATH PG_CONFIG
}

pgserver_user() { # name
	pgserver_os_user=$1
	((EUID == 0)) || return 0
	# PostgreSQL refuses to run as root.
	if ! id -u "$pgserver_os_user" >/dev/null 2>&1; then
		useradd --system --user-group --no-create-home --home-dir /nonexistent \
			--shell /usr/sbin/nologin "$pgserver_os_user" || return 1
	fi
}

# --preserve-environment keeps PATH, LANG and the PG* variables; HOME (and
# the working directory: the tools look up their own path) must be
# somewhere the server user can reach.
as_server_user() {
	if ((EUID == 0)); then
		local home=${pgserver_home:-${pgserver_dir:?pgserver_home is not set}}
		(cd "$home" && runuser -u "${pgserver_os_user:?pgserver_user was not called}" \
			--preserve-environment -- \
			env HOME="$home" USER="$pgserver_os_user" LOGNAME="$pgserver_os_user" "$@")
	else
		"$@"
	fi
}

pgserver_init() { # dir port [postgresql.conf line...]
	pgserver_dir=$1
	pgserver_port=$2
	pgserver_data=$1/pgdata
	shift 2
	local logdir=${pgserver_logdir:-$pgserver_dir}
	# Superuser "postgres" whoever runs this, so that expected output that
	# shows owners or current_user is the same for root (CI) and developers.
	if ! as_server_user initdb -D "$pgserver_data" --username=postgres --auth-local=trust \
		--auth-host=reject --encoding=UTF8 --locale="$LANG" --no-sync \
		>"$logdir/initdb.log" 2>&1; then
		cat "$logdir/initdb.log" >&2
		return 1
	fi
	{
		echo
		echo "# added by ${pgserver_caller:-${0##*/}}"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$pgserver_dir'"
		echo "port = $pgserver_port"
		(($# == 0)) || printf '%s\n' "$@"
	} | as_server_user tee -a "$pgserver_data/postgresql.conf" >/dev/null
}

pgserver_start() {
	local log=${pgserver_logdir:-$pgserver_dir}/server.log
	pgserver_running=1
	if ! as_server_user pg_ctl -D "$pgserver_data" -l "$log" -w -t 120 start; then
		tail -n 50 "$log" >&2 2>/dev/null
		# A start that timed out can leave a postmaster behind.
		pgserver_stop immediate 2>/dev/null
		return 1
	fi
}

# pg_ctl's stdout goes to /dev/null, its stderr stays (callers may silence it).
pgserver_stop() { # [mode: smart, fast (default), immediate]
	if ((pgserver_running)); then
		as_server_user pg_ctl -D "$pgserver_data" -m "${1:-fast}" -w stop >/dev/null || true
	fi
	pgserver_running=0
}
