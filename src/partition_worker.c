/*-------------------------------------------------------------------------
 *
 * partition_worker.c
 *	  Creating partitions of t1 in a short transaction of their own.
 *
 * ATTACH PARTITION holds ACCESS EXCLUSIVE on t1's default partition until
 * its transaction ends, and every query on t1 that is not pruned to other
 * months reads the default partition.  Created in the transaction of a
 * bulk load, a month would block every reader of t1 until the load
 * commits.  Instead the caller starts a dynamic background worker in its
 * database, which creates the months and commits (as pg_partman's
 * maintenance does in its own transactions), and waits for it.  The
 * months then exist whatever becomes of the caller's transaction.
 *
 * The worker connects as the bootstrap superuser and creates the months as
 * t1's owner (opsdemo_partitions_create_here), exactly as the caller would
 * have; the caller has checked its INSERT privilege.  Parameters and the
 * outcome travel in a small dynamic shared memory segment; an error in the
 * worker is reported by the caller with the worker's SQLSTATE, message,
 * detail and hint.  The worker waits for each lock at most the given lock
 * timeout: the caller's own locks that the worker needs are excluded
 * beforehand (partitions.c), but a lock requested by a third session
 * behind the caller's could still close a cycle no deadlock check sees.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

#include "opsdemo.h"

PGDLLEXPORT void opsdemo_partition_worker_main(Datum main_arg);

#define RESULT_TEXT_LEN 1024

typedef struct PartitionJob
{
	/* set by the caller */
	Oid			database_id;
	Oid			nspid;
	Oid			t1_relid;
	TimestampTz from;
	TimestampTz to;
	int			max_partitions;
	int			lock_timeout_ms;

	/* set by the worker */
	bool		started;		/* attached: it may have changed something */
	bool		finished;		/* its transaction committed or aborted */
	int			created;
	int			sqlerrcode;		/* 0 if it committed */
	char		message[RESULT_TEXT_LEN];
	char		detail[RESULT_TEXT_LEN];
	char		hint[RESULT_TEXT_LEN];
	char		context[RESULT_TEXT_LEN];
} PartitionJob;

static void
copy_text(char *dst, const char *src)
{
	if (src == NULL)
		dst[0] = '\0';
	else
		strlcpy(dst, src, RESULT_TEXT_LEN);
}

/*
 * Create the months in a background worker and wait for it.  Returns false,
 * having changed nothing, if no worker could be started; raises the
 * worker's error if it failed.
 */
bool
opsdemo_partitions_create_in_worker(Oid nspid, Oid t1_relid,
									TimestampTz from, TimestampTz to,
									int max_partitions, int lock_timeout_ms,
									int *created)
{
	dsm_segment *seg;
	PartitionJob *job;
	PartitionJob result;
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	BgwHandleStatus status;

	seg = dsm_create(sizeof(PartitionJob), 0);
	job = dsm_segment_address(seg);
	memset(job, 0, sizeof(PartitionJob));
	job->database_id = MyDatabaseId;
	job->nspid = nspid;
	job->t1_relid = t1_relid;
	job->from = from;
	job->to = to;
	job->max_partitions = max_partitions;
	job->lock_timeout_ms = lock_timeout_ms;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "pg_opsdemo",
			sizeof(worker.bgw_library_name));
	strlcpy(worker.bgw_function_name, "opsdemo_partition_worker_main",
			sizeof(worker.bgw_function_name));
	snprintf(worker.bgw_name, sizeof(worker.bgw_name),
			 "pg_opsdemo partition creator for PID %d", MyProcPid);
	strlcpy(worker.bgw_type, "pg_opsdemo partition creator",
			sizeof(worker.bgw_type));
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		dsm_detach(seg);
		return false;
	}

	/*
	 * If we are cancelled or time out meanwhile, the worker must not go on
	 * waiting for locks (or hold them) on our behalf.
	 */
	PG_TRY();
	{
		status = WaitForBackgroundWorkerShutdown(handle);
	}
	PG_CATCH();
	{
		TerminateBackgroundWorker(handle);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (status == BGWH_POSTMASTER_DIED)
		ereport(FATAL,
				(errcode(ERRCODE_ADMIN_SHUTDOWN),
				 errmsg("postmaster exited while a background worker was creating partitions")));

	pg_read_barrier();
	memcpy(&result, job, sizeof(PartitionJob));
	dsm_detach(seg);

	if (!result.started)
		return false;			/* the postmaster could not start it */
	if (!result.finished)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("background worker creating partitions of \"%s\" exited without a result",
						OPSDEMO_TABLE_NAME),
				 errhint("More details may be available in the server log.")));
	if (result.sqlerrcode != 0)
	{
		char	   *context = psprintf("%s%sbackground worker creating partitions of \"%s\"",
									   result.context,
									   result.context[0] ? "\n" : "",
									   OPSDEMO_TABLE_NAME);

		ereport(ERROR,
				(errcode(result.sqlerrcode),
				 errmsg_internal("%s", result.message),
				 result.detail[0] ? errdetail_internal("%s", result.detail) : 0,
				 result.hint[0] ? errhint("%s", result.hint) : 0,
				 errcontext("%s", context)));
	}

	*created = result.created;
	return true;
}

void
opsdemo_partition_worker_main(Datum main_arg)
{
	dsm_segment *seg;
	PartitionJob *job;
	MemoryContext worker_cxt;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	CurrentResourceOwner = ResourceOwnerCreate(NULL, "pg_opsdemo partition creator");
	seg = dsm_attach(DatumGetUInt32(main_arg));
	if (seg == NULL)
		proc_exit(0);			/* the caller gave up before we started */
	dsm_pin_mapping(seg);
	job = dsm_segment_address(seg);
	job->started = true;
	pg_write_barrier();

	BackgroundWorkerInitializeConnectionByOid(job->database_id, InvalidOid, 0);

	SetConfigOption("lock_timeout", psprintf("%d", job->lock_timeout_ms),
					PGC_SUSET, PGC_S_OVERRIDE);

	worker_cxt = AllocSetContextCreate(TopMemoryContext,
									   "pg_opsdemo partition creator",
									   ALLOCSET_DEFAULT_SIZES);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "creating partitions of t1");
	PG_TRY();
	{
		Oid			nspid = opsdemo_schema_oid();
		Oid			t1_relid = opsdemo_t1_relid(nspid);
		int			created;

		/* What the caller checked privileges on must be what we change. */
		if (nspid != job->nspid || t1_relid != job->t1_relid)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("\"%s\" was replaced while its partitions were being created",
							OPSDEMO_TABLE_NAME)));

		created = opsdemo_partitions_create_here(nspid, t1_relid,
												 job->from, job->to,
												 job->max_partitions);
		PopActiveSnapshot();
		CommitTransactionCommand();
		job->created = created;
		job->sqlerrcode = 0;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(worker_cxt);
		edata = CopyErrorData();
		/* The server log keeps it too, with the worker's PID. */
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();

		job->sqlerrcode = edata->sqlerrcode ? edata->sqlerrcode :
			ERRCODE_INTERNAL_ERROR;
		copy_text(job->message, edata->message);
		copy_text(job->detail, edata->detail);
		copy_text(job->hint, edata->hint);
		copy_text(job->context, edata->context);
		RESUME_INTERRUPTS();
	}
	PG_END_TRY();

	pg_write_barrier();
	job->finished = true;
	pgstat_report_activity(STATE_IDLE, NULL);
	proc_exit(0);
}
