# shellcheck shell=bash
# shellcheck disable=SC2154  # bench_name, repo, report: set by the sourcing script
# Runs a bench inside the build image of a PostgreSQL major (sourced, not
# run; after bench/report.sh).  For a bench that needs a server the host
# does not have: bench/mv_sum's pg_ivm baseline is packaged for
# PostgreSQL 18 (Debian forky) only.
#
#   bench_in_container MAJOR [ARG...]
#       On the host: makes sure $image_name-build:MAJOR is built from the
#       checkout's current sources (docker/build-image when not), runs
#       bench/$bench_name ARG... in a throwaway container of it, writes
#       its report to $report as well as stdout, and exits with its exit
#       status.  Inside the container (BENCH_CONTAINER_IMAGE set) it
#       returns at once: the bench goes on and runs there, on
#       bench/lib.sh's throwaway server, with the PostgreSQL and the
#       pg_opsdemo that the image holds.
#
# The container: the checkout mounted read-only (the bench scripts run
# from it, so an edit to them needs no rebuild), no network (the server
# listens on a unix socket only), removed on every exit path.  Every BENCH_*
# variable reaches the bench; OPSDEMO_IMAGE_NAME names other images than
# pg_opsdemo (docker/build-image).

bench_in_container() { # major [arg...]
	[[ -z ${BENCH_CONTAINER_IMAGE-} ]] || return 0
	local major=$1 image want have revision name var rc=0
	local env_args=()
	shift
	docker info >/dev/null 2>&1 || die "Docker is not usable here (docker info failed): the bench runs in a container"
	image=${OPSDEMO_IMAGE_NAME:-pg_opsdemo}-build:$major
	want=$("$repo/docker/build-image" --source-hash)
	have=$(docker image inspect -f '{{index .Config.Labels "opsdemo.source"}}' "$image" 2>/dev/null) || true
	if [[ $have != "$want" ]]; then
		note "$image is missing or older than the checkout: docker/build-image $major"
		"$repo/docker/build-image" "$major" >&2 || die "building the images for PostgreSQL $major failed"
	fi
	revision=$(checkout_revision)
	while read -r var; do
		env_args+=(-e "$var")
	done < <(compgen -e | grep '^BENCH_' | grep -vxE 'BENCH_(REVISION|RESULTS_DIR)' || true)
	name=opsdemo-bench-${bench_name//_/-}-pg$major-$$
	mkdir -p "$(dirname "$report")"
	: >"$report"

	# The container is removed, and an incomplete report says so, whatever
	# ends this script (Ctrl-C reaches the bench through docker run too).
	# shellcheck disable=SC2317  # reached through the traps
	bench_container_cleanup() {
		local rc=$?
		set +e
		trap - EXIT INT TERM
		docker rm -f "$name" >/dev/null 2>&1
		if ((rc != 0)); then
			echo "bench/$bench_name FAILED (exit status $rc); this report is incomplete" >>"$report"
		fi
		exit "$rc"
	}
	trap bench_container_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	note "running bench/$bench_name in a container of $image"
	# --init: a bench that is PID 1 would not get Ctrl-C's SIGINT.
	# --shm-size: the parallel workers of the big scans share memory in
	# /dev/shm, Docker's 64 MB default is too small for them.
	# perf in a container needs perf_event_open, which Docker's seccomp
	# profile grants only with CAP_SYS_ADMIN (Docker 20.10 knows no
	# CAP_PERFMON): given only when asked for, to a container with no
	# network.
	local profile_args=()
	[[ ${BENCH_PROFILE:-0} != 1 ]] || profile_args=(--cap-add SYS_ADMIN)
	docker run --rm --init --name "$name" --network none --shm-size 1g \
		"${profile_args[@]}" "${env_args[@]}" -e BENCH_CONTAINER_IMAGE="$image, sources $want" \
		-e BENCH_REVISION="$revision" -e BENCH_RESULTS_DIR=/tmp/bench-results \
		-v "$repo:/opsdemo:ro" -w /tmp "$image" "/opsdemo/bench/$bench_name" "$@" |
		tee "$report" || rc=$?
	exit "$rc"
}
