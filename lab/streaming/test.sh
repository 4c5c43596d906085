# shellcheck shell=bash
# shellcheck disable=SC2154  # pg, run_id, work, repo, ...: set by test/container/run
# shellcheck disable=SC2015  # "a && b || fail": any failure of a or b is the failure
# Container tests of the "streaming" topology, sourced by test/container/run
# (which provides lib/, check/ok/not_ok/skip, q, lab, lab_ok, refused_with,
# kill_node, start_node and node_cid).  On PostgreSQL 17 and 18: up from
# nothing, the sync states of 007_sync_rep.pl, a commit waiting for absent
# synchronous standbys and its cancel, kill + promote with the others
# following the new timeline and the jobs moving, then the old primary
# started again, writing, and rejoined by pg_rewind: its diverged rows gone.

# shellcheck disable=SC2034  # read by test/container/run
streaming_majors="17 18"

streaming_service() { echo "$1"; }

# application_name:sync_state:sync_priority of every standby of a primary.
st_sync_states() { # primary
	q "$1" "SELECT string_agg(application_name || ':' || sync_state || ':' || sync_priority, ',' ORDER BY application_name)
		FROM pg_stat_replication WHERE state = 'streaming'"
}

st_sync_is() { # primary expected
	wait_until 20 test "$(st_sync_states "$1")" = "$2" || { echo "    $1: $(st_sync_states "$1"), expected $2"; return 1; }
}

st_sync() { # spec expected
	lab_ok sync "$1" && st_sync_is pg0 "$2"
}

# With every synchronous candidate down, a commit waits (SyncRep); a cancel
# ends the wait with PostgreSQL's warning, and the row is there locally.
st_commit_waits_and_cancel() {
	local out
	docker exec -d -u postgres "$(node_cid pg0)" bash -c \
		"psql -X -d postgres -c \"CREATE TABLE IF NOT EXISTS st_blocked (n int); INSERT INTO st_blocked VALUES (42) /* st-blocked */\" >/tmp/st-blocked.out 2>&1"
	wait_until 20 node_true pg0 "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE wait_event = 'SyncRep' AND query LIKE '%st-blocked%')" ||
		{ echo "    no session waits on SyncRep"; return 1; }
	sleep 2
	node_true pg0 "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE wait_event = 'SyncRep' AND query LIKE '%st-blocked%')" ||
		{ echo "    the commit stopped waiting by itself"; return 1; }
	q pg0 "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE wait_event = 'SyncRep' AND query LIKE '%st-blocked%'" >/dev/null
	wait_until 10 docker exec "$(node_cid pg0)" grep -q 'has already committed locally, but might not have been replicated' /tmp/st-blocked.out ||
		{ docker exec "$(node_cid pg0)" cat /tmp/st-blocked.out | sed 's/^/      /'; return 1; }
	out=$(q pg0 "SELECT count(*) FROM st_blocked WHERE n = 42")
	[[ $out == 1 ]] || { echo "    the row is not there locally: $out"; return 1; }
}

st_timeline() { # node -> its received or own timeline
	q "$1" "SELECT CASE WHEN pg_is_in_recovery() THEN (SELECT received_tli FROM pg_stat_wal_receiver)
		ELSE (SELECT timeline_id FROM pg_control_checkpoint()) END"
}

st_streams_from() { # primary standby...
	local p=$1 s
	shift
	for s in "$@"; do
		wait_until 60 node_true "$p" "SELECT EXISTS (SELECT FROM pg_stat_replication WHERE application_name = '$s' AND state = 'streaming')" ||
			{ echo "    $s does not stream from $p"; return 1; }
	done
}

st_worker_runs() { q "$1" "SELECT sum(runs) FROM opsdemo_status()"; }

# The new primary's jobs tick without a restart: runs go up, t1 grows.
st_jobs_move_on() { # node
	local r0 r1 t0 t1
	r0=$(st_worker_runs "$1") t0=$(q "$1" "SELECT max(id) FROM t1")
	sleep 7
	r1=$(st_worker_runs "$1") t1=$(q "$1" "SELECT max(id) FROM t1")
	((r1 > r0 && t1 > t0)) || { echo "    $1: runs $r0 -> $r1, max(id) $t0 -> $t1"; return 1; }
}

# A row written on the new primary reaches a standby.
st_row_reaches() { # primary standby
	local id
	id=$(q "$1" "SELECT opsdemo_insert_tick()")
	wait_until 30 node_true "$2" "SELECT EXISTS (SELECT FROM t1 WHERE id = $id)" || { echo "    row $id did not reach $2"; return 1; }
}

st_rejoin_by_rewind() {
	local id marker sysid_before
	# The old primary, started again without a rejoin, is a second
	# primary on the old timeline: what it writes now diverges.
	lab_ok start pg0 || return 1
	[[ $(q pg0 "SELECT pg_is_in_recovery()") == f ]] || { echo "    pg0 did not start as a primary"; return 1; }
	# Locally committed: pg0 still names synchronous standbys, and none
	# follows it now (a commit there would wait for ever: the pitfall).
	# The row is told by its GUID: ids repeat across the timelines (pg1's
	# sequence went on from the same point).
	id=$(q pg0 "SET synchronous_commit = local; SELECT opsdemo_insert_tick()")
	marker=$(q pg0 "SELECT operation_guid FROM t1 WHERE id = $id")
	q pg0 "CHECKPOINT" >/dev/null
	sysid_before=$(q pg0 "SELECT system_identifier FROM pg_control_system()")
	lab_ok rejoin pg0 || return 1
	grep -q 'servers diverged at WAL location' "$work/last-lab.log" || { sed 's/^/      /' "$work/last-lab.log"; return 1; }
	[[ $(q pg0 "SELECT pg_is_in_recovery()") == t ]] || { echo "    pg0 is not a standby"; return 1; }
	[[ $(q pg0 "SELECT system_identifier FROM pg_control_system()") == "$sysid_before" ]] || { echo "    system identifier changed"; return 1; }
	st_streams_from pg1 pg0 || return 1
	[[ -n $marker && $(q pg0 "SELECT count(*) FROM t1 WHERE operation_guid = '$marker'") == 0 ]] ||
		{ echo "    pg0's diverged row $marker is still there"; return 1; }
	st_row_reaches pg1 pg0
}

# The same rows on the primary and on a standby once it replayed
# everything the primary wrote (jobs stopped meanwhile).
st_standby_equals() { # primary standby
	local jobs lsn rc=0 p s
	jobs=$(stop_jobs "$1") || return 1
	lsn=$(q "$1" "SELECT pg_current_wal_lsn()")
	wait_until 60 node_true "$2" "SELECT pg_last_wal_replay_lsn() >= '$lsn'" || rc=1
	p=$(fingerprint "$1" t1) s=$(fingerprint "$2" t1)
	[[ $rc == 0 && -n $p && $p == "$s" ]] || { echo "    $1: $p, $2: $s"; rc=1; }
	resume_jobs "$1" "$jobs" || rc=1
	return "$rc"
}

streaming_tests() { # full|core (the same set: it runs on 17 and 18 only)
	local t0=$SECONDS
	check "PG$pg: streaming: up from nothing (pg0 + 3 standbys cloned through their slots)" lab_ok up
	echo "    up from nothing: $((SECONDS - t0)) s"
	check "PG$pg: streaming: pg1, pg2, pg3 stream from pg0 with their names" st_streams_from pg0 pg1 pg2 pg3
	check "PG$pg: streaming: one system identifier on all four nodes" test "$(for n in pg0 pg1 pg2 pg3; do q "$n" "SELECT system_identifier FROM pg_control_system()"; done | sort -u | wc -l)" = 1
	check "PG$pg: streaming: status shows every node and its slot" st_status_shows_all
	check "PG$pg: streaming: FIRST 1 (pg2, pg3): pg2 sync, pg3 potential, pg1 async" st_sync 'FIRST 1 (pg2, pg3)' 'pg1:async:0,pg2:sync:1,pg3:potential:2'
	check "PG$pg: streaming: ANY 1 (pg2, pg3): pg2 and pg3 quorum" st_sync 'ANY 1 (pg2, pg3)' 'pg1:async:0,pg2:quorum:1,pg3:quorum:1'
	check "PG$pg: streaming: off: every standby async" st_sync off 'pg1:async:0,pg2:async:0,pg3:async:0'
	check "PG$pg: streaming: FIRST 1 (pg2, pg3) again" st_sync 'FIRST 1 (pg2, pg3)' 'pg1:async:0,pg2:sync:1,pg3:potential:2'
	check "PG$pg: streaming: stop the sync standby pg2" lab_ok stop pg2
	check "PG$pg: streaming: the potential pg3 becomes sync" st_sync_is pg0 'pg1:async:0,pg3:sync:2'
	check "PG$pg: streaming: stop pg3 too" lab_ok stop pg3
	check "PG$pg: streaming: with both candidates down a commit waits (SyncRep); cancelled, it warns and is committed locally" st_commit_waits_and_cancel
	check "PG$pg: streaming: start pg2 again" lab_ok start pg2
	check "PG$pg: streaming: start pg3 again" lab_ok start pg3
	check "PG$pg: streaming: pg2 sync, pg3 potential after their return" st_sync_is pg0 'pg1:async:0,pg2:sync:1,pg3:potential:2'

	check "PG$pg: streaming: sync-block-demo shows the SyncRep wait and the warning, and brings the candidates back" st_block_demo
	check "PG$pg: streaming: SIGKILL of pg0" lab_ok kill pg0
	check "PG$pg: streaming: promote pg1" lab_ok promote pg1
	check "PG$pg: streaming: pg1 is the primary on timeline 2" test "$(q pg1 "SELECT pg_is_in_recovery()")|$(st_timeline pg1)" = "f|2"
	check "PG$pg: streaming: pg2 and pg3 follow pg1 on timeline 2 (repointed, not re-cloned)" st_follow_new_timeline
	check "PG$pg: streaming: the jobs run on pg1 without a restart" st_jobs_move_on pg1
	check "PG$pg: streaming: a row written on pg1 reaches pg3" st_row_reaches pg1 pg3
	check "PG$pg: streaming: the old primary, started again and written to, rejoins by pg_rewind: its diverged row gone, pg1's rows there" st_rejoin_by_rewind
	check "PG$pg: streaming: pg0 = pg1 (same rows)" st_standby_equals pg1 pg0
	check "PG$pg: streaming: mv_sum exact on pg1" mv_sum_exact pg1
	check "PG$pg: streaming: mv_sum exact on pg0 (a standby)" mv_sum_exact pg0
	check "PG$pg: streaming: lab-clean removes every container, network, volume and secret file" st_clean
}

st_block_demo() {
	lab_ok sync-block-demo || return 1
	grep -q 'SyncRep' "$work/last-lab.log" && grep -q 'has already committed locally' "$work/last-lab.log" ||
		{ sed 's/^/      /' "$work/last-lab.log"; return 1; }
	st_sync_is pg0 'pg1:async:0,pg2:sync:1,pg3:potential:2'
}

st_status_shows_all() {
	lab status >"$work/st-status.txt" 2>&1 || { cat "$work/st-status.txt"; return 1; }
	grep -q '^pg3   standby' "$work/st-status.txt" && grep -Eq '^ pg3 +\| physical +\| t ' "$work/st-status.txt" ||
		{ sed 's/^/      /' "$work/st-status.txt"; return 1; }
}

st_follow_new_timeline() {
	st_streams_from pg1 pg2 pg3 || return 1
	[[ $(st_timeline pg2)$(st_timeline pg3) == 22 ]] || { echo "    timelines: pg2 $(st_timeline pg2), pg3 $(st_timeline pg3)"; return 1; }
}

st_clean() {
	lab clean >/dev/null 2>&1 || true
	[[ -z "$(docker ps -aq --filter "label=com.docker.compose.project=$project")$(docker volume ls -q --filter "label=com.docker.compose.project=$project")$(docker network ls -q --filter "label=com.docker.compose.project=$project")" ]] &&
		[[ ! -e $state_dir/$project ]]
}
