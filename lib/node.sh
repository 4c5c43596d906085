# shellcheck shell=bash
# SQL in a lab node and the checks built on it: psql as the superuser inside
# a node (peer authentication on the local socket: no password anywhere),
# one value, mv_sum against t1, an order-independent fingerprint of a table,
# stopping and resuming the jobs, waiting for a subscription to catch up.
# Sourced; needs lib/common.sh and lib/compose.sh, and a function
#   node_cid NODE -> container id (empty if none)
# from the caller (the topology knows its nodes).
#
# lab_db: the lab database (opsdemo.database, cron.database_name).

lab_db=${lab_db:-postgres}

# The container of a node that is running, or die saying what it is.
running_cid() { # node
	local cid state
	cid=$(node_cid "$1")
	[[ -n $cid ]] || die "the $1 container does not exist (make up)"
	state=$(container_state "$cid")
	[[ $state == running* ]] || die "the $1 container is not running ($state; make up, or make logs NODE=$1)"
	printf '%s' "$cid"
}

node_psql() { # node [psql args...]
	local cid limit=()
	cid=$(running_cid "$1") || return 1
	shift
	# node_psql_limit (seconds): the caller's bound on the whole call.
	# statement_timeout cannot be one: a commit waiting for a synchronous
	# standby is past it.
	[[ -z ${node_psql_limit:-} ]] || limit=(timeout -k 5 "$node_psql_limit")
	# NOTICEs like "extension ... already exists, skipping" are noise here.
	"${limit[@]}" docker exec -i -u postgres -e PGOPTIONS='-c client_min_messages=warning' "$cid" \
		psql -X -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -U postgres -d "$lab_db" "$@"
}

node_value() { node_psql "$1" -At -c "$2"; } # node sql -> one value

node_true() { [[ $(node_value "$1" "$2") == t ]]; } # node sql: succeeds on true

# Groups of mv_sum that differ from the aggregate of t1 (0: exact).
mv_sum_differences() { node_value "$1" "SELECT count(*) FROM opsdemo_mv_sum_verify()"; }

mv_sum_exact() { # node
	local bad
	bad=$(mv_sum_differences "$1") || return 1
	[[ $bad == 0 ]] || { echo "    $1: $bad mv_sum groups differ from t1"; return 1; }
}

# Row count and two sums of 64-bit slices of each row's md5: the same for
# the same set of rows in any order, in constant memory (string_agg of
# every row would hit 1 GB at a few million rows).
fingerprint() { # node table
	node_value "$1" "SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; SET extra_float_digits = 3;
		SELECT count(*) || ' ' || coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint::numeric), 0)
		       || ' ' || coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint::numeric), 0)
		  FROM (SELECT md5(r::text) AS h FROM $2 r) x" | tail -n 1
}

# The jobs on a primary, stopped: the worker (after its current tick) or
# the active pg_cron jobs.  Prints what to give resume_jobs.
stop_jobs() { # node -> "worker" / "cron:<jobid>,..." / "none"
	local was cron_ids
	was=$(node_value "$1" "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'pg_opsdemo scheduler')") || return 1
	cron_ids=
	if node_true "$1" "SELECT to_regclass('cron.job') IS NOT NULL"; then
		cron_ids=$(node_value "$1" "SELECT coalesce(string_agg(jobid::text, ','), '') FROM cron.job
			WHERE jobname LIKE 'opsdemo%' AND active") || return 1
	fi
	if [[ $was == t ]]; then
		node_value "$1" "SELECT opsdemo_worker_stop()" >/dev/null || return 1
		wait_until 60 node_true "$1" "SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'pg_opsdemo scheduler')" ||
			{ echo "    the scheduler worker did not stop within 60 s" >&2; return 1; }
		echo worker
	elif [[ -n $cron_ids ]]; then
		node_value "$1" "SELECT cron.alter_job(j, active => false) FROM unnest('{$cron_ids}'::bigint[]) j" >/dev/null || return 1
		# pg_cron reloads its jobs within a second or so; a run that
		# started before stays until it ends.
		sleep 2
		wait_until 60 node_true "$1" "SELECT NOT EXISTS (SELECT FROM cron.job_run_details
			WHERE jobid = ANY ('{$cron_ids}') AND status IN ('starting', 'running'))" ||
			{ echo "    pg_cron runs did not end within 60 s" >&2; return 1; }
		echo "cron:$cron_ids"
	else
		echo none
	fi
}

resume_jobs() { # node what-stop_jobs-printed
	case $2 in
	worker) node_value "$1" "SELECT opsdemo_worker_start()" >/dev/null ;;
	cron:*) node_value "$1" "SELECT cron.alter_job(j, active => true) FROM unnest('{${2#cron:}}'::bigint[]) j" >/dev/null ;;
	none) ;;
	*) return 1 ;;
	esac
}

# The slot of a subscription has confirmed everything the primary has
# written up to now (with the jobs stopped: the replica has it all).
wait_slot_caught_up() { # primary-node slot limit-seconds
	local lsn
	lsn=$(node_value "$1" "SELECT pg_current_wal_lsn()") || return 1
	wait_until "$3" node_true "$1" "SELECT coalesce((SELECT confirmed_flush_lsn >= '$lsn'
		FROM pg_replication_slots WHERE slot_name = '$2'), false)" || {
		echo "    slot $2 has not confirmed $lsn after $3 s:" \
			"$(node_value "$1" "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$2'")" >&2
		return 1
	}
}
