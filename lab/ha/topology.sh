# shellcheck shell=bash
# shellcheck disable=SC2154  # pg, rows, scheduler, lab_db, ...: set by lab/lab
# shellcheck disable=SC2034  # topology_*, OPSDEMO_*: read by lab/lab and compose
# Topology "ha": automatic failover with Patroni.  etcd1..etcd3 hold the
# cluster state (the leader key); pg1..pg3 run PostgreSQL 17 under Patroni
# (synchronous_mode: quorum, failsafe_mode, use_pg_rewind, use_slots);
# HAProxy sends the read-write port to the leader and the read-only port to
# the replicas, as Patroni's REST API (/primary, /replica) tells it.
# pg_opsdemo's worker runs the jobs on whichever node leads and idles on the
# replicas.  Every container runs the one lab image (docker/ha-node).
# Sourced by lab/lab, which provides the settings, lib/ and the common
# commands.

pg_nodes=(pg1 pg2 pg3)
etcd_nodes=(etcd1 etcd2 etcd3)
topology_nodes=("${etcd_nodes[@]}" "${pg_nodes[@]}" haproxy)
# Nodes are killed and partitioned on purpose: status shows them as down.
topology_status_shows_down=1
topology_keys=(OPSDEMO_HA_PORT OPSDEMO_HA_SUBNET OPSDEMO_HA_PROJECT OPSDEMO_HA_TTL
	OPSDEMO_HA_LOOP_WAIT OPSDEMO_HA_RETRY_TIMEOUT)

repl_user=opsdemo_repl
job_role=opsdemo_job
patroni_config=/var/lib/postgresql/patroni.yml

service_of() {
	case $1 in
	pg[1-3] | etcd[1-3] | haproxy) echo "$1" ;;
	*) die "unknown node '$1' of the ha lab (pg1..pg3, etcd1..etcd3, haproxy)" ;;
	esac
}

topology_settings() {
	[[ $pg == 17 ]] || die "the ha lab runs on PostgreSQL 17 (trixie packages Patroni 4.0, etcd 3.5, HAProxy 3.0): OPSDEMO_PG=$pg"
	project=$(setting OPSDEMO_HA_PROJECT "opsdemo-ha-pg$pg")
	OPSDEMO_LAB_SUBNET=$(setting OPSDEMO_HA_SUBNET "10.216.$pg.0/24")
	# Every container has a fixed address in the /24 (heal puts a
	# partitioned node back at its own): .11-.13 etcd, .21-.23 PostgreSQL,
	# .10 HAProxy.
	[[ $OPSDEMO_LAB_SUBNET =~ ^([0-9]+\.[0-9]+\.[0-9]+)\.0/24$ ]] ||
		die "OPSDEMO_HA_SUBNET=$OPSDEMO_LAB_SUBNET: the ha lab needs a /24 network ending in .0 (fixed addresses .10 to .23)"
	OPSDEMO_HA_NET=${BASH_REMATCH[1]}
	OPSDEMO_HA_PROXY_ADDR=$OPSDEMO_HA_NET.10
	# Failover timing (README: "Settings"): a dead leader's key expires
	# ttl after its last refresh; loop_wait is Patroni's cycle;
	# retry_timeout bounds a DCS or PostgreSQL call before the leader
	# demotes itself.  Patroni raises values under its minimums (ttl 20,
	# loop_wait 1, retry_timeout 3) with only a line in its log, and needs
	# loop_wait + 2 * retry_timeout <= ttl: refused here instead, so that
	# what status prints is what runs.
	OPSDEMO_HA_TTL=$(positive_setting OPSDEMO_HA_TTL 20)
	OPSDEMO_HA_LOOP_WAIT=$(positive_setting OPSDEMO_HA_LOOP_WAIT 2)
	OPSDEMO_HA_RETRY_TIMEOUT=$(positive_setting OPSDEMO_HA_RETRY_TIMEOUT 4)
	((OPSDEMO_HA_TTL >= 20)) ||
		die "OPSDEMO_HA_TTL=$OPSDEMO_HA_TTL: Patroni does not take a ttl under 20 s (it would log \"ttl=$OPSDEMO_HA_TTL can't be smaller than 20, adjusting...\" and use 20)"
	((OPSDEMO_HA_RETRY_TIMEOUT >= 3)) ||
		die "OPSDEMO_HA_RETRY_TIMEOUT=$OPSDEMO_HA_RETRY_TIMEOUT: Patroni does not take a retry_timeout under 3 s"
	((OPSDEMO_HA_LOOP_WAIT + 2 * OPSDEMO_HA_RETRY_TIMEOUT <= OPSDEMO_HA_TTL)) ||
		die "OPSDEMO_HA_LOOP_WAIT + 2 * OPSDEMO_HA_RETRY_TIMEOUT must not exceed OPSDEMO_HA_TTL (Patroni would shorten them)"
	export OPSDEMO_HA_NET OPSDEMO_HA_PROXY_ADDR OPSDEMO_HA_TTL OPSDEMO_HA_LOOP_WAIT OPSDEMO_HA_RETRY_TIMEOUT
	publish_node_ports OPSDEMO_HA_PORT 55460 OPSDEMO_PORT_ RW RO STATS
}

# Each PostgreSQL node gets the superuser's and the replication role's
# passwords (Patroni's configuration needs both); etcd and HAProxy none.
topology_secrets() {
	local node
	for node in "${pg_nodes[@]}"; do
		write_secret "$OPSDEMO_SECRETS/$node" postgres_password "$postgres_password"
		write_secret "$OPSDEMO_SECRETS/$node" repl_password "$repl_password"
	done
}

# Patroni reads the passwords when it starts: a changed env file reaches a
# node at its next start (make restart LAB=ha).
topology_refresh_secrets() { :; }

# ---- Patroni's view -----------------------------------------------------------------

# Patroni's REST API of a node, from inside it (port 8008 is not
# published): prints the body, fails on no answer.
patroni_get() { # node path
	local cid
	cid=$(node_cid "$1")
	[[ -n $cid ]] || return 1
	docker exec "$cid" python3 -c 'import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen("http://127.0.0.1:8008" + sys.argv[1], timeout=3)
    print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.read().decode()); sys.exit(2)' "$2" 2>/dev/null
}

# A REST path of the first pg node on the network whose Patroni answers
# (its view of the DCS), read by a Python script run in that node: the
# body is its sys.argv[1].
ask_patroni() { # path script
	local node out
	for node in $(running_nodes); do
		[[ $node == pg* ]] || continue
		node_partitioned "$node" && continue
		out=$(patroni_get "$node" "$1") || continue
		docker exec "$(node_cid "$node")" python3 -c "$2" "$out" && return 0
	done
	return 1
}

# "name role state timeline lag" of every member.
cluster_members() {
	ask_patroni /cluster 'import json, sys
for m in json.loads(sys.argv[1]).get("members", []):
    print(m["name"], m["role"], m["state"], m.get("timeline", "-"), m.get("lag", "-"))'
}

# The timings in force: Patroni's dynamic configuration in etcd (the env
# file's only reached it when the cluster was first formed).
dcs_timings() {
	ask_patroni /config 'import json, sys
c = json.loads(sys.argv[1])
print("ttl %s, loop_wait %s, retry_timeout %s" % (c.get("ttl"), c.get("loop_wait"), c.get("retry_timeout")))'
}

# The leader by the DCS, running (fails if there is none).
current_leader() {
	cluster_members | awk '$2 == "leader" && $3 == "running" { print $1; found = 1 } END { exit !found }'
}

wait_leader() { # limit -> leader
	local leader
	wait_until "$1" current_leader || die "no running leader after $1 s (make status LAB=ha, make logs LAB=ha NODE=pg1)"
	leader=$(current_leader)
	printf '%s' "$leader"
}

# A node's Patroni runs PostgreSQL as a replica that streams.
replica_streams() { # leader replica
	node_true "$1" "SELECT EXISTS (SELECT FROM pg_stat_replication WHERE application_name = '$2' AND state = 'streaming')"
}

wait_replicas() { # leader limit
	local node
	for node in "${pg_nodes[@]}"; do
		[[ $node == "$1" ]] && continue
		wait_until "$2" replica_streams "$1" "$node" || die "$node does not stream from the leader $1 after $2 s (make logs LAB=ha NODE=$node)"
	done
}

patronictl() { # node args...
	docker exec -u postgres "$(running_cid "$1")" patronictl -c "$patroni_config" "${@:2}"
}

# ---- up ---------------------------------------------------------------------------

topology_start() {
	start_nodes "${etcd_nodes[@]}"
	# Patroni bootstraps one node (whichever takes the initialize key) and
	# clones the others from it; HAProxy follows what they say.
	start_nodes "${pg_nodes[@]}" haproxy
}

topology_setup() {
	local leader
	leader=$(wait_leader 120)
	say "$leader leads: extensions, roles, data, jobs"
	ensure_extensions "$leader" pgcrypto pg_opsdemo
	ensure_password "$leader" postgres "$postgres_password"
	ensure_roles "$leader"
	ensure_password "$leader" "$repl_user" "$repl_password"
	top_up_rows "$leader"
	start_jobs "$leader"
	wait_replicas "$leader" 180
}

topology_banner() {
	echo
	echo "pg_opsdemo ha lab is up (PostgreSQL $pg, Patroni + etcd + HAProxy, project $project; leader $(current_leader))."
	printf '  read-write (leader)   psql "host=127.0.0.1 port=%s user=postgres dbname=postgres"\n' "$(proxy_port 5000)"
	printf '  read-only (replicas)  psql "host=127.0.0.1 port=%s user=postgres dbname=postgres"\n' "$(proxy_port 5001)"
	printf '  HAProxy statistics    http://127.0.0.1:%s/\n' "$(proxy_port 7000)"
	echo "  make status LAB=ha    members, sync state, lag, jobs, HAProxy's view"
}

proxy_port() { docker port "$(node_cid haproxy)" "$1" | sed -n '1s/.*://p'; }

# ---- status -------------------------------------------------------------------------

# HAProxy's view: each server's state in the rw and ro sections.
haproxy_view() {
	local cid
	cid=$(node_cid haproxy)
	[[ -n $cid && $(container_state "$cid") == running* ]] || { echo "  haproxy: down"; return; }
	docker exec "$cid" python3 -c 'import csv, io, urllib.request
rows = csv.DictReader(io.StringIO(urllib.request.urlopen("http://127.0.0.1:7000/;csv", timeout=3).read().decode().lstrip("# ")))
for r in rows:
    if r["pxname"] in ("rw", "ro") and r["svname"] not in ("FRONTEND", "BACKEND"):
        print("  %-3s %-4s %-5s %s" % (r["pxname"], r["svname"], r["status"], r["check_status"]))'
}

topology_status() {
	local leader node cid
	echo "pg_opsdemo ha lab $project   $(date -u '+%F %T') UTC   ($(dcs_timings || echo "timings: no Patroni answers"))"
	echo
	for node in "${topology_nodes[@]}"; do
		cid=$(node_cid "$node")
		if [[ -z $cid ]]; then
			printf '  %-8s not created\n' "$node"
		else
			printf '  %-8s %-16s %s\n' "$node" "$(container_state "$cid")" \
				"$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$v.IPAddress}}{{end}}' "$cid" | sed 's/^$/(partitioned: no network)/')"
		fi
	done
	echo
	leader=
	# Asked of a node on the network: a partitioned one's view is stale,
	# and it waits for etcd.
	for node in $(running_nodes); do
		[[ $node == pg* ]] || continue
		node_partitioned "$node" && continue
		if patronictl "$node" list 2>/dev/null; then
			leader=$(current_leader || true)
			break
		fi
	done
	[[ -n $leader ]] || { echo "no running leader (yet)"; }
	echo
	echo "HAProxy (rw: the leader, ro: the replicas)"
	haproxy_view
	[[ -n $leader ]] || return 0
	echo
	echo "Replicas of $leader (synchronous_standby_names = '$(node_value "$leader" "SHOW synchronous_standby_names")')"
	node_psql "$leader" -P footer=off -c "
		SELECT application_name AS replica, state, sync_state,
		       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) AS lag_bytes,
		       round(extract(epoch FROM coalesce(replay_lag, interval '0'))::numeric, 3) AS lag_seconds
		  FROM pg_stat_replication ORDER BY application_name"
	echo "Jobs on $leader (scheduler: $scheduler)"
	show_jobs "$leader"
	echo "t1 on $leader: $(node_facts "$leader" | tr '|' ' ' | awk '{ print $1 " rows, " $2 " pending, newest " $3 " " $4 }'); mv_sum $(mv_sum_summary "$leader")"
}

# ---- commands of this topology ---------------------------------------------------

node_arg() { # command node [pattern]
	[[ -n ${2:-} ]] || die "usage: make $1 LAB=ha NODE=<${3:-pg1|pg2|pg3}>"
	service_of "$2" >/dev/null
	[[ -z ${3:-} || $2 =~ ^(${3})$ ]] || die "$1: NODE must be one of ${3//|/, }"
}

# switchover [NODE]: a planned change of leader (to NODE, or to a replica
# Patroni picks), the old leader a replica at once.
topology_cmd_switchover() {
	[[ -z ${1:-} ]] || node_arg switchover "$1" 'pg1|pg2|pg3'
	docker_usable || exit 1
	load_settings
	local leader to=()
	leader=$(wait_leader 10)
	[[ -z ${1:-} ]] || to=(--candidate "$1")
	[[ ${1:-} != "$leader" ]] || die "$1 leads already"
	patronictl "$leader" switchover --force --leader "$leader" "${to[@]}"
	wait_until 60 leader_is_not "$leader" || die "$leader still leads after 60 s"
	say "leader now: $(current_leader)"
}

leader_is_not() { local l; l=$(current_leader) && [[ $l != "$1" ]]; }

# Asked again on every poll of wait_until.
leader_is() { local l; l=$(current_leader) && [[ $l == "$1" ]]; }

# failover [NODE]: the leader's role is taken by NODE (default: a
# synchronous replica) without asking the leader: for when it is unhealthy.
topology_cmd_failover() {
	[[ -z ${1:-} ]] || node_arg failover "$1" 'pg1|pg2|pg3'
	docker_usable || exit 1
	load_settings
	local leader candidate=${1:-}
	leader=$(current_leader || true)
	if [[ -z $candidate ]]; then
		candidate=$(cluster_members | awk '$2 ~ /sync_standby|quorum_standby/ && $3 == "streaming" { print $1; exit }')
		[[ -n $candidate ]] || die "no synchronous replica streams: name one (make failover LAB=ha NODE=pgN)"
	fi
	[[ $candidate != "$leader" ]] || die "$candidate leads already"
	patronictl "$candidate" failover --force --candidate "$candidate"
	wait_until 60 leader_is "$candidate" || die "$candidate does not lead after 60 s"
	say "leader now: $candidate"
}

# kill NODE: SIGKILL of the whole container (PostgreSQL and Patroni with
# it, as a machine that dies); make start brings it back.
topology_cmd_kill() {
	node_arg kill "${1:-}"
	docker_usable || exit 1
	load_settings
	sigkill_node "$1"
}

topology_cmd_etcd-kill() {
	node_arg etcd-kill "${1:-}" 'etcd1|etcd2|etcd3'
	topology_cmd_kill "$1"
}

topology_cmd_start() {
	node_arg start "${1:-}"
	docker_usable || exit 1
	load_settings
	start_nodes "$1"
	say "$1 started"
}

topology_cmd_stop() {
	node_arg stop "${1:-}"
	docker_usable || exit 1
	load_settings
	dc stop "$1" >/dev/null
	say "$1 stopped"
}

# The address compose gave a node (fixed: compose.yml).
node_address() { # node
	case $1 in
	etcd[1-3]) echo "$OPSDEMO_HA_NET.$((10 + ${1#etcd}))" ;;
	pg[1-3]) echo "$OPSDEMO_HA_NET.$((20 + ${1#pg}))" ;;
	haproxy) echo "$OPSDEMO_HA_PROXY_ADDR" ;;
	esac
}

node_partitioned() { # node: running, on no network
	[[ -z $(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}' "$(node_cid "$1")") ]]
}

# partition NODE: the node cut off the lab network (docker network
# disconnect); it keeps running, sees nobody and nobody sees it.
topology_cmd_partition() {
	node_arg partition "${1:-}"
	docker_usable || exit 1
	load_settings
	local cid
	cid=$(running_cid "$1")
	node_partitioned "$1" && die "$1 is partitioned already (make heal LAB=ha NODE=$1)"
	docker network disconnect "${project}_lab" "$cid"
	say "$1 partitioned: off the lab network, still running (make heal LAB=ha NODE=$1)"
}

# heal NODE: back on the lab network at its own address and name.
topology_cmd_heal() {
	node_arg heal "${1:-}"
	docker_usable || exit 1
	load_settings
	local cid
	cid=$(running_cid "$1")
	node_partitioned "$1" || die "$1 is not partitioned"
	docker network connect --ip "$(node_address "$1")" --alias "$1" "${project}_lab" "$cid"
	say "$1 healed: back on the lab network at $(node_address "$1")"
}
