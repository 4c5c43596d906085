# shellcheck shell=bash
# Docker and compose for the lab topologies: which compose exists (v2 plugin
# or v1), the compose call of a project, its containers found by label
# (running or not: compose v2's `ps -q` lists running ones only, so a node
# that died would look "not created"), health waits that show a failing
# node's log, and removal of a project by label.  Sourced; needs
# lib/common.sh.
#
# After compose_find: compose=(docker compose) or (docker-compose).
# OPSDEMO_COMPOSE=v1|v2 forces one (the container tests cover both paths
# where both exist).
# dc needs: project, compose_file, and the variables the compose file reads.

compose=()
compose_find() {
	local want=${OPSDEMO_COMPOSE:-}
	compose=()
	if [[ $want != v1 ]] && docker compose version >/dev/null 2>&1; then
		compose=(docker compose)
	elif [[ $want != v2 ]] && command -v docker-compose >/dev/null; then
		compose=(docker-compose)
	fi
	[[ -z $want || ${#compose[@]} -gt 0 ]] || return 1
	((${#compose[@]}))
}

# Says what is missing (Docker, compose, the daemon); returns 1 if anything is.
docker_usable() {
	if ! compose_find && command -v docker >/dev/null; then
		echo "compose is not installed (the docker compose v2 plugin, or docker-compose v1: apt-get install docker-compose)${OPSDEMO_COMPOSE:+; OPSDEMO_COMPOSE=$OPSDEMO_COMPOSE asks for that one}" >&2
		return 1
	fi
	docker_reachable
}

# The same for the commands that only talk to existing containers (no
# compose: its probe alone takes a tenth of a second).
docker_reachable() {
	if ! command -v docker >/dev/null; then
		echo "Docker is not installed (apt-get install docker.io)" >&2
		return 1
	fi
	if ! docker info >/dev/null 2>&1; then
		echo "the Docker daemon is not reachable (start dockerd, or check your permissions on /var/run/docker.sock)" >&2
		return 1
	fi
}

compose_version() { "${compose[@]}" version --short 2>/dev/null || "${compose[@]}" version | head -n 1; }

# shellcheck disable=SC2154  # project, compose_file: the caller's
dc() { "${compose[@]}" -p "$project" -f "$compose_file" "$@"; }

# The container of a service of a project, whatever its state; empty if
# there is none.
container_of() { # project service
	docker ps -aq --filter "label=com.docker.compose.project=$1" \
		--filter "label=com.docker.compose.service=$2" | head -n 1
}

# "running healthy", "running starting", "exited 137", "created", ...
container_state() { # container
	docker inspect -f '{{.State.Status}} {{if eq .State.Status "exited"}}{{.State.ExitCode}}{{else if .State.Health}}{{.State.Health.Status}}{{end}}' "$1" 2>/dev/null
}

container_started_at() { docker inspect -f '{{.State.StartedAt}}' "$1"; }

# The last lines a node printed: where a FATAL is.
show_log() { # container [lines]
	echo "---- last ${2:-30} log lines of $(docker inspect -f '{{.Name}}' "$1" 2>/dev/null | sed 's|^/||')" >&2
	docker logs --tail "${2:-30}" "$1" 2>&1 | sed 's/^/  /' >&2 || true
}

# Healthy within limit seconds, or 1 with the reason and the node's log.  A
# node that exits (a FATAL at start) fails at once, not after the limit.
wait_healthy() { # project service limit-seconds
	local cid state deadline=$((SECONDS + $3))
	cid=$(container_of "$1" "$2")
	if [[ -z $cid ]]; then
		echo "$2: no container (not created)" >&2
		return 1
	fi
	while :; do
		state=$(container_state "$cid")
		case $state in
		"running healthy") return 0 ;;
		# Docker runs the first health check only one interval after the
		# start: asking the node itself saves that wait.
		"running starting") docker exec "$cid" healthcheck >/dev/null 2>&1 && return 0 ;;
		exited* | dead*)
			show_log "$cid" 30
			echo "$2 stopped ($state) before it was healthy: its log is above" >&2
			return 1
			;;
		esac
		if ((SECONDS >= deadline)); then
			show_log "$cid" 30
			echo "$2 is not healthy after $3 s ($state): its log is above" >&2
			return 1
		fi
		sleep 0.3
	done
}

# Everything of a compose project, found by its label: containers, volumes,
# networks.  Works whatever the compose version and without the compose
# file.
remove_project() { # project
	local label=com.docker.compose.project=$1 ids
	mapfile -t ids < <(docker ps -aq --filter "label=$label")
	((${#ids[@]} == 0)) || docker rm -f "${ids[@]}" >/dev/null
	mapfile -t ids < <(docker volume ls -q --filter "label=$label")
	((${#ids[@]} == 0)) || docker volume rm -f "${ids[@]}" >/dev/null
	mapfile -t ids < <(docker network ls -q --filter "label=$label")
	((${#ids[@]} == 0)) || docker network rm "${ids[@]}" >/dev/null
	return 0
}

# Compose projects that still have a container, volume or network.
projects_matching() { # name-prefix
	{
		docker ps -a --format '{{.Label "com.docker.compose.project"}}'
		docker volume ls --format '{{.Label "com.docker.compose.project"}}'
		docker network ls --format '{{.Label "com.docker.compose.project"}}'
	} 2>/dev/null | grep "^$1" | sort -u || true
}
