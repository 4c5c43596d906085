# shellcheck shell=bash
# shellcheck disable=SC2154  # rows, scheduler, lab_db, job_role, repl_user, ...: lab/lab's and the topology's
# pg_opsdemo on a primary node of any lab topology: extensions created or
# updated, the replication and jobs' roles, t1 topped up with a progress
# bar, the jobs started, and what status shows of them.  Sourced by lab/lab
# after lib/node.sh.

ext_version() { node_value "$1" "SELECT coalesce((SELECT extversion FROM pg_extension WHERE extname = '$2'), '')"; }

# Creates the extensions, or updates them to the image's version: a volume
# keeps the SQL objects of the version it was made with.
ensure_extensions() { # node extensions...
	local node=$1 ext before after
	shift
	for ext in "$@"; do
		before=$(ext_version "$node" "$ext")
		node_psql "$node" -c "CREATE EXTENSION IF NOT EXISTS $ext" -c "ALTER EXTENSION $ext UPDATE" >/dev/null
		after=$(ext_version "$node" "$ext")
		if [[ -n $before && $before != "$after" ]]; then
			say "$node: extension $ext updated from $before to $after"
		fi
	done
}

# The replication role (login, replication, reads t1 for a logical
# copy; nothing else) and the jobs' role, on a primary.
ensure_roles() { # node
	node_psql "$1" <<-SQL
		SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$repl_user') AS need_role \gset
		\if :need_role
		CREATE ROLE $repl_user LOGIN REPLICATION;
		\endif
		-- Least privilege: log in, stream (REPLICATION), read t1 for the
		-- initial copy.  Nothing else, and no other database (pg_hba).
		ALTER ROLE $repl_user NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS LOGIN REPLICATION;
		GRANT SELECT ON t1 TO $repl_user;

		SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$job_role') AS need_job_role \gset
		\if :need_job_role
		CREATE ROLE $job_role;
		\endif
		-- The jobs' role: what the two job bodies need and nothing more.
		-- The insert job inserts and reads back the new id; the update job
		-- sets status where status and the parity of id match.  Partitions,
		-- mv_sum and the job history are written as their owner.  LOGIN only
		-- because a background worker cannot connect as a NOLOGIN role; with
		-- no password and pg_hba rejecting it, nobody logs in as it.
		ALTER ROLE $job_role NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
		    LOGIN PASSWORD NULL;
		REVOKE ALL ON t1 FROM $job_role;
		GRANT INSERT, SELECT (id, date, status), UPDATE (status) ON t1 TO $job_role;
	SQL
}

top_up_rows() { # node
	local have
	# "At least $rows rows", not "t1 is empty": the worker starts with the
	# server and may have inserted its first rows already.
	have=$(node_value "$1" "SELECT count(*) FROM t1")
	if ((have < rows)); then
		say "$1: t1 has $have rows: generating $((rows - have)) over the 3 months up to now"
		generate "$1" $((rows - have))
	fi
}

start_jobs() { # node
	case $scheduler in
	worker | off)
		# Jobs left in pg_cron by an earlier OPSDEMO_SCHEDULER=pg_cron would
		# make the worker refuse (it never runs the jobs twice).
		node_psql "$1" >/dev/null <<-SQL
			SELECT opsdemo_unschedule_cron();
			REVOKE EXECUTE ON FUNCTION opsdemo_cron_tick(text) FROM $job_role;
		SQL
		if [[ $scheduler == worker ]]; then
			node_psql "$1" -c "SELECT opsdemo_worker_start()" >/dev/null
			say "$1: jobs run in pg_opsdemo's background worker"
		else
			say "$1: OPSDEMO_SCHEDULER=off: no jobs"
		fi
		;;
	pg_cron)
		# opsdemo_schedule_cron() says itself when pg_cron cannot do seconds
		# (pg_cron < 1.5, the PostgreSQL 15 image).
		ensure_extensions "$1" pg_cron
		# pg_cron runs a job as the user it belongs to, and
		# opsdemo_schedule_cron() registers them as its caller, the
		# superuser; only a superuser may hand a job to another user.  A job
		# is keyed by (jobname, username): when $job_role already has one of
		# that name, it takes over the new schedule and the superuser's
		# copy goes.  One transaction, so pg_cron never runs a job as the
		# superuser in between.
		node_psql "$1" >/dev/null <<-SQL || die "OPSDEMO_SCHEDULER=pg_cron: pg_cron could not schedule the jobs (see above; use PostgreSQL 17 or 18, or the worker)"
			BEGIN;
			SELECT opsdemo_schedule_cron();
			GRANT EXECUTE ON FUNCTION opsdemo_cron_tick(text) TO $job_role;
			DO \$\$
			DECLARE
			    mine record;
			    existing bigint;
			BEGIN
			    FOR mine IN SELECT jobid, jobname, schedule, command FROM cron.job
			                 WHERE jobname IN ('opsdemo_insert_tick', 'opsdemo_update_tick')
			                   AND username = current_user
			    LOOP
			        SELECT jobid INTO existing FROM cron.job
			         WHERE jobname = mine.jobname AND username = '$job_role';
			        IF existing IS NULL THEN
			            PERFORM cron.alter_job(mine.jobid, username => '$job_role');
			        ELSE
			            PERFORM cron.alter_job(existing, schedule => mine.schedule,
			                                   command => mine.command);
			            PERFORM cron.unschedule(mine.jobid);
			        END IF;
			    END LOOP;
			END
			\$\$;
			COMMIT;
		SQL
		say "$1: jobs scheduled with pg_cron (every 5 s and 3 s), run as $job_role"
		;;
	esac
}

# opsdemo_generate(N) on a node in one session while this one draws a
# progress bar from opsdemo_generate_progress.
generate() { # node rows
	local node=$1 n=$2 tag cid gen_pid out done_rows total pct width=40 bar last=-1
	[[ $n =~ ^[1-9][0-9]*$ ]] || die "N must be a positive number of rows, got '$n'"
	cid=$(running_cid "$node")
	tag=opsdemo_generate_$$
	temp_file out /tmp/opsdemo-generate.XXXXXX
	# The generating session is found by its application_name, so other
	# concurrent generators do not feed this bar.
	docker exec -u postgres -e PGAPPNAME="$tag" "$cid" psql -X -q -At -v ON_ERROR_STOP=1 \
		-h /var/run/postgresql -U postgres -d "$lab_db" \
		-c "SELECT opsdemo_generate($n)" >"$out" 2>&1 &
	gen_pid=$!
	while kill -0 "$gen_pid" 2>/dev/null; do
		read -r done_rows total < <(docker exec -u postgres "$cid" psql -X -At -F ' ' -h /var/run/postgresql \
			-U postgres -d "$lab_db" -c "SELECT p.rows_done, p.rows_total
			  FROM opsdemo_generate_progress p JOIN pg_stat_activity a USING (pid)
			 WHERE a.application_name = '$tag'" 2>/dev/null) || true
		if [[ -n ${total:-} && $total -gt 0 ]]; then
			pct=$((done_rows * 100 / total))
			if [[ -t 1 ]]; then
				printf -v bar '%*s' $((pct * width / 100)) ''
				printf '\r  [%-*s] %3d%%  %d / %d rows' "$width" "${bar// /#}" "$pct" "$done_rows" "$total"
			elif ((pct / 10 != last)); then
				last=$((pct / 10))
				printf '  %3d%%  %d / %d rows\n' "$pct" "$done_rows" "$total"
			fi
		fi
		sleep 0.3
	done
	if ! wait "$gen_pid"; then
		[[ -t 1 ]] && echo
		cat "$out" >&2
		die "opsdemo_generate($n) failed"
	fi
	if [[ -t 1 ]]; then
		printf -v bar '%*s' "$width" ''
		printf '\r  [%s] 100%%  %d / %d rows\n' "${bar// /#}" "$n" "$n"
	fi
	# The NOTICE carries rows and rows/s.
	sed -n 's/^.*NOTICE: *//p' "$out"
}

show_jobs() { # node
	node_psql "$1" -P footer=off <<-'SQL'
		SET TimeZone = 'UTC';
		SELECT EXISTS (SELECT FROM pg_proc WHERE proname = 'opsdemo_status') AS has_status,
		       EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') AS has_cron \gset
		\if :has_status
		SELECT s.job, s.scheduler, to_jsonb(s) ->> 'state' AS state, s."interval", s.runs,
		       s.failures, s.skipped, to_char(s.last_start, 'HH24:MI:SS.MS') AS last_tick,
		       s.last_duration, to_char(s.next_due, 'HH24:MI:SS') AS next_due,
		       left(s.last_error, 40) AS last_error
		  FROM opsdemo_status() s;
		\endif
		\if :has_cron
		SELECT j.jobname, j.schedule, j.active, d.status AS last_status,
		       to_char(d.start_time, 'HH24:MI:SS.MS') AS last_tick,
		       (SELECT count(*) FROM cron.job_run_details x WHERE x.jobid = j.jobid AND x.status = 'failed') AS failures
		  FROM cron.job j
		  LEFT JOIN LATERAL (SELECT * FROM cron.job_run_details d WHERE d.jobid = j.jobid
		                      ORDER BY d.runid DESC LIMIT 1) d ON true
		 ORDER BY j.jobname;
		\endif
	SQL

}

mv_sum_summary() { # node -> "exact (N groups)" or "N groups DIFFER"
	local bad groups
	bad=$(mv_sum_differences "$1" 2>/dev/null) || { echo "cannot verify"; return; }
	groups=$(node_value "$1" "SELECT count(*) FROM mv_sum")
	if ((bad == 0)); then echo "exact ($groups groups)"; else echo "$bad groups DIFFER"; fi
}

node_facts() { # node -> "rows|pending|newest"
	node_value "$1" "SET TimeZone = 'UTC'; SELECT count(*), count(*) FILTER (WHERE status = 0), coalesce(to_char(max(date), 'YYYY-MM-DD HH24:MI:SS'), '-') FROM t1" 2>/dev/null | tail -n 1 || echo "?|?|?"
}

