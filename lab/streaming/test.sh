# shellcheck shell=bash
# shellcheck disable=SC2154  # pg, run_id, work, repo, ...: set by test/container/run
# shellcheck disable=SC2015  # "a && b || fail": any failure of a or b is the failure
# Container tests of the "streaming" topology, sourced by test/container/run
# (which provides lib/, check/ok/not_ok/skip, q, lab, lab_ok, refused_with,
# kill_node, start_node, node_cid, client_psql, lab_secret and
# published_port).  On PostgreSQL 17 and 18: up from nothing, the sync
# states of 007_sync_rep.pl, a commit waiting for absent synchronous
# standbys and its cancel, then three kill-promote-rejoin rounds: two under
# a writer (FIRST 1, then ANY 1: every acknowledged commit on the promoted
# standby, the async standby's loss printed), and one where the old primary
# is started again, written to and rejoined by pg_rewind (its diverged row
# gone); mv_sum exact after each.  Last, reclone and lab-clean.

# shellcheck disable=SC2034  # read by test/container/run
streaming_majors="17 18"

streaming_service() { echo "$1"; }

# application_name:sync_state:sync_priority of every standby of a primary.
st_sync_states() { # primary
	q "$1" "SELECT string_agg(application_name || ':' || sync_state || ':' || sync_priority, ',' ORDER BY application_name)
		FROM pg_stat_replication WHERE state = 'streaming'"
}

st_sync_states_are() { [[ $(st_sync_states "$1") == "$2" ]]; }

# wait_until runs st_sync_states_are again on every poll.
st_sync_is() { # primary expected
	wait_until 20 st_sync_states_are "$1" "$2" || { echo "    $1: $(st_sync_states "$1"), expected $2"; return 1; }
}

st_sync() { # spec expected
	lab_ok sync "$1" && st_sync_is pg0 "$2"
}

st_sync_unknown_refused() {
	refused_with "names 'nosuch', which is no node of this lab" lab sync 'FIRST 1 (nosuch)' || return 1
	[[ $(q pg0 "SHOW synchronous_standby_names") == 'FIRST 1 (pg2, pg3)' ]] || { echo "    now: $(q pg0 "SHOW synchronous_standby_names")"; return 1; }
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

st_rejoin_by_rewind() { # old primary, current primary
	local old=$1 new=$2 id marker sysid_before
	# The old primary, started again without a rejoin, is a second
	# primary on the old timeline: what it writes now diverges.
	lab_ok start "$old" || return 1
	[[ $(q "$old" "SELECT pg_is_in_recovery()") == f ]] || { echo "    $old did not start as a primary"; return 1; }
	# Locally committed: it still names synchronous standbys, and none
	# follows it now (a commit there would wait for ever: the pitfall).
	# The row is told by its GUID: ids repeat across the timelines (the
	# new primary's sequence went on from the same point).
	id=$(q "$old" "SET synchronous_commit = local; SELECT opsdemo_insert_tick()")
	marker=$(q "$old" "SELECT operation_guid FROM t1 WHERE id = $id")
	q "$old" "CHECKPOINT" >/dev/null
	sysid_before=$(q "$old" "SELECT system_identifier FROM pg_control_system()")
	lab_ok rejoin "$old" || return 1
	grep -q 'servers diverged at WAL location' "$work/last-lab.log" || { sed 's/^/      /' "$work/last-lab.log"; return 1; }
	[[ $(q "$old" "SELECT pg_is_in_recovery()") == t ]] || { echo "    $old is not a standby"; return 1; }
	[[ $(q "$old" "SELECT system_identifier FROM pg_control_system()") == "$sysid_before" ]] || { echo "    system identifier changed"; return 1; }
	st_streams_from "$new" "$old" || return 1
	[[ -n $marker && $(q "$old" "SELECT count(*) FROM t1 WHERE operation_guid = '$marker'") == 0 ]] ||
		{ echo "    $old's diverged row $marker is still there"; return 1; }
	st_row_reaches "$new" "$old"
}

# ---- no acknowledged commit lost -----------------------------------------------------

# A client of the lab (a container on the host network, through the
# primary's published port) commits numbered rows into acked, one INSERT
# at a time, and echoes each number once its INSERT returned: under
# synchronous_commit = on, after a synchronous standby flushed it.
# ON_ERROR_STOP ends it at the first failure, so the numbers it printed
# are exactly the commits acknowledged to it.  Its output: $work/writer.out.
st_writer_start() { # primary
	local port pw
	port=$(published_port "$1") pw=$(lab_secret POSTGRES_PASSWORD)
	q "$1" "DROP TABLE IF EXISTS acked; CREATE TABLE acked (n int PRIMARY KEY)" >/dev/null || return 1
	awk 'BEGIN { for (i = 1; i <= 500000; i++) printf "INSERT INTO acked VALUES (%d);\n\\echo ack %d\n", i, i }' >"$work/writer.sql"
	printf '127.0.0.1:%s:postgres:postgres:%s\n' "$port" "$(pgpass_escape "$pw")" |
		docker run --rm -i --label "opsdemo.test=$run_id" --network host -v "$work/writer.sql:/writer.sql:ro" \
			--entrypoint bash "$image_name:$pg" -c 'umask 077; f=$(mktemp); IFS= read -r line; printf "%s\n" "$line" >"$f"
				PGPASSFILE=$f exec psql -X -q -v ON_ERROR_STOP=1 -d "$1" -f /writer.sql' \
			_ "host=127.0.0.1 port=$port user=postgres dbname=postgres connect_timeout=5 application_name=writer" \
		>"$work/writer.out" 2>&1 &
	st_writer_pid=$!
	wait_until 60 node_true "$1" "SELECT count(*) >= 200 FROM acked" || { echo "    the writer does not commit:"; sed 's/^/      /' "$work/writer.out"; return 1; }
	sleep 2
}

st_writer_gone() { ! kill -0 "$st_writer_pid" 2>/dev/null; }

# The writer ended with an error (its server died), and what it printed
# is 1..N in order: N acknowledged commits.
st_writer_acked() {
	local n
	wait_until 60 st_writer_gone || { echo "    the writer is still running"; return 1; }
	if wait "$st_writer_pid"; then
		echo "    the writer ended without an error"
		return 1
	fi
	n=$(awk '/^ack / { if ($2 != ++i) { print "out of order at " $2; exit } } END { print i + 0 }' "$work/writer.out")
	[[ $n =~ ^[0-9]+$ ]] && ((n >= 200)) || { echo "    acknowledged: $n"; tail -n 3 "$work/writer.out" | sed 's/^/      /'; return 1; }
	st_acked=$n
}

# On the node: every acknowledged row, none twice, beyond them at most the
# one INSERT in flight (its commit may have reached the standby and the
# primary died before the acknowledgement went out).
st_has_all_acked() { # node
	local rows distinct max missing
	IFS='|' read -r rows distinct max < <(q "$1" "SELECT count(*), count(DISTINCT n), coalesce(max(n), 0) FROM acked")
	missing=$(q "$1" "SELECT count(*) FROM generate_series(1, $st_acked) g(n) WHERE NOT EXISTS (SELECT FROM acked a WHERE a.n = g.n)")
	echo "    $1: $rows rows, max $max, $missing of the $st_acked acknowledged missing"
	[[ $missing == 0 && $rows == "$distinct" ]] && ((max == st_acked || (max == st_acked + 1 && rows == max)))
}

# How many acknowledged rows the asynchronous pg1 lacks once it replayed
# all it received: what a failover to it would have lost.  A figure (it
# depends on timing), printed, not asserted.
st_async_loss() {
	wait_until 30 node_true pg1 "SELECT pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn()" || return 1
	echo "    async pg1 lacks $(q pg1 "SELECT $st_acked - count(*) FROM acked WHERE n <= $st_acked") of the $st_acked acknowledged rows (what a failover to it would have lost)"
}

# The candidate that received the most WAL: under ANY, the one that holds
# every commit the quorum acknowledged (what an HA engine promotes).
st_most_advanced() { # node...
	local node best='' best_lsn=0/0
	for node in "$@"; do
		local lsn
		lsn=$(q "$node" "SELECT pg_last_wal_receive_lsn()")
		if [[ -z $best ]] || node_true "$node" "SELECT '$lsn'::pg_lsn > '$best_lsn'::pg_lsn"; then
			best=$node best_lsn=$lsn
		fi
	done
	echo "$best"
}

# One round: the primary under a writer with the given synchronous setting
# is killed with SIGKILL; the sync standby (FIRST: given; ANY: the most
# advanced candidate) is promoted and has every acknowledged commit; the
# old primary rejoins by pg_rewind; mv_sum exact on both.
st_writer_round() { # primary spec sync-standby-or-empty round
	local old=$1 spec=$2 new=$3 round=$4 candidates
	candidates=$(grep -oE 'pg[0-3]' <<<"$spec" | tr '\n' ' ')
	check "PG$pg: streaming: round $round: sync '$spec' on primary $old" lab_ok sync "$spec"
	check "PG$pg: streaming: round $round: a writer commits under synchronous_commit = on" st_writer_start "$old"
	check "PG$pg: streaming: round $round: SIGKILL of $old mid-stream" lab_ok kill "$old"
	check "PG$pg: streaming: round $round: the writer lost its connection; its acknowledgements are 1..N in order" st_writer_acked
	check "PG$pg: streaming: round $round: async figure" st_async_loss
	# shellcheck disable=SC2086  # candidates: a list of node names
	[[ -n $new ]] || new=$(st_most_advanced $candidates)
	check "PG$pg: streaming: round $round: promote $new (${3:-the most advanced of $candidates})" lab_ok promote "$new"
	check "PG$pg: streaming: round $round: every acknowledged commit is on $new, none twice" st_has_all_acked "$new"
	check "PG$pg: streaming: round $round: $old rejoins by pg_rewind" lab_ok rejoin "$old"
	check "PG$pg: streaming: round $round: the other standbys follow $new" st_follow_new_timeline "$new"
	check "PG$pg: streaming: round $round: $old = $new (same rows)" st_standby_equals "$new" "$old"
	check "PG$pg: streaming: round $round: mv_sum exact on $new" mv_sum_exact "$new"
	check "PG$pg: streaming: round $round: mv_sum exact on $old (a standby)" mv_sum_exact "$old"
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
	check "PG$pg: streaming: sync naming no node of the lab (every commit would hang) is refused, the setting kept" st_sync_unknown_refused
	check "PG$pg: streaming: stop the sync standby pg2" lab_ok stop pg2
	check "PG$pg: streaming: the potential pg3 becomes sync" st_sync_is pg0 'pg1:async:0,pg3:sync:2'
	check "PG$pg: streaming: stop pg3 too" lab_ok stop pg3
	check "PG$pg: streaming: with both candidates down a commit waits (SyncRep); cancelled, it warns and is committed locally" st_commit_waits_and_cancel
	check "PG$pg: streaming: start pg2 again" lab_ok start pg2
	check "PG$pg: streaming: start pg3 again" lab_ok start pg3
	check "PG$pg: streaming: pg2 sync, pg3 potential after their return" st_sync_is pg0 'pg1:async:0,pg2:sync:1,pg3:potential:2'

	check "PG$pg: streaming: sync-block-demo shows the SyncRep wait and the warning, and brings the candidates back" st_block_demo
	# Three kill-promote-rejoin rounds.  The first two under a writer:
	# FIRST 1 then ANY 1, no acknowledged commit lost.
	st_writer_round pg0 'FIRST 1 (pg2, pg3)' pg2 1
	st_writer_round pg2 'ANY 1 (pg0, pg3)' '' 2
	# The third: pg1 is stopped while the others go on, so that the standby
	# promoted is behind the other ones (they must be rewound, since they
	# cannot follow its timeline); and the old primary is started again as
	# a second primary and written to before it rejoins.
	local old new=pg1 tl
	old=$(st_primary) tl=$(st_timeline "$old")
	check "PG$pg: streaming: round 3: pg1 stopped; the primary $old writes on, its other standbys replay it" st_fall_behind "$old" pg1
	check "PG$pg: streaming: round 3: SIGKILL of the primary $old" lab_ok kill "$old"
	check "PG$pg: streaming: round 3: pg1 started (a standby without its primary)" lab_ok start pg1
	check "PG$pg: streaming: round 3: promote pg1: the standbys that replayed past its switchpoint are rewound, not left stranded" st_promote_behind pg1 "$old"
	check "PG$pg: streaming: round 3: pg1 is the primary on timeline $((tl + 1))" test "$(q pg1 "SELECT pg_is_in_recovery()")|$(st_timeline pg1)" = "f|$((tl + 1))"
	check "PG$pg: streaming: round 3: the other standbys follow pg1 on timeline $((tl + 1)) (repointed, not re-cloned)" st_follow_new_timeline pg1 "$old"
	check "PG$pg: streaming: round 3: the jobs run on pg1 without a restart" st_jobs_move_on pg1
	check "PG$pg: streaming: round 3: a row written on pg1 reaches every standby" st_row_reaches_all pg1 "$old"
	check "PG$pg: streaming: round 3: the old primary $old, started again and written to, rejoins by pg_rewind: its diverged row gone, pg1's rows there" st_rejoin_by_rewind "$old" "$new"
	check "PG$pg: streaming: round 3: $old = pg1 (same rows)" st_standby_equals pg1 "$old"
	check "PG$pg: streaming: round 3: mv_sum exact on pg1" mv_sum_exact pg1
	check "PG$pg: streaming: round 3: mv_sum exact on $old (a standby)" mv_sum_exact "$old"
	check "PG$pg: streaming: a bad rejoin (the primary itself) is refused and changes nothing" st_rejoin_refused pg1
	check "PG$pg: streaming: a rejoin whose pg_rewind fails (pg1 refuses it) leaves pg3 down and says why; its next start rewinds" st_rejoin_fails_then_start pg1 pg3
	check "PG$pg: streaming: reclone pg3: deleted, copied again by pg_basebackup, streams with pg1's rows" st_reclone pg1 pg3
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

# Every running node but the primary (and the one left out) streams from
# it on its timeline.
st_follow_new_timeline() { # primary [node left out]
	local node tl want=()
	tl=$(st_timeline "$1")
	for node in pg0 pg1 pg2 pg3; do
		[[ $node == "$1" || $node == "${2:-}" ]] || want+=("$node")
	done
	st_streams_from "$1" "${want[@]}" || return 1
	for node in "${want[@]}"; do
		[[ $(st_timeline "$node") == "$tl" ]] || { echo "    $node is on timeline $(st_timeline "$node"), $1 on $tl"; return 1; }
	done
}

st_row_reaches_all() { # primary [node left out]
	local node
	for node in pg0 pg1 pg2 pg3; do
		[[ $node == "$1" || $node == "${2:-}" ]] || st_row_reaches "$1" "$node" || return 1
	done
}

# The one node that is not in recovery.
st_primary() {
	local node
	for node in pg0 pg1 pg2 pg3; do
		[[ $(q "$node" "SELECT pg_is_in_recovery()" 2>/dev/null) == f ]] && echo "$node"
	done
	return 0
}

# The standby stops; the primary commits more and the other standbys
# replay it: they are now ahead of the stopped one.
st_fall_behind() { # primary standby
	local node lsn
	lab_ok stop "$2" || return 1
	q "$1" "SET synchronous_commit = local; SELECT opsdemo_insert_tick() FROM generate_series(1, 5)" >/dev/null || return 1
	lsn=$(q "$1" "SELECT pg_current_wal_lsn()")
	for node in pg0 pg1 pg2 pg3; do
		[[ $node == "$1" || $node == "$2" ]] && continue
		wait_until 30 node_true "$node" "SELECT pg_last_wal_replay_lsn() >= '$lsn'" || { echo "    $node did not replay up to $lsn"; return 1; }
	done
}

st_promote_behind() { # standby that fell behind, the dead primary
	local node
	lab_ok promote "$1" || return 1
	for node in pg0 pg1 pg2 pg3; do
		[[ $node == "$1" || $node == "$2" ]] && continue
		grep -q "^lab: $node replayed WAL past $1's switchpoint" "$work/last-lab.log" && grep -q "^lab: $node rejoined as a standby of $1 by pg_rewind" "$work/last-lab.log" ||
			{ echo "    $node was not rewound:"; sed 's/^/      /' "$work/last-lab.log"; return 1; }
	done
}

# rejoin of the primary itself: refused (there is no other primary to
# rewind from), and the node is still the running primary.
st_rejoin_refused() { # the primary
	refused_with 'no running node is a primary' lab rejoin "$1" || return 1
	[[ $(st_primary) == "$1" ]] || { echo "    primaries now: $(st_primary)"; return 1; }
}

# A running node whose rewind fails in its own container: the source
# refuses pg_rewind's connection (a pg_hba.conf line, then reload).  The
# rejoin says so, the node stays down rather than start on its own, and
# its next start, the refusal gone, rewinds first (nothing to rewind for a
# standby of the primary: pg_rewind says so) and streams again.
st_rejoin_fails_then_start() { # primary standby
	local cid rc=0 since log
	cid=$(node_cid "$1")
	docker exec -u postgres "$cid" sh -c 'sed -i "1i host postgres opsdemo_repl all reject" "$PGDATA/pg_hba.conf"' &&
		q "$1" "SELECT pg_reload_conf()" >/dev/null || return 1
	refused_with "$2 was NOT rejoined: pg_rewind failed" lab rejoin "$2" || rc=1
	[[ $(container_state "$(node_cid "$2")") == exited* ]] || { echo "    $2: $(container_state "$(node_cid "$2")")"; rc=1; }
	docker exec -u postgres "$cid" sh -c 'sed -i "1d" "$PGDATA/pg_hba.conf"' &&
		q "$1" "SELECT pg_reload_conf()" >/dev/null || return 1
	((rc == 0)) || return 1
	since=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
	lab_ok start "$2" || return 1
	# Read whole before grep: grep -q quitting early would fail the
	# pipeline (SIGPIPE under pipefail) exactly when the line is there.
	log=$(docker logs --since "$since" "$(node_cid "$2")" 2>&1)
	grep -q 'pg_rewind: no rewind required' <<<"$log" ||
		{ echo "    $2's start did not rewind:"; head -n 15 <<<"$log" | sed 's/^/      /'; return 1; }
	st_streams_from "$1" "$2"
}

# reclone of a standby: its data deleted and copied again by pg_basebackup;
# it streams from the primary with the same rows.
st_reclone() { # primary standby
	lab_ok reclone "$2" || return 1
	grep -q "$2 re-cloned from $1" "$work/last-lab.log" || { sed 's/^/      /' "$work/last-lab.log"; return 1; }
	st_streams_from "$1" "$2" && st_standby_equals "$1" "$2"
}

st_clean() {
	lab clean >/dev/null 2>&1 || true
	[[ -z "$(docker ps -aq --filter "label=com.docker.compose.project=$project")$(docker volume ls -q --filter "label=com.docker.compose.project=$project")$(docker network ls -q --filter "label=com.docker.compose.project=$project")" ]] &&
		[[ ! -e $state_dir/$project ]]
}
