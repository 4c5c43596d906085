/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The built-in scheduler: a background worker that runs the insert job
 *	  and the update job at fixed wall-clock rates, and its GUCs.
 *
 * Schedule: job j is due at every multiple of its interval counted from
 * the Unix epoch (with 5 s and 3 s: seconds divisible by 5 and by 3).  The
 * next due time is always derived from the schedule, never from when the
 * previous run ended, so lateness does not accumulate into drift.  One
 * process runs both jobs one after the other, so runs never overlap.  A
 * tick that cannot start within half an interval of its due time is
 * skipped and counted, never run late in a burst; the same rule absorbs a
 * forward clock step, and a backward step is noticed because the next due
 * time is then more than one interval away.
 *
 * The update job gets its scheduled time as "at", so its parity is the
 * parity of the slot, not of whenever the process got the CPU.
 *
 * Failure handling: an ERROR inside a tick (lock timeout, statement
 * timeout, a renamed table, ...) is caught, logged, counted and recorded;
 * the job retries at the next slot, then backs off exponentially (up to
 * BACKOFF_MAX_MS) while it keeps failing.  Only FATAL (SIGTERM, a database
 * that does not exist) ends the process, and the postmaster starts it
 * again after RESTART_SECONDS.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_authid.h"
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
#include "utils/guc.h"
#include "utils/lsyscache.h"
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

/* Longest pause between retries of a failing job. */
#define BACKOFF_MAX_MS		30000

/* How often expired history rows are deleted. */
#define PURGE_EVERY_MS		60000

/* How long to sleep when there is nothing to schedule. */
#define IDLE_RECHECK_MS		1000

/* Microseconds from the PostgreSQL epoch (2000-01-01) back to 1970-01-01. */
#define UNIX_EPOCH_OFFSET_US \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * USECS_PER_SEC)

/* GUCs */
int			opsdemo_scheduler = OPSDEMO_SCHEDULER_WORKER;
int			opsdemo_insert_interval = 5000;
int			opsdemo_update_interval = 3000;
static char *opsdemo_database = NULL;
static char *opsdemo_role = NULL;
int			opsdemo_insert_batch_size = 1;
int			opsdemo_history_retention = 86400;
static bool opsdemo_force_on_subscriber = false;

static const struct config_enum_entry scheduler_options[] = {
	{"worker", OPSDEMO_SCHEDULER_WORKER, false},
	{"pg_cron", OPSDEMO_SCHEDULER_PG_CRON, false},
	{"off", OPSDEMO_SCHEDULER_OFF, false},
	{NULL, 0, false}
};

typedef enum TickOutcome
{
	TICK_OK,
	TICK_FAILED,
	TICK_NOT_READY				/* no extension, or refused: not a run */
} TickOutcome;

/* Worker-local schedule of one job. */
typedef struct JobSchedule
{
	int64		interval_ms;
	TimestampTz next_due;
	TimestampTz retry_after;	/* back-off: no run before this */
} JobSchedule;

static JobSchedule schedule[OPSDEMO_NJOBS];
static MemoryContext tick_context = NULL;
static char last_logged_state[OPSDEMO_STATE_LEN];
static char *connected_database = NULL;
static char *connected_role = NULL;
static TimestampTz last_purge = 0;
static bool history_warning_logged = false;

const char *
opsdemo_scheduler_name(int scheduler)
{
	for (const struct config_enum_entry *e = scheduler_options; e->name; e++)
		if (e->val == scheduler)
			return e->name;
	return "unknown";
}

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

void
opsdemo_worker_init(void)
{
	BackgroundWorker worker;

	DefineCustomEnumVariable("opsdemo.scheduler",
							 "Which scheduler runs the insert and update jobs.",
							 "worker: the built-in background worker; pg_cron: "
							 "jobs registered by opsdemo_schedule_cron(); off: none.",
							 &opsdemo_scheduler,
							 OPSDEMO_SCHEDULER_WORKER,
							 scheduler_options,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomStringVariable("opsdemo.database",
							   "Database the built-in scheduler works in.",
							   NULL,
							   &opsdemo_database,
							   "postgres",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("opsdemo.role",
							   "Role the built-in scheduler runs the jobs as.",
							   "Empty means the bootstrap superuser.",
							   &opsdemo_role,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("opsdemo.insert_interval",
							"Interval of the insert job.",
							NULL,
							&opsdemo_insert_interval,
							5000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("opsdemo.update_interval",
							"Interval of the update job.",
							NULL,
							&opsdemo_update_interval,
							3000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("opsdemo.insert_batch_size",
							"Rows the insert job inserts per run.",
							NULL,
							&opsdemo_insert_batch_size,
							1, 1, 10000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("opsdemo.history_retention",
							"How long rows of opsdemo_job_history are kept.",
							"0 records no history.",
							&opsdemo_history_retention,
							86400, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("opsdemo.force_on_subscriber",
							 "Lets the built-in scheduler write on a logical replica of t1.",
							 NULL,
							 &opsdemo_force_on_subscriber,
							 false,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	MarkGUCPrefixReserved("opsdemo");

	if (!process_shared_preload_libraries_in_progress)
		return;

	opsdemo_shmem_request();
	fill_worker(&worker);
	RegisterBackgroundWorker(&worker);
}

/* ---- schedule arithmetic ------------------------------------------------ */

/* The first slot of the interval strictly after t. */
static TimestampTz
slot_after(TimestampTz t, int64 interval_ms)
{
	int64		iv = interval_ms * 1000;
	int64		u = t + UNIX_EPOCH_OFFSET_US;
	int64		k = u / iv;

	if (u < 0 && u % iv != 0)
		k--;
	return (k + 1) * iv - UNIX_EPOCH_OFFSET_US;
}

static int64
job_interval_ms(int j)
{
	return j == OPSDEMO_JOB_INSERT ? opsdemo_insert_interval :
		opsdemo_update_interval;
}

static void
publish_schedule(int j)
{
	OpsdemoShared *s = opsdemo_shared();

	SpinLockAcquire(&s->mutex);
	s->jobs[j].interval_ms = schedule[j].interval_ms;
	s->jobs[j].next_due = Max(schedule[j].next_due, schedule[j].retry_after);
	SpinLockRelease(&s->mutex);
}

static void
count_skipped(int j, int64 n)
{
	OpsdemoShared *s = opsdemo_shared();

	SpinLockAcquire(&s->mutex);
	s->jobs[j].skipped += n;
	SpinLockRelease(&s->mutex);
}

/*
 * Re-anchor a job's schedule when it is new, its interval changed, or the
 * clock stepped backwards (the next slot is then more than an interval
 * away).
 */
static void
refresh_schedule(int j, TimestampTz now)
{
	JobSchedule *js = &schedule[j];
	int64		iv = job_interval_ms(j);

	if (js->interval_ms != iv || js->next_due == 0 ||
		js->next_due - now > iv * 1000)
	{
		js->interval_ms = iv;
		js->next_due = slot_after(now, iv);
		js->retry_after = 0;
		publish_schedule(j);
	}
}

/* Idle: keep the slots moving without counting them as skipped. */
static void
idle_schedule(TimestampTz now)
{
	for (int j = 0; j < OPSDEMO_NJOBS; j++)
	{
		if (schedule[j].next_due <= now)
		{
			schedule[j].next_due = slot_after(now, schedule[j].interval_ms);
			publish_schedule(j);
		}
	}
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

/* ---- one tick ----------------------------------------------------------- */

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
	int			ret;

	args[0] = ObjectIdGetDatum(t1_relid);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_with_args("SELECT s.subname::text "
								"  FROM pg_catalog.pg_subscription_rel r "
								"  JOIN pg_catalog.pg_subscription s ON s.oid = r.srsubid "
								" WHERE r.srrelid IN (SELECT relid FROM pg_catalog.pg_partition_tree($1)) "
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

/*
 * The time one tick may take.  Both jobs share one process, so a tick that
 * runs longer than the shorter interval makes the other job late: a run
 * gives up after that long (statement_timeout) and after half of it when
 * waiting for a lock (lock_timeout), records the error and retries at a
 * later slot.
 */
static int
tick_budget_ms(void)
{
	return (int) Min(schedule[OPSDEMO_JOB_INSERT].interval_ms,
					 schedule[OPSDEMO_JOB_UPDATE].interval_ms);
}

static void
set_lock_timeout(void)
{
	char		buf[32];

	snprintf(buf, sizeof(buf), "%d", Max(tick_budget_ms() / 2, 1));
	SetConfigOption("lock_timeout", buf, PGC_SUSET, PGC_S_OVERRIDE);
}

static void
record_history(int j, TimestampTz scheduled, TimestampTz started,
			   int64 duration_us, bool ok, int64 result, const char *error)
{
	MemoryContext oldcontext = CurrentMemoryContext;

	if (opsdemo_history_retention == 0)
		return;

	PG_TRY();
	{
		Oid			argtypes[7] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
		INTERVALOID, BOOLOID, INT8OID, TEXTOID};
		Datum		args[7];
		char		nulls[] = "       ";	/* one per argument; GCC 15+ wants room for the NUL */
		Interval   *duration = palloc0(sizeof(Interval));
		StringInfoData sql;
		int			ret;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");

		duration->time = duration_us;
		args[0] = CStringGetTextDatum(opsdemo_job_names[j]);
		args[1] = TimestampTzGetDatum(scheduled);
		args[2] = TimestampTzGetDatum(started);
		args[3] = IntervalPGetDatum(duration);
		args[4] = BoolGetDatum(ok);
		args[5] = Int64GetDatum(result);
		if (!ok)
			nulls[5] = 'n';
		if (error != NULL)
			args[6] = CStringGetTextDatum(error);
		else
			nulls[6] = 'n';

		initStringInfo(&sql);
		appendStringInfo(&sql,
						 "INSERT INTO %s.opsdemo_job_history "
						 "(job, scheduler, scheduled_at, started_at, duration, ok, result, error) "
						 "VALUES ($1, 'worker', $2, $3, $4, $5, $6, $7)",
						 quote_identifier(get_namespace_name(opsdemo_schema_oid())));
		ret = SPI_execute_with_args(sql.data, 7, argtypes, args, nulls, false, 0);
		if (ret != SPI_OK_INSERT)
			elog(ERROR, "history insert failed: %s", SPI_result_code_string(ret));

		if (started - last_purge >= (int64) PURGE_EVERY_MS * 1000)
		{
			Oid			purge_types[1] = {INT4OID};
			Datum		purge_args[1];

			resetStringInfo(&sql);
			appendStringInfo(&sql,
							 "DELETE FROM %s.opsdemo_job_history "
							 "WHERE started_at < now() - make_interval(secs => $1)",
							 quote_identifier(get_namespace_name(opsdemo_schema_oid())));
			purge_args[0] = Int32GetDatum(opsdemo_history_retention);
			ret = SPI_execute_with_args(sql.data, 1, purge_types, purge_args,
										NULL, false, 0);
			if (ret != SPI_OK_DELETE)
				elog(ERROR, "history purge failed: %s", SPI_result_code_string(ret));
			last_purge = started;
		}

		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		history_warning_logged = false;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(tick_context);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();

		/* The jobs matter more than their history: warn once, go on. */
		if (!history_warning_logged)
			ereport(WARNING,
					(errcode(edata->sqlerrcode),
					 errmsg("pg_opsdemo scheduler could not record job history: %s",
							edata->message)));
		history_warning_logged = true;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcontext);
}

static TickOutcome
run_tick(int j, TimestampTz scheduled)
{
	OpsdemoShared *s = opsdemo_shared();
	volatile TickOutcome outcome = TICK_OK;
	volatile int64 result = 0;
	char	   *volatile error = NULL;
	TimestampTz started;
	int64		duration_us;

	MemoryContextReset(tick_context);
	MemoryContextSwitchTo(tick_context);

	set_lock_timeout();
	started = GetCurrentTimestamp();
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, j == OPSDEMO_JOB_INSERT ?
							   "pg_opsdemo insert tick" : "pg_opsdemo update tick");
		enable_timeout_after(STATEMENT_TIMEOUT, tick_budget_ms());

		if (!ready_to_write())
			outcome = TICK_NOT_READY;
		else if (j == OPSDEMO_JOB_INSERT)
			result = opsdemo_insert_rows(GetCurrentStatementStartTimestamp(),
										 opsdemo_insert_batch_size);
		else
			result = opsdemo_update_rows(scheduled);

		disable_timeout(STATEMENT_TIMEOUT, false);
		PopActiveSnapshot();
		CommitTransactionCommand();
		/* A timeout that fired after the tick's last check must not hit the next. */
		QueryCancelPending = false;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		disable_timeout(STATEMENT_TIMEOUT, false);
		MemoryContextSwitchTo(tick_context);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(tick_context);

		outcome = TICK_FAILED;
		error = psprintf("%s (SQLSTATE %s)", edata->message,
						 unpack_sql_state(edata->sqlerrcode));
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("pg_opsdemo %s tick scheduled at %s failed: %s",
						opsdemo_job_names[j], timestamptz_to_str(scheduled),
						edata->message)));
	}
	PG_END_TRY();
	MemoryContextSwitchTo(tick_context);

	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	duration_us = GetCurrentTimestamp() - started;

	if (outcome == TICK_NOT_READY)
		return outcome;

	SpinLockAcquire(&s->mutex);
	s->jobs[j].runs++;
	s->jobs[j].last_start = started;
	s->jobs[j].last_duration_us = duration_us;
	if (outcome == TICK_OK)
	{
		s->jobs[j].consecutive_failures = 0;
		s->jobs[j].last_result = result;
	}
	else
	{
		s->jobs[j].failures++;
		s->jobs[j].consecutive_failures++;
		strlcpy(s->jobs[j].last_error, error, OPSDEMO_ERROR_LEN);
	}
	SpinLockRelease(&s->mutex);

	record_history(j, scheduled, started, duration_us, outcome == TICK_OK,
				   result, error);
	return outcome;
}

/* ---- main loop ---------------------------------------------------------- */

static void
worker_detach(int code, Datum arg)
{
	OpsdemoShared *s = opsdemo_shared();

	SpinLockAcquire(&s->mutex);
	if (s->worker_pid == MyProcPid)
	{
		s->worker_pid = 0;
		s->worker_latch = NULL;
		if (s->connecting)
			s->connect_failed = true;
		s->connecting = false;
	}
	SpinLockRelease(&s->mutex);
}

static bool
stop_requested(void)
{
	OpsdemoShared *s = opsdemo_shared();
	bool		stop;

	SpinLockAcquire(&s->mutex);
	stop = s->stop_requested;
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
		bool		database_exists;
		bool		role_exists;

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
		database_exists = OidIsValid(get_database_oid(opsdemo_database, true));
		role_exists = opsdemo_role[0] == '\0' ||
			OidIsValid(get_role_oid(opsdemo_role, true));
		CommitTransactionCommand();

		if (database_exists && role_exists)
		{
			OpsdemoShared *s = opsdemo_shared();

			SpinLockAcquire(&s->mutex);
			s->connect_failed = false;
			SpinLockRelease(&s->mutex);
			ereport(LOG,
					(errmsg("pg_opsdemo scheduler restarts to connect to database \"%s\"",
							opsdemo_database)));
			proc_exit(1);
		}
		if (!database_exists)
			set_state(LOG, "waiting: database \"%s\" does not exist",
					  opsdemo_database);
		else
			set_state(LOG, "waiting: role \"%s\" does not exist", opsdemo_role);
		sleep_ms(IDLE_RECHECK_MS);
	}
}

/* Next due time of job j after a run that had "outcome". */
static void
advance_after_run(int j, TimestampTz scheduled, TickOutcome outcome)
{
	JobSchedule *js = &schedule[j];
	OpsdemoShared *s = opsdemo_shared();

	js->next_due = slot_after(scheduled, js->interval_ms);
	if (outcome == TICK_FAILED)
	{
		int64		failures;
		int64		delay_ms;

		SpinLockAcquire(&s->mutex);
		failures = s->jobs[j].consecutive_failures;
		SpinLockRelease(&s->mutex);

		/*
		 * 1, 2, 4, ... intervals after the failed slot, capped.  A pg_cron
		 * run (opsdemo_cron_tick) may have reset the shared counter since.
		 */
		delay_ms = js->interval_ms << Min(Max(failures, 1) - 1, 20);
		delay_ms = Min(delay_ms, Max(BACKOFF_MAX_MS, js->interval_ms));
		js->retry_after = scheduled + delay_ms * 1000;
	}
	else
		js->retry_after = 0;
	publish_schedule(j);
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
	if (s->stop_requested || (s->worker_pid != 0 && s->worker_pid != MyProcPid))
	{
		pid_t		other = s->worker_pid;

		SpinLockRelease(&s->mutex);
		if (other != 0)
			ereport(LOG,
					(errmsg("pg_opsdemo scheduler not started: another one is running (PID %d)",
							(int) other)));

		/* exit code 0: the postmaster does not start us again */
		proc_exit(0);
	}
	s->worker_pid = MyProcPid;
	s->worker_latch = MyLatch;
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
		TimestampTz wake;
		int			due = -1;

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
		for (int j = 0; j < OPSDEMO_NJOBS; j++)
			refresh_schedule(j, now);

		if (opsdemo_scheduler != OPSDEMO_SCHEDULER_WORKER)
		{
			set_state(LOG, "idle: opsdemo.scheduler is \"%s\"",
					  opsdemo_scheduler_name(opsdemo_scheduler));
			idle_schedule(now);
			sleep_ms(IDLE_RECHECK_MS);
			continue;
		}
		if (RecoveryInProgress())
		{
			set_state(LOG, "idle: hot standby, waiting for promotion");
			idle_schedule(now);
			sleep_ms(IDLE_RECHECK_MS);
			continue;
		}

		/* the job due first; the insert job first on a tie */
		for (int j = 0; j < OPSDEMO_NJOBS; j++)
			if (due < 0 || schedule[j].next_due < schedule[due].next_due)
				due = j;

		if (schedule[due].next_due <= now)
		{
			JobSchedule *js = &schedule[due];
			int64		iv_us = js->interval_ms * 1000;
			TimestampTz scheduled = js->next_due;

			if (now - scheduled > iv_us / 2)
			{
				/*
				 * Too late for this slot: skip it and every slot up to now,
				 * except the latest one if it is itself still on time.
				 */
				TimestampTz last = slot_after(now, js->interval_ms) - iv_us;

				js->next_due = (now - last <= iv_us / 2) ? last : last + iv_us;
				count_skipped(due, (js->next_due - scheduled) / iv_us);
				publish_schedule(due);
				continue;
			}
			if (scheduled < js->retry_after)
			{
				/* backing off after failures */
				count_skipped(due, 1);
				js->next_due = slot_after(scheduled, js->interval_ms);
				publish_schedule(due);
				continue;
			}

			advance_after_run(due, scheduled, run_tick(due, scheduled));
			continue;
		}

		wake = schedule[due].next_due;
		sleep_ms((long) ((wake - now + 999) / 1000));
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

	SpinLockAcquire(&s->mutex);
	running = s->worker_pid != 0;
	if (!running)
		s->stop_requested = false;
	SpinLockRelease(&s->mutex);
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
 * false if none was running.  The stop lasts until opsdemo_worker_start()
 * or a server restart; opsdemo.scheduler = off is the permanent switch.
 */
Datum
opsdemo_worker_stop(PG_FUNCTION_ARGS)
{
	OpsdemoShared *s = opsdemo_shared();
	pid_t		pid;
	Latch	   *latch;

	SpinLockAcquire(&s->mutex);
	s->stop_requested = true;
	pid = s->worker_pid;
	latch = s->worker_latch;
	SpinLockRelease(&s->mutex);

	if (pid == 0)
		PG_RETURN_BOOL(false);
	if (latch != NULL)
		SetLatch(latch);

	for (;;)
	{
		bool		gone;

		SpinLockAcquire(&s->mutex);
		gone = s->worker_pid != pid;
		SpinLockRelease(&s->mutex);
		if (gone)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	PG_RETURN_BOOL(true);
}
