# shellcheck shell=bash
# shellcheck disable=SC2154  # pg, rows, scheduler, lab_db, ...: set by lab/lab
# shellcheck disable=SC2034  # topology_*, OPSDEMO_*: read by lab/lab and compose
# Topology "streaming" (seed 004): pg0 starts as the primary (pg_opsdemo with
# t1 and its jobs: the WAL source); pg1 is an asynchronous standby, pg2 and
# pg3 the candidates for synchronous_standby_names.  Each standby is cloned
# from pg0 by its entrypoint (pg_basebackup) with a physical slot of its
# name and streams with its name as application_name.  After a promotion
# the data directories, not the compose file, say who is the primary.
# Sourced by lab/lab, which provides the settings, lib/ and the common
# commands.

topology_nodes=(pg0 pg1 pg2 pg3)
# Nodes are stopped and killed on purpose: status shows them as down.
topology_status_shows_down=1
topology_keys=(OPSDEMO_STREAMING_PORT OPSDEMO_STREAMING_SUBNET OPSDEMO_STREAMING_PROJECT)

repl_user=opsdemo_repl
job_role=opsdemo_job

service_of() {
	case $1 in
	pg[0-3]) echo "$1" ;;
	*) die "unknown node '$1' of the streaming lab (pg0, pg1, pg2 or pg3)" ;;
	esac
}

topology_settings() {
	project=$(setting OPSDEMO_STREAMING_PROJECT "opsdemo-streaming-pg$pg")
	OPSDEMO_LAB_SUBNET=$(setting OPSDEMO_STREAMING_SUBNET "10.215.$pg.0/24")
	publish_node_ports OPSDEMO_STREAMING_PORT 55440 OPSDEMO_PORT_PG 0 1 2 3
}

# Any node may stream from or subscribe to any other one (lab/lab).
topology_secrets() { peer_secrets; }

topology_refresh_secrets() { refresh_running_secrets; }

# ---- roles of the nodes -------------------------------------------------------------

# The one running node that is not in recovery; dies when there is none,
# or more than one (the old primary started again without a rejoin).
current_primary() { # [node to leave out: the old primary a rejoin is for]
	local node answer primaries=()
	# All nodes asked at once (a docker exec each), in the order they answer.
	while read -r node answer; do
		[[ $answer == f ]] && primaries+=("$node")
	done < <(
		for node in $(running_nodes); do
			[[ $node != "${1:-}" ]] && echo "$node $(in_recovery "$node" 2>/dev/null)" &
		done
		wait
	)
	case ${#primaries[@]} in
	1) echo "${primaries[0]}" ;;
	0) die "no running node is a primary (make status LAB=streaming; make promote LAB=streaming NODE=<standby>)" ;;
	*) die "${primaries[*]} are all primaries: the old one must rejoin (make rejoin LAB=streaming NODE=<old primary>) before anything else" ;;
	esac
}

# ---- up ---------------------------------------------------------------------------

# The first time, pg0 comes up and gets its roles before the standbys clone
# it (their entrypoint logs in as the replication role).  Later, every node
# starts from its own data and the primary is whichever is not in recovery.
topology_start() {
	if ! docker volume inspect "${project}_pg0-data" >/dev/null 2>&1; then
		start_nodes pg0
		setup_primary pg0
		setup_done=1
		ensure_slots pg0 pg1 pg2 pg3
		start_nodes pg1 pg2 pg3
	else
		start_nodes "${topology_nodes[@]}"
	fi
}

# Physical slots on a primary for the given standbys, WAL reserved now.
ensure_slots() { # primary standby...
	local primary=$1 node
	shift
	for node in "$@"; do
		node_psql "$primary" -c "SELECT pg_create_physical_replication_slot('$node', true)
			WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = '$node')" >/dev/null
	done
}

# The replication role may also run pg_rewind against a primary: it reads
# the data directory through these functions (a role that can stream the
# whole cluster gains nothing it could not read before).
setup_primary() { # node
	say "$1: extensions, roles, data, jobs"
	ensure_extensions "$1" pgcrypto pg_opsdemo
	ensure_password "$1" postgres "$postgres_password"
	ensure_roles "$1"
	node_psql "$1" >/dev/null <<-SQL
		GRANT EXECUTE ON FUNCTION pg_catalog.pg_ls_dir(text, boolean, boolean) TO $repl_user;
		GRANT EXECUTE ON FUNCTION pg_catalog.pg_stat_file(text, boolean) TO $repl_user;
		GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text) TO $repl_user;
		GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean) TO $repl_user;
	SQL
	ensure_password "$1" "$repl_user" "$repl_password"
	top_up_rows "$1"
	start_jobs "$1"
}

# The given standbys (default: every running one) stream from the primary
# through their slots.
wait_standbys_streaming() { # primary limit [standby...]
	local node want=() standbys=("${@:3}")
	((${#standbys[@]})) || mapfile -t standbys < <(running_nodes)
	for node in "${standbys[@]}"; do
		[[ $node == "$1" ]] || want+=("'$node'")
	done
	((${#want[@]})) || return 0
	wait_until "$2" node_true "$1" "SELECT count(*) = ${#want[@]} FROM pg_stat_replication
		WHERE application_name IN ($(IFS=,; echo "${want[*]}")) AND state = 'streaming'" ||
		die "not every standby streams from $1 after $2 s (make status LAB=streaming)"
}

topology_setup() {
	local primary
	primary=$(current_primary)
	[[ $primary == pg0 && -n ${setup_done:-} ]] || setup_primary "$primary"
	wait_standbys_streaming "$primary" 120
}

topology_banner() {
	local node
	echo
	echo "pg_opsdemo streaming lab is up (PostgreSQL $pg, project $project; primary $(current_primary))."
	for node in "${topology_nodes[@]}"; do
		printf '  %s  psql "host=127.0.0.1 port=%s user=postgres dbname=postgres"   (make psql LAB=streaming NODE=%s)\n' \
			"$node" "$(docker port "$(node_cid "$node")" 5432 | sed -n '1s/.*://p')" "$node"
	done
	echo "  make status LAB=streaming   roles, timelines, sync states, LSNs, lag, slots, jobs"
}

# ---- status -------------------------------------------------------------------------

topology_status() {
	local node primary
	primary=$(current_primary)
	echo "pg_opsdemo streaming lab $project   $(date -u '+%F %T') UTC"
	echo
	printf '%-5s %-9s %-9s %-14s %-14s %s\n' node role timeline "WAL LSN" "replay LSN" "system identifier"
	for node in "${topology_nodes[@]}"; do
		local cid
		cid=$(node_cid "$node")
		if [[ -z $cid || $(container_state "$cid") != running* ]]; then
			printf '%-5s %s\n' "$node" "down ($(if [[ -n $cid ]]; then container_state "$cid"; else echo not created; fi))"
			continue
		fi
		# A standby's timeline is the one it receives (its control file
		# changes only at its next restartpoint); its WAL LSN is what it
		# received, a primary's what it wrote.
		node_psql "$node" -At -F ' ' -c "SELECT CASE WHEN pg_is_in_recovery() THEN 'standby' ELSE 'primary' END,
			CASE WHEN pg_is_in_recovery()
			     THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver), (SELECT timeline_id FROM pg_control_checkpoint()))
			     ELSE (SELECT timeline_id FROM pg_control_checkpoint()) END,
			CASE WHEN pg_is_in_recovery() THEN coalesce(pg_last_wal_receive_lsn()::text, '-') ELSE pg_current_wal_lsn()::text END,
			CASE WHEN pg_is_in_recovery() THEN coalesce(pg_last_wal_replay_lsn()::text, '-') ELSE '-' END,
			(SELECT system_identifier FROM pg_control_system())" |
			while read -r role tli recv replay sysid; do
				printf '%-5s %-9s %-9s %-14s %-14s %s\n' "$node" "$role" "$tli" "$recv" "$replay" "$sysid"
			done
	done
	echo
	echo "Standbys of $primary (synchronous_standby_names = '$(node_value "$primary" "SHOW synchronous_standby_names")')"
	node_psql "$primary" -P footer=off -c "
		SELECT application_name AS standby, state, sync_state, sync_priority,
		       sent_lsn, write_lsn, flush_lsn, replay_lsn,
		       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) AS lag_bytes,
		       round(extract(epoch FROM coalesce(replay_lag, interval '0'))::numeric, 3) AS lag_seconds
		  FROM pg_stat_replication ORDER BY application_name"
	echo "Slots on $primary"
	node_psql "$primary" -P footer=off -c "
		SELECT slot_name, slot_type, active, wal_status,
		       pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)) AS retained_wal
		  FROM pg_replication_slots ORDER BY slot_name"
	echo "Jobs on $primary (scheduler: $scheduler)"
	show_jobs "$primary"
	echo
	echo "t1 on $primary: $(node_facts "$primary" | tr '|' ' ' | awk '{ print $1 " rows, " $2 " pending, newest " $3 " " $4 }'); mv_sum $(mv_sum_summary "$primary")"
}

# ---- commands of this topology ---------------------------------------------------

# The node argument of a command, checked.
node_arg() { # command node
	[[ -n ${2:-} ]] || die "usage: make $1 LAB=streaming NODE=<pg0|pg1|pg2|pg3>"
	service_of "$2" >/dev/null
}

# wal-load N: opsdemo_generate(N) on the primary, and the WAL it made.
topology_cmd_wal-load() {
	[[ ${1:-} =~ ^[1-9][0-9]*$ ]] || die "usage: make wal-load LAB=streaming N=<rows>"
	docker_usable || exit 1
	load_settings
	local primary before after
	primary=$(current_primary)
	before=$(node_value "$primary" "SELECT pg_current_wal_lsn()")
	generate "$primary" "$1"
	after=$(node_value "$primary" "SELECT pg_current_wal_lsn()")
	say "$primary: WAL $before -> $after: $(node_value "$primary" "SELECT pg_size_pretty(pg_wal_lsn_diff('$after', '$before'))")"
}

# sync SPEC: synchronous_standby_names on the primary ('FIRST 1 (pg2, pg3)',
# 'ANY 1 (pg2, pg3)', or off), then the standbys' sync states once the
# walsenders have taken it.
topology_cmd_sync() {
	local spec=${1:-}
	[[ -n $spec ]] || die "usage: make sync LAB=streaming SYNC='FIRST 1 (pg2, pg3)' | 'ANY 1 (pg2, pg3)' | off"
	[[ $spec == off ]] && spec=
	[[ $spec =~ ^[A-Za-z0-9_\ \(\),*]*$ ]] || die "SYNC='$1': expected e.g. 'FIRST 1 (pg2, pg3)', 'ANY 1 (pg2, pg3)' or off"
	# A name no standby uses is the classic pitfall: synchronous_standby_names
	# accepts it, and every commit then waits for a standby that never comes.
	local name names
	read -ra names < <(sed -E 's/^[[:space:]]*((FIRST|ANY)[[:space:]]+)?([0-9]+[[:space:]]*)?\(?//I; s/\)[[:space:]]*$//' <<<"$spec" | tr ',' ' ')
	for name in "${names[@]}"; do
		[[ $name == pg[0-3] || $name == '*' ]] ||
			die "SYNC='$1' names '$name', which is no node of this lab (pg0..pg3): no standby would ever match it, and every commit on the primary would wait for it (wait_event SyncRep) for ever"
	done
	docker_usable || exit 1
	load_settings
	local primary node
	primary=$(current_primary)
	# On every running node: a standby keeps the policy for the day it is
	# promoted (ALTER SYSTEM works in recovery; the setting only acts on a
	# primary).
	for node in $(running_nodes); do
		node_psql "$node" -c "ALTER SYSTEM SET synchronous_standby_names = $(sql_literal "$spec")" -c "SELECT pg_reload_conf()" >/dev/null
	done
	wait_until 10 node_true "$primary" "SELECT current_setting('synchronous_standby_names') = $(sql_literal "$spec")" ||
		die "$primary did not take synchronous_standby_names = '$spec'"
	# The walsenders recompute sync_state when they next report.
	sleep 1
	say "$primary: synchronous_standby_names = '$spec'"
	[[ -z $spec ]] || node_true "$primary" "SELECT EXISTS (SELECT FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum'))" ||
		say "WARNING: no running standby is synchronous now: every commit on $primary waits (wait_event SyncRep) until one named in '$spec' streams (make start LAB=streaming NODE=...) or make sync LAB=streaming SYNC=off"
	node_psql "$primary" -P footer=off -c "SELECT application_name AS standby, state, sync_state, sync_priority
		FROM pg_stat_replication ORDER BY application_name"
}

topology_cmd_stop() {
	node_arg stop "${1:-}"
	docker_usable || exit 1
	load_settings
	dc stop "$1" >/dev/null
	say "$1 stopped (fast shutdown)"
}

topology_cmd_kill() {
	node_arg kill "${1:-}"
	docker_usable || exit 1
	load_settings
	sigkill_node "$1"
}

topology_cmd_start() {
	node_arg start "${1:-}"
	docker_usable || exit 1
	load_settings
	start_nodes "$1"
	say "$1 started: $( [[ $(in_recovery "$1") == t ]] && echo standby || echo primary)"
}

# A standby of the given primary: its slot there, then primary_conninfo
# and primary_slot_name (reloadable since PostgreSQL 13: the walreceiver
# reconnects; no restart, no re-clone, the new timeline is followed).
repoint() { # standby primary
	local auth=
	((pg >= 16)) && auth=' require_auth=scram-sha-256'
	ensure_slots "$2" "$1"
	node_psql "$1" >/dev/null <<-SQL
		ALTER SYSTEM SET primary_conninfo = 'host=$2 port=5432 user=$repl_user application_name=$1 connect_timeout=10$auth';
		ALTER SYSTEM SET primary_slot_name = '$1';
		SELECT pg_reload_conf();
	SQL
}

# promote NODE: a standby becomes the primary (pg_promote waits for it);
# the other running standbys follow it.  The old primary must be down: two
# primaries would both take writes.
topology_cmd_promote() {
	node_arg promote "${1:-}"
	docker_usable || exit 1
	load_settings
	local node=$1 other
	running_cid "$node" >/dev/null
	[[ $(in_recovery "$node") == t ]] || die "$node is not a standby"
	for other in $(running_nodes); do
		[[ $other != "$node" && $(in_recovery "$other") == f ]] &&
			die "$other is a running primary: stop or kill it first (make stop LAB=streaming NODE=$other)"
	done
	local t0=$SECONDS
	node_true "$node" "SELECT pg_promote(wait => true, wait_seconds => 60)" || die "$node was not promoted within 60 s"
	# pg_rewind reads the new timeline from the control file: a checkpoint
	# writes it there.
	node_psql "$node" -c CHECKPOINT >/dev/null
	say "$node promoted in $((SECONDS - t0)) s: timeline $(node_value "$node" "SELECT timeline_id FROM pg_control_checkpoint()")"
	# The others were fed by the old primary independently: after a crash
	# one may have replayed WAL the promoted node never received (commits
	# not yet acknowledged).  Such a standby cannot follow the new timeline,
	# which forked off before its recovery point: it is rewound instead.
	local switch tl ahead=()
	tl=$(node_value "$node" "SELECT timeline_id FROM pg_control_checkpoint()")
	switch=$(switchpoint "$node" "$tl")
	for other in $(running_nodes); do
		[[ $other == "$node" ]] && continue
		if replayed_past "$other" "$switch"; then
			ahead+=("$other")
		else
			repoint "$other" "$node"
			say "$other follows $node"
		fi
	done
	for other in "${ahead[@]}"; do
		say "$other replayed WAL past $node's switchpoint $switch (the old primary's unacknowledged commits): it cannot follow timeline $tl as it is; rewinding it"
		rejoin_node "$other" "$node"
	done
	wait_standbys_streaming "$node" 60
	# pg_opsdemo's worker, idle while $node was a standby, starts the jobs
	# by itself now.
}

# Where the given timeline of a node forked off its parent: the last line
# of its history file.
switchpoint() { # node timeline
	node_value "$1" "SELECT split_part(line, E'\\t', 2) FROM
		regexp_split_to_table(rtrim(pg_read_file(format('pg_wal/%s.history', lpad(upper(to_hex($2)), 8, '0'))), E'\\n'), E'\\n')
		WITH ORDINALITY AS h(line, n) ORDER BY n DESC LIMIT 1"
}

# Whether a standby replayed, or will replay, WAL past an LSN.  Its
# primary is gone, so nothing more arrives: once its replay position is
# final (a backlog waited for), that position decides; WAL it received
# past it is at most a record sent in part, which the new timeline
# replaces.  When that is not sure (replay held, or still moving after
# 300 s), what it received counts too: it may replay that from its own
# pg_wal before it looks for a new timeline.
replayed_past() { # standby lsn
	local rc=0
	wait_replay_final "$1" 300 || rc=$?
	case $rc in
	0) node_true "$1" "SELECT pg_last_wal_replay_lsn() > '$2'::pg_lsn" ;;
	*)
		((rc == 1)) && say "$1 is still replaying after 300 s: deciding by the WAL it received"
		node_true "$1" "SELECT greatest(pg_last_wal_replay_lsn(), coalesce(pg_last_wal_receive_lsn(), '0/0')) > '$2'::pg_lsn"
		;;
	esac
}

# Stops the node (if it runs) and makes it a standby of the primary in a
# one-off container on its volume: `entrypoint rejoin|reclone <primary>`.
# The output goes to the named variable, also when it fails.
make_standby_of() { # node primary rejoin|reclone output-variable
	local node=$1 primary=$2 mode=$3 cid
	local -n output=$4
	cid=$(node_cid "$node")
	[[ -n $cid ]] || die "$node does not exist (make up LAB=streaming)"
	if [[ $(container_state "$cid") == running* ]]; then
		docker stop --time 60 "$cid" >/dev/null
		say "$node stopped (fast shutdown) for $mode"
	fi
	ensure_slots "$primary" "$node"
	clear_rejoin_marker "$node" "$cid"
	output=$(docker run --rm --label "com.docker.compose.project=$project" --network "${project}_lab" \
		-v "${project}_$node-data:/var/lib/postgresql/data" -v "$OPSDEMO_SECRETS/$node:/run/secrets:ro" \
		-e OPSDEMO_TOPOLOGY=streaming -e OPSDEMO_NODE_NAME="$node" -e OPSDEMO_NODE_ROLE=physical-standby \
		-e OPSDEMO_LAB_SUBNET -e OPSDEMO_LAB_GATEWAY "$OPSDEMO_IMAGE" "$mode" "$primary" 2>&1)
}

# A rejoin in place that failed leaves its marker in the node's container
# (every start of it tries the rewind again); a node made a standby by
# other means must not be rewound again at its start.  The container is
# stopped: an empty marker is copied over it (the entrypoint acts on a
# non-empty one; the directory is the postgres user's, who replaces it).
clear_rejoin_marker() { # node container
	local empty rc=0
	empty=$(mktemp -d)
	: >"$empty/opsdemo.rejoin"
	docker cp "$empty/opsdemo.rejoin" "$2:/var/lib/postgresql/opsdemo.rejoin" >/dev/null 2>&1 || rc=$?
	rm -rf "$empty"
	((rc == 0)) || say "$1: could not clear a rejoin marker in its container; if its start tries a rewind, make rejoin LAB=streaming NODE=$1"
}

# The node's existing container started again as it is and waited for:
# quicker than compose, which looks at the whole project first.
start_container() { # node
	docker start "$(node_cid "$1")" >/dev/null || die "$1 could not be started (above)"
	wait_healthy "$project" "$(service_of "$1")" "$healthy_wait" || die "$1 did not come up (above)"
}

# Why pg_rewind could not rewind, from its output, in the user's words.
rewind_failure_reason() { # pg_rewind output
	case $1 in
	*wal_log_hints*) echo "the node ran without wal_log_hints and without data checksums: pg_rewind cannot tell which pages changed" ;;
	*"could not open file"*pg_wal* | *"could not find previous WAL record"* | *"could not read WAL record"*)
		echo "the node no longer has the WAL back to the last checkpoint before the divergence (it was recycled: wal_keep_size)" ;;
	*"same timeline"*) echo "the node and the primary are on the same timeline: nothing to rewind, was the primary promoted?" ;;
	*) echo "pg_rewind failed (its output is above)" ;;
	esac
}

# rejoin NODE: the old primary becomes a standby of the current primary by
# pg_rewind (not a re-clone).  When that cannot be done it says why and
# leaves the node as it was: a re-clone deletes it, so it is the user's
# call (make reclone).
topology_cmd_rejoin() {
	node_arg rejoin "${1:-}"
	docker_reachable || exit 1
	load_settings
	# The node itself may be running as a primary still (started again
	# after a failover): the primary it joins is the other one.
	local primary
	primary=$(current_primary "$1")
	rejoin_node "$1" "$primary"
}

rejoin_node() { # node primary
	local node=$1 primary=$2 before after out
	[[ -n $primary && $primary != "$node" ]] || die "rejoin_node: no primary for $node"
	say "$node: pg_rewind from $primary"
	local rc=2
	if [[ $(container_state "$(node_cid "$node")") == running* ]]; then
		if rewind_in_place "$node" "$primary" out; then rc=0; else rc=$?; fi
		if ((rc == 1)); then
			printf '%s\n' "$out" | sed 's/^/  /' >&2
			die "$node was NOT rejoined: $(rewind_failure_reason "$out").
  It stays down.  Nothing was re-cloned.  make reclone LAB=streaming NODE=$node copies the whole cluster from $primary instead (deleting $node's data)."
		fi
	fi
	if ((rc == 2)); then
		if ! make_standby_of "$node" "$primary" rejoin out; then
			printf '%s\n' "$out" | sed 's/^/  /' >&2
			die "$node was NOT rejoined: $(rewind_failure_reason "$out").
  Nothing was re-cloned.  make reclone LAB=streaming NODE=$node copies the whole cluster from $primary instead (deleting $node's data)."
		fi
		start_container "$node"
	fi
	# The node's system identifier before the rewind (the entrypoint read
	# it from the stopped data directory).
	before=$(sed -n 's/^entrypoint: system identifier //p' <<<"$out")
	[[ -n $before ]] || die "rejoin of $node: the entrypoint did not report the system identifier"
	echo "$out" | grep -E 'servers diverged|no rewind required|Done!|rewound' | sed 's/^/  /'
	# Its WAL receiver streams (what the primary's pg_stat_replication
	# would show, asked of the node itself along with its identifier).
	local tli deadline=$((SECONDS + 60))
	while :; do
		IFS='|' read -r after tli < <(node_value "$node" "SELECT (SELECT system_identifier FROM pg_control_system()) || '|' ||
			coalesce((SELECT received_tli::text FROM pg_stat_wal_receiver WHERE status = 'streaming' AND sender_host = '$primary'), '')") || true
		[[ -n $tli ]] && break
		((SECONDS < deadline)) || die "$node does not stream from $primary after 60 s (make status LAB=streaming)"
		sleep 0.2
	done
	[[ $before == "$after" ]] || die "$node's system identifier changed ($before -> $after): that was not a rewind"
	say "$node rejoined as a standby of $primary by pg_rewind: same system identifier $after, timeline $tli"
}

# A running node is rewound in its own container: told the new primary (a
# marker in the container's filesystem), its server stopped; the
# entrypoint, the container's PID 1, runs pg_rewind and starts the server
# again (docker/entrypoint).  No container is stopped, created or started.
# The entrypoint's output meanwhile goes to the named variable; on failure
# the container has exited and stays down.  Returns 2 (nothing done) for a
# container whose PID 1 is the server itself (one created from an image
# before this), which rejoin_node then rewinds the slow way.
rewind_in_place() { # node primary output-variable
	local node=$1 primary=$2 cid since state deadline
	local -n rewind_output=$3
	cid=$(node_cid "$node")
	ensure_slots "$primary" "$node"
	since=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
	# The marker path is docker/entrypoint's $home/opsdemo.rejoin.
	docker exec -u postgres "$cid" sh -c '[ "$(cat /proc/1/comm)" != postgres ] || exit 2
		rm -f /var/lib/postgresql/opsdemo.rejoin && printf "%s\n" "$1" >/var/lib/postgresql/opsdemo.rejoin || exit 3
		exec pg_ctl stop --mode=fast --wait --timeout=60 --silent' sh "$primary" || {
		case $? in
		2) return 2 ;;
		3) die "$node: could not leave the rejoin marker in its container" ;;
		*)
			# A rewind that failed at once ends the container, and the
			# exec with it, before pg_ctl saw the server gone: the loop
			# below reads why.  Docker may still say "running" for a
			# moment after the exec died with the container.
			deadline=$((SECONDS + 10))
			while [[ $(container_state "$cid") == running* ]] && ((SECONDS < deadline)); do
				sleep 0.2
			done
			[[ $(container_state "$cid") != running* ]] ||
				die "$node: pg_ctl stop failed (above); the rejoin marker stays: the next start of its container rewinds"
			;;
		esac
	}
	say "$node stopped (fast shutdown) for rejoin; its entrypoint runs pg_rewind and starts it again"
	deadline=$((SECONDS + healthy_wait))
	while :; do
		state=$(container_state "$cid")
		if [[ $state != running* ]]; then
			rewind_output=$(docker logs --since "$since" "$cid" 2>&1)
			return 1
		fi
		docker exec "$cid" sh -c '[ ! -e /var/lib/postgresql/opsdemo.rejoin ] && healthcheck' 2>/dev/null && break
		if ((SECONDS >= deadline)); then
			rewind_output="$(docker logs --since "$since" "$cid" 2>&1)
$node is not back after $healthy_wait s"
			return 1
		fi
		sleep 0.2
	done
	rewind_output=$(docker logs --since "$since" "$cid" 2>&1 | grep -E '^(entrypoint|pg_rewind):' || true)
}

# reclone NODE: the node's data deleted and copied again from the current
# primary by pg_basebackup: the way back when a rewind is impossible, and
# the baseline bench/rejoin measures rejoin against.
topology_cmd_reclone() {
	node_arg reclone "${1:-}"
	docker_reachable || exit 1
	load_settings
	local node=$1 primary out t0=$SECONDS
	primary=$(current_primary "$node")
	say "$node: RE-CLONE from $primary by pg_basebackup: everything on $node is deleted"
	if ! make_standby_of "$node" "$primary" reclone out; then
		printf '%s\n' "$out" | sed 's/^/  /' >&2
		die "pg_basebackup of $node from $primary failed (above); $node's data directory may be empty now"
	fi
	echo "$out" | grep -E '^entrypoint:' | sed 's/^/  /'
	start_container "$node"
	wait_standbys_streaming "$primary" 60 "$node"
	say "$node re-cloned from $primary in $((SECONDS - t0)) s: a standby on timeline $(node_value "$node" "SELECT received_tli FROM pg_stat_wal_receiver")"
}

# sync-block-demo: with every synchronous candidate down, a commit on the
# primary waits (wait_event SyncRep) for ever; cancelling it shows what
# PostgreSQL says of such a commit.  The candidates come back afterwards.
topology_cmd_sync-block-demo() {
	docker_usable || exit 1
	load_settings
	local primary spec node candidates=() cid out pid
	primary=$(current_primary)
	spec=$(node_value "$primary" "SHOW synchronous_standby_names")
	[[ -n $spec ]] || die "no synchronous standbys are named: make sync LAB=streaming SYNC='FIRST 1 (pg2, pg3)' first"
	local running
	running=" $(running_nodes | tr '\n' ' ') "
	while read -r node; do
		[[ $node != "$primary" && $running == *" $node "* ]] && candidates+=("$node")
	done < <(grep -oE 'pg[0-3]' <<<"$spec" | sort -u)
	# Made while the candidates are up: its own commit would wait too.
	node_psql "$primary" -c "CREATE TABLE IF NOT EXISTS sync_block_demo (at timestamptz DEFAULT now())" >/dev/null
	if ((${#candidates[@]})); then
		dc stop "${candidates[@]}" >/dev/null
		say "stopped the synchronous candidates ${candidates[*]} (synchronous_standby_names = '$spec')"
	fi
	cid=$(running_cid "$primary")
	temp_file out /tmp/opsdemo-syncblock.XXXXXX
	docker exec -u postgres "$cid" psql -X -d "$lab_db" \
		-c "INSERT INTO sync_block_demo DEFAULT VALUES /* sync-block-demo */" >"$out" 2>&1 &
	local writer=$!
	if ! wait_until 20 node_true "$primary" "SELECT EXISTS (SELECT FROM pg_stat_activity
		WHERE wait_event = 'SyncRep' AND query LIKE '%sync-block-demo%' AND pid <> pg_backend_pid())"; then
		kill "$writer" 2>/dev/null || true
		die "the INSERT on $primary did not wait for a synchronous standby"
	fi
	sleep 3
	say "$primary: the INSERT has committed locally and waits for a synchronous standby:"
	node_psql "$primary" -P footer=off -c "SELECT pid, wait_event_type, wait_event, round(extract(epoch FROM now() - query_start)::numeric, 1) AS waiting_s, query
		FROM pg_stat_activity WHERE wait_event = 'SyncRep' AND query LIKE '%sync-block-demo%' AND pid <> pg_backend_pid()"
	pid=$(node_value "$primary" "SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep' AND query LIKE '%sync-block-demo%' AND pid <> pg_backend_pid()")
	node_value "$primary" "SELECT pg_cancel_backend($pid)" >/dev/null
	wait "$writer" || true
	say "$primary: cancelled; the client was told:"
	sed 's/^/  /' "$out"
	grep -q 'has already committed locally, but might not have been replicated' "$out" ||
		die "the cancelled INSERT did not report the local commit"
	say "$primary: the row is there locally: $(node_value "$primary" "SELECT count(*) FROM sync_block_demo") row(s) in sync_block_demo"
	if ((${#candidates[@]})); then
		start_nodes "${candidates[@]}"
		say "started ${candidates[*]} again"
	fi
	node_psql "$primary" -P footer=off -c "SELECT application_name AS standby, state, sync_state, sync_priority
		FROM pg_stat_replication ORDER BY application_name"
}
