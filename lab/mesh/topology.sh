# shellcheck shell=bash
# shellcheck disable=SC2154  # pg, rows, scheduler, lab_db, ...: set by lab/lab
# shellcheck disable=SC2034  # topology_*, OPSDEMO_*: read by lab/lab and compose
# Topology "mesh" (seed 003): node1 writes `test` and runs pg_opsdemo's t1
# with its jobs; node2 writes `test2`; each subscribes to the other's table
# (a read-only copy, guarded by pg_opsdemo's read-only trigger); node3, the
# reporting node, subscribes to test, test2 and t1 (keeping its own exact
# mv_sum; no jobs); node4 is a physical hot standby of node3 (pg_basebackup
# through a slot, synchronous, so that node3 never confirms to node1 or
# node2 a change node4 lacks).  On 16+ node1 and node2 also write `shared`
# both ways (origin = none).  After `failover` node4 is the reporting node
# and node3 stays down.  Sourced by lab/lab, which provides the settings,
# lib/ and the common commands.

topology_nodes=(node1 node2 node3 node4)
# node3 is killed on purpose and stays down after a failover.
topology_status_shows_down=1
topology_keys=(OPSDEMO_MESH_PORT OPSDEMO_MESH_SUBNET OPSDEMO_MESH_PROJECT)

repl_user=opsdemo_repl
job_role=opsdemo_job

service_of() {
	case $1 in
	node[1-4]) echo "$1" ;;
	*) die "unknown node '$1' of the mesh lab (node1, node2, node3 or node4)" ;;
	esac
}

topology_settings() {
	project=$(setting OPSDEMO_MESH_PROJECT "opsdemo-mesh-pg$pg")
	OPSDEMO_LAB_SUBNET=$(setting OPSDEMO_MESH_SUBNET "10.217.$pg.0/24")
	publish_node_ports OPSDEMO_MESH_PORT 55450 OPSDEMO_PORT_NODE 1 2 3 4
}

# Any node may stream from or subscribe to any other one (lab/lab).
topology_secrets() { peer_secrets; }

topology_refresh_secrets() { refresh_running_secrets; }

# ---- the picture ------------------------------------------------------------------

# Which node writes each table (shared: both node1 and node2).
writer_of() { # table
	case $1 in
	test | t1) echo node1 ;;
	test2) echo node2 ;;
	shared) echo "node1 node2" ;;
	*) return 1 ;;
	esac
}

two_way() { ((pg >= 16)); } # `shared` needs origin = none (PostgreSQL 16)

# The subscriptions: subscriber|name|publisher|publication|local table.
# The name is also the slot's on the publisher.  node3's are node4's after
# a failover (they are in its catalog: the base backup copied them).
subscriptions() {
	echo "node1|node1_test2|node2|test2_pub|test2"
	echo "node2|node2_test|node1|test_pub|test"
	echo "node3|node3_test|node1|test_pub|test"
	echo "node3|node3_test2|node2|test2_pub|test2"
	echo "node3|node3_t1|node1|pub_t1|t1"
	if two_way; then
		echo "node1|node1_shared|node2|shared_pub|shared"
		echo "node2|node2_shared|node1|shared_pub|shared"
	fi
}

node_running() { # node
	local cid
	cid=$(node_cid "$1")
	[[ -n $cid && $(container_state "$cid") == running* ]]
}

# node4 was promoted (make failover): it is the reporting node and node3's
# subscriptions are its own.  Known from node4 itself, so node4 must run.
failed_over() { node_running node4 && [[ $(in_recovery node4) == f ]]; }

# The node holding node3's subscriptions now.
reporter() { if failed_over; then echo node4; else echo node3; fi; }

# The subscriber of a subscription line, node3's replaced by the reporter.
subscriber_now() { # subscriber-of-the-line reporter
	if [[ $1 == node3 ]]; then echo "$2"; else echo "$1"; fi
}

# ---- up ---------------------------------------------------------------------------

# node1..node3 first; node4 is cloned from node3 once node3 is set up
# (topology_setup).  After a failover node4 is the reporting node and
# node3 is left down: started, it would apply on node1's and node2's slots
# beside node4.
topology_start() {
	if node4_promoted_on_disk; then
		say "node4 was promoted (make failover): it is the reporting node; node3 stays down (started, it would subscribe on the same slots as node4)"
		start_nodes node1 node2 node4
	else
		# node4, if it has data, is started once node3 is set up.
		start_nodes node1 node2 node3
	fi
}

# Whether node4's data directory is a promoted one: data, and no
# standby.signal.  Read from the volume (compose creates every volume of
# the file at the first up, node4's too, empty), in a one-off container
# when node4 does not run.
node4_promoted_on_disk() {
	docker volume inspect "${project}_node4-data" >/dev/null 2>&1 || return 1
	docker run --rm -u postgres -v "${project}_node4-data:/var/lib/postgresql/data" --entrypoint bash \
		"$OPSDEMO_IMAGE" -c 'test -s "$PGDATA/PG_VERSION" && ! test -e "$PGDATA/standby.signal"'
}

# Physical slot on a node for a standby, WAL reserved now.
ensure_slot() { # node slot
	node_psql "$1" -c "SELECT pg_create_physical_replication_slot('$2', true)
		WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = '$2')" >/dev/null
}

# The mesh's tables, on every node that has them.  Primary keys: UPDATE and
# DELETE are published only for tables with a replica identity (seed 003's
# tables had none).  Identity columns: a copy keeps the writer's ids.
ensure_tables() { # node
	node_psql "$1" >/dev/null <<-SQL
		CREATE TABLE IF NOT EXISTS test (
		    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
		    note text NOT NULL,
		    written_at timestamptz NOT NULL DEFAULT now());
		CREATE TABLE IF NOT EXISTS test2 (
		    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
		    note text NOT NULL,
		    written_at timestamptz NOT NULL DEFAULT now());
	SQL
	if two_way && [[ $1 == node[12] ]]; then
		# Both nodes insert: random keys, so their rows never collide by
		# accident (a collision is a conflict, shown on purpose only).
		node_psql "$1" >/dev/null <<-SQL
			CREATE TABLE IF NOT EXISTS shared (
			    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
			    written_on text NOT NULL,
			    note text NOT NULL,
			    written_at timestamptz NOT NULL DEFAULT now());
		SQL
	fi
}

ensure_publication() { # node name table [with]
	node_psql "$1" >/dev/null <<-SQL
		SELECT NOT EXISTS (SELECT FROM pg_publication WHERE pubname = '$2') AS need_pub \gset
		\if :need_pub
		CREATE PUBLICATION $2 FOR TABLE $3${4:+ WITH ($4)};
		\endif
		GRANT SELECT ON $3 TO $repl_user;
	SQL
}

# Every node: pg_opsdemo (the read-only guard is part of it; on node3 also
# t1 and its own mv_sum), the superuser's and the replication role's
# passwords (node1 and node2 publish, node3 is cloned and streamed from).
setup_common() { # node
	ensure_extensions "$1" pg_opsdemo
	ensure_password "$1" postgres "$postgres_password"
	ensure_roles "$1"
	ensure_password "$1" "$repl_user" "$repl_password"
	ensure_tables "$1"
}

setup_node1() {
	say "node1: extensions, roles, test, t1 and its jobs, publications"
	ensure_extensions node1 pgcrypto
	setup_common node1
	top_up_rows node1
	ensure_publication node1 test_pub test
	# Changes of t1's partitions are published as changes of t1: node3's
	# own partitions need not match.  mv_sum is not published: node3 keeps
	# its own from the replicated t1.
	ensure_publication node1 pub_t1 t1 "publish_via_partition_root = true"
	two_way && ensure_publication node1 shared_pub shared
	start_jobs node1
}

setup_node2() {
	say "node2: extension, roles, test2, publications"
	setup_common node2
	ensure_publication node2 test2_pub test2
	two_way && ensure_publication node2 shared_pub shared
	return 0
}

setup_reporter() { # node3 or node4
	say "$1: extension, roles, tables (the reporting node; no jobs)"
	setup_common "$1"
	# The months the generator filled, so that the copy lands in monthly
	# partitions rather than all in t1_default.
	node_value "$1" "SELECT opsdemo_partitions_ensure(date_trunc('month', now()) - interval '4 months',
		date_trunc('month', now()) + interval '2 months')" >/dev/null
}

# The slot of a subscription on its publisher: "" (none) or "active|wal_status".
slot_state() { # publisher slot
	node_value "$1" "SELECT coalesce((SELECT active || '|' || coalesce(wal_status, '')
		FROM pg_replication_slots WHERE slot_name = '$2'), '')"
}

has_subscription() { node_true "$1" "SELECT EXISTS (SELECT FROM pg_subscription WHERE subname = '$2')"; }

# Drift between a subscriber and its publisher, repaired before
# subscribing (as in the logical lab): a subscription whose slot is gone
# (the publisher's volume made anew) or lost (max_slot_wal_keep_size) is
# dropped, to subscribe again with a full copy; a slot without its
# subscription (the subscriber's volume made anew) is dropped unless
# something streams from it.
repair_subscription() { # subscriber name publisher
	local slot
	slot=$(slot_state "$3" "$2")
	if has_subscription "$1" "$2"; then
		if [[ -z $slot || $slot == *'|lost' ]]; then
			say "$1: ${3}'s slot $2 is $(if [[ -z $slot ]]; then echo gone; else echo lost; fi): dropping subscription $2 to subscribe again with a full copy"
			node_psql "$1" >/dev/null <<-SQL
				ALTER SUBSCRIPTION $2 DISABLE;
				ALTER SUBSCRIPTION $2 SET (slot_name = NONE);
				DROP SUBSCRIPTION $2;
			SQL
			[[ -z $slot ]] || node_psql "$3" -c "SELECT pg_drop_replication_slot('$2')" >/dev/null
		fi
	elif [[ -n $slot ]]; then
		[[ $slot == t* ]] &&
			die "$3's slot $2 is in use, but $1 has no subscription $2: something else streams from it (make status LAB=mesh)"
		say "$3: dropping the orphan slot $2 ($1 has no subscription $2: it lost its data?)"
		node_psql "$3" -c "SELECT pg_drop_replication_slot('$2')" >/dev/null
	fi
}

# A subscription, created if missing.  A read-only copy is emptied first
# (a new subscription copies everything), in session_replication_role =
# replica so that the read-only guard lets the TRUNCATE through (mv_sum's
# triggers are ENABLE ALWAYS and still fire).  `shared` is written on both
# sides: it copies only into an empty table, else the other side's copy of
# its own rows would come back as duplicates.  The reporting node's
# subscriptions commit with synchronous_commit = on: the apply worker's
# commit waits for node4, and only then is the position confirmed to the
# publisher.
ensure_subscription() { # subscriber name publisher publication table
	local node=$1 sub=$2 pubnode=$3 publication=$4 table=$5 opts out auth=
	repair_subscription "$node" "$sub" "$pubnode"
	if has_subscription "$node" "$sub"; then
		node_true "$node" "SELECT subenabled FROM pg_subscription WHERE subname = '$sub'" || {
			say "$node: subscription $sub was disabled: enabling it"
			node_psql "$node" -c "ALTER SUBSCRIPTION $sub ENABLE" >/dev/null
		}
		return 0
	fi
	opts="copy_data = true"
	if [[ $table == shared ]]; then
		node_true "$node" "SELECT NOT EXISTS (SELECT FROM shared)" || opts="copy_data = false"
		opts+=", origin = none"
	else
		node_psql "$node" -c "SET lock_timeout = '${lock_wait}s'" -c "SET session_replication_role = replica" \
			-c "TRUNCATE $table" >/dev/null ||
			die "$node: TRUNCATE $table before subscribing failed (above; a session holding a lock on it?)"
	fi
	[[ $sub == node3_* ]] && opts+=", synchronous_commit = on"
	# The password comes from the node's ~/.pgpass (its secret file): it is
	# neither in SQL nor in pg_subscription.  require_auth (16+): only ever
	# into a SCRAM exchange.
	((pg >= 16)) && auth=' require_auth=scram-sha-256'
	if ! out=$(node_psql "$node" 2>&1 <<-SQL
		SET statement_timeout = '${slot_wait}s';
		CREATE SUBSCRIPTION $sub
		  CONNECTION 'host=$pubnode port=5432 dbname=$lab_db user=$repl_user connect_timeout=10$auth'
		  PUBLICATION $publication WITH ($opts);
	SQL
	); then
		echo "$out" >&2
		grep -q 'statement timeout' <<<"$out" &&
			die "CREATE SUBSCRIPTION $sub waited $slot_wait s: creating its slot waits for the transactions open on $pubnode to end"
		die "$node: creating subscription $sub failed (above)"
	fi
	say "$node: subscribed to $publication on $pubnode ($sub: $opts)"
}

# The read-only guard of pg_opsdemo on a copy: local INSERT, UPDATE,
# DELETE and TRUNCATE fail with SQLSTATE 25006 naming the owner; the apply
# worker's changes (session_replication_role = replica) pass.
ensure_guard() { # node table owner
	local had
	node_true "$1" "SELECT to_regprocedure('opsdemo_make_read_only(regclass, text)') IS NOT NULL" ||
		die "$1: pg_opsdemo $(ext_version "$1" pg_opsdemo) has no opsdemo_make_read_only(regclass, text): the read-only guard needs extension version 1.2"
	had=$(node_value "$1" "SELECT EXISTS (SELECT FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
		WHERE t.tgrelid = '$2'::regclass AND p.proname = 'opsdemo_read_only_guard')")
	# Every time: it also guards the partitions made since (t1 on node3)
	# against TRUNCATE of their own.
	node_psql "$1" -c "SELECT opsdemo_make_read_only('$2', '$3')" >/dev/null
	[[ $had == t ]] || say "$1: $2 is read-only (its writes belong to $3)"
}

wait_synced() { # node sub limit
	wait_until "$3" node_true "$1" "SELECT NOT EXISTS (SELECT FROM pg_subscription_rel r
		JOIN pg_subscription s ON s.oid = r.srsubid WHERE s.subname = '$2' AND r.srsubstate <> 'r')" ||
		die "$1: the initial copy of $2 is not finished after $3 s (make logs LAB=mesh NODE=$1)"
}

wait_apply_running() { # node sub publisher limit
	if ! wait_until "$4" node_true "$3" "SELECT coalesce((SELECT active FROM pg_replication_slots WHERE slot_name = '$2'), false)"; then
		docker logs --since "$(($4 + 10))s" "$(node_cid "$1")" 2>&1 | grep -E 'ERROR|FATAL' | tail -n 5 >&2 || true
		die "$1: subscription $2 does not stream from $3 after $4 s ($1's log above; make status LAB=mesh)"
	fi
}

# node4 streams from node3 (cloned by its entrypoint at its first start);
# a node4 cloned from another node3 (node3's volume made anew) is cloned
# again.  Then node3 waits for node4 at every commit.
setup_node4() {
	local cid
	if node_running node4 &&
		[[ $(node_value node4 "SELECT system_identifier FROM pg_control_system()") != $(node_value node3 "SELECT system_identifier FROM pg_control_system()") ]]; then
		say "node4 is a copy of another node3 (node3's data was made anew): cloning it again"
		dc rm -sf node4 >/dev/null
		docker volume rm "${project}_node4-data" >/dev/null
	fi
	# Until node4 streams, commits on node3 must not wait for it.
	if ! node_true node3 "SELECT EXISTS (SELECT FROM pg_stat_replication WHERE application_name = 'node4' AND state = 'streaming')"; then
		set_sync node3 ''
	fi
	ensure_slot node3 node4
	cid=$(node_cid node4)
	if [[ -z $cid || $(container_state "$cid") != running* ]]; then
		say "node4: starting (the first time: a pg_basebackup of node3 through slot node4)"
		start_nodes node4
	fi
	wait_until 120 node_true node3 "SELECT EXISTS (SELECT FROM pg_stat_replication
		WHERE application_name = 'node4' AND state = 'streaming')" ||
		die "node4 does not stream from node3 after 120 s (make logs LAB=mesh NODE=node4)"
	set_sync node3 node4
}

set_sync() { # node names
	[[ $(node_value "$1" "SHOW synchronous_standby_names") == "$2" ]] && return 0
	node_psql "$1" -c "ALTER SYSTEM SET synchronous_standby_names = $(sql_literal "$2")" -c "SELECT pg_reload_conf()" >/dev/null
	wait_until 10 node_true "$1" "SELECT current_setting('synchronous_standby_names') = $(sql_literal "$2")" ||
		die "$1 did not take synchronous_standby_names = '$2'"
	say "$1: synchronous_standby_names = '$2'"
}

topology_setup() {
	local rep line node sub pubnode publication table sub_lines
	mapfile -t sub_lines < <(subscriptions)
	rep=$(reporter)
	# node3's DDL below must not wait for a node4 that is not there.
	if [[ $rep == node3 ]] && ! node_running node4; then set_sync node3 ''; fi
	setup_node1
	setup_node2
	setup_reporter "$rep"
	for line in "${sub_lines[@]}"; do
		IFS='|' read -r node sub pubnode publication table <<<"$line"
		ensure_subscription "$(subscriber_now "$node" "$rep")" "$sub" "$pubnode" "$publication" "$table"
	done
	ensure_guard node1 test2 node2
	ensure_guard node2 test node1
	ensure_guard "$rep" test node1
	ensure_guard "$rep" test2 node2
	ensure_guard "$rep" t1 node1
	for line in "${sub_lines[@]}"; do
		IFS='|' read -r node sub pubnode publication table <<<"$line"
		node=$(subscriber_now "$node" "$rep")
		wait_synced "$node" "$sub" 300
		wait_apply_running "$node" "$sub" "$pubnode" 60
	done
	[[ $rep == node4 ]] || setup_node4
}

topology_banner() {
	local node cid
	echo
	echo "pg_opsdemo mesh lab is up (PostgreSQL $pg, project $project; reporting node $(reporter))."
	for node in "${topology_nodes[@]}"; do
		cid=$(node_cid "$node")
		[[ -n $cid && $(container_state "$cid") == running* ]] || { echo "  $node  down"; continue; }
		printf '  %s  psql "host=127.0.0.1 port=%s user=postgres dbname=postgres"   (make psql LAB=mesh NODE=%s)\n' \
			"$node" "$(docker port "$cid" 5432 | sed -n '1s/.*://p')" "$node"
	done
	echo "  make status LAB=mesh   subscriptions, slots, node4's replay lag"
	echo "  make write LAB=mesh NODE=node1 TABLE=test;  make check LAB=mesh;  make failover LAB=mesh NODE=node4"
}

# ---- status -----------------------------------------------------------------------

topology_status() {
	local node cid
	echo "pg_opsdemo mesh lab $project   $(date -u '+%F %T') UTC"
	echo
	printf '%-6s %s\n' node state
	local retired=
	failed_over && retired=", retired: node4 took over its subscriptions"
	for node in "${topology_nodes[@]}"; do
		cid=$(node_cid "$node")
		if [[ -z $cid || $(container_state "$cid") != running* ]]; then
			printf '%-6s %s\n' "$node" "down ($(if [[ -n $cid ]]; then container_state "$cid"; else echo not created; fi)$([[ $node == node3 ]] && echo "$retired"))"
		elif [[ $node == node3 && -n $retired ]]; then
			printf '%-6s %s\n' "$node" "running$retired (keep its subscriptions disabled)"
		else
			printf '%-6s %s\n' "$node" "$(node_value "$node" "SELECT CASE WHEN pg_is_in_recovery() THEN 'standby (hot, replaying)' ELSE 'primary' END || ', PostgreSQL ' || current_setting('server_version')")"
		fi
	done
	for node in $(running_nodes); do
		if node_true "$node" "SELECT NOT pg_is_in_recovery() AND EXISTS (SELECT FROM pg_subscription)"; then
			echo
			echo "Subscriptions on $node"
			node_psql "$node" -P footer=off -c "
				SELECT s.subname AS subscription, s.subenabled AS enabled, st.pid IS NOT NULL AS worker,
				       round(extract(epoch FROM now() - st.last_msg_receipt_time)::numeric, 1) AS last_msg_s_ago,
				       s.subsynccommit AS sync_commit,
				       (SELECT string_agg(r.srrelid::regclass || ':' || r.srsubstate::text, ',' ORDER BY 1)
				          FROM pg_subscription_rel r WHERE r.srsubid = s.oid) AS tables
				  FROM pg_subscription s
				  LEFT JOIN pg_stat_subscription st ON st.subid = s.oid AND st.relid IS NULL
				 ORDER BY s.subname" || true
		fi
		if node_true "$node" "SELECT NOT pg_is_in_recovery() AND EXISTS (SELECT FROM pg_replication_slots)"; then
			echo "Slots on $node (lag: WAL written here and not yet confirmed by the subscriber or standby)"
			node_psql "$node" -P footer=off -c "
				SELECT s.slot_name, s.slot_type, s.active, coalesce(r.application_name, '') AS client,
				       s.wal_status,
				       pg_wal_lsn_diff(pg_current_wal_lsn(), coalesce(s.confirmed_flush_lsn, r.replay_lsn, s.restart_lsn)) AS lag_bytes,
				       round(extract(epoch FROM coalesce(r.replay_lag, interval '0'))::numeric, 3) AS lag_seconds,
				       coalesce(r.sync_state, '') AS sync_state
				  FROM pg_replication_slots s
				  LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
				 ORDER BY s.slot_name" || true
		fi
	done
	if node_running node4 && [[ $(in_recovery node4) == t ]]; then
		echo
		echo "node4 replay (its lag adds to the logical lag of node3's subscriptions: node4 has node3's data only through node3's WAL)"
		node_psql node4 -P footer=off -c "
			SELECT pg_last_wal_receive_lsn() AS received, pg_last_wal_replay_lsn() AS replayed,
			       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) AS replay_lag_bytes,
			       round(extract(epoch FROM CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN interval '0'
			             ELSE now() - pg_last_xact_replay_timestamp() END)::numeric, 3) AS replay_lag_seconds,
			       (SELECT status FROM pg_stat_wal_receiver) AS receiver" || true
	fi
	if node_running node1; then
		echo
		echo "Jobs on node1 (scheduler: $scheduler)"
		show_jobs node1
		echo "t1 on node1: $(node_facts node1 | tr '|' ' ' | awk '{ print $1 " rows, " $2 " pending" }'); mv_sum $(mv_sum_summary node1)"
	fi
	local rep
	rep=$(reporter)
	if node_running "$rep"; then
		echo "t1 on $rep: $(node_facts "$rep" | tr '|' ' ' | awk '{ print $1 " rows, " $2 " pending" }'); mv_sum $(mv_sum_summary "$rep")"
	fi
}

# ---- commands of this topology ---------------------------------------------------

node_arg() { # command node
	[[ -n ${2:-} ]] || die "usage: make $1 LAB=mesh NODE=<node1|node2|node3|node4>"
	service_of "$2" >/dev/null
}

# write NODE TABLE: one row through that node.  Where the node only reads
# the table the read-only guard refuses it (node4, a hot standby, refuses
# any write: a read-only transaction), and the command fails with the
# server's error.
topology_cmd_write() {
	local node=${1:-} table=${2:-} sql out
	[[ -n $node && -n $table ]] || die "usage: make write LAB=mesh NODE=<node1..node4> TABLE=<test|test2|t1|shared (16+)>"
	service_of "$node" >/dev/null
	docker_usable || exit 1
	load_settings
	case $table in
	test | test2) sql="INSERT INTO $table (note) VALUES ('written through $node') RETURNING 'id ' || id" ;;
	shared)
		two_way || die "table shared needs PostgreSQL 16+ (origin = none); this lab runs $pg"
		sql="INSERT INTO shared (written_on, note) VALUES ('$node', 'written through $node') RETURNING 'id ' || id"
		;;
	t1) sql="SELECT 'id ' || opsdemo_insert_tick()" ;;
	*) die "TABLE=$table: the mesh's tables are test, test2, t1$(two_way && echo ', shared')" ;;
	esac
	running_cid "$node" >/dev/null
	if ! out=$(node_psql "$node" -At -c "$sql" 2>&1); then
		printf '%s\n' "$out" >&2
		die "$node refused the write into $table (its writer: $(writer_of "$table" | sed 's/ / and /'))"
	fi
	say "$node: $table: wrote $out"
}

# Waits until every running subscriber confirmed what its publisher has
# written, and a node4 standby replayed node3's WAL.  The jobs of node1
# must be stopped (t1 changes otherwise).
wait_caught_up() { # reporter
	local line node sub pubnode publication table sub_lines
	mapfile -t sub_lines < <(subscriptions)
	for line in "${sub_lines[@]}"; do
		IFS='|' read -r node sub pubnode publication table <<<"$line"
		node=$(subscriber_now "$node" "$1")
		if ! node_running "$node" || ! node_running "$pubnode"; then continue; fi
		wait_slot_caught_up "$pubnode" "$sub" 60 || return 1
	done
	# The logical changes above reached node3 first: node4's replay comes last.
	if [[ $1 == node3 ]] && node_running node3 && node_running node4; then
		local lsn
		lsn=$(node_value node3 "SELECT pg_current_wal_lsn()")
		wait_until 60 node_true node4 "SELECT pg_last_wal_replay_lsn() >= '$lsn'" ||
			{ echo "    node4 has not replayed node3's WAL up to $lsn after 60 s" >&2; return 1; }
	fi
}

# Every copy against its writer: count + checksum (lib/node.sh
# fingerprint).  Prints one line per copy; 1 if one differs.
compare_copies() { # reporter
	local table writer copy want have bad=0 copies
	for table in test test2 t1 shared; do
		case $table in
		test) copies="node2 $1" ;;
		test2) copies="node1 $1" ;;
		t1) copies=$1 ;;
		shared)
			two_way || continue
			copies=node2
			;;
		esac
		[[ $1 == node3 ]] && node_running node4 && [[ $table != shared ]] && copies+=" node4"
		writer=$(writer_of "$table" | cut -d' ' -f1)
		node_running "$writer" || { echo "  $table: its writer $writer is down"; bad=1; continue; }
		want=$(fingerprint "$writer" "$table")
		for copy in $copies; do
			if ! node_running "$copy"; then
				echo "  $table on $copy: down"
				bad=1
				continue
			fi
			have=$(fingerprint "$copy" "$table")
			if [[ $have == "$want" ]]; then
				printf '  %-7s %-6s = %-6s %s rows\n' "$table" "$copy" "$writer" "${want%% *}"
			else
				printf '  %-7s %-6s DIFFERS from %s: %s rows there, %s here (count sum1 sum2: %s / %s)\n' \
					"$table" "$copy" "$writer" "${want%% *}" "${have%% *}" "$want" "$have"
				bad=1
			fi
		done
	done
	return "$bad"
}

run_check() {
	local rep jobs bad=0 node
	rep=$(reporter)
	for node in node1 node2 "$rep"; do running_cid "$node" >/dev/null; done
	jobs=$(stop_jobs node1) || die "node1: could not stop the jobs"
	if ! wait_caught_up "$rep"; then
		resume_jobs node1 "$jobs" || true
		die "the copies did not catch up (make status LAB=mesh)"
	fi
	say "every subscription caught up with its publisher$([[ $rep == node3 ]] && node_running node4 && echo ', node4 replayed node3'); copies against their writers:"
	compare_copies "$rep" || bad=1
	for node in node1 "$rep"; do
		if mv_sum_exact "$node"; then
			echo "  mv_sum  $node exact ($(node_value "$node" "SELECT count(*) FROM mv_sum") groups)"
		else
			bad=1
		fi
	done
	resume_jobs node1 "$jobs" || die "node1: could not resume the jobs ($jobs)"
	((bad == 0)) || die "check FAILED: a copy differs from its writer (above)"
	say "check passed: every copy equals its writer, mv_sum exact on node1 and $rep"
}

topology_cmd_verify() {
	docker_usable || exit 1
	load_settings
	run_check
}

# failover NODE=node4: node4 takes node3's place.  Refused while node3
# runs with a subscription enabled: node3 and node4 would both apply on the
# same slots of node1 and node2 ("replication slot ... is active for PID").
# The apply workers whose node3 died may still hold the slots until
# wal_sender_timeout: they are ended.  node4 is promoted with no synchronous
# standby of its own, and node3's subscriptions (in its catalog since the
# base backup, and their replication origins since node4 replayed node3's
# commits) start from where node4's data is: node3 confirmed to node1 and
# node2 no position node4 had not flushed (synchronous_commit = on and
# node4 its synchronous standby), so nothing is lost or applied twice.
topology_cmd_failover() {
	local node=${1:-}
	[[ $node == node4 ]] || die "usage: make failover LAB=mesh NODE=node4 (node4 is the mesh's only standby)"
	docker_usable || exit 1
	load_settings
	running_cid node4 >/dev/null
	[[ $(in_recovery node4) == t ]] || die "node4 is not a standby (promoted already?)"
	local line subscriber sub pubnode subs=() publishers=() node3_alive=0 sub_lines
	mapfile -t sub_lines < <(subscriptions)
	for line in "${sub_lines[@]}"; do
		IFS='|' read -r subscriber sub pubnode _ <<<"$line"
		if [[ $subscriber == node3 ]]; then subs+=("$sub") publishers+=("$pubnode"); fi
	done
	if node_running node3; then
		node3_alive=1
		if node_true node3 "SELECT EXISTS (SELECT FROM pg_subscription WHERE subenabled)
			OR EXISTS (SELECT FROM pg_stat_subscription WHERE pid IS NOT NULL)"; then
			node_psql node3 -P footer=off -c "SELECT subname, subenabled FROM pg_subscription ORDER BY 1" >&2 || true
			die "node3 is alive and its subscriptions are enabled: promoted, node4 would apply on the same slots of node1 and node2 (\"replication slot ... is active for PID ...\").
  Stop node3 (make stop LAB=mesh NODE=node3), or disable them on node3 first (ALTER SUBSCRIPTION <name> DISABLE for each), then fail over again"
		fi
		say "node3 is alive with its subscriptions disabled: node4 takes them over; node3 must not enable them again"
		# node4 will not stream from node3 again: node3's commits must not
		# wait for it, nor its slot keep WAL for it.
		set_sync node3 ''
	fi
	# node4 must have replayed all it received from node3.
	local replay_rc=0
	wait_replay_final node4 60 || replay_rc=$?
	((replay_rc != 1)) || die "node4 still replays the WAL it received from node3 after 60 s"
	say "node4 received and replayed node3's WAL up to $(node_value node4 "SELECT pg_last_wal_replay_lsn()")"
	# Walsenders of a node3 that died with SIGKILL stay until
	# wal_sender_timeout; node3 is down, so they serve nobody.
	local i pid
	if ((!node3_alive)); then
		for i in "${!subs[@]}"; do
			pid=$(node_value "${publishers[i]}" "SELECT coalesce(active_pid::text, '') FROM pg_replication_slots WHERE slot_name = '${subs[i]}'")
			if [[ -n $pid ]]; then
				node_value "${publishers[i]}" "SELECT pg_terminate_backend($pid)" >/dev/null
				say "${publishers[i]}: ended walsender $pid of the dead node3 on slot ${subs[i]}"
			fi
		done
	fi
	# node4 inherited node3's postgresql.auto.conf: synchronous_standby_names
	# = 'node4' would make every commit on node4 wait for itself.
	node_psql node4 -c "ALTER SYSTEM RESET synchronous_standby_names" -c "SELECT pg_reload_conf()" >/dev/null
	local t0=$SECONDS
	node_true node4 "SELECT pg_promote(wait => true, wait_seconds => 60)" || die "node4 was not promoted within 60 s"
	say "node4 promoted in $((SECONDS - t0)) s"
	# The window: what the publishers' slots say node3 confirmed, against
	# the position node4's replication origins resume from.
	for i in "${!subs[@]}"; do
		say "  ${subs[i]}: ${publishers[i]}'s slot confirmed $(node_value "${publishers[i]}" "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '${subs[i]}'"), node4 resumes after $(node_value node4 "SELECT coalesce((SELECT CASE WHEN o.remote_lsn = '0/0' THEN NULL ELSE o.remote_lsn::text END
			FROM pg_replication_origin_status o JOIN pg_subscription s ON o.external_id = 'pg_' || s.oid
			WHERE s.subname = '${subs[i]}'), 'the slot''s position (nothing applied since the initial copy)')")"
	done
	for sub in "${subs[@]}"; do
		node_true node4 "SELECT subenabled FROM pg_subscription WHERE subname = '$sub'" ||
			node_psql node4 -c "ALTER SUBSCRIPTION $sub ENABLE" >/dev/null
	done
	for i in "${!subs[@]}"; do
		wait_apply_running node4 "${subs[i]}" "${publishers[i]}" 60
	done
	if ((node3_alive)); then
		node_psql node3 -c "SELECT pg_drop_replication_slot('node4') FROM pg_replication_slots WHERE slot_name = 'node4'" >/dev/null
		say "node3: slot node4 dropped (node4 is a primary now)"
	fi
	say "node4 took over node3's subscriptions ${subs[*]}: they stream from node1 and node2"
	run_check
}

# ---- stop, kill, start ------------------------------------------------------------

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
	if [[ $1 == node3 ]] && failed_over; then
		die "node4 took over node3's subscriptions (make failover): node3, started, would apply on the same slots of node1 and node2.  It stays down (make lab-clean and make up to build the mesh anew)"
	fi
	start_nodes "$1"
	say "$1 started"
}
