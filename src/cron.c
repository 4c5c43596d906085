/*-------------------------------------------------------------------------
 *
 * cron.c
 *	  pg_cron mode: the insert and update jobs as pg_cron jobs.
 *
 * Sub-minute schedules ('5 seconds') exist from pg_cron 1.5 on; older
 * versions (Debian bookworm ships 1.4.2) only have minute-granular cron
 * expressions, so there we refuse and point at the built-in worker instead
 * of registering a job that runs once a minute.
 *
 * The jobs call opsdemo_cron_tick(job), which runs the same job bodies and
 * keeps opsdemo_status() and opsdemo_job_history up to date, so both
 * schedulers are observed the same way.  pg_cron has its own timing (an
 * interval since the previous start, not wall-clock slots), so the update
 * job takes its parity from now().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "opsdemo.h"

PG_FUNCTION_INFO_V1(opsdemo_schedule_cron);
PG_FUNCTION_INFO_V1(opsdemo_unschedule_cron);
PG_FUNCTION_INFO_V1(opsdemo_cron_tick);

#define CRON_JOB_INSERT		"opsdemo_insert_tick"
#define CRON_JOB_UPDATE		"opsdemo_update_tick"

/* The installed pg_cron version, or NULL if it is not in this database. */
static char *
pg_cron_version(void)
{
	char	   *version = NULL;
	int			ret;

	if (!OidIsValid(get_extension_oid("pg_cron", true)))
		return NULL;

	ret = SPI_execute("SELECT extversion FROM pg_catalog.pg_extension "
					  "WHERE extname OPERATOR(pg_catalog.=) 'pg_cron'", true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pg_cron version lookup failed: %s",
			 SPI_result_code_string(ret));
	if (SPI_processed == 1)
		version = SPI_getvalue(SPI_tuptable->vals[0],
							   SPI_tuptable->tupdesc, 1);
	return version;
}

/* Does "version" (e.g. "1.4-1", "1.6") support '<n> seconds' schedules? */
static bool
supports_seconds(const char *version)
{
	int			major = 0;
	int			minor = 0;

	if (sscanf(version, "%d.%d", &major, &minor) < 1)
		return false;
	return major > 1 || (major == 1 && minor >= 5);
}

static const char *
seconds_schedule(const char *guc, int interval_ms)
{
	if (interval_ms % 1000 != 0 || interval_ms / 1000 > 59)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s = %d ms cannot be a pg_cron schedule", guc, interval_ms),
				 errdetail("pg_cron runs jobs every 1 to 59 whole seconds."),
				 errhint("Use the built-in scheduler (opsdemo.scheduler = 'worker') for other intervals.")));
	return psprintf("%d seconds", interval_ms / 1000);
}

static void
schedule_job(const char *name, const char *schedule, const char *command)
{
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		args[3];
	int			ret;

	args[0] = CStringGetTextDatum(name);
	args[1] = CStringGetTextDatum(schedule);
	args[2] = CStringGetTextDatum(command);
	ret = SPI_execute_with_args("SELECT cron.schedule($1, $2, $3)",
								3, argtypes, args, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "cron.schedule failed: %s", SPI_result_code_string(ret));
}

/*
 * opsdemo_schedule_cron() returns integer
 *
 * Registers (or updates) the two jobs in pg_cron and returns 2.
 */
Datum
opsdemo_schedule_cron(PG_FUNCTION_ARGS)
{
	char	   *version;
	const char *nspname;
	int			guc_level = opsdemo_pin_search_path();

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	version = pg_cron_version();
	if (version == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"pg_cron\" is not installed in this database"),
				 errhint("Create pg_cron 1.5 or later here (cron.database_name), "
						 "or use the built-in scheduler: opsdemo.scheduler = 'worker'.")));
	if (!supports_seconds(version))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("pg_cron %s cannot run jobs every few seconds", version),
				 errdetail("Schedules like '5 seconds' need pg_cron 1.5 or later."),
				 errhint("Use the built-in scheduler instead: set opsdemo.scheduler = 'worker' "
						 "with pg_opsdemo in shared_preload_libraries, or call opsdemo_worker_start().")));
	if (opsdemo_scheduler != OPSDEMO_SCHEDULER_PG_CRON)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("opsdemo.scheduler is \"%s\", not \"pg_cron\"",
						opsdemo_scheduler_name(opsdemo_scheduler)),
				 errdetail("Only one scheduler may run the jobs at a time."),
				 errhint("ALTER SYSTEM SET opsdemo.scheduler = 'pg_cron'; SELECT pg_reload_conf(); "
						 "then call this function again.")));

	nspname = quote_identifier(get_namespace_name(opsdemo_schema_oid()));
	schedule_job(CRON_JOB_INSERT,
				 seconds_schedule("opsdemo.insert_interval", opsdemo_insert_interval),
				 psprintf("SELECT %s.opsdemo_cron_tick('insert')", nspname));
	schedule_job(CRON_JOB_UPDATE,
				 seconds_schedule("opsdemo.update_interval", opsdemo_update_interval),
				 psprintf("SELECT %s.opsdemo_cron_tick('update')", nspname));

	SPI_finish();
	AtEOXact_GUC(true, guc_level);
	PG_RETURN_INT32(2);
}

/*
 * opsdemo_unschedule_cron() returns integer
 *
 * Removes the jobs opsdemo_schedule_cron() registered; returns how many
 * there were (0 if pg_cron is not installed here).
 */
Datum
opsdemo_unschedule_cron(PG_FUNCTION_ARGS)
{
	int			removed = 0;
	int			guc_level = opsdemo_pin_search_path();
	int			ret;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (pg_cron_version() != NULL)
	{
		bool		isnull;

		ret = SPI_execute("SELECT pg_catalog.count(cron.unschedule(jobid))::pg_catalog.int4 "
						  "FROM cron.job WHERE jobname OPERATOR(pg_catalog.=) ANY "
						  "('{" CRON_JOB_INSERT "," CRON_JOB_UPDATE "}'::pg_catalog.text[])",
						  false, 1);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "cron.unschedule failed: %s", SPI_result_code_string(ret));
		removed = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 1, &isnull));
	}

	SPI_finish();
	AtEOXact_GUC(true, guc_level);
	PG_RETURN_INT32(removed);
}

/*
 * opsdemo_cron_tick(job text) returns bigint
 *
 * What the pg_cron jobs run: the insert job body (opsdemo.insert_batch_size
 * rows dated at the statement's start; returns the last id) or the update
 * job body (parity of the transaction's start; returns rows flipped),
 * recorded in opsdemo_job_history and counted in opsdemo_status() when
 * the transaction ends, with the outcome it had (see run_record.c).  A
 * failed run's history row rolls back with it, so pg_cron's
 * job_run_details and opsdemo_status() are where its message stays.
 */
Datum
opsdemo_cron_tick(PG_FUNCTION_ARGS)
{
	char	   *job = text_to_cstring(PG_GETARG_TEXT_PP(0));
	MemoryContext oldcontext = CurrentMemoryContext;
	OpsdemoRun	run = {0};

	if (strcmp(job, "insert") == 0)
		run.job = OPSDEMO_JOB_INSERT;
	else if (strcmp(job, "update") == 0)
		run.job = OPSDEMO_JOB_UPDATE;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown job \"%s\"", job),
				 errhint("The jobs are \"insert\" and \"update\".")));

	run.scheduler = "pg_cron";
	run.started = GetCurrentTimestamp();
	run.ok = true;

	PG_TRY();
	{
		if (run.job == OPSDEMO_JOB_INSERT)
		{
			run.scheduled = GetCurrentStatementStartTimestamp();
			run.result = opsdemo_insert_rows(run.scheduled,
											 opsdemo_insert_batch_size);
		}
		else
		{
			run.scheduled = GetCurrentTransactionStartTimestamp();
			run.result = opsdemo_update_rows(run.scheduled);
		}
		run.duration_us = GetCurrentTimestamp() - run.started;
		opsdemo_run_record_at_commit(&run);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		run.duration_us = GetCurrentTimestamp() - run.started;
		opsdemo_run_set_error(&run, edata);
		run.result = 0;
		opsdemo_run_record_at_commit(&run);
		PG_RE_THROW();
	}
	PG_END_TRY();

	PG_RETURN_INT64(run.result);
}
