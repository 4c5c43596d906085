# shellcheck shell=bash
# shellcheck disable=SC2154  # pg, rows, scheduler, lab_db, ...: set by lab/lab
# shellcheck disable=SC2034  # topology_*, OPSDEMO_LAB_SUBNET: read by lab/lab
# Topology "logical" (seed 000's lab): postgres-primary runs pg_opsdemo with
# t1, its jobs and the publication pub_t1; postgres-replica subscribes to it
# (sub_t1) and keeps its own mv_sum.  Sourced by lab/lab, which provides
# the settings, lib/ and the common commands.

topology_nodes=(primary replica)
# Settings of this topology in the env file (besides lab/lab's own).
topology_keys=(OPSDEMO_PRIMARY_PORT OPSDEMO_REPLICA_PORT OPSDEMO_LAB_SUBNET OPSDEMO_PROJECT)

# The replication role (docker/entrypoint's pg_hba lines name it) and the
# jobs' role (opsdemo.role in docker/postgresql.lab.conf).
repl_user=opsdemo_repl
job_role=opsdemo_job

service_of() {
	case $1 in
	primary | postgres-primary) echo postgres-primary ;;
	replica | postgres-replica) echo postgres-replica ;;
	*) die "unknown node '$1' of the logical lab (primary or replica)" ;;
	esac
}

topology_settings() {
	# Kept from before the lab had topologies: existing volumes stay found.
	project=$(setting OPSDEMO_PROJECT "opsdemo-pg$pg")
	# Outside Docker's default address pools (172.17-31.0.0/16,
	# 192.168.0.0/16), so it cannot overlap a network Docker allocated for
	# another project.
	OPSDEMO_LAB_SUBNET=$(setting OPSDEMO_LAB_SUBNET "10.213.$pg.0/24")
	local pport rport
	pport=$(setting OPSDEMO_PRIMARY_PORT 55432)
	rport=$(setting OPSDEMO_REPLICA_PORT 55433)
	port_check OPSDEMO_PRIMARY_PORT "$pport"
	port_check OPSDEMO_REPLICA_PORT "$rport"
	# Loopback only.  An empty port (the tests) lets Docker pick a free one.
	export OPSDEMO_PRIMARY_PUBLISH=127.0.0.1:$pport OPSDEMO_REPLICA_PUBLISH=127.0.0.1:$rport
}

# What each node holds: both the superuser's password (initdb, first start
# only); the replica also the replication role's, as one .pgpass line
# scoped to the primary, its port, database and role.
topology_secrets() {
	write_secret "$OPSDEMO_SECRETS/postgres-primary" postgres_password "$postgres_password"
	write_secret "$OPSDEMO_SECRETS/postgres-replica" postgres_password "$postgres_password"
	write_secret "$OPSDEMO_SECRETS/postgres-replica" pgpass \
		"postgres-primary:5432:$lab_db:$repl_user:$(pgpass_escape "$repl_password")"
}

# A running node reads its secrets at start; a changed env file reaches it
# now (the next connection of the apply worker uses it).
topology_refresh_secrets() {
	docker exec -u 0 "$(running_cid replica)" entrypoint refresh-secrets
}

# ---- setup ------------------------------------------------------------------------

setup_primary() {
	say "primary: extensions, roles, data, publication, jobs"
	ensure_extensions primary pgcrypto pg_opsdemo
	ensure_password primary postgres "$postgres_password"
	ensure_roles primary
	ensure_password primary "$repl_user" "$repl_password"

	top_up_rows primary
	node_psql primary <<-'SQL'
		SELECT NOT EXISTS (SELECT FROM pg_publication WHERE pubname = 'pub_t1') AS need_pub \gset
		\if :need_pub
		-- Changes of t1's partitions are published as changes of t1, so the
		-- replica's own partitions need not match.  mv_sum is not published:
		-- the replica maintains its own from the replicated t1.
		CREATE PUBLICATION pub_t1 FOR TABLE t1 WITH (publish_via_partition_root = true);
		\endif
	SQL
	start_jobs primary
}

# The slot of sub_t1 on the primary: "" (none), or "active|wal_status".
slot_state() {
	node_value primary "SELECT coalesce((SELECT active || '|' || coalesce(wal_status, '')
		FROM pg_replication_slots WHERE slot_name = 'sub_t1'), '')"
}

has_subscription() { node_true replica "SELECT EXISTS (SELECT FROM pg_subscription WHERE subname = 'sub_t1')"; }

# What drifted between the nodes, repaired before subscribing:
# - the replica lost its volume (no subscription) while its slot is still on
#   the primary: the slot is an orphan and CREATE SUBSCRIPTION would fail on
#   it: drop it (unless something streams from it);
# - the primary lost its volume (no slot) or the slot was invalidated
#   (max_slot_wal_keep_size): the subscription cannot go on and the
#   replica's rows are stale: drop it; a new one copies everything.
repair_replication() {
	local slot
	slot=$(slot_state)
	if has_subscription; then
		if [[ -z $slot || $slot == *'|lost' ]]; then
			if [[ -z $slot ]]; then
				say "replica: the primary has no slot sub_t1 (its data was made anew?): dropping sub_t1 to subscribe again with a full copy"
			else
				say "replica: the primary invalidated slot sub_t1 (the replica fell more than max_slot_wal_keep_size behind): dropping sub_t1 to subscribe again with a full copy"
			fi
			# Without its slot the subscription can only be dropped locally.
			node_psql replica >/dev/null <<-'SQL'
				ALTER SUBSCRIPTION sub_t1 DISABLE;
				ALTER SUBSCRIPTION sub_t1 SET (slot_name = NONE);
				DROP SUBSCRIPTION sub_t1;
			SQL
			[[ -z $slot ]] || node_psql primary -c "SELECT pg_drop_replication_slot('sub_t1')" >/dev/null
		fi
	elif [[ -n $slot ]]; then
		if [[ $slot == t* ]]; then
			die "the primary's slot sub_t1 is in use, but the replica has no subscription sub_t1: something else streams from it (make status; SELECT * FROM pg_stat_replication on the primary)"
		fi
		say "primary: dropping the orphan slot sub_t1 (the replica has no subscription: it lost its data?)"
		node_psql primary -c "SELECT pg_drop_replication_slot('sub_t1')" >/dev/null
	fi
}

# Open transactions on a node, for the message of a wait that timed out.
open_transactions() { # node
	node_psql "$1" -P footer=off -c "SELECT pid, usename, application_name, state,
		date_trunc('second', now() - xact_start) AS open_for, left(query, 60) AS query
		FROM pg_stat_activity WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()
		  AND backend_type = 'client backend' ORDER BY xact_start" >&2 || true
}

setup_replica() {
	say "replica: extensions and subscription"
	ensure_extensions replica pg_opsdemo
	ensure_password replica postgres "$postgres_password"
	# The months the generator filled, so the copy lands in monthly
	# partitions rather than all in t1_default.
	node_value replica "SELECT opsdemo_partitions_ensure(date_trunc('month', now()) - interval '4 months',
		date_trunc('month', now()) + interval '2 months')" >/dev/null
	repair_replication
	has_subscription && return 0

	# The replica's t1 is only ever a copy; a new subscription copies
	# everything again, so whatever is left must go first.  A session
	# holding a lock on t1 would make TRUNCATE wait: bounded.
	local out
	if ! out=$(node_psql replica -c "SET lock_timeout = '${lock_wait}s'" -c "TRUNCATE t1" 2>&1); then
		echo "$out" >&2
		if grep -q 'lock timeout' <<<"$out"; then
			open_transactions replica
			die "replica: TRUNCATE t1 waited $lock_wait s for a lock on t1 held by a session above; end it (or SELECT pg_terminate_backend(pid) on the replica) and run make up again"
		fi
		die "replica: TRUNCATE t1 failed (above)"
	fi
	# No password here: the apply worker's libpq takes it from the
	# replica's ~/.pgpass (its secret file), so it is neither in SQL nor in
	# pg_subscription.  connect_timeout: a dead primary fails instead of
	# hanging.  require_auth (libpq 16+): the password only ever goes into
	# a SCRAM exchange, never in clear to whatever answers.
	local auth=
	((pg >= 16)) && auth=' require_auth=scram-sha-256'
	# Creating the slot waits for every transaction open on the primary to
	# end: bounded, and the blocker is named.
	if ! out=$(node_psql replica 2>&1 <<-SQL
		SET statement_timeout = '${slot_wait}s';
		CREATE SUBSCRIPTION sub_t1
		  CONNECTION 'host=postgres-primary port=5432 dbname=$lab_db user=$repl_user connect_timeout=10 application_name=sub_t1$auth'
		  PUBLICATION pub_t1 WITH (copy_data = true);
	SQL
	); then
		echo "$out" >&2
		if grep -q 'password authentication failed' <<<"$out"; then
			die "the replica could not log in to the primary as $repl_user: wrong replication password (OPSDEMO_REPL_PASSWORD in $env_file; make up sets it on both nodes)"
		fi
		if grep -q 'statement timeout' <<<"$out"; then
			open_transactions primary
			die "CREATE SUBSCRIPTION waited $slot_wait s: creating slot sub_t1 waits for the transactions open on the primary (above) to end; end them (SELECT pg_terminate_backend(pid) on the primary) and run make up again"
		fi
		die "creating subscription sub_t1 failed (above)"
	fi
}

wait_synced() { # timeout-seconds
	wait_until "$1" node_true replica "SELECT NOT EXISTS (SELECT FROM pg_subscription_rel r
		JOIN pg_subscription s ON s.oid = r.srsubid WHERE s.subname = 'sub_t1' AND r.srsubstate <> 'r')" ||
		die "sub_t1's initial copy is not finished after $1 s (make logs NODE=replica)"
}

# The apply worker streams from the primary; when it cannot (a wrong
# password, the primary unreachable), say why instead of reporting a lab
# that does not replicate.
wait_streaming() { # timeout-seconds
	if ! wait_until "$1" node_true primary "SELECT EXISTS (SELECT FROM pg_stat_replication
		WHERE application_name = 'sub_t1' AND state = 'streaming')"; then
		docker logs --since "$(($1 + 10))s" "$(node_cid replica)" 2>&1 |
			grep -E 'ERROR|FATAL' | tail -n 5 >&2 || true
		die "sub_t1 is not streaming after $1 s (replica log above; make status)"
	fi
}

topology_setup() {
	setup_primary
	setup_replica
	wait_synced 300
	wait_streaming 60
}

topology_banner() {
	local pport rport
	pport=$(docker port "$(node_cid primary)" 5432 | sed -n '1s/.*://p')
	rport=$(docker port "$(node_cid replica)" 5432 | sed -n '1s/.*://p')
	cat <<-EOF

		pg_opsdemo lab is up (PostgreSQL $pg, project $project).
		  primary  psql "host=127.0.0.1 port=$pport user=postgres dbname=postgres"   (make psql-primary)
		  replica  psql "host=127.0.0.1 port=$rport user=postgres dbname=postgres"   (make psql-replica)
		  password POSTGRES_PASSWORD in $env_file
		  make status    jobs, rows, replication lag, mv_sum checks
		  make logs      server logs;  make down / make lab-clean to stop / wipe
	EOF
}

# ---- generate ---------------------------------------------------------------------

topology_cmd_generate() {
	(($#)) || die "usage: lab/lab generate N"
	docker_usable || exit 1
	load_settings
	generate primary "$1"
}

# ---- status -----------------------------------------------------------------------

topology_status() {
	local p r pv rv
	pv=$(node_value primary "SHOW server_version")
	rv=$(node_value replica "SHOW server_version")
	echo "pg_opsdemo lab $project   $(date -u '+%F %T') UTC"
	echo
	IFS='|' read -r -a p <<<"$(node_facts primary)"
	IFS='|' read -r -a r <<<"$(node_facts replica)"
	printf '%-22s %-28s %-28s\n' "" "primary" "replica" \
		"server" "PostgreSQL ${pv%% *}" "PostgreSQL ${rv%% *}" \
		"t1 rows" "${p[0]}" "${r[0]}" \
		"  pending (status 0)" "${p[1]}" "${r[1]}" \
		"  newest row (UTC)" "${p[2]}" "${r[2]}" \
		"mv_sum" "$(mv_sum_summary primary)" "$(mv_sum_summary replica)"

	echo
	echo "Jobs on the primary (scheduler: $scheduler)"
	show_jobs primary

	echo
	echo "Replication pub_t1 -> sub_t1"
	node_psql primary -P footer=off -c "
		SELECT s.slot_name, s.active, coalesce(r.state, 'not connected') AS walsender, s.wal_status,
		       pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)) AS retained_wal,
		       pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn) AS lag_bytes,
		       round(extract(epoch FROM coalesce(r.replay_lag, interval '0'))::numeric, 3) AS lag_seconds
		  FROM pg_replication_slots s
		  LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
		 WHERE s.slot_name = 'sub_t1'" || true
	node_psql replica -P footer=off -c "
		SELECT s.subname, s.subenabled AS enabled, st.pid IS NOT NULL AS apply_running,
		       round(extract(epoch FROM now() - st.last_msg_receipt_time)::numeric, 1) AS last_msg_s_ago,
		       (SELECT string_agg(DISTINCT srsubstate::text, ',') FROM pg_subscription_rel WHERE srsubid = s.oid) AS table_states
		  FROM pg_subscription s
		  LEFT JOIN pg_stat_subscription st ON st.subid = s.oid AND st.relid IS NULL
		 WHERE s.subname = 'sub_t1'" || true
}
