/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The built-in scheduler: a background worker that runs the insert job
 *	  and the update job on their wall-clock slots (schedule.c), and
 *	  opsdemo_worker_start() / opsdemo_worker_stop().
 *
 * One process runs both jobs one after the other, so runs never overlap.
 * The update job gets its slot as "at", so its parity is the parity of the
 * slot, not of whenever the process got the CPU.
 *
 * A tick has a time budget: the shorter of the two intervals, since a tick
 * that runs longer makes the other job late.  The insert job is one
 * transaction.  The update job flips its pending rows in batches, each
 * batch its own transaction, and starts no batch that would not fit into
 * the budget: a backlog of any size drains over the following slots of
 * each parity instead of timing out again and again.  Rows that other
 * transactions hold are skipped (they are left to a later slot), and a
 * batch that fails with a serialization failure or a deadlock is tried
 * again while the budget lasts.
 *
 * Failure handling: an ERROR inside a tick (lock timeout, statement
 * timeout, a renamed table, ...) is logged in full (as autovacuum does),
 * counted and recorded; the job retries at the next slot, then backs off
 * exponentially while it keeps failing.  Only FATAL (SIGTERM, a database
 * that does not exist) ends the process, and the postmaster starts it
 * again after RESTART_SECONDS.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "opsdemo.h"

PGDLLEXPORT void opsdemo_worker_main(Datum main_arg);

PG_FUNCTION_INFO_V1(opsdemo_worker_start);
PG_FUNCTION_INFO_V1(opsdemo_worker_stop);

/* Seconds the postmaster waits before starting a worker that died. */
#define RESTART_SECONDS		5

/* How often expired history rows are deleted. */
#define PURGE_EVERY_MS		60000

/* How long to sleep when there is nothing to schedule. */
#define IDLE_RECHECK_MS		1000

/*
 * The update job starts no batch after this share of the tick's budget, so
 * the other job gets its turn on time even while a backlog drains.
 */
#define DRAIN_SHARE_NUM		3
#define DRAIN_SHARE_DEN		4

/* An update batch is sized to take about this share of the budget. */
#define BATCH_SHARE_DEN		4

typedef enum TickOutcome
{
	TICK_OK,
	TICK_FAILED,
	TICK_NOT_READY				/* no extension, or refused: not a run */
} TickOutcome;

/* What one transaction of a tick came to. */
typedef enum StepOutcome
{
	STEP_DONE,
	STEP_NOT_READY,
	STEP_RETRY,					/* serialization failure or deadlock */
	STEP_OUT_OF_TIME,			/* cancelled at the deadline after progress */
	STEP_FAILED
} StepOutcome;

static MemoryContext tick_context = NULL;
static char last_logged_state[OPSDEMO_STATE_LEN];
static char *connected_database = NULL;
static char *connected_role = NULL;
static TimestampTz last_purge = 0;
static bool history_warning_logged = false;

/*
 * Rows per update batch that fit BATCH_SHARE_DEN times into the tick's
 * budget, learned from the batches so far (0: none yet); never more than
 * opsdemo.update_batch_size.
 */
static int	fitting_batch_rows = 0;

static void
fill_worker(BackgroundWorker *worker)
{
	memset(worker, 0, sizeof(BackgroundWorker));
	worker->bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;

	/*
	 * Started once the server accepts read-only connections, so that a hot
	 * standby shows its idle state in opsdemo_status() and starts working
	 * when it is promoted, without a restart.
	 */
	worker->bgw_start_time = BgWorkerStart_ConsistentState;
	worker->bgw_restart_time = RESTART_SECONDS;
	strlcpy(worker->bgw_library_name, "pg_opsdemo",
			sizeof(worker->bgw_library_name));
	strlcpy(worker->bgw_function_name, "opsdemo_worker_main",
			sizeof(worker->bgw_function_name));
	strlcpy(worker->bgw_name, "pg_opsdemo scheduler", sizeof(worker->bgw_name));
	strlcpy(worker->bgw_type, "pg_opsdemo scheduler", sizeof(worker->bgw_type));
}

/* Called from _PG_init: the settings, and the worker when preloaded. */
void
opsdemo_worker_init(void)
{
	BackgroundWorker worker;

	opsdemo_settings_define();
	MarkGUCPrefixReserved("opsdemo");

	if (!process_shared_preload_libraries_in_progress)
		return;

	opsdemo_shmem_request();
	fill_worker(&worker);
	RegisterBackgroundWorker(&worker);
}

/* ---- state -------------------------------------------------------------- */

/*
 * The state is shown by opsdemo_status(); a change of state is also logged
 * once, so a worker waiting for CREATE EXTENSION does not spam the log.
 */
static void
set_state(int elevel, const char *fmt,...) pg_attribute_printf(2, 3);

static void
set_state(int elevel, const char *fmt,...)
{
	char		buf[OPSDEMO_STATE_LEN];
	va_list		args;

	va_start(args, fmt);
	vsnprintf(buf, sizeof(buf), fmt, args);
	va_end(args);

	if (strcmp(buf, last_logged_state) == 0)
		return;
	strlcpy(last_logged_state, buf, sizeof(last_logged_state));
	opsdemo_set_state("%s", buf);
	ereport(elevel,
			(errmsg("pg_opsdemo scheduler: %s", buf)));
}

/* ---- may the jobs write here? ------------------------------------------ */

/*
 * The name of a subscription that replicates t1 (or one of its partitions)
 * into this database, or NULL.  Writing here would make the replica diverge
 * from its publisher, or collide with rows still to come.
 */
static char *
subscription_of_t1(Oid t1_relid)
{
	Oid			argtypes[1] = {REGCLASSOID};
	Datum		args[1];
	char	   *subname = NULL;
	int			guc_level;
	int			ret;

	args[0] = ObjectIdGetDatum(t1_relid);
	guc_level = opsdemo_pin_search_path();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_with_args("SELECT s.subname::pg_catalog.text "
								"  FROM pg_catalog.pg_subscription_rel r "
								"  JOIN pg_catalog.pg_subscription s "
								"    ON s.oid OPERATOR(pg_catalog.=) r.srsubid "
								" WHERE r.srrelid OPERATOR(pg_catalog.=) ANY "
								"       (SELECT relid::pg_catalog.oid "
								"          FROM pg_catalog.pg_partition_tree($1)) "
								" ORDER BY 1 LIMIT 1",
								1, argtypes, args, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "subscription lookup failed: %s",
			 SPI_result_code_string(ret));
	if (SPI_processed > 0)
	{
		char	   *val = SPI_getvalue(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1);

		subname = MemoryContextStrdup(tick_context, val);
	}
	SPI_finish();
	AtEOXact_GUC(true, guc_level);
	return subname;
}

/*
 * Are jobs registered by opsdemo_schedule_cron() active in this database?
 * The worker must not run the same jobs a second time: someone switched
 * opsdemo.scheduler back to worker without opsdemo_unschedule_cron().
 */
static bool
cron_jobs_active(void)
{
	bool		active;
	int			ret;
	Oid			saved_userid;
	int			saved_sec_context;
	int			guc_level;

	if (!OidIsValid(get_extension_oid("pg_cron", true)))
		return false;

	/*
	 * The jobs' role (opsdemo.role) should hold no rights on pg_cron's
	 * schema, and cron.job's row security would show it only its own jobs
	 * anyway, while the question is whether anybody's are active.  Hence
	 * this one fixed, read-only query runs as the bootstrap superuser.
	 */
	GetUserIdAndSecContext(&saved_userid, &saved_sec_context);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID,
						   saved_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	guc_level = opsdemo_pin_search_path();

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute("SELECT 1 FROM cron.job WHERE active AND jobname "
					  "OPERATOR(pg_catalog.=) ANY ('{opsdemo_insert_tick,opsdemo_update_tick}'::pg_catalog.text[]) "
					  "LIMIT 1",
					  true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pg_cron job lookup failed: %s", SPI_result_code_string(ret));
	active = SPI_processed > 0;
	SPI_finish();

	AtEOXact_GUC(true, guc_level);
	SetUserIdAndSecContext(saved_userid, saved_sec_context);
	return active;
}

/* Inside the tick's transaction: may the jobs write here? */
static bool
ready_to_write(void)
{
	Oid			nspid;
	char	   *subname;

	if (!OidIsValid(get_extension_oid(OPSDEMO_EXTENSION_NAME, true)))
	{
		set_state(LOG, "waiting: extension \"%s\" is not installed in database \"%s\"",
				  OPSDEMO_EXTENSION_NAME, connected_database);
		return false;
	}

	nspid = opsdemo_schema_oid();
	if (!opsdemo_force_on_subscriber &&
		(subname = subscription_of_t1(opsdemo_t1_relid(nspid))) != NULL)
	{
		set_state(WARNING, "refused: this node is a logical replica of t1 (subscription \"%s\"); "
				  "set opsdemo.force_on_subscriber = on to write anyway", subname);
		return false;
	}

	if (cron_jobs_active())
	{
		set_state(WARNING, "refused: the jobs are scheduled in pg_cron too; "
				  "run opsdemo_unschedule_cron() to leave them to the worker");
		return false;
	}

	set_state(LOG, "running");
	return true;
}

/* ---- one tick ----------------------------------------------------------- */

/* The tick being run, for the CONTEXT line of its errors. */
typedef struct TickContext
{
	int			job;
	TimestampTz scheduled;
} TickContext;

static void
tick_error_context(void *arg)
{
	TickContext *tick = (TickContext *) arg;

	errcontext("pg_opsdemo %s tick scheduled at %s",
			   opsdemo_job_names[tick->job], timestamptz_to_str(tick->scheduled));
}

/* Milliseconds left until "deadline", at least 1. */
static int
ms_until(TimestampTz deadline)
{
	int64		left_us = deadline - GetCurrentTimestamp();

	return (int) Max(left_us / 1000, 1);
}

static void
set_lock_timeout(int budget_ms)
{
	char		buf[32];

	snprintf(buf, sizeof(buf), "%d", Max(budget_ms / 2, 1));
	SetConfigOption("lock_timeout", buf, PGC_SUSET, PGC_S_OVERRIDE);
}

/*
 * One transaction of a tick: with check_ready, first whether the jobs may
 * write here; then the insert job's rows, or one batch of up to "limit"
 * rows of the update job (*rows: rows flipped, *taken: rows the batch
 * locked).  Cancelled at "deadline" (statement_timeout).
 *
 * An error ends the transaction the way autovacuum's does: interrupts
 * held, the whole report (DETAIL, HINT, CONTEXT) written to the log,
 * abort.  Two errors of an update batch are not failures of the run: a
 * serialization failure or a deadlock (STEP_RETRY), and the deadline once
 * earlier batches of the run have committed (STEP_OUT_OF_TIME; the next
 * slot goes on).
 */
static StepOutcome
tick_step(int j, TimestampTz scheduled, TimestampTz deadline, bool check_ready,
		  int limit, bool made_progress, int64 *rows, uint64 *taken,
		  int *sqlerrcode, OpsdemoRun *run)
{
	volatile StepOutcome outcome = STEP_DONE;
	TickContext tick = {j, scheduled};
	ErrorContextCallback errcallback;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		enable_timeout_after(STATEMENT_TIMEOUT, ms_until(deadline));

		if (check_ready && !ready_to_write())
			outcome = STEP_NOT_READY;
		else
		{
			errcallback.callback = tick_error_context;
			errcallback.arg = &tick;
			errcallback.previous = error_context_stack;
			error_context_stack = &errcallback;

			if (j == OPSDEMO_JOB_INSERT)
				*rows = opsdemo_insert_rows(GetCurrentStatementStartTimestamp(),
											opsdemo_insert_batch_size);
			else
				*rows = opsdemo_flip_batch(opsdemo_tick_parity(scheduled),
										   limit, taken);

			error_context_stack = errcallback.previous;
		}

		disable_timeout(STATEMENT_TIMEOUT, false);
		PopActiveSnapshot();
		CommitTransactionCommand();
		/* A timeout that fired after the tick's last check must not hit the next. */
		QueryCancelPending = false;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		HOLD_INTERRUPTS();
		disable_timeout(STATEMENT_TIMEOUT, false);
		MemoryContextSwitchTo(tick_context);
		edata = CopyErrorData();
		*sqlerrcode = edata->sqlerrcode;

		if (j == OPSDEMO_JOB_UPDATE &&
			opsdemo_batch_retryable(edata->sqlerrcode) &&
			GetCurrentTimestamp() < deadline)
		{
			ereport(DEBUG1,
					(errmsg_internal("pg_opsdemo update tick scheduled at %s retries a batch: %s",
									 timestamptz_to_str(scheduled), edata->message)));
			outcome = STEP_RETRY;
		}
		else if (j == OPSDEMO_JOB_UPDATE && made_progress &&
				 edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			outcome = STEP_OUT_OF_TIME;
		else
		{
			EmitErrorReport();
			opsdemo_run_set_error(run, edata);
			outcome = STEP_FAILED;
		}
		AbortCurrentTransaction();
		MemoryContextSwitchTo(tick_context);
		FlushErrorState();
		QueryCancelPending = false;
		RESUME_INTERRUPTS();
	}
	PG_END_TRY();
	return outcome;
}

/*
 * Writes the run's history row in a transaction of its own.  The jobs
 * matter more than their history: a failure here is a warning, once.
 */
static void
record_history(const OpsdemoRun *run)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	bool		purge = run->started - last_purge >= (int64) PURGE_EVERY_MS * 1000;

	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		opsdemo_run_write_history(run, purge);
		PopActiveSnapshot();
		CommitTransactionCommand();
		if (purge)
			last_purge = run->started;
		history_warning_logged = false;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(tick_context);
		edata = CopyErrorData();
		if (!history_warning_logged)
			EmitErrorReport();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(tick_context);
		FlushErrorState();
		RESUME_INTERRUPTS();

		if (!history_warning_logged)
			ereport(WARNING,
					(errcode(edata->sqlerrcode),
					 errmsg("pg_opsdemo scheduler could not record job history: %s",
							edata->message),
					 errdetail("Runs are still counted in opsdemo_status(); this warning is not repeated until the history works again.")));
		history_warning_logged = true;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcontext);
}

static TickOutcome
run_tick(int j, TimestampTz scheduled)
{
	OpsdemoRun	run = {0};
	int			budget_ms = opsdemo_schedule_tick_budget_ms();
	TimestampTz deadline;
	TimestampTz drain_until;
	StepOutcome outcome;
	bool		checked_ready = false;
	int64		slowest_batch_us = 0;

	MemoryContextReset(tick_context);
	MemoryContextSwitchTo(tick_context);

	run.job = j;
	run.scheduler = "worker";
	run.scheduled = scheduled;
	run.started = GetCurrentTimestamp();
	run.ok = true;
	deadline = run.started + (int64) budget_ms * 1000;
	drain_until = run.started +
		(int64) budget_ms * 1000 * DRAIN_SHARE_NUM / DRAIN_SHARE_DEN;

	set_lock_timeout(budget_ms);
	pgstat_report_activity(STATE_RUNNING, j == OPSDEMO_JOB_INSERT ?
						   "pg_opsdemo insert tick" : "pg_opsdemo update tick");

	for (;;)
	{
		TimestampTz batch_start = GetCurrentTimestamp();
		int			limit = opsdemo_update_batch_size;
		int64		rows = 0;
		uint64		taken = 0;
		int			sqlerrcode = 0;
		int64		batch_us;

		/* Only a batch that fits; the next slot of this parity goes on. */
		if (checked_ready &&
			(batch_start >= drain_until ||
			 batch_start + slowest_batch_us >= deadline))
		{
			outcome = STEP_DONE;
			break;
		}

		if (fitting_batch_rows > 0)
			limit = Min(limit, fitting_batch_rows);
		outcome = tick_step(j, scheduled, deadline, !checked_ready, limit,
							run.result > 0, &rows, &taken, &sqlerrcode, &run);
		batch_us = GetCurrentTimestamp() - batch_start;

		if (j == OPSDEMO_JOB_UPDATE && sqlerrcode == ERRCODE_QUERY_CANCELED)
		{
			/* Too large for the budget, or for this load: much smaller. */
			fitting_batch_rows = Max(limit / 4, 1);
		}
		if (outcome == STEP_OUT_OF_TIME)
		{
			ereport(LOG,
					(errmsg("pg_opsdemo update tick scheduled at %s reached its time budget after flipping " INT64_FORMAT " rows",
							timestamptz_to_str(scheduled), run.result),
					 errdetail("The batch in progress was rolled back; the next slot of this parity goes on.")));
			outcome = STEP_DONE;
			break;
		}
		if (outcome == STEP_NOT_READY || outcome == STEP_FAILED)
			break;
		checked_ready = true;
		slowest_batch_us = Max(slowest_batch_us, batch_us);
		if (outcome == STEP_RETRY)
			continue;

		if (j == OPSDEMO_JOB_INSERT)
		{
			run.result = rows;
			break;
		}
		run.result += rows;

		/*
		 * Size the next batch by this one's pace, growing at most twofold
		 * at a time.
		 */
		if (taken > 0)
		{
			int64		target_us = (int64) budget_ms * 1000 / BATCH_SHARE_DEN;
			double		fitting = (double) taken * target_us / Max(batch_us, 1);

			fitting = Min(fitting, 2.0 * limit);
			fitting_batch_rows = (int) Max(Min(fitting, (double) opsdemo_update_batch_size), 1.0);
		}

		/* Done; or nothing flippable (a trigger may be skipping the rows). */
		if (taken < (uint64) limit || rows == 0)
			break;
	}
	MemoryContextSwitchTo(tick_context);

	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);

	if (outcome == STEP_NOT_READY)
		return TICK_NOT_READY;

	/* A failed update run keeps the count of its committed batches. */
	run.duration_us = GetCurrentTimestamp() - run.started;
	opsdemo_run_count(&run);
	record_history(&run);
	return run.ok ? TICK_OK : TICK_FAILED;
}

/* ---- main loop ---------------------------------------------------------- */

static void
worker_detach(int code, Datum arg)
{
	OpsdemoShared *s = opsdemo_shared();
	bool		failed_to_connect = false;

	SpinLockAcquire(&s->mutex);
	if (s->worker_pid == MyProcPid)
	{
		s->worker_pid = 0;
		s->worker_latch = NULL;
		if (s->connecting)
			s->connect_failed = failed_to_connect = true;
		s->connecting = false;
		/* the postmaster starts us again: opsdemo_worker_stop() waits for it */
		s->restart_pending = (code != 0);
	}
	SpinLockRelease(&s->mutex);

	/*
	 * Without this the state would stay "connecting" for the restart delay,
	 * which reads as a connection attempt that hangs.
	 */
	if (failed_to_connect)
		opsdemo_set_state("restarting in %d s: could not connect to database \"%s\"%s%s%s (server log)",
						  RESTART_SECONDS, connected_database,
						  connected_role[0] != '\0' ? " as role \"" : "",
						  connected_role,
						  connected_role[0] != '\0' ? "\"" : "");
}

static bool
stop_requested(void)
{
	OpsdemoShared *s = opsdemo_shared();
	bool		stop;

	SpinLockAcquire(&s->mutex);
	stop = s->stopped;
	SpinLockRelease(&s->mutex);
	return stop;
}

static void
reload_config(void)
{
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);

	/* The connection cannot change: start over with the new one. */
	if (strcmp(opsdemo_database, connected_database) != 0 ||
		strcmp(opsdemo_role, connected_role) != 0)
	{
		ereport(LOG,
				(errmsg("pg_opsdemo scheduler restarts to connect to database \"%s\" as role \"%s\"",
						opsdemo_database, opsdemo_role)));
		opsdemo_set_state("restarting in %d s to connect to database \"%s\" as role \"%s\"",
						  RESTART_SECONDS, opsdemo_database, opsdemo_role);
		proc_exit(1);
	}
}

static void
sleep_ms(long ms)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 Max(ms, 1), PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	/* Between ticks there is nothing to cancel: an idle backend ignores it too. */
	QueryCancelPending = false;
	CHECK_FOR_INTERRUPTS();
}

/*
 * Does a database of this name exist?  Asked while connected to no
 * database: until some backend has written the shared relcache init file
 * (right after a server start, nothing has yet), only the shared catalogs
 * themselves are nailed in the relcache, not their indexes, and opening
 * one fails with "cannot read pg_class without having selected a
 * database".  So no index: pg_database is small.  (Role lookups go
 * through the syscache, which knows to avoid the index then.)
 */
static bool
database_exists(const char *dbname)
{
	Relation	rel = table_open(DatabaseRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	bool		found;

	ScanKeyInit(&key, Anum_pg_database_datname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum(dbname));
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * The last start could not connect (FATAL: the database or the role does
 * not exist, typically because the server was started before the lab
 * created them).  Rather than failing again every RESTART_SECONDS, wait
 * connected to no database, where the shared catalogs can still be read,
 * until both exist; then exit so that the postmaster starts us again, and
 * the next start connects.
 */
static void
wait_for_database(void)
{
	opsdemo_set_state("connecting");
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	for (;;)
	{
		bool		have_database;
		bool		have_role;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (stop_requested())
		{
			opsdemo_set_state("stopped");
			proc_exit(0);
		}

		StartTransactionCommand();
		have_database = database_exists(opsdemo_database);
		have_role = opsdemo_role[0] == '\0' ||
			OidIsValid(get_role_oid(opsdemo_role, true));
		CommitTransactionCommand();

		if (have_database && have_role)
		{
			OpsdemoShared *s = opsdemo_shared();

			SpinLockAcquire(&s->mutex);
			s->connect_failed = false;
			SpinLockRelease(&s->mutex);
			ereport(LOG,
					(errmsg("pg_opsdemo scheduler restarts to connect to database \"%s\"",
							opsdemo_database)));
			set_state(DEBUG1, "restarting in %d s to connect to database \"%s\"",
					  RESTART_SECONDS, opsdemo_database);
			proc_exit(1);
		}
		if (!have_database)
			set_state(LOG, "waiting: database \"%s\" does not exist",
					  opsdemo_database);
		else
			set_state(LOG, "waiting: role \"%s\" does not exist", opsdemo_role);
		sleep_ms(IDLE_RECHECK_MS);
	}
}

void
opsdemo_worker_main(Datum main_arg)
{
	OpsdemoShared *s;
	bool		connect_failed;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	s = opsdemo_shared();
	SpinLockAcquire(&s->mutex);
	if (s->stopped || (s->worker_pid != 0 && s->worker_pid != MyProcPid))
	{
		pid_t		other = s->worker_pid;

		/*
		 * Stopped: this is a restart by the postmaster (the preloaded worker,
		 * or a dynamic one that exited non-zero), which the stop outlasts.
		 */
		if (other == 0)
			s->restart_pending = false;
		SpinLockRelease(&s->mutex);
		if (other != 0)
			ereport(LOG,
					(errmsg("pg_opsdemo scheduler not started: another one is running (PID %d)",
							(int) other)));
		else
		{
			opsdemo_set_state("stopped");
			ereport(LOG, (errmsg("pg_opsdemo scheduler stopped by opsdemo_worker_stop() at its restart")));
		}

		/* exit code 0: the postmaster does not start us again */
		proc_exit(0);
	}
	s->worker_pid = MyProcPid;
	s->worker_latch = MyLatch;
	s->restart_pending = false;
	connect_failed = s->connect_failed;
	SpinLockRelease(&s->mutex);
	before_shmem_exit(worker_detach, (Datum) 0);

	tick_context = AllocSetContextCreate(TopMemoryContext,
										 "pg_opsdemo tick",
										 ALLOCSET_DEFAULT_SIZES);
	connected_database = MemoryContextStrdup(TopMemoryContext, opsdemo_database);
	connected_role = MemoryContextStrdup(TopMemoryContext, opsdemo_role);
	if (connect_failed)
		wait_for_database();

	opsdemo_set_state("connecting");
	SpinLockAcquire(&s->mutex);
	s->connecting = true;
	SpinLockRelease(&s->mutex);
	BackgroundWorkerInitializeConnection(connected_database,
										 connected_role[0] != '\0' ? connected_role : NULL,
										 0);
	SpinLockAcquire(&s->mutex);
	s->connecting = false;
	SpinLockRelease(&s->mutex);
	pgstat_report_appname("pg_opsdemo scheduler");

	for (;;)
	{
		TimestampTz now;
		TimestampTz due;
		TimestampTz scheduled;
		int			j;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
			reload_config();
		if (stop_requested())
		{
			opsdemo_set_state("stopped");
			ereport(LOG, (errmsg("pg_opsdemo scheduler stopped by opsdemo_worker_stop()")));
			proc_exit(0);
		}

		now = GetCurrentTimestamp();
		opsdemo_schedule_refresh(now);

		if (opsdemo_scheduler != OPSDEMO_SCHEDULER_WORKER)
		{
			set_state(LOG, "idle: opsdemo.scheduler is \"%s\"",
					  opsdemo_scheduler_name(opsdemo_scheduler));
			opsdemo_schedule_idle(now);
			sleep_ms(IDLE_RECHECK_MS);
			continue;
		}
		if (RecoveryInProgress())
		{
			set_state(LOG, "idle: hot standby, waiting for promotion");
			opsdemo_schedule_idle(now);
			sleep_ms(IDLE_RECHECK_MS);
			continue;
		}

		j = opsdemo_schedule_next_job(&due);
		if (due > now)
		{
			sleep_ms((long) ((due - now + 999) / 1000));
			continue;
		}
		if (!opsdemo_schedule_take(j, now, &scheduled))
			continue;

		switch (run_tick(j, scheduled))
		{
			case TICK_OK:
				opsdemo_schedule_after_run(j, scheduled, false);
				break;
			case TICK_FAILED:
				opsdemo_schedule_after_run(j, scheduled, true);
				break;
			case TICK_NOT_READY:
				/* not a run: the slot passes like any other */
				opsdemo_schedule_after_run(j, scheduled, false);
				break;
		}
	}
}

/* ---- SQL interface ------------------------------------------------------ */

/*
 * opsdemo_worker_start() returns boolean
 *
 * Starts the scheduler as a dynamic background worker (this works without
 * shared_preload_libraries); false if one is already running.
 */
Datum
opsdemo_worker_start(PG_FUNCTION_ARGS)
{
	OpsdemoShared *s = opsdemo_shared();
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	BgwHandleStatus status;
	pid_t		pid;
	bool		running;

	/*
	 * A worker that is still finishing its tick after a stop is not running
	 * any more: wait for it to exit, then start a new one.
	 */
	for (;;)
	{
		bool		leaving;

		SpinLockAcquire(&s->mutex);
		running = s->worker_pid != 0;
		leaving = running && s->stopped;
		if (!running)
			s->stopped = false;
		SpinLockRelease(&s->mutex);
		if (!leaving)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	if (running)
		PG_RETURN_BOOL(false);

	if (opsdemo_scheduler != OPSDEMO_SCHEDULER_WORKER)
		ereport(NOTICE,
				(errmsg("opsdemo.scheduler is \"%s\": the worker stays idle until it is \"worker\"",
						opsdemo_scheduler_name(opsdemo_scheduler))));

	fill_worker(&worker);
	worker.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not register the pg_opsdemo scheduler"),
				 errhint("Raise max_worker_processes.")));

	status = WaitForBackgroundWorkerStartup(handle, &pid);
	if (status == BGWH_STOPPED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not start the pg_opsdemo scheduler"),
				 errhint("More details may be available in the server log.")));
	if (status == BGWH_POSTMASTER_DIED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("cannot start background workers without postmaster"),
				 errhint("Kill all remaining database processes and restart the database.")));
	Assert(status == BGWH_STARTED);

	/*
	 * Started is not yet running: wait until the worker has claimed the
	 * scheduler slot (or lost it to a concurrent start), so that a second
	 * call right after this one sees it.
	 */
	for (;;)
	{
		pid_t		owner;

		SpinLockAcquire(&s->mutex);
		owner = s->worker_pid;
		SpinLockRelease(&s->mutex);
		if (owner != 0)
			PG_RETURN_BOOL(owner == pid);
		if (GetBackgroundWorkerPid(handle, &pid) != BGWH_STARTED)
			PG_RETURN_BOOL(false);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * opsdemo_worker_stop() returns boolean
 *
 * Asks the scheduler to exit after its current tick and waits for it;
 * false if none was running.  A worker between two starts (it exited to
 * reconnect or was terminated; the postmaster starts it again after
 * RESTART_SECONDS) counts as running, and the stop waits for that restart
 * to exit.  The stop lasts until opsdemo_worker_start() or a server
 * restart: any worker the postmaster starts meanwhile (the preloaded one
 * restarting while a dynamic one ran) exits at once.
 * opsdemo.scheduler = off is the permanent switch.
 */
Datum
opsdemo_worker_stop(PG_FUNCTION_ARGS)
{
	OpsdemoShared *s = opsdemo_shared();
	pid_t		pid;
	Latch	   *latch;
	bool		restarting;
	TimestampTz waited_until;

	SpinLockAcquire(&s->mutex);
	s->stopped = true;
	pid = s->worker_pid;
	latch = s->worker_latch;
	restarting = pid == 0 && s->restart_pending;
	SpinLockRelease(&s->mutex);

	if (pid == 0 && !restarting)
		PG_RETURN_BOOL(false);
	if (latch != NULL)
		SetLatch(latch);

	waited_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											   (RESTART_SECONDS + 10) * 1000);
	for (;;)
	{
		bool		gone;

		SpinLockAcquire(&s->mutex);
		if (restarting)
			gone = !s->restart_pending; /* the restart came and exited */
		else
			gone = s->worker_pid != pid;
		SpinLockRelease(&s->mutex);
		if (gone)
			break;

		/*
		 * A restart that does not come (the server is shutting down): the
		 * stop holds all the same.
		 */
		if (restarting && GetCurrentTimestamp() >= waited_until)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	PG_RETURN_BOOL(true);
}
