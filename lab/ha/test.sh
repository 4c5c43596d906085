# shellcheck shell=bash
# shellcheck disable=SC2154  # pg, run_id, work, project, image_name, ...: set by test/container/run
# shellcheck disable=SC2015  # "a && b || fail": any failure of a or b is the failure
# Container tests of the "ha" topology (Patroni + etcd + HAProxy), sourced
# by test/container/run (which provides lib/, check/ok/not_ok, q, lab,
# lab_ok, node_cid, lab_secret).  PostgreSQL 17 only (the image with
# Patroni).  Up from nothing; HAProxy's ports reach the leader and the
# replicas; the jobs run on the leader only.  Five rounds: a writer commits
# numbered rows through HAProxy's read-write port, the leader is SIGKILLed,
# a new one is elected: every acknowledged row is there once, mv_sum exact
# on every node, the old leader rejoins by pg_rewind; the failover times
# are printed with Patroni's timings.  The job history shows no slot run
# twice and none missed outside the failover windows.  Then a switchover,
# a partitioned leader that must not acknowledge a write, one etcd member
# lost, etcd's quorum lost (failsafe keeps the leader), and lab-clean.

# shellcheck disable=SC2034  # read by test/container/run
ha_majors="17"

ha_service() { echo "$1"; }

ha_nodes=(pg1 pg2 pg3)

# The leader by Patroni (the DCS), as the given node's REST API reports it.
ha_leader_by() { # node -> leader name (running), or fails
	docker exec "$(node_cid "$1")" python3 -c 'import json, urllib.request
c = json.load(urllib.request.urlopen("http://127.0.0.1:8008/cluster", timeout=3))
names = [m["name"] for m in c["members"] if m["role"] == "leader" and m["state"] == "running"]
print(names[0]) if names else exit(1)' 2>/dev/null
}

# The leader as any running node other than the excluded ones sees it.
ha_leader() { # [node to leave out...]
	local node
	for node in "${ha_nodes[@]}"; do
		[[ " $* " == *" $node "* ]] && continue
		[[ $(container_state "$(node_cid "$node")") == running* ]] || continue
		ha_leader_by "$node" && return 0
	done
	return 1
}

ha_leader_is_not() { local l; l=$(ha_leader "$1") && [[ $l != "$1" ]]; }

# The timings Patroni runs with (its dynamic configuration in etcd, after
# its own adjustments), not the ones the test asked for: "ttl loop_wait
# retry_timeout".
ha_timings() {
	docker exec "$(node_cid "$(ha_leader)")" python3 -c 'import json, urllib.request
c = json.load(urllib.request.urlopen("http://127.0.0.1:8008/config", timeout=3))
print(c["ttl"], c["loop_wait"], c["retry_timeout"])'
}

# Through HAProxy's published port, as the superuser (pg_hba lets it in
# from HAProxy's address only).
ha_proxy_port() { docker port "$(node_cid haproxy)" "$1" | sed -n '1s/.*://p'; }

ha_via_proxy() { # container-port sql
	local port
	port=$(ha_proxy_port "$1")
	client_psql host "127.0.0.1:$port:postgres:postgres:$(pgpass_escape "$(lab_secret POSTGRES_PASSWORD)")" \
		"host=127.0.0.1 port=$port user=postgres dbname=postgres connect_timeout=5" "$2"
}

ha_whoami="SELECT 'pg' || (split_part(host(inet_server_addr()), '.', 4)::int - 20) || ':' || pg_is_in_recovery()"

ha_proxies_right() {
	local leader rw ro
	leader=$(ha_leader) || { echo "    no leader"; return 1; }
	# The node by its fixed address (.21 pg1 .. .23 pg3: compose.yml).
	rw=$(ha_via_proxy 5000 "$ha_whoami")
	ro=$(ha_via_proxy 5001 "$ha_whoami")
	[[ $rw == "$leader:false" && $ro == pg?:true && $ro != "$leader:"* ]] || { echo "    leader $leader; rw: $rw; ro: $ro"; return 1; }
}

ha_all_streaming() { # leader
	local leader=$1 node
	for node in "${ha_nodes[@]}"; do
		[[ $node == "$leader" ]] && continue
		wait_until 90 node_true "$leader" "SELECT EXISTS (SELECT FROM pg_stat_replication
			WHERE application_name = '$node' AND state = 'streaming' AND sync_state = 'quorum')" ||
			{ echo "    $node does not stream from $leader as a quorum standby"; return 1; }
	done
}

# The jobs run on the leader (state running, runs going up) and idle on
# the replicas.
# wait_until runs its command again and again: the counts are taken there.
ha_runs_above() { # node runs
	(($(q "$1" "SELECT sum(runs) FROM opsdemo_status()") > $2))
}

ha_acks_at_least() { # writer-output n
	(($(grep -c '^ack' "$1") >= $2))
}

# A replica cloned before the leader created the jobs' role has its worker
# fail once to connect, wait for the role to replay, and restart (5 s
# each): up to about 15 s after the lab's up, it is not idle yet.
ha_replica_idle() { # node
	[[ $(q "$1" "SELECT string_agg(DISTINCT state, ',') FROM opsdemo_status()") == 'idle: hot standby, waiting for promotion' ]]
}

ha_jobs_on_leader() { # leader
	local node r0 r1 states
	r0=$(q "$1" "SELECT sum(runs) FROM opsdemo_status()")
	for node in "${ha_nodes[@]}"; do
		[[ $node == "$1" ]] && continue
		wait_until 30 ha_replica_idle "$node" ||
			{ echo "    $node: $(q "$node" "SELECT string_agg(DISTINCT state, ',') FROM opsdemo_status()")"; return 1; }
	done
	wait_until 15 ha_runs_above "$1" "$r0" || { echo "    $1: runs stay at $r0"; return 1; }
	states=$(q "$1" "SELECT string_agg(DISTINCT state, ',') FROM opsdemo_status()")
	[[ $states == running ]] || { echo "    $1: $states"; return 1; }
	r1=$(q "$1" "SELECT sum(runs) FROM opsdemo_status()")
	echo "    $1 runs the jobs ($r0 -> $r1 runs); the replicas idle"
}

# ---- the writer -----------------------------------------------------------------------

# A client on the host network (a container of the lab image: Python and
# psycopg2 come with Patroni) inserts numbered rows through HAProxy's
# read-write port, autocommit: a row is acknowledged when its INSERT
# returned, after a quorum standby flushed it.  It prints "ack N epoch" or
# "fail N epoch error", reconnects after a failure, and never retries a
# number: a failed one may be there or not (it was in flight).
ha_writer_script='import sys, time, psycopg2
conninfo, n = sys.argv[1], int(sys.argv[2])
conn = None
while True:
    n += 1
    try:
        if conn is None:
            conn = psycopg2.connect(conninfo)
            conn.autocommit = True
        conn.cursor().execute("INSERT INTO acked (n) VALUES (%s)", (n,))
        print("ack %d %.3f" % (n, time.time()), flush=True)
    except Exception as e:
        print("fail %d %.3f %s" % (n, time.time(), " ".join(str(e).split())[:160]), flush=True)
        try:
            conn.close()
        except Exception:
            pass
        conn = None
        time.sleep(0.05)'

ha_writer_start() { # first-number-minus-one output-file
	local port
	port=$(ha_proxy_port 5000)
	printf '127.0.0.1:%s:postgres:postgres:%s\n' "$port" "$(pgpass_escape "$(lab_secret POSTGRES_PASSWORD)")" |
		docker run --rm -i --name "$run_id-writer-$1" --label "opsdemo.test=$run_id" --network host \
			--entrypoint bash "$image_name:$pg" -c 'umask 077; f=$(mktemp); IFS= read -r line; printf "%s\n" "$line" >"$f"
				PGPASSFILE=$f exec python3 -u -c "$1" "$2" "$3"' \
			_ "$ha_writer_script" "host=127.0.0.1 port=$port user=postgres dbname=postgres connect_timeout=2 application_name=writer" "$1" \
		>"$2" 2>&1 &
	ha_writer_pid=$! ha_writer_name=$run_id-writer-$1
	wait_until 60 ha_acks_at_least "$2" 50 || { echo "    the writer does not commit:"; tail -n 5 "$2" | sed 's/^/      /'; return 1; }
}

ha_writer_stop() {
	[[ -n ${ha_writer_name:-} ]] || return 0
	docker kill "$ha_writer_name" >/dev/null 2>&1 || true
	wait "$ha_writer_pid" 2>/dev/null || true
}

# ---- one round ------------------------------------------------------------------------

ha_kill_epoch=
ha_failover_times=()
ha_windows=()

# SIGKILL of the leader's container under the writer; the time from the
# kill to the first acknowledged write after it is the failover time.
ha_kill_leader_under_writer() { # leader writer-output
	local cid first
	cid=$(node_cid "$1")
	ha_kill_epoch=$(date +%s.%N)
	docker kill -s KILL "$cid" >/dev/null || return 1
	wait_until 30 exited_137 "$cid" || { echo "    $1: $(container_state "$cid")"; return 1; }
	wait_until 90 ha_acked_after "$2" "$ha_kill_epoch" || { echo "    no write accepted within 90 s of the kill:"; tail -n 5 "$2" | sed 's/^/      /'; return 1; }
	first=$(ha_acked_after "$2" "$ha_kill_epoch")
	ha_failover_times+=("$(awk -v a="$ha_kill_epoch" -v b="$first" 'BEGIN { printf "%.1f", b - a }')")
	ha_windows+=("$ha_kill_epoch $first")
	echo "    failover: $1 killed, first write accepted after ${ha_failover_times[-1]} s"
	# The key of a dead leader lives up to ttl after its last refresh;
	# then the election, the promotion and HAProxy's 1 s check.  More
	# than 10 s on top means something waits that should not.
	awk -v t="${ha_failover_times[-1]}" -v max=$((ha_ttl + 10)) 'BEGIN { exit !(t <= max) }' ||
		{ echo "    that is more than ttl + 10 s ($((ha_ttl + 10)) s)"; return 1; }
	# A few more, on the new leader.
	local n0
	n0=$(grep -c '^ack' "$2")
	wait_until 30 ha_acks_at_least "$2" $((n0 + 20))
}

# The first write accepted after the kill: the first ack that follows a
# failure after it (acks printed just after the kill came from the old
# leader: their commits were on the way when it died).
ha_acked_after() { # writer-output epoch -> epoch of that ack
	awk -v t="$2" '$1 == "fail" && $3 > t { failed = 1 }
		failed && $1 == "ack" { print $3; found = 1; exit } END { exit !found }' "$1"
}

# Every number acknowledged in any round so far once on the node; the
# others there are the writes that failed (in flight at a kill: they may
# have committed or not).
ha_has_all_acked() { # node
	local acks missing dup inflight fails
	cat "$work"/ha-writer-*.out | awk '$1 == "ack" { print $2 }' >"$work/ha-acked.txt"
	fails=$(cat "$work"/ha-writer-*.out | grep -c '^fail')
	acks=$(wc -l <"$work/ha-acked.txt")
	docker cp "$work/ha-acked.txt" "$(node_cid "$1"):/tmp/ha-acked.txt" >/dev/null || return 1
	q "$1" "CREATE TEMP TABLE want (n bigint); COPY want FROM '/tmp/ha-acked.txt';
		SELECT (SELECT count(*) FROM want w WHERE NOT EXISTS (SELECT FROM acked a WHERE a.n = w.n)) || ' ' ||
		       (SELECT count(*) FROM (SELECT n FROM acked GROUP BY n HAVING count(*) > 1) d) || ' ' ||
		       (SELECT count(*) FROM acked a WHERE NOT EXISTS (SELECT FROM want w WHERE w.n = a.n))" >"$work/ha-check.txt" || return 1
	read -r missing dup inflight <"$work/ha-check.txt"
	echo "    $1: $acks acknowledged rows so far: $missing missing, $dup numbers twice; $inflight of the $fails failed writes (in flight at a kill) are there"
	# The last number of each round may also be there: the writer was
	# stopped in its INSERT.
	[[ $missing == 0 && $dup == 0 ]] && ((inflight <= fails + 5))
}

# Every node replayed what the leader wrote until now, then mv_sum is
# exact on each.
ha_mv_sum_everywhere() { # leader
	local lsn node rc=0
	lsn=$(q "$1" "SELECT pg_current_wal_lsn()") && [[ -n $lsn ]] || { echo "    $1 is not a primary"; return 1; }
	for node in "${ha_nodes[@]}"; do
		[[ $node == "$1" ]] || wait_until 60 node_true "$node" "SELECT pg_last_wal_replay_lsn() >= '$lsn'" ||
			{ echo "    $node did not replay up to $lsn"; rc=1; }
		mv_sum_exact "$node" || rc=1
	done
	return "$rc"
}

# The old leader, started again, rejoins as a replica: Patroni ran
# pg_rewind (its log says so), never a new base backup.
ha_rejoined_by_rewind() { # old-leader new-leader
	local cid log since
	# Its log from this start on (compose may keep the container, and with
	# it the log of the node's first clone).
	since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	lab_ok start "$1" || return 1
	ha_all_streaming "$2" || return 1
	cid=$(node_cid "$1")
	log=$(docker logs --since "$since" "$cid" 2>&1)
	if grep -qE 'basebackup|bootstrap from leader|replica has been created' <<<"$log"; then
		echo "    $1 was re-cloned:"
		grep -E 'basebackup|bootstrap from leader|replica has been created' <<<"$log" | sed 's/^/      /'
		return 1
	fi
	if grep -q 'pg_rewind exit code=0' <<<"$log"; then
		grep -E 'servers diverged at WAL location' <<<"$log" | head -n 1 | sed 's/^.*pg_rewind: /    pg_rewind: /'
		ha_rewinds=$((ha_rewinds + 1))
	else
		# Nothing to rewind: the old leader had written nothing past the
		# point where the new leader's timeline forked off.
		echo "    $1 rejoined without a rewind (its WAL ended before the fork); log: $(grep -iE 'rewind' <<<"$log" | tail -n 1)"
	fi
}

ha_rewinds=0

ha_round() { # round writer-output
	local round=$1 out=$2 old new
	old=$(ha_leader) || { not_ok "PG$pg: ha: round $round: a leader before the kill"; return; }
	check "PG$pg: ha: round $round: the writer commits through HAProxy's read-write port (leader $old)" \
		ha_writer_start $((round * 1000000)) "$out"
	check "PG$pg: ha: round $round: SIGKILL of the leader $old; a write is accepted again through HAProxy within ttl + 10 s" \
		ha_kill_leader_under_writer "$old" "$out"
	ha_writer_stop
	new=$(ha_leader "$old") || { not_ok "PG$pg: ha: round $round: a new leader is elected"; return; }
	ok "PG$pg: ha: round $round: $new leads"
	check "PG$pg: ha: round $round: every acknowledged row is on $new, none twice" ha_has_all_acked "$new"
	check "PG$pg: ha: round $round: the jobs run on $new" ha_jobs_on_leader_eventually "$new"
	check "PG$pg: ha: round $round: $old rejoins as a replica by pg_rewind (Patroni's log), not re-cloned" ha_rejoined_by_rewind "$old" "$new"
	check "PG$pg: ha: round $round: mv_sum exact on every node" ha_mv_sum_everywhere "$new"
}

# Right after a failover the killed node is still listed (down): the
# replicas idle, the leader runs.  Only the running replicas are asked.
ha_jobs_on_leader_eventually() { # leader
	local r0
	r0=$(q "$1" "SELECT sum(runs) FROM opsdemo_status()")
	wait_until 15 ha_runs_above "$1" "$r0" &&
		[[ $(q "$1" "SELECT string_agg(DISTINCT state, ',') FROM opsdemo_status()") == running ]] ||
		{ echo "    $1: $(q "$1" "SELECT string_agg(job || ' ' || state || ' runs ' || runs, '; ') FROM opsdemo_status()")"; return 1; }
}

# ---- the job history over the rounds ------------------------------------------------

# No (job, slot) twice; every slot the history misses between the first
# and the last round lies in a failover window (kill .. first accepted
# write, plus the job's interval for the worker to notice the promotion).
ha_job_slots() { # leader since-epoch until-epoch
	local twice
	twice=$(q "$1" "SELECT count(*) FROM (SELECT job, scheduled_at FROM opsdemo_job_history
		GROUP BY job, scheduled_at HAVING count(*) > 1) d")
	[[ $twice == 0 ]] || { echo "    $twice slots ran twice"; return 1; }
	q "$1" "SELECT job, extract(epoch FROM prev), extract(epoch FROM scheduled_at), extract(epoch FROM interval)
		FROM (SELECT job, scheduled_at, lag(scheduled_at) OVER (PARTITION BY job ORDER BY scheduled_at) AS prev,
		             CASE job WHEN 'insert' THEN interval '5 s' ELSE interval '3 s' END AS interval
		        FROM opsdemo_job_history WHERE scheduled_at BETWEEN to_timestamp($2) AND to_timestamp($3)) h
		WHERE scheduled_at - prev > interval" | tr '|' ' ' >"$work/ha-gaps.txt" || return 1
	local job prev next step s missed=0 inwin w k e
	while read -r job prev next step; do
		s=$(awk -v p="$prev" -v st="$step" 'BEGIN { printf "%.3f", p + st }')
		while awk -v s="$s" -v n="$next" 'BEGIN { exit !(s < n - 0.001) }'; do
			inwin=0
			for w in "${ha_windows[@]}"; do
				read -r k e <<<"$w"
				awk -v s="$s" -v k="$k" -v e="$e" -v st="$step" 'BEGIN { exit !(s >= k - st && s <= e + st) }' && inwin=1
			done
			if ((!inwin)); then
				echo "    $job slot $(date -u -d "@${s%.*}" +%T) missed outside every failover window"
				missed=$((missed + 1))
			fi
			s=$(awk -v s="$s" -v st="$step" 'BEGIN { printf "%.3f", s + st }')
		done
	done <"$work/ha-gaps.txt"
	echo "    job history: no slot twice; $(wc -l <"$work/ha-gaps.txt") gap(s), $missed slot(s) missed outside the failover windows"
	((missed == 0))
}

# ---- split brain ------------------------------------------------------------------------

# The leader cut off the lab network keeps PostgreSQL running; a write on
# it (from inside, where nothing else reaches it) is not acknowledged: it
# waits for a quorum standby, and Patroni, with neither etcd nor the other
# members in reach (failsafe), demotes it.  The others elect a leader; the
# row is on none of them, and not on the old leader once it is healed and
# has rejoined.
ha_split_brain() { # leader
	local old=$1 new cid out rc=0 marker
	marker=split-$RANDOM$RANDOM
	q "$old" "CREATE TABLE IF NOT EXISTS split (tag text)" >/dev/null || return 1
	lab_ok partition "$old" || return 1
	local cut=$SECONDS
	cid=$(node_cid "$old")
	# Up to 40 s for the INSERT: it must not return success in that time.
	out=$(timeout -k 5 40 docker exec -u postgres "$cid" psql -X -v ON_ERROR_STOP=1 -d postgres \
		-c "INSERT INTO split VALUES ('$marker')" 2>&1) || rc=$?
	echo "    the write on the partitioned $old: exit status $rc: $(tr '\n' ' ' <<<"$out" | cut -c1-220)"
	[[ $rc != 0 ]] || { echo "    the partitioned leader acknowledged a write"; return 1; }
	# Patroni demotes it (the shutdown, then a start as a replica with no
	# primary in reach): a second write is refused outright.
	wait_until 60 node_true "$old" "SELECT pg_is_in_recovery()" || { echo "    $old was not demoted"; return 1; }
	echo "    $old in recovery $((SECONDS - cut)) s after it was cut off"
	out=$(timeout -k 5 20 docker exec -u postgres "$cid" psql -X -v ON_ERROR_STOP=1 -d postgres \
		-c "INSERT INTO split VALUES ('$marker-2')" 2>&1) && { echo "    the demoted $old took a write"; return 1; }
	grep -q 'read-only transaction' <<<"$out" || { echo "    refused, but: $out"; return 1; }
	echo "    $old demoted itself: '$(tr '\n' ' ' <<<"$out" | sed 's/^.*ERROR: *//' | cut -c1-80)'"
	wait_until 60 ha_leader_is_not "$old" || { echo "    no other leader"; return 1; }
	new=$(ha_leader "$old")
	echo "    $new leads"
	[[ $(q "$new" "SELECT count(*) FROM split WHERE tag LIKE '$marker%'") == 0 ]] || { echo "    the row is on $new"; return 1; }
	lab_ok heal "$old" || return 1
	ha_all_streaming "$new" || return 1
	[[ $(q "$old" "SELECT count(*) FROM split WHERE tag LIKE '$marker%'") == 0 ]] || { echo "    the row is still on $old"; return 1; }
	echo "    healed: $old streams from $new, without the unacknowledged row"
}

# ---- etcd -------------------------------------------------------------------------------

ha_write_through_proxy() { # tag
	local out
	out=$(ha_via_proxy 5000 "INSERT INTO split VALUES ('$1') RETURNING tag")
	grep -qx "$1" <<<"$out" || { echo "    the write through HAProxy: $out"; return 1; }
}

# One etcd member down: the leader stays, writes go on.  Two down (no
# quorum): failsafe keeps the leader a primary, since it reaches every
# other member; writes go on.  Then both come back.
ha_etcd_member_lost() { # leader
	lab_ok etcd-kill etcd1 || return 1
	sleep "$((ha_ttl + 2))"
	[[ $(ha_leader) == "$1" ]] || { echo "    the leader changed: $(ha_leader)"; return 1; }
	ha_write_through_proxy etcd-one-down
}

ha_etcd_quorum_lost() { # leader
	lab_ok etcd-kill etcd2 || return 1
	# Patroni's calls to etcd fail for retry_timeout, then the leader asks
	# the other members (failsafe) instead of demoting; the wait covers
	# several retry_timeouts, and the ttl of the key it cannot refresh.
	sleep "$((ha_ttl + 2))"
	[[ $(q "$1" "SELECT pg_is_in_recovery()") == f ]] || { echo "    $1 was demoted"; return 1; }
	docker logs --since 60s "$(node_cid "$1")" 2>&1 | grep -m1 -i 'failsafe' | sed 's/^/    /'
	ha_write_through_proxy etcd-quorum-lost || return 1
	lab_ok start etcd1 && lab_ok start etcd2 || return 1
	wait_until 60 ha_leader >/dev/null && [[ $(ha_leader) == "$1" ]]
}

ha_clean() {
	lab clean >/dev/null 2>&1 || true
	[[ -z "$(docker ps -aq --filter "label=com.docker.compose.project=$project")$(docker volume ls -q --filter "label=com.docker.compose.project=$project")$(docker network ls -q --filter "label=com.docker.compose.project=$project")" ]] &&
		[[ ! -e $state_dir/$project ]]
}

ha_median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

ha_tests() { # full|core (the same set: PostgreSQL 17 only)
	local t0=$SECONDS leader round since until
	ha_ttl=20 ha_loop_wait=2 ha_retry_timeout=4
	# The writer's container is removed on every exit path (opsdemo.test
	# label: test/container/run's cleanup); its shell job here too.
	on_exit 'ha_writer_stop'
	check "PG$pg: ha: up from nothing (3 etcd, 3 Patroni nodes, HAProxy)" with_vars OPSDEMO_ROWS=5000 -- lab_ok up
	echo "    up from nothing: $((SECONDS - t0)) s"
	leader=$(ha_leader) || { not_ok "PG$pg: ha: a leader"; return; }
	check "PG$pg: ha: Patroni runs with the lab's timings (ttl 20, loop_wait 2, retry_timeout 4)" ha_timings_are 20 2 4
	check "PG$pg: ha: both replicas stream from $leader as quorum standbys (ANY 1)" ha_all_streaming "$leader"
	check "PG$pg: ha: HAProxy's read-write port reaches the leader, its read-only port a replica" ha_proxies_right
	check "PG$pg: ha: the jobs run on the leader, the replicas' workers idle" ha_jobs_on_leader "$leader"
	check "PG$pg: ha: status shows the members, HAProxy's view and the jobs" ha_status_complete
	check "PG$pg: ha: Patroni's unsafe REST endpoints refuse a non-member (HAProxy's container: 403), a member may" ha_unsafe_api_members_only "$leader"
	check "PG$pg: ha: the writers' tables" q "$leader" "CREATE TABLE acked (n bigint NOT NULL, at timestamptz DEFAULT clock_timestamp());
		CREATE TABLE split (tag text)"

	since=$(date +%s)
	for round in 1 2 3 4 5; do
		ha_round "$round" "$work/ha-writer-$round.out"
	done
	until=$(date +%s)
	echo "    failover times (kill -> first write accepted through HAProxy): ${ha_failover_times[*]} s;" \
		"median $(ha_median "${ha_failover_times[@]}") s, max $(printf '%s\n' "${ha_failover_times[@]}" | sort -g | tail -n 1) s" \
		"(Patroni's ttl $ha_ttl, loop_wait $ha_loop_wait, retry_timeout $ha_retry_timeout)"
	leader=$(ha_leader) || { not_ok "PG$pg: ha: a leader after the rounds"; return; }
	check "PG$pg: ha: five failovers measured, each within ttl + 10 s" test "${#ha_failover_times[@]}" = 5
	check "PG$pg: ha: pg_rewind ran in at least one of the rejoins ($ha_rewinds of 5)" test "$ha_rewinds" -ge 1
	check "PG$pg: ha: job history: no slot ran twice, none missed outside the failover windows" ha_job_slots "$leader" "$since" "$until"

	check "PG$pg: ha: switchover: another node leads, the old leader follows it" ha_switchover "$leader"
	leader=$(ha_leader) || { not_ok "PG$pg: ha: a leader after the switchover"; return; }
	check "PG$pg: ha: failover: a quorum standby takes over from $leader without its consent, $leader follows" ha_manual_failover "$leader"
	leader=$(ha_leader) || { not_ok "PG$pg: ha: a leader after the failover"; return; }
	check "PG$pg: ha: split brain: the partitioned leader $leader acknowledges no write, is demoted, rejoins without it" ha_split_brain "$leader"
	leader=$(ha_leader) || { not_ok "PG$pg: ha: a leader after the partition"; return; }
	check "PG$pg: ha: one etcd member lost: $leader leads on, writes go on" ha_etcd_member_lost "$leader"
	check "PG$pg: ha: etcd quorum lost: failsafe keeps $leader the primary, writes go on; etcd back" ha_etcd_quorum_lost "$leader"
	check "PG$pg: ha: mv_sum exact on every node at the end" ha_mv_sum_everywhere "$leader"
	check "PG$pg: ha: lab-clean removes containers, network, volumes and secret files" ha_clean
	echo "    ha lab test: $((SECONDS - t0)) s"
}

ha_indent() { sed 's/^/      /'; }

ha_status_complete() {
	local out
	out=$(lab status 2>&1) || { echo "$out" | tail -n 20 | sed 's/^/      /'; return 1; }
	grep -q 'Leader' <<<"$out" && grep -q 'Quorum Standby' <<<"$out" && grep -qE '^  rw  pg[1-3] +UP' <<<"$out" &&
		grep -q 'quorum' <<<"$out" && grep -q 'insert | worker' <<<"$out" || { ha_indent <<<"$out"; return 1; }
}

ha_timings_are() { # ttl loop_wait retry_timeout
	local got
	got=$(ha_timings) || return 1
	read -r ha_ttl ha_loop_wait ha_retry_timeout <<<"$got"
	[[ $got == "$1 $2 $3" ]] || { echo "    Patroni's: $got"; return 1; }
}

# make failover with no NODE: Patroni's failover to a streaming quorum
# standby, the leader told to step down rather than asked.
ha_manual_failover() { # leader
	local new
	lab_ok failover || return 1
	new=$(ha_leader) && [[ $new != "$1" ]] || { echo "    leader: $new"; return 1; }
	ha_all_streaming "$new" || return 1
	# Its rows: a write through HAProxy reaches the new leader.
	ha_write_through_proxy "after-failover-$RANDOM"
}

# POST /failover naming no member: harmless if it were taken (Patroni
# refuses the candidate), so only the status tells who may call it.
ha_api_post_status() { # from-node to-node
	docker exec "$(node_cid "$1")" python3 -c 'import sys, urllib.request, urllib.error
req = urllib.request.Request("http://%s:8008/failover" % sys.argv[1], data=b"{\"candidate\": \"nosuch\"}", method="POST")
try:
    print(urllib.request.urlopen(req, timeout=5).status)
except urllib.error.HTTPError as e:
    print(e.code)' "$2"
}

ha_unsafe_api_members_only() { # leader
	local other from_proxy from_member
	from_proxy=$(ha_api_post_status haproxy "$1") || return 1
	for other in "${ha_nodes[@]}"; do [[ $other == "$1" ]] || break; done
	from_member=$(ha_api_post_status "$other" "$1") || return 1
	echo "    POST /failover on $1: from haproxy $from_proxy, from $other $from_member"
	[[ $from_proxy == 403 && $from_member != 403 ]]
}

ha_switchover() { # leader
	local new
	lab_ok switchover || return 1
	new=$(ha_leader) && [[ $new != "$1" ]] || { echo "    leader: $new"; return 1; }
	ha_all_streaming "$new"
}
