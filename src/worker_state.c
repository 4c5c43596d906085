/*-------------------------------------------------------------------------
 *
 * worker_state.c
 *	  The scheduler's state in shared memory and opsdemo_status().
 *
 * The state lives in the main shared memory segment.  With pg_opsdemo in
 * shared_preload_libraries the space is requested at startup; without it
 * the struct is carved out of the segment's spare space by the first
 * backend that needs it (as contrib/pg_prewarm's autoprewarm does), which
 * is what lets opsdemo_worker_start() work on a server that never
 * preloaded the library.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "opsdemo.h"

/* 15.0 named it SetSingleFuncCall; 15.1 renamed it. */
#if PG_VERSION_NUM < 150001
#define InitMaterializedSRF(fcinfo, flags) SetSingleFuncCall(fcinfo, flags)
#endif

PG_FUNCTION_INFO_V1(opsdemo_status);

const char *const opsdemo_job_names[OPSDEMO_NJOBS] = {"insert", "update"};

static OpsdemoShared *shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;

static void
opsdemo_shmem_request_hook(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(OpsdemoShared)));
}

/* Called from _PG_init while shared_preload_libraries is processed. */
void
opsdemo_shmem_request(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = opsdemo_shmem_request_hook;
}

OpsdemoShared *
opsdemo_shared(void)
{
	bool		found;

	if (shared != NULL)
		return shared;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("pg_opsdemo scheduler", sizeof(OpsdemoShared),
							 &found);
	if (!found)
	{
		memset(shared, 0, sizeof(OpsdemoShared));
		SpinLockInit(&shared->mutex);
		strlcpy(shared->state, "not started", OPSDEMO_STATE_LEN);
	}
	LWLockRelease(AddinShmemInitLock);
	return shared;
}

void
opsdemo_set_state(const char *fmt,...)
{
	OpsdemoShared *s = opsdemo_shared();
	char		buf[OPSDEMO_STATE_LEN];
	va_list		args;

	va_start(args, fmt);
	vsnprintf(buf, sizeof(buf), fmt, args);
	va_end(args);

	SpinLockAcquire(&s->mutex);
	memcpy(s->state, buf, OPSDEMO_STATE_LEN);
	SpinLockRelease(&s->mutex);
}

static Datum
interval_from_usecs(int64 usecs)
{
	Interval   *iv = palloc0(sizeof(Interval));

	iv->time = usecs;
	return IntervalPGetDatum(iv);
}

/*
 * opsdemo_status() returns setof record
 *
 * One row per job, read under the spinlock in one go so that the counters
 * of a row are consistent with each other.
 */
Datum
opsdemo_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	OpsdemoShared *s = opsdemo_shared();
	OpsdemoShared copy;
	int			scheduler = opsdemo_scheduler;

	InitMaterializedSRF(fcinfo, 0);

	SpinLockAcquire(&s->mutex);
	memcpy(&copy, s, sizeof(OpsdemoShared));
	SpinLockRelease(&s->mutex);

	for (int j = 0; j < OPSDEMO_NJOBS; j++)
	{
		OpsdemoJobState *job = &copy.jobs[j];
		Datum		values[13];
		bool		nulls[13] = {0};
		int64		interval_ms;

		/* Before the worker first ran, show what it would use. */
		interval_ms = job->interval_ms > 0 ? job->interval_ms :
			(j == OPSDEMO_JOB_INSERT ? opsdemo_insert_interval :
			 opsdemo_update_interval);

		values[0] = CStringGetTextDatum(opsdemo_job_names[j]);
		values[1] = CStringGetTextDatum(opsdemo_scheduler_name(scheduler));
		values[2] = CStringGetTextDatum(copy.state);
		if (copy.worker_pid != 0)
			values[3] = Int32GetDatum(copy.worker_pid);
		else
			nulls[3] = true;
		values[4] = interval_from_usecs(interval_ms * 1000);
		values[5] = Int64GetDatum(job->runs);
		values[6] = Int64GetDatum(job->failures);
		values[7] = Int64GetDatum(job->skipped);
		if (job->last_start != 0)
		{
			values[8] = TimestampTzGetDatum(job->last_start);
			values[9] = interval_from_usecs(job->last_duration_us);
		}
		else
			nulls[8] = nulls[9] = true;
		if (job->next_due != 0 && copy.worker_pid != 0 &&
			scheduler == OPSDEMO_SCHEDULER_WORKER)
			values[10] = TimestampTzGetDatum(job->next_due);
		else
			nulls[10] = true;
		if (job->last_error[0] != '\0')
			values[11] = CStringGetTextDatum(job->last_error);
		else
			nulls[11] = true;
		values[12] = Int64GetDatum(job->consecutive_failures);

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}

	return (Datum) 0;
}
