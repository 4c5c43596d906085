# shellcheck shell=bash
# shellcheck disable=SC2154  # pg, project, subnet, work, ...: set by test/container/run
# shellcheck disable=SC2015  # "a && b || fail": any failure of a or b is the failure
# Container tests of the "mesh" topology, sourced by test/container/run
# (which provides lib/, check/ok/not_ok/skip, q, lab, lab_ok, refused_with,
# kill_node, node_cid and the project, subnet and state of the run).  On
# PostgreSQL 17: up from nothing (four nodes, seven subscriptions, node4 a
# synchronous hot standby of node3), a write through every node into every
# table (refused with the read-only guard's error where the node only
# reads; by the hot standby node4 as a read-only transaction), check green,
# a second up repairing a dropped subscription, failover refused while
# node3 applies, node3 killed with SIGKILL after writes, failover to node4,
# check green, node3 kept down, lab-clean leaving nothing.

# shellcheck disable=SC2034  # read by test/container/run
mesh_majors="17"

mesh_service() { echo "$1"; }

# test/container/run passes the logical and streaming labs' project,
# subnet and port settings; the mesh has its own names for them.
mesh_lab_settings() {
	export OPSDEMO_MESH_PROJECT=$project OPSDEMO_MESH_SUBNET=$subnet OPSDEMO_MESH_PORT=
}

# Every table through every node: where the node writes it, a row; where
# it only reads it, the guard's refusal (node4, a hot standby: a read-only
# transaction).
mesh_writes() {
	local node table writer rc=0
	for table in test test2 t1 shared; do
		case $table in
		test | t1) writer=" node1 " ;;
		test2) writer=" node2 " ;;
		shared) writer=" node1 node2 " ;;
		esac
		for node in node1 node2 node3 node4; do
			[[ $table == shared && $node == node[34] ]] && continue
			[[ $table == t1 && $node == node2 ]] && continue
			if [[ $writer == *" $node "* ]]; then
				lab_ok write "$node" "$table" || { echo "    $node could not write $table"; rc=1; }
			elif [[ $node == node4 ]]; then
				refused_with 'cannot execute INSERT in a read-only transaction' lab write "$node" "$table" || rc=1
			else
				refused_with "is read-only on this node" lab write "$node" "$table" || { echo "    ($node, $table)"; rc=1; }
			fi
		done
	done
	return "$rc"
}

# The guard's SQLSTATE, not only its words, for INSERT and TRUNCATE (a
# WARNING: node_psql shows no NOTICEs).
mesh_guard_sqlstate() { # node table
	local out
	out=$(node_psql "$1" -At -c "DO \$\$ BEGIN INSERT INTO $2 (note) VALUES ('x');
		EXCEPTION WHEN read_only_sql_transaction THEN RAISE WARNING 'sqlstate %', SQLSTATE; END \$\$" 2>&1)
	grep -q 'sqlstate 25006' <<<"$out" || { echo "    $1 $2: $out"; return 1; }
	out=$(node_psql "$1" -At -c "DO \$\$ BEGIN TRUNCATE $2;
		EXCEPTION WHEN read_only_sql_transaction THEN RAISE WARNING 'sqlstate %', SQLSTATE; END \$\$" 2>&1)
	grep -q 'sqlstate 25006' <<<"$out" || { echo "    TRUNCATE $1 $2: $out"; return 1; }
}

mesh_topology_as_drawn() {
	[[ $(q node3 "SELECT application_name || ':' || sync_state FROM pg_stat_replication") == node4:sync ]] || { echo "    node3's standbys: $(q node3 "SELECT string_agg(application_name || ':' || sync_state, ',') FROM pg_stat_replication")"; return 1; }
	[[ $(q node4 "SELECT pg_is_in_recovery()") == t ]] || return 1
	[[ $(q node1 "SELECT string_agg(subname, ',' ORDER BY subname) FROM pg_subscription") == node1_shared,node1_test2 ]] || { echo "    node1: $(q node1 "SELECT string_agg(subname, ',' ORDER BY subname) FROM pg_subscription")"; return 1; }
	[[ $(q node2 "SELECT string_agg(subname, ',' ORDER BY subname) FROM pg_subscription") == node2_shared,node2_test ]] || return 1
	[[ $(q node3 "SELECT string_agg(subname || ':' || subsynccommit, ',' ORDER BY subname) FROM pg_subscription") == node3_t1:on,node3_test:on,node3_test2:on ]] || { echo "    node3: $(q node3 "SELECT string_agg(subname || ':' || subsynccommit, ',' ORDER BY subname) FROM pg_subscription")"; return 1; }
	[[ $(q node1 "SELECT pubviaroot FROM pg_publication WHERE pubname = 'pub_t1'") == t ]] || return 1
	[[ $(q node1 "SELECT suborigin FROM pg_subscription WHERE subname = 'node1_shared'") == none ]]
}

mesh_status_shows_all() {
	lab status >"$work/mesh-status.txt" 2>&1 || { cat "$work/mesh-status.txt"; return 1; }
	local want
	for want in node1_test2 node2_test node3_test node3_test2 node3_t1 node1_shared node2_shared 'node4 replay' '^node4  standby'; do
		grep -q "$want" "$work/mesh-status.txt" || { echo "    no '$want' in:"; sed 's/^/      /' "$work/mesh-status.txt"; return 1; }
	done
}

mesh_check() {
	lab_ok verify || return 1
	grep -q '^lab: check passed' "$work/last-lab.log" || { sed 's/^/      /' "$work/last-lab.log"; return 1; }
}

# A subscription dropped by hand (its slot on node1 goes with it) is
# created again by a second up, with a full copy.
mesh_repairs_dropped_subscription() {
	q node2 "DROP SUBSCRIPTION node2_test" >/dev/null || return 1
	lab_ok up || return 1
	grep -q 'node2: subscribed to test_pub on node1' "$work/last-lab.log" || { sed 's/^/      /' "$work/last-lab.log"; return 1; }
}

mesh_failover_refused_while_node3_applies() {
	refused_with 'node3 is alive and its subscriptions are enabled' lab failover node4 || return 1
	[[ $(q node4 "SELECT pg_is_in_recovery()") == t ]] || { echo "    node4 was promoted anyway"; return 1; }
}

mesh_failover() {
	lab_ok failover node4 || return 1
	grep -q '^lab: check passed' "$work/last-lab.log" && grep -q 'node4 promoted' "$work/last-lab.log" ||
		{ sed 's/^/      /' "$work/last-lab.log"; return 1; }
	sed -n 's/^lab:   /    /p' "$work/last-lab.log"
}

mesh_clean() {
	lab clean >/dev/null 2>&1 || true
	[[ -z "$(docker ps -aq --filter "label=com.docker.compose.project=$project")$(docker volume ls -q --filter "label=com.docker.compose.project=$project")$(docker network ls -q --filter "label=com.docker.compose.project=$project")" ]] &&
		[[ ! -e $state_dir/$project ]]
}

mesh_tests() { # full|core (the same set: it runs on 17 only)
	local t0=$SECONDS
	mesh_lab_settings
	check "PG$pg: mesh: up from nothing (node1..node3, seven subscriptions, node4 cloned from node3)" lab_ok up
	echo "    up from nothing: $((SECONDS - t0)) s"
	check "PG$pg: mesh: subscriptions, publications and node4 (node3's synchronous standby) as drawn" mesh_topology_as_drawn
	check "PG$pg: mesh: status shows every subscription, slot and node4's replay" mesh_status_shows_all
	check "PG$pg: mesh: a write through every node into every table; refused where the node only reads" mesh_writes
	check "PG$pg: mesh: the guard's refusal of INSERT and TRUNCATE is SQLSTATE 25006 (node2 test, node3 test2)" eval 'mesh_guard_sqlstate node2 test && mesh_guard_sqlstate node3 test2'
	check "PG$pg: mesh: check: every copy equals its writer, mv_sum exact on node1 and node3" mesh_check
	check "PG$pg: mesh: a second up subscribes a dropped subscription again" mesh_repairs_dropped_subscription
	check "PG$pg: mesh: check after the repair" mesh_check
	check "PG$pg: mesh: failover refused while node3 applies on the slots" mesh_failover_refused_while_node3_applies
	check "PG$pg: mesh: rows into test and test2 just before node3 dies" eval 'lab_ok write node1 test && lab_ok write node2 test2 && lab_ok write node1 test'
	check "PG$pg: mesh: SIGKILL of node3" kill_node node3
	check "PG$pg: mesh: failover to node4: promoted, node3's subscriptions taken over, check passed" mesh_failover
	check "PG$pg: mesh: node4 refuses writes into its copies (the guard came with the base backup)" refused_with "is read-only on this node" lab write node4 test
	check "PG$pg: mesh: rows written after the failover reach node4" eval 'lab_ok write node1 test && lab_ok write node2 test2 && mesh_check'
	check "PG$pg: mesh: node3 may not start again beside node4" refused_with 'node4 took over' lab start node3
	check "PG$pg: mesh: lab-clean removes every container, network, volume and secret file" mesh_clean
	unset OPSDEMO_MESH_PROJECT OPSDEMO_MESH_SUBNET OPSDEMO_MESH_PORT
}
