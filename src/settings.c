/*-------------------------------------------------------------------------
 *
 * settings.c
 *	  The scheduler's settings (opsdemo.*): what runs the jobs, where, as
 *	  whom, how often and how much at a time.
 *
 * All of them except opsdemo.update_batch_size are server-wide (reload):
 * the worker reads them between ticks, and a session must not be able to
 * change how the server's jobs run.  The batch size is superuser-settable
 * per session too, because opsdemo_update_tick() uses it in the caller's
 * session.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "utils/guc.h"

#include "opsdemo.h"

int			opsdemo_scheduler = OPSDEMO_SCHEDULER_WORKER;
int			opsdemo_insert_interval = 5000;
int			opsdemo_update_interval = 3000;
char	   *opsdemo_database = NULL;
char	   *opsdemo_role = NULL;
int			opsdemo_insert_batch_size = 1;
int			opsdemo_update_batch_size = 10000;
int			opsdemo_history_retention = 86400;
bool		opsdemo_force_on_subscriber = false;

static const struct config_enum_entry scheduler_options[] = {
	{"worker", OPSDEMO_SCHEDULER_WORKER, false},
	{"pg_cron", OPSDEMO_SCHEDULER_PG_CRON, false},
	{"off", OPSDEMO_SCHEDULER_OFF, false},
	{NULL, 0, false}
};

const char *
opsdemo_scheduler_name(int scheduler)
{
	for (const struct config_enum_entry *e = scheduler_options; e->name; e++)
		if (e->val == scheduler)
			return e->name;
	return "unknown";
}

void
opsdemo_settings_define(void)
{
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
	DefineCustomIntVariable("opsdemo.update_batch_size",
							"Rows the built-in worker's update run flips per batch.",
							"The worker commits each batch and stops within the tick's time budget; "
							"opsdemo_update_tick() and pg_cron mode flip in one statement.",
							&opsdemo_update_batch_size,
							10000, 1, 1000000,
							PGC_SUSET, 0,
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
}
