# shellcheck shell=bash
# shellcheck disable=SC2154  # pg, run_id, work, repo, ...: set by test/container/run
# shellcheck disable=SC2015  # "a && b || fail": any failure of a or b is the failure
# Container tests of the "logical" topology, sourced by test/container/run,
# which provides lib/, check/ok/not_ok/skip, with_vars, lab (lab/lab for the
# test's own project, bounded by a time limit), lab_ok, q, refused_with,
# kill_node, start_node and node_cid, and calls
#   logical_tests full|core
# once per PostgreSQL major with pg, project, env_file and subnet set.
# "core" (every major): settings refused, up from nothing, secrets, pg_hba,
# job role, idempotence, replication exact, SIGKILLs, fast down, pg_cron
# mode, the suites against the primary, clean.  "full" (the default major)
# adds what does not depend on the major: password rotation, bounded waits,
# extension and volume drift, lost volumes, the WAL bound of slots.

repl_user=opsdemo_repl
job_role=opsdemo_job

# The compose service of a node (test/container/run's node_cid uses it).
logical_service() { echo "postgres-$1"; }

# ---- helpers ------------------------------------------------------------------------

# The replica equals the primary: jobs stopped, the slot has confirmed all
# the primary wrote, then the same rows (count + order-independent hash),
# jobs resumed.  Deterministic on a loaded host.
replica_equals_primary() {
	local jobs p r rc=1 _
	jobs=$(stop_jobs primary) || return 1
	# A job run that began as the jobs were stopped may still commit: a
	# round whose primary changed meanwhile is taken again.
	for _ in 1 2 3; do
		wait_slot_caught_up primary sub_t1 120 || break
		p=$(fingerprint primary t1) r=$(fingerprint replica t1)
		if [[ -n $p && $p == "$r" ]]; then
			echo "    replica = primary: ${p%% *} rows"
			rc=0
			break
		fi
		[[ $p == "$(fingerprint primary t1)" ]] && break
	done
	((rc == 0)) || echo "    replica != primary: primary $p, replica $r"
	resume_jobs primary "$jobs" || rc=1
	return "$rc"
}

no_duplicates() { # node
	node_true "$1" "SELECT count(*) = count(DISTINCT id) AND count(*) = count(DISTINCT operation_guid) FROM t1"
}

# Both job bodies run: within $1 seconds a row is inserted and a row flipped.
jobs_running() { # timeout-seconds
	local before after deadline=$((SECONDS + $1))
	before=$(q primary "SELECT max(id), count(*) FILTER (WHERE status = 1) FROM t1")
	while ((SECONDS < deadline)); do
		sleep 1
		after=$(q primary "SELECT max(id), count(*) FILTER (WHERE status = 1) FROM t1")
		if [[ ${after%%|*} -gt ${before%%|*} && ${after##*|} -gt ${before##*|} ]]; then
			return 0
		fi
	done
	echo "    (max id, processed) before: ${before//|/, }  after $1 s: ${after//|/, }"
	return 1
}

status_streaming() {
	lab status >"$work/status.txt" 2>&1 || { cat "$work/status.txt"; return 1; }
	grep -Eq '\| +streaming +\|' "$work/status.txt" &&
		grep -Eq '^ *sub_t1 +\| +t +\| +t +\|' "$work/status.txt"
}

# ---- settings refused before anything starts --------------------------------------

no_containers() { [[ -z $(docker ps -aq --filter "label=com.docker.compose.project=$project") ]]; }

test_settings_refused() {
	local good=$work/env-good-$pg bad=$work/env-bad-$pg
	local pw1 pw2
	pw1=$(random_password) pw2=$(random_password)
	printf 'POSTGRES_PASSWORD=%s\nOPSDEMO_REPL_PASSWORD=%s\n' "$pw1" "$pw2" >"$good"
	chmod 600 "$good"

	(umask 077 && sed 's/^OPSDEMO_REPL_PASSWORD=.*/OPSDEMO_REPL_PASSWORD=change-me-too/' "$good" >"$bad")
	check "PG$pg: settings: a placeholder password is refused" refused_with 'placeholder' with_vars env_file="$bad" -- lab up
	chmod 644 "$good"
	check "PG$pg: settings: an env file others can read is refused" refused_with 'readable by others \(mode 644\)' with_vars env_file="$good" -- lab up
	chmod 600 "$good"
	(umask 077 && cat "$good" && echo 'OPSDEMO_REPL_USR=foo') >"$bad"
	check "PG$pg: settings: an unknown name is refused" refused_with 'line 3: unknown setting OPSDEMO_REPL_USR' with_vars env_file="$bad" -- lab up
	(umask 077 && cat "$good" && echo 'OPSDEMO_ROWS=10 000') >"$bad"
	check "PG$pg: settings: an unquoted value with a space is refused" refused_with 'line 3: OPSDEMO_ROWS: a value with spaces' with_vars env_file="$bad" -- lab up
	check "PG$pg: settings: OPSDEMO_REPL_USER is refused (pg_hba names opsdemo_repl)" \
		refused_with 'OPSDEMO_REPL_USER is no longer a setting' with_vars OPSDEMO_REPL_USER=foo env_file="$good" -- lab up
	check "PG$pg: settings: a password in the environment is refused" \
		refused_with 'OPSDEMO_REPL_PASSWORD is set in the environment' with_vars OPSDEMO_REPL_PASSWORD=override-x-123456 env_file="$good" -- lab up
	check "PG$pg: settings: a public subnet is refused" \
		refused_with 'must be private' with_vars subnet=8.8.8.0/24 env_file="$good" -- lab up
	check "PG$pg: settings: nothing was created by the refused ups" no_containers
	rm -f "$bad" "$good"
}

# ---- secrets ------------------------------------------------------------------------

# Neither password appears in docker inspect, any process's arguments or
# environment inside the nodes, the nodes' logs, the host's process list,
# or any file of a node but its own secret files.
secrets_nowhere() {
	local pw node cid found=0 where patterns=$work/patterns
	local -a pws=("$(lab_secret POSTGRES_PASSWORD)" "$(lab_secret OPSDEMO_REPL_PASSWORD)")
	for pw in "${pws[@]}"; do
		[[ ${#pw} -ge 12 ]] || { echo "    cannot read the passwords from $env_file"; return 1; }
	done
	# The passwords go to grep as a pattern file (on stdin in the nodes):
	# as an argument, grep itself would put them on a process list.
	(umask 077 && printf '%s\n' "${pws[@]}" >"$patterns")
	for node in primary replica; do
		cid=$(node_cid "$node")
		for where in inspect procs logs files; do
			case $where in
			inspect) docker inspect "$cid" | grep -Ff "$patterns" >/dev/null ;;
			procs) docker exec -u 0 "$cid" bash -c 'for p in /proc/[0-9]*; do tr "\0" "\n" <"$p/cmdline"; tr "\0" "\n" <"$p/environ"; done 2>/dev/null' |
				grep -Ff "$patterns" >/dev/null ;;
			logs) docker logs "$cid" 2>&1 | grep -Ff "$patterns" >/dev/null ;;
			files) docker exec -i -u 0 "$cid" grep -rlF -f /dev/stdin /run /tmp /etc /root /var/lib/postgresql /var/run/postgresql \
				<"$patterns" 2>/dev/null | grep -vx -e /run/secrets/postgres_password \
				-e /run/secrets/pgpass -e /var/lib/postgresql/.pgpass ;;
			esac && { echo "    a password is visible: $node $where"; found=1; }
		done
	done
	# shellcheck disable=SC2009  # ps on purpose: what any host user sees
	ps -eo args | grep -Ff "$patterns" >/dev/null && { echo "    a password is on the host's process list"; found=1; }
	rm -f "$patterns"
	return "$found"
}

# What each node holds: the secret files are root's, 0600, on a read-only
# mount; the primary holds no replication password; the replica's
# password file has the one scoped line.
secret_files_as_designed() {
	local p r
	p=$(docker exec -u 0 "$(node_cid primary)" bash -c 'stat -c "%n %a %U" /run/secrets/*; ls -A /var/lib/postgresql/.pgpass 2>&1 | head -1')
	r=$(docker exec -u 0 "$(node_cid replica)" bash -c 'stat -c "%n %a %U" /run/secrets/* /var/lib/postgresql/.pgpass; cut -d: -f1-4 /var/lib/postgresql/.pgpass')
	local want_p="/run/secrets/postgres_password 600 root
ls: cannot access '/var/lib/postgresql/.pgpass': No such file or directory"
	local want_r="/run/secrets/pgpass 600 root
/run/secrets/postgres_password 600 root
/var/lib/postgresql/.pgpass 600 postgres
postgres-primary:5432:postgres:$repl_user"
	[[ $p == "$want_p" && $r == "$want_r" ]] || { echo "    primary: $p"; echo "    replica: $r"; return 1; }
	# Read-only: not even root in the node can change them.
	! docker exec -u 0 "$(node_cid replica)" touch /run/secrets/pgpass 2>/dev/null
}

# The replica's libpq offers the replication password only to the primary
# by name: to the same server by address it has none to give.
pgpass_scoped() {
	local ip
	ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$(node_cid primary)")
	refused_with 'no password supplied' docker exec -u postgres "$(node_cid replica)" \
		psql -X -At -w "host=$ip dbname=postgres user=$repl_user connect_timeout=5" -c 'SELECT 1'
}

test_secrets() {
	check "PG$pg: secrets: no password in docker inspect, process arguments or environments, logs, files or the host's ps" secrets_nowhere
	check "PG$pg: secrets: root-only 0600 files on a read-only mount, the primary without the replication password" secret_files_as_designed
	check "PG$pg: secrets: the replica's .pgpass line is scoped to postgres-primary" pgpass_scoped
}

# ---- pg_hba and logins: behaviour, from where a client would try ------------------

test_logins() {
	local spw rpw gw pport
	spw=$(lab_secret POSTGRES_PASSWORD) rpw=$(lab_secret OPSDEMO_REPL_PASSWORD)
	gw=$(subnet_gateway "$subnet")
	pport=$(published_port primary)
	check "PG$pg: login: the superuser logs in through the published port with the env file's password" \
		test "$(client_psql host "127.0.0.1:$pport:postgres:postgres:$spw" "host=127.0.0.1 port=$pport user=postgres connect_timeout=5" 'SELECT 1')" = 1
	check "PG$pg: login: a wrong superuser password is refused" refused_with 'password authentication failed' \
		client_psql host "127.0.0.1:$pport:postgres:postgres:wrong-password-1" "host=127.0.0.1 port=$pport user=postgres connect_timeout=5" 'SELECT 1'
	check "PG$pg: login: no password, no login (no trust, over TCP)" refused_with 'no password supplied' \
		client_psql host "-" "host=127.0.0.1 port=$pport user=postgres connect_timeout=5" 'SELECT 1'
	check "PG$pg: login: no password, no login on the replica's socket (peer only for OS user postgres)" \
		refused_with 'Peer authentication failed|no password supplied' node_client replica - "host=/var/run/postgresql user=postgres" 'SELECT 1'
	check "PG$pg: login: the published port answers on 127.0.0.1 only (not on the lab gateway $gw)" refused_with 'Connection refused' \
		client_psql host - "host=$gw port=$pport user=postgres connect_timeout=5" 'SELECT 1'
	check "PG$pg: login: the superuser cannot log in from another lab container" \
		refused_with 'pg_hba.conf rejects connection .*user "postgres"' \
		node_client replica "postgres-primary:5432:*:postgres:$spw" "host=postgres-primary user=postgres dbname=postgres connect_timeout=5" 'SELECT 1'
	check "PG$pg: login: the replication role reaches the lab database" test \
		"$(node_client replica "postgres-primary:5432:*:$repl_user:$rpw" "host=postgres-primary user=$repl_user dbname=postgres connect_timeout=5" 'SELECT 1')" = 1
	check "PG$pg: login: the replication role cannot reach another database" \
		refused_with "pg_hba.conf rejects connection .*user \"$repl_user\", database \"template1\"" \
		node_client replica "postgres-primary:5432:*:$repl_user:$rpw" "host=postgres-primary user=$repl_user dbname=template1 connect_timeout=5" 'SELECT 1'
	check "PG$pg: login: physical replication is refused to the replication role" \
		refused_with 'no pg_hba.conf entry for replication connection' \
		node_client replica "postgres-primary:5432:*:$repl_user:$rpw" "host=postgres-primary user=$repl_user dbname=postgres replication=true connect_timeout=5" 'IDENTIFY_SYSTEM'
	check "PG$pg: login: the replication role cannot read mv_sum" refused_with 'permission denied' \
		node_client replica "postgres-primary:5432:*:$repl_user:$rpw" "host=postgres-primary user=$repl_user dbname=postgres connect_timeout=5" 'SELECT count(*) FROM mv_sum'
	check "PG$pg: login: every stored password is a SCRAM verifier, on both nodes" test \
		"$(q primary "SELECT count(*) FROM pg_authid WHERE rolpassword IS NOT NULL AND rolpassword NOT LIKE 'SCRAM-SHA-256\$%'")$(q replica "SELECT count(*) FROM pg_authid WHERE rolpassword IS NOT NULL AND rolpassword NOT LIKE 'SCRAM-SHA-256\$%'")" = 00
}

# ---- the jobs' role ---------------------------------------------------------------

job_role_rights_sql="WITH r AS (SELECT oid FROM pg_roles WHERE rolname = '$job_role')
SELECT coalesce(string_agg(what, ',' ORDER BY what COLLATE \"C\"), '-') FROM (
	SELECT format('%s:%s', c.oid::regclass, a.privilege_type) AS what
	  FROM r, pg_class c, aclexplode(c.relacl) a WHERE a.grantee = r.oid
	UNION ALL
	SELECT format('%s.%s:%s', c.oid::regclass, att.attname, a.privilege_type)
	  FROM r, pg_attribute att JOIN pg_class c ON c.oid = att.attrelid,
	       aclexplode(att.attacl) a WHERE a.grantee = r.oid
	UNION ALL
	SELECT format('%s:%s', p.oid::regprocedure, a.privilege_type)
	  FROM r, pg_proc p, aclexplode(p.proacl) a WHERE a.grantee = r.oid
	UNION ALL
	SELECT format('schema %s:%s', n.nspname, a.privilege_type)
	  FROM r, pg_namespace n, aclexplode(n.nspacl) a WHERE a.grantee = r.oid
	UNION ALL
	SELECT format('database %s:%s', d.datname, a.privilege_type)
	  FROM r, pg_database d, aclexplode(d.datacl) a WHERE a.grantee = r.oid
	UNION ALL
	SELECT format('member of %s', m.roleid::regrole) FROM r, pg_auth_members m WHERE m.member = r.oid
	UNION ALL
	SELECT format('owns %s', c.oid::regclass) FROM r, pg_class c WHERE c.relowner = r.oid
	UNION ALL
	SELECT format('owns %s', p.oid::regprocedure) FROM r, pg_proc p WHERE p.proowner = r.oid
) x"
job_role_rights='t1.date:SELECT,t1.id:SELECT,t1.status:SELECT,t1.status:UPDATE,t1:INSERT'

job_role_holds() { # expected rights list
	local have
	have=$(q primary "$job_role_rights_sql") || return 1
	[[ $have == "$1" ]] || { echo "    $job_role holds: $have"; echo "    expected:     $1"; return 1; }
}

denied_to_job_role() { refused_with 'permission denied' q primary "SET ROLE $job_role; $1"; }

job_role_login_rejected() {
	local host
	for host in 127.0.0.1 /var/run/postgresql; do
		refused_with 'pg_hba.conf rejects connection' node_client primary "*:*:*:$job_role:guess-password-1" \
			"host=$host user=$job_role dbname=postgres" 'SELECT 1' || return 1
	done
}

worker_runs_as_job_role() {
	[[ $(q primary "SELECT string_agg(usename::text, ',') FROM pg_stat_activity WHERE backend_type = 'pg_opsdemo scheduler'") == "$job_role" ]]
}

test_job_role() {
	check "PG$pg: job role: no superuser, createdb, createrole, replication, bypassrls or password" \
		node_true primary "SELECT NOT rolsuper AND NOT rolcreatedb AND NOT rolcreaterole AND NOT rolreplication
			AND NOT rolbypassrls AND rolpassword IS NULL FROM pg_authid WHERE rolname = '$job_role'"
	check "PG$pg: job role holds exactly $job_role_rights" job_role_holds "$job_role_rights"
	check "PG$pg: job role cannot read mv_sum" denied_to_job_role "SELECT count(*) FROM mv_sum"
	check "PG$pg: job role cannot delete from t1" denied_to_job_role "DELETE FROM t1 WHERE id < 0"
	check "PG$pg: job role cannot change amounts in t1" denied_to_job_role "UPDATE t1 SET amount = 0 WHERE false"
	check "PG$pg: job role cannot read t1's amounts" denied_to_job_role "SELECT sum(amount) FROM t1"
	check "PG$pg: job role cannot read the job history" denied_to_job_role "SELECT count(*) FROM opsdemo_job_history"
	check "PG$pg: nobody logs in as the job role (pg_hba rejects it)" job_role_login_rejected
	check "PG$pg: the scheduler worker runs as $job_role" wait_until 30 worker_runs_as_job_role
}

# ---- pg_cron mode ---------------------------------------------------------------------

cron_runs_ok() {
	node_true primary "SELECT count(DISTINCT d.jobid) FILTER (WHERE d.status = 'succeeded') = 2
			AND bool_and(d.username = '$job_role') AND count(*) FILTER (WHERE d.status = 'failed') = 0
		FROM cron.job_run_details d JOIN cron.job j USING (jobid)
		WHERE j.jobname IN ('opsdemo_insert_tick', 'opsdemo_update_tick')"
}

cron_jobs_sql="SELECT coalesce(string_agg(jobname || ':' || username, ',' ORDER BY jobname), '-')
	FROM cron.job WHERE jobname LIKE 'opsdemo%'"
cron_state_sql="SELECT string_agg(concat_ws('|', jobid, jobname, schedule, command, username, active), ',' ORDER BY jobid) FROM cron.job"

test_pg_cron_mode() {
	if [[ $pg == 15 ]]; then
		skip "PG$pg: pg_cron mode (pg_cron 1.4 cannot run jobs every few seconds)"
		return
	fi
	check "PG$pg: up with OPSDEMO_SCHEDULER=pg_cron" with_vars OPSDEMO_SCHEDULER=pg_cron -- lab_ok up
	check "PG$pg: pg_cron: both jobs belong to $job_role" \
		test "$(q primary "$cron_jobs_sql")" = "opsdemo_insert_tick:$job_role,opsdemo_update_tick:$job_role"
	check "PG$pg: pg_cron: the jobs run as $job_role and succeed" wait_until 30 cron_runs_ok
	check "PG$pg: pg_cron: jobs are running (rows inserted and flipped)" jobs_running 30
	check "PG$pg: pg_cron: job role holds its rights plus running the cron tick" \
		job_role_holds "opsdemo_cron_tick(text):EXECUTE,$job_role_rights"
	check "PG$pg: pg_cron: replica = primary (jobs paused through cron.alter_job)" replica_equals_primary
	local before
	before=$(q primary "$cron_state_sql")
	check "PG$pg: pg_cron: a second up succeeds" with_vars OPSDEMO_SCHEDULER=pg_cron -- lab_ok up
	check "PG$pg: pg_cron: a second up changes no job" test "$(q primary "$cron_state_sql")" = "$before"
	check "PG$pg: back to the worker: up succeeds" lab_ok up
	check "PG$pg: back to the worker: no pg_cron jobs left" test "$(q primary "$cron_jobs_sql")" = -
	check "PG$pg: back to the worker: it runs as $job_role" wait_until 30 worker_runs_as_job_role
	check "PG$pg: back to the worker: job role holds exactly $job_role_rights again" job_role_holds "$job_role_rights"
	check "PG$pg: back to the worker: jobs are running" jobs_running 30
}

# ---- the core: up, replication, kills, fast down ------------------------------------

# A second up changes no object and regenerates nothing.
second_up_changes_nothing() {
	local sql="SELECT (SELECT string_agg(oid::text || rolpassword, ',' ORDER BY oid) FROM pg_authid WHERE rolname IN ('postgres', '$repl_user')),
		(SELECT string_agg(oid::text, ',') FROM pg_publication), (SELECT string_agg(extname || extversion, ',' ORDER BY extname) FROM pg_extension)"
	local before after sub_before sub_after
	before=$(q primary "$sql") sub_before=$(q replica "SELECT oid FROM pg_subscription")
	lab_ok up || return 1
	after=$(q primary "$sql") sub_after=$(q replica "SELECT oid FROM pg_subscription")
	[[ $before == "$after" && $sub_before == "$sub_after" ]] && ! grep -q 'generating\|password of\|updated from' "$work/last-lab.log" ||
		{ echo "    before: $before $sub_before"; echo "    after:  $after $sub_after"; sed 's/^/      /' "$work/last-lab.log"; return 1; }
}

# With the jobs stopped, a generator run adds exactly its rows and an update
# tick flips exactly the pending rows of its second's parity.
primary_writes_exactly() {
	local jobs rc=0 before after pending flipped
	jobs=$(stop_jobs primary) || return 1
	before=$(q primary "SELECT count(*) FROM t1")
	[[ $(q primary "SELECT opsdemo_generate(2000)") == 2000 ]] || rc=1
	after=$(q primary "SELECT count(*) FROM t1")
	((after == before + 2000)) || { echo "    rows $before -> $after"; rc=1; }
	# At an even second the tick flips every pending row with an even id.
	pending=$(q primary "SELECT count(*) FROM t1 WHERE status = 0 AND id % 2 = 0")
	flipped=$(q primary "SELECT opsdemo_update_tick('2000-01-01 00:00:00+00')")
	((pending > 0 && flipped == pending)) || { echo "    even ids pending $pending, flipped $flipped"; rc=1; }
	resume_jobs primary "$jobs" || rc=1
	return "$rc"
}

# `down` with a session open in the primary is quick (fast shutdown), and
# the next start finds a cleanly shut down cluster.
down_is_fast_and_clean() {
	local t0 took
	docker exec -d -u postgres "$(node_cid primary)" psql -X -d postgres -c 'SELECT pg_sleep(600)'
	wait_until 10 node_true primary "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(600)')" || return 1
	t0=$SECONDS
	lab_ok down || return 1
	took=$((SECONDS - t0))
	echo "    down took $took s with a session open"
	((took <= 20)) || return 1
	lab_ok up || return 1
	# grep reads all of it: with pipefail, grep -q would end the pipe early.
	docker logs "$(node_cid primary)" 2>&1 | grep 'database system was shut down at' >/dev/null ||
		{ echo "    the primary's start does not report a clean shutdown:"; docker logs --tail 15 "$(node_cid primary)" 2>&1 | sed 's/^/      /'; return 1; }
	! docker logs "$(node_cid primary)" 2>&1 | grep 'automatic recovery in progress' >/dev/null
}

status_shows_dead_node() {
	refused_with 'replica: exited 137' lab status
}

test_core() {
	local t0=$SECONDS
	check "PG$pg: lab up from nothing" lab_ok up
	echo "    up from nothing: $((SECONDS - t0)) s"
	check "PG$pg: up wrote the env file, mode 0600" test "$(stat -c %a "$env_file")" = 600
	check "PG$pg: up printed where to connect" grep -q 'psql "host=127.0.0.1 port=' "$work/last-lab.log"
	check "PG$pg: pub_t1 publishes t1 via its root, and not mv_sum" \
		test "$(q primary "SELECT p.pubviaroot, array_agg(t.tablename::text) FROM pg_publication p JOIN pg_publication_tables t USING (pubname) WHERE p.pubname = 'pub_t1' GROUP BY 1")" = 't|{t1}'
	test_secrets
	test_logins
	test_job_role
	check "PG$pg: a second up changes nothing" second_up_changes_nothing
	check "PG$pg: replica = primary (jobs stopped, slot caught up, same rows)" replica_equals_primary
	check "PG$pg: mv_sum exact on the primary" mv_sum_exact primary
	check "PG$pg: mv_sum exact on the replica" mv_sum_exact replica
	check "PG$pg: jobs are running (rows inserted and flipped)" jobs_running 30
	check "PG$pg: status shows both nodes and a streaming subscription" status_streaming

	check "PG$pg: SIGKILL of the replica (exit 137)" kill_node replica
	check "PG$pg: status names the dead replica and its state" status_shows_dead_node
	check "PG$pg: primary writes exactly while the replica is down" primary_writes_exactly
	check "PG$pg: replica starts again after SIGKILL" start_node replica
	check "PG$pg: after replica kill: replica = primary (nothing lost)" replica_equals_primary
	check "PG$pg: after replica kill: no duplicate rows on the replica" no_duplicates replica
	check "PG$pg: SIGKILL of the primary (exit 137)" kill_node primary
	check "PG$pg: primary starts again (crash recovery)" start_node primary
	check "PG$pg: primary writes exactly after its crash recovery" primary_writes_exactly
	check "PG$pg: after primary kill: replica = primary (nothing lost)" replica_equals_primary
	check "PG$pg: after primary kill: no duplicate rows on the replica" no_duplicates replica
	check "PG$pg: after the kills: mv_sum exact on the primary" mv_sum_exact primary
	check "PG$pg: after the kills: mv_sum exact on the replica" mv_sum_exact replica
	check "PG$pg: jobs resumed after the primary restart" jobs_running 30

	local rows_before
	rows_before=$(q primary "SELECT count(*) FROM t1")
	check "PG$pg: down with an open session is fast (SIGINT) and clean" down_is_fast_and_clean
	check "PG$pg: down + up keeps the data ($rows_before+ rows), regenerates nothing" \
		test "$(q primary "SELECT count(*) >= $rows_before FROM t1")$(grep -c generating "$work/last-lab.log")" = t0
	check "PG$pg: after down + up: replica = primary" replica_equals_primary
	test_pg_cron_mode
}

# ---- full: what does not depend on the major ------------------------------------------

# New passwords in the env file (quoted, with comments): up sets them on
# both nodes and the replica's secret; a replica restart keeps replicating.
rotate_passwords() {
	local spw rpw pport
	spw=$(random_password) rpw=$(random_password)
	(umask 077 && printf '# rotated by the test\nPOSTGRES_PASSWORD="%s"   # quoted, with a comment\nOPSDEMO_REPL_PASSWORD='"'"'%s'"'"'\n' "$spw" "$rpw" >"$env_file")
	lab_ok up || return 1
	grep -q "password of postgres set" "$work/last-lab.log" && grep -q "password of $repl_user set" "$work/last-lab.log" ||
		{ echo "    up did not set the new passwords"; return 1; }
	pport=$(published_port replica)
	[[ $(client_psql host "127.0.0.1:$pport:postgres:postgres:$spw" "host=127.0.0.1 port=$pport user=postgres connect_timeout=5" 'SELECT 1') == 1 ]] ||
		{ echo "    the new superuser password does not work on the replica"; return 1; }
	docker restart "$(node_cid replica)" >/dev/null
	wait_healthy "$project" postgres-replica 120 || return 1
	q primary "SELECT opsdemo_generate(100)" >/dev/null
	replica_equals_primary
}

# A password given in the environment is refused, and the lab keeps the
# env file's: replication survives a replica restart (the reproduction).
env_password_refused_and_harmless() {
	refused_with 'set in the environment' with_vars OPSDEMO_REPL_PASSWORD=override-x-123456 -- lab up || return 1
	docker restart "$(node_cid replica)" >/dev/null
	wait_healthy "$project" postgres-replica 120 || return 1
	q primary "SELECT opsdemo_generate(100)" >/dev/null
	replica_equals_primary
}

# The role's password changed by hand and the subscription gone: up puts
# the env file's password back and subscribes again.
hand_changed_password_repaired() {
	q replica "DROP SUBSCRIPTION sub_t1" >/dev/null
	q primary "SET log_statement = 'none'; ALTER ROLE $repl_user PASSWORD 'changed-by-hand-123'" >/dev/null
	lab_ok up || return 1
	grep -q "password of $repl_user set" "$work/last-lab.log" || { echo "    up did not reset the password"; return 1; }
	replica_equals_primary
}

# A session that blocks keeps blocking; up gives up after the limit and
# names it.
hold_in() { # node sql-after-begin
	docker exec -d -u postgres "$(node_cid "$1")" psql -X -d postgres -c "BEGIN" -c "$2" -c "SELECT pg_sleep(600) /* opsdemo-test-blocker */"
	wait_until 15 node_true "$1" "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE query LIKE '%opsdemo-test-blocker%' AND pid <> pg_backend_pid())"
}
release() { # node
	q "$1" "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE '%opsdemo-test-blocker%' AND pid <> pg_backend_pid()" >/dev/null
}

# up, with a session of node holding what it needs, gives up after the
# limit set by the setting, with its message and the session named.
up_gives_up() { # node blocking-sql setting seconds message
	local out rc=0 t0
	hold_in "$1" "$2" || return 1
	t0=$SECONDS
	out=$(with_vars "$3=$4" -- lab up 2>&1) || rc=$?
	release "$1"
	echo "    up gave up after $((SECONDS - t0)) s"
	((rc != 0)) && grep -q "$5" <<<"$out" && grep -q 'opsdemo-test-blocker' <<<"$out" ||
		{ tail -n 15 <<<"$out" | sed 's/^/      /'; return 1; }
}

truncate_wait_bounded() {
	q replica "DROP SUBSCRIPTION sub_t1" >/dev/null
	up_gives_up replica "LOCK t1 IN ACCESS SHARE MODE" OPSDEMO_LOCK_WAIT 3 'TRUNCATE t1 waited 3 s'
}

slot_wait_bounded() {
	up_gives_up primary "SELECT txid_current()" OPSDEMO_SLOT_WAIT 5 'CREATE SUBSCRIPTION waited 5 s' || return 1
	# The half-made slot goes with its walsender once the blocker is gone.
	wait_until 60 node_true primary "SELECT NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = 'sub_t1')"
}

# An old extension version in a volume is updated by up.
extension_updated() {
	q replica "DROP SUBSCRIPTION sub_t1" >/dev/null
	q replica "DROP EXTENSION pg_opsdemo CASCADE; CREATE EXTENSION pg_opsdemo VERSION '1.0'" >/dev/null
	lab_ok up || return 1
	grep -q 'replica: extension pg_opsdemo updated from 1.0 to' "$work/last-lab.log" &&
		[[ $(q replica "SELECT extversion FROM pg_extension WHERE extname = 'pg_opsdemo'") == "$(q primary "SELECT extversion FROM pg_extension WHERE extname = 'pg_opsdemo'")" ]] ||
		{ sed 's/^/      /' "$work/last-lab.log"; return 1; }
	replica_equals_primary && mv_sum_exact replica
}

# A volume of another major: up fails at once with the entrypoint's
# message (not after the health check's minutes), and the right major
# comes back.
other_major_refused() {
	local other out rc=0 t0 m
	other=$1
	[[ -n $other ]] || return 1
	t0=$SECONDS
	out=$(with_vars OPSDEMO_PG="$other" -- lab up 2>&1) || rc=$?
	echo "    PG$other on PG$pg's volumes: up exited $rc after $((SECONDS - t0)) s"
	((rc != 0 && SECONDS - t0 < 90)) && grep -q "this data volume was made by PostgreSQL $pg; this image runs PostgreSQL $other" <<<"$out" ||
		{ tail -n 20 <<<"$out" | sed 's/^/      /'; return 1; }
	lab_ok up && replica_equals_primary
}

# The replica's volume lost: its slot is an orphan on the primary.
replica_volume_lost() {
	docker rm -f "$(node_cid replica)" >/dev/null
	docker volume rm "${project}_replica-data" >/dev/null || return 1
	lab_ok up || return 1
	grep -q 'dropping the orphan slot sub_t1' "$work/last-lab.log" || { sed 's/^/      /' "$work/last-lab.log"; return 1; }
	replica_equals_primary && mv_sum_exact replica
}

# The primary's volume lost: the replica's subscription has no slot and
# its rows are stale.
primary_volume_lost() {
	docker rm -f "$(node_cid replica)" "$(node_cid primary)" >/dev/null
	docker volume rm "${project}_primary-data" >/dev/null || return 1
	lab_ok up || return 1
	grep -q 'the primary has no slot sub_t1' "$work/last-lab.log" || { sed 's/^/      /' "$work/last-lab.log"; return 1; }
	replica_equals_primary && mv_sum_exact replica && no_duplicates replica
}

# A slot whose subscriber stays away holds at most max_slot_wal_keep_size
# of WAL (lowered here to make the test quick), is invalidated beyond it,
# and up re-subscribes.
slot_wal_bounded() {
	local status
	q primary "ALTER SYSTEM SET max_slot_wal_keep_size = '48MB'" >/dev/null
	q primary "ALTER SYSTEM SET wal_keep_size = 0" >/dev/null
	q primary "SELECT pg_reload_conf()" >/dev/null
	docker stop "$(node_cid replica)" >/dev/null
	local i
	for i in 1 2 3 4 5 6; do
		q primary "SELECT opsdemo_generate(100000)" >/dev/null
		q primary "CHECKPOINT" >/dev/null
		status=$(q primary "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'sub_t1'")
		[[ $status == lost ]] && break
	done
	q primary "ALTER SYSTEM RESET max_slot_wal_keep_size" >/dev/null
	q primary "ALTER SYSTEM RESET wal_keep_size" >/dev/null
	q primary "SELECT pg_reload_conf()" >/dev/null
	[[ $status == lost ]] || { echo "    slot sub_t1 is '$status' after 600k rows and checkpoints"; return 1; }
	echo "    slot invalidated after $((i * 100))k rows; pg_wal: $(q primary "SELECT pg_size_pretty(sum(size)) FROM pg_ls_waldir()")"
	docker start "$(node_cid replica)" >/dev/null
	wait_healthy "$project" postgres-replica 120 || return 1
	lab_ok up || return 1
	grep -q 'invalidated slot sub_t1' "$work/last-lab.log" || { sed 's/^/      /' "$work/last-lab.log"; return 1; }
	replica_equals_primary
}

test_full() {
	check "PG$pg: new passwords in the env file (quoted, commented) reach both nodes; replication survives a replica restart" rotate_passwords
	check "PG$pg: a replication password in the environment is refused and changes nothing" env_password_refused_and_harmless
	check "PG$pg: a password changed by hand is reset from the env file, and the replica re-subscribes" hand_changed_password_repaired
	check "PG$pg: TRUNCATE t1 behind a lock: up gives up after OPSDEMO_LOCK_WAIT and names the session" truncate_wait_bounded
	check "PG$pg: slot creation behind an open transaction: up gives up after OPSDEMO_SLOT_WAIT and names it" slot_wait_bounded
	check "PG$pg: after the blockers are gone, up subscribes: replica = primary" lab_ok up
	check "PG$pg: a volume with an older pg_opsdemo is updated by up (ALTER EXTENSION UPDATE)" extension_updated
	# Another major's image, built from these sources (the run builds
	# every major's first; run alone, a major has none to try).
	local m other=
	for m in 17 18 15; do
		[[ $m != "$pg" && $(docker image inspect -f '{{index .Config.Labels "opsdemo.source"}}' "$image_name:$m" 2>/dev/null) == "$source_hash" ]] &&
			{ other=$m; break; }
	done
	if [[ -n $other ]]; then
		check "PG$pg: a volume of another major (PG$other): up fails fast with the entrypoint's message" other_major_refused "$other"
	else
		skip "PG$pg: a volume of another major: no image of another major built from these sources in this run"
	fi
	check "PG$pg: the replica's volume lost: up drops the orphan slot and copies again" replica_volume_lost
	check "PG$pg: the primary's volume lost: up re-subscribes, no stale rows" primary_volume_lost
	check "PG$pg: a slot left behind holds at most max_slot_wal_keep_size; up re-subscribes" slot_wal_bounded
}

# ---- the suites against the lab's primary ------------------------------------------------

# 08_scheduler stops and starts the scheduler: it would stop the lab's own
# worker.  It runs on a server of its own (test/container/run's build
# container), the others here.
# shellcheck disable=SC2034  # read by test/container/run
logical_own_server_tests="08_scheduler"

lab_regress_tests() {
	local f names=()
	for f in "$repo"/sql/*.sql; do
		f=${f##*/}
		f=${f%.sql}
		[[ " $logical_own_server_tests " == *" $f "* ]] || names+=("$f")
	done
	echo "${names[*]}"
}

# pg_regress and isolation from a build container sharing the primary's
# network namespace (127.0.0.1: the superuser may not log in from other
# lab containers), the password on stdin into a private password file.
test_suites_against_primary() {
	local suite overrides rc p f log
	for suite in regress isolation; do
		if [[ $suite == regress ]]; then
			overrides=(ISOLATION= TAP_TESTS= "REGRESS=$(lab_regress_tests)")
		else
			overrides=(REGRESS= TAP_TESTS=)
		fi
		log=$work/$suite-$pg.log
		rc=0
		# shellcheck disable=SC2016  # expanded by the container's bash
		printf '127.0.0.1:5432:*:postgres:%s\n' "$(pgpass_escape "$(lab_secret POSTGRES_PASSWORD)")" |
			run_limited 900 docker run --rm -i --name "$run_id-$suite-$pg" --label "opsdemo.test=$run_id" \
				--network "container:$(node_cid primary)" --user postgres \
				-e PGHOST=127.0.0.1 -e PGPORT=5432 -e PGUSER=postgres "$image_name-build:$pg" \
				bash -c 'umask 077; cat >~/.pgpass; make installcheck "$@"; rc=$?
					for d in regression.diffs output_iso/regression.diffs; do [[ -s $d ]] && head -n 150 "$d"; done; exit $rc' \
				_ "${overrides[@]}" >"$log" 2>&1 || rc=$?
		read -r p f < <(count_pg_regress "$log")
		((rc != 0 && f == 0)) && f=1
		((p + f > 0)) || f=1
		((f)) && tail -n 60 "$log"
		count_results "$p" "$f" "PG$pg: $suite suite against the containerized primary"
	done
}

# ---- compose v2 / v1: the other one, where the machine has both -----------------------

test_other_compose() {
	local mine other
	mine=$(compose_version)
	if [[ ${compose[*]} == "docker compose" ]]; then other=v1; else other=v2; fi
	if ! (OPSDEMO_COMPOSE=$other compose_find); then
		skip "PG$pg: the lab with compose $other (not installed; this run used ${compose[*]} $mine)"
		return
	fi
	local saved=$project
	project=$project-$other
	projects+=("$project")
	check "PG$pg: compose $other: up from nothing" with_vars OPSDEMO_COMPOSE="$other" OPSDEMO_ROWS=1000 -- lab_ok up
	check "PG$pg: compose $other: replica = primary" replica_equals_primary
	check "PG$pg: compose $other: SIGKILL of the replica" kill_node replica
	check "PG$pg: compose $other: status names the dead replica" refused_with 'replica: exited 137' with_vars OPSDEMO_COMPOSE="$other" -- lab status
	check "PG$pg: compose $other: up brings it back" with_vars OPSDEMO_COMPOSE="$other" OPSDEMO_ROWS=1000 -- lab_ok up
	check "PG$pg: compose $other: clean removes everything" clean_removes_everything "$other"
	project=$saved
}

clean_removes_everything() { # [compose version]
	with_vars OPSDEMO_COMPOSE="${1:-}" -- lab clean >/dev/null 2>&1 || true
	[[ -z "$(docker ps -aq --filter "label=com.docker.compose.project=$project")$(docker volume ls -q --filter "label=com.docker.compose.project=$project")$(docker network ls -q --filter "label=com.docker.compose.project=$project")" ]] &&
		[[ ! -e $state_dir/$project ]]
}

logical_tests() { # full|core
	test_settings_refused
	test_core
	if [[ $1 == full ]]; then
		test_full
	else
		skip "PG$pg: rotation, bounded waits, drift and lost volumes (major-independent: run on the default major)"
	fi
	test_suites_against_primary
	check "PG$pg: lab clean removed the project's containers, network, volumes and secret files" clean_removes_everything
	[[ $1 == full ]] && test_other_compose
	return 0
}
