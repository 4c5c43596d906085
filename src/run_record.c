/*-------------------------------------------------------------------------
 *
 * run_record.c
 *	  Recording a run of a job, for both schedulers: the counters in shared
 *	  memory that opsdemo_status() shows, and the row in
 *	  opsdemo_job_history.
 *
 * The built-in worker records a run after the run's transactions have
 * ended, so it knows the outcome.  A pg_cron run (opsdemo_cron_tick) is
 * still inside its transaction when the job body returns, and that
 * transaction can still fail: mv_sum is written at pre-commit, deferred
 * triggers fire at commit, and the caller may roll back.  So its history
 * row is written in that transaction (and vanishes with it), and its
 * counters are updated only when the transaction (or the subtransaction
 * it ran in) ends, with the outcome it really had.
 *
 * The history row is written as the table's owner: the role that runs
 * the jobs needs no rights on opsdemo_job_history.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "opsdemo.h"

#define HISTORY_TABLE_NAME	"opsdemo_job_history"

/* A pg_cron run whose transaction has not ended yet. */
typedef struct PendingRun
{
	OpsdemoRun	run;
	SubTransactionId subid;		/* innermost open subtransaction it ran in */
} PendingRun;

/* In TopTransactionContext; NIL outside a transaction with pg_cron runs. */
static List *pending_runs = NIL;

/* The first error reported while runs were pending: why they failed. */
static char pending_error[OPSDEMO_ERROR_LEN];

static bool callbacks_registered = false;
static emit_log_hook_type prev_emit_log_hook = NULL;

void
opsdemo_run_set_error(OpsdemoRun *run, const ErrorData *edata)
{
	run->ok = false;
	snprintf(run->error, sizeof(run->error), "%s (SQLSTATE %s)",
			 edata->message ? edata->message : "unknown error",
			 unpack_sql_state(edata->sqlerrcode));
}

/* Adds the run to opsdemo_status()'s counters. */
void
opsdemo_run_count(const OpsdemoRun *run)
{
	OpsdemoShared *s = opsdemo_shared();
	OpsdemoJobState *job = &s->jobs[run->job];

	SpinLockAcquire(&s->mutex);
	job->runs++;
	job->last_start = run->started;
	job->last_duration_us = run->duration_us;
	if (run->ok)
	{
		job->consecutive_failures = 0;
		job->last_result = run->result;
	}
	else
	{
		job->failures++;
		job->consecutive_failures++;
		strlcpy(job->last_error, run->error, OPSDEMO_ERROR_LEN);
	}
	SpinLockRelease(&s->mutex);
}

/*
 * Inserts the run's row into opsdemo_job_history, in the current
 * transaction; with "purge", also deletes the rows older than
 * opsdemo.history_retention.
 */
void
opsdemo_run_write_history(const OpsdemoRun *run, bool purge)
{
	Oid			nspid;
	Oid			history_relid;
	const char *nspname;
	Oid			argtypes[8] = {TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
	INTERVALOID, BOOLOID, INT8OID, TEXTOID};
	Datum		args[8];
	char		nulls[] = "        ";	/* one per argument; GCC 15+ wants room for the NUL */
	Interval   *duration;
	StringInfoData sql;
	OpsdemoSavedUser saved_user;
	int			ret;

	if (opsdemo_history_retention == 0)
		return;

	nspid = opsdemo_schema_oid();
	history_relid = opsdemo_table_relid(nspid, HISTORY_TABLE_NAME);
	nspname = quote_identifier(get_namespace_name(nspid));

	duration = palloc0(sizeof(Interval));
	duration->time = run->duration_us;
	args[0] = CStringGetTextDatum(opsdemo_job_names[run->job]);
	args[1] = CStringGetTextDatum(run->scheduler);
	args[2] = TimestampTzGetDatum(run->scheduled);
	args[3] = TimestampTzGetDatum(run->started);
	args[4] = IntervalPGetDatum(duration);
	args[5] = BoolGetDatum(run->ok);
	args[6] = Int64GetDatum(run->result);
	/* A failed run may still have committed batches: their rows count. */
	if (!run->ok && run->result == 0)
		nulls[6] = 'n';
	if (run->error[0] != '\0')
		args[7] = CStringGetTextDatum(run->error);
	else
		nulls[7] = 'n';

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "INSERT INTO %s." HISTORY_TABLE_NAME
					 " (job, scheduler, scheduled_at, started_at, duration, ok, result, error)"
					 " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
					 nspname);

	opsdemo_become_owner(history_relid, &saved_user);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_with_args(sql.data, 8, argtypes, args, nulls, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "history insert failed: %s", SPI_result_code_string(ret));

	if (purge)
	{
		Oid			purge_types[1] = {INT4OID};
		Datum		purge_args[1];

		/* The index on started_at makes this a short range scan. */
		resetStringInfo(&sql);
		appendStringInfo(&sql,
						 "DELETE FROM %s." HISTORY_TABLE_NAME
						 " WHERE started_at OPERATOR(pg_catalog.<) (pg_catalog.now()"
						 " OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1))",
						 nspname);
		purge_args[0] = Int32GetDatum(opsdemo_history_retention);
		ret = SPI_execute_with_args(sql.data, 1, purge_types, purge_args,
									NULL, false, 0);
		if (ret != SPI_OK_DELETE)
			elog(ERROR, "history purge failed: %s", SPI_result_code_string(ret));
	}
	SPI_finish();
	opsdemo_restore_user(&saved_user);
	pfree(sql.data);
}

/* ---- pg_cron runs: counted when their transaction ends ------------------ */

/*
 * Counts and forgets the pending runs of subtransaction only_subid (all of
 * them if InvalidSubTransactionId), as committed or as failed.
 */
static void
count_pending(bool committed, SubTransactionId only_subid)
{
	ListCell   *lc;
	List	   *keep = NIL;
	MemoryContext oldcontext = MemoryContextSwitchTo(TopTransactionContext);

	foreach(lc, pending_runs)
	{
		PendingRun *pending = (PendingRun *) lfirst(lc);

		if (only_subid != InvalidSubTransactionId &&
			pending->subid != only_subid)
		{
			keep = lappend(keep, pending);
			continue;
		}
		if (!committed && pending->run.ok)
		{
			/* The body succeeded, but its transaction did not. */
			pending->run.ok = false;
			strlcpy(pending->run.error,
					pending_error[0] != '\0' ? pending_error :
					"the transaction of the run was rolled back",
					sizeof(pending->run.error));
		}
		opsdemo_run_count(&pending->run);
	}
	pending_runs = keep;
	if (pending_runs == NIL)
		pending_error[0] = '\0';
	MemoryContextSwitchTo(oldcontext);
}

static void
run_xact_callback(XactEvent event, void *arg)
{
	if (pending_runs == NIL)
		return;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			count_pending(true, InvalidSubTransactionId);
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			count_pending(false, InvalidSubTransactionId);
			break;
		case XACT_EVENT_PREPARE:

			/*
			 * Whether a prepared transaction commits is decided in another
			 * session, which cannot see these runs: they stay uncounted.
			 */
			pending_runs = NIL;
			pending_error[0] = '\0';
			break;
		default:
			break;
	}
}

static void
run_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					 SubTransactionId parentSubid, void *arg)
{
	ListCell   *lc;

	if (pending_runs == NIL)
		return;

	switch (event)
	{
		case SUBXACT_EVENT_ABORT_SUB:
			/* Its work is gone whatever the outer transaction does. */
			count_pending(false, mySubid);
			break;
		case SUBXACT_EVENT_COMMIT_SUB:
			foreach(lc, pending_runs)
			{
				PendingRun *pending = (PendingRun *) lfirst(lc);

				if (pending->subid == mySubid)
					pending->subid = parentSubid;
			}
			break;
		default:
			break;
	}
}

/*
 * The server log is the only place that sees the error that aborts a
 * transaction after the job body returned (in COMMIT, say): keep its
 * message for the runs it fails.
 */
static void
run_emit_log_hook(ErrorData *edata)
{
	if (pending_runs != NIL && edata->elevel >= ERROR &&
		pending_error[0] == '\0')
		snprintf(pending_error, sizeof(pending_error), "%s (SQLSTATE %s)",
				 edata->message ? edata->message : "unknown error",
				 unpack_sql_state(edata->sqlerrcode));
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/*
 * Records a pg_cron run made in the current transaction: its history row
 * now (purging old rows too: pg_cron runs every job in a new session, so
 * there is no process that could remember when it last did), its counters
 * when the transaction or the subtransaction it ran in ends.  A run whose
 * body failed is passed with ok = false just before the error propagates;
 * its history row is not written, since it would roll back anyway.
 */
void
opsdemo_run_record_at_commit(const OpsdemoRun *run)
{
	MemoryContext oldcontext;
	PendingRun *pending;

	if (!callbacks_registered)
	{
		RegisterXactCallback(run_xact_callback, NULL);
		RegisterSubXactCallback(run_subxact_callback, NULL);
		prev_emit_log_hook = emit_log_hook;
		emit_log_hook = run_emit_log_hook;
		callbacks_registered = true;
	}

	if (run->ok)
		opsdemo_run_write_history(run, true);

	oldcontext = MemoryContextSwitchTo(TopTransactionContext);
	pending = palloc(sizeof(PendingRun));
	pending->run = *run;
	pending->subid = GetCurrentSubTransactionId();
	pending_runs = lappend(pending_runs, pending);
	MemoryContextSwitchTo(oldcontext);
}
