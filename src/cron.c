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
 * The jobs call the same SQL functions a user would; they run with pg_cron's
 * own timing (an interval since the previous start, not wall-clock slots),
 * so the update job takes its parity from now().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "opsdemo.h"

PG_FUNCTION_INFO_V1(opsdemo_schedule_cron);
PG_FUNCTION_INFO_V1(opsdemo_unschedule_cron);

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
					  "WHERE extname = 'pg_cron'", true, 1);
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
				 psprintf("SELECT %s.opsdemo_insert_tick()", nspname));
	schedule_job(CRON_JOB_UPDATE,
				 seconds_schedule("opsdemo.update_interval", opsdemo_update_interval),
				 psprintf("SELECT %s.opsdemo_update_tick()", nspname));

	SPI_finish();
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
	int			ret;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (pg_cron_version() != NULL)
	{
		bool		isnull;

		ret = SPI_execute("SELECT count(cron.unschedule(jobid))::int4 FROM cron.job "
						  "WHERE jobname IN ('" CRON_JOB_INSERT "', '" CRON_JOB_UPDATE "')",
						  false, 1);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "cron.unschedule failed: %s", SPI_result_code_string(ret));
		removed = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 1, &isnull));
	}

	SPI_finish();
	PG_RETURN_INT32(removed);
}
