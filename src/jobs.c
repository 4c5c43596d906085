/*-------------------------------------------------------------------------
 *
 * jobs.c
 *	  The bodies of the two recurring jobs.  Every scheduler (the built-in
 *	  worker, pg_cron, a user's own loop) calls exactly these functions.
 *
 *	  opsdemo_insert_tick(): one new operation, status 0, dated now.
 *	  opsdemo_update_tick(at): status 0 -> 1 for the ids whose parity
 *	  matches the parity of the seconds of "at": one statement, retried
 *	  after a serialization failure or a deadlock.  The built-in worker
 *	  flips in batches of at most opsdemo.update_batch_size rows instead,
 *	  committing each (opsdemo_flip_batch).
 *
 *	  Every statement runs with search_path pinned to pg_catalog, pg_temp
 *	  and names its operators and functions by schema, so nothing planted
 *	  on the caller's search_path is ever called.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "opsdemo.h"

PG_FUNCTION_INFO_V1(opsdemo_insert_tick);
PG_FUNCTION_INFO_V1(opsdemo_update_tick);

/*
 * Prepared statements survive across calls; they are rebuilt if the
 * extension is reinstalled into another schema.
 */
typedef struct TickPlan
{
	Oid			nspid;
	SPIPlanPtr	plan;
} TickPlan;

static TickPlan insert_plan;
static TickPlan flip_all_plan;
static TickPlan flip_batch_plan;

/*
 * How often opsdemo_update_tick()'s statement may fail in a row with a
 * serialization failure or a deadlock before the error is passed on.
 */
#define UPDATE_MAX_RETRIES	100

static OpsdemoRng tick_rng;
static bool tick_rng_seeded = false;

static SPIPlanPtr
tick_plan(TickPlan *cache, Oid nspid, const char *fmt, int nargs, Oid *argtypes)
{
	StringInfoData sql;
	SPIPlanPtr	plan;

	if (cache->plan != NULL && cache->nspid == nspid)
		return cache->plan;

	if (cache->plan != NULL)
	{
		SPI_freeplan(cache->plan);
		cache->plan = NULL;
	}

	initStringInfo(&sql);
	appendStringInfo(&sql, fmt, quote_identifier(get_namespace_name(nspid)));
	/*
	 * A generic plan from the first call on: the plan cache would otherwise
	 * plan the first five calls of each session anew (a pg_cron job runs in
	 * a new session every time), and the parameters never change the best
	 * plan: the parity's share of pending rows is the same for both, and
	 * the row count of a batch only caps an index scan.
	 */
	plan = SPI_prepare_cursor(sql.data, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s",
			 sql.data, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	cache->plan = plan;
	cache->nspid = nspid;
	pfree(sql.data);
	return plan;
}

/*
 * Runs one of the jobs' own statements with mv_sum counting armed
 * (mv_sum_now.c): the rows it writes are counted as they are written,
 * without a trigger event each.
 */
static int
execute_counted(SPIPlanPtr plan, Datum *args, long count)
{
	int			previous = opsdemo_mv_sum_now_begin();
	volatile int ret = 0;

	PG_TRY();
	{
		ret = SPI_execute_plan(plan, args, NULL, false, count);
	}
	PG_FINALLY();
	{
		opsdemo_mv_sum_now_end(previous);
	}
	PG_END_TRY();
	return ret;
}

/*
 * Keep the month of "at" and the next month partitioned, so the insert job
 * never depends on the default partition.  The common case is two syscache
 * lookups.
 */
static void
ensure_current_partitions(Oid nspid, Oid relid, TimestampTz at)
{
	Interval	month = {0};
	TimestampTz next;

	month.month = 1;
	next = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
												   TimestampTzGetDatum(at),
												   IntervalPGetDatum(&month)));
	if (opsdemo_partition_exists_for(nspid, at) &&
		opsdemo_partition_exists_for(nspid, next))
		return;

	opsdemo_check_insert_privilege(relid);
	opsdemo_partitions_ensure_range(nspid, relid, at, next + 1);
}

/*
 * Inserts "nrows" operations with status 0 dated "at" and returns the id of
 * the last one.  Shared by the SQL function and the built-in worker.
 */
int64
opsdemo_insert_rows(TimestampTz at, int nrows)
{
	Oid			nspid = opsdemo_schema_oid();
	Oid			relid = opsdemo_t1_relid(nspid);
	Oid			argtypes[4] = {TIMESTAMPTZOID, NUMERICOID, UUIDOID, JSONBOID};
	SPIPlanPtr	plan;
	int			guc_level;
	int64		id = 0;

	ensure_current_partitions(nspid, relid, at);

	if (!tick_rng_seeded)
	{
		uint64		seed;

		if (!pg_strong_random(&seed, sizeof(seed)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate a random seed")));
		opsdemo_rng_seed(&tick_rng, seed);
		tick_rng_seeded = true;
	}

	guc_level = opsdemo_pin_search_path();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	plan = tick_plan(&insert_plan, nspid,
					 "INSERT INTO %s.t1 (date, amount, status, operation_guid, message) "
					 "VALUES ($1, $2, 0, $3, $4) RETURNING id",
					 4, argtypes);
	for (int i = 0; i < nrows; i++)
	{
		OpsdemoOperation op;
		pg_uuid_t	guid;
		Datum		args[4];
		bool		isnull;
		int			ret;

		opsdemo_operation_draw(&tick_rng, 1000, &op);
		/* the operation's content may be pseudo-random, its GUID not */
		opsdemo_guid_make_strong(at, &guid);
		args[0] = TimestampTzGetDatum(at);
		args[1] = opsdemo_operation_amount(&op);
		args[2] = UUIDPGetDatum(&guid);
		args[3] = opsdemo_operation_message(&op);

		ret = execute_counted(plan, args, 1);
		if (ret != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
			elog(ERROR, "insert tick failed: %s", SPI_result_code_string(ret));
		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1, &isnull));
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_finish();
	AtEOXact_GUC(true, guc_level);

	return id;
}

/*
 * opsdemo_insert_tick() returns bigint
 *
 * Inserts one operation with status 0 dated at the statement's start time
 * and returns its id.
 */
Datum
opsdemo_insert_tick(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(opsdemo_insert_rows(GetCurrentStatementStartTimestamp(), 1));
}

/*
 * The parity a tick at "at" flips: that of the seconds field of "at".
 * Seconds since 2000-01-01 00:00:00 UTC, a whole minute boundary, have the
 * same parity (time zone offsets are whole minutes).  Floor division keeps
 * times before 2000 right.
 */
int32
opsdemo_tick_parity(TimestampTz at)
{
	int64		whole_seconds;

	if (TIMESTAMP_NOT_FINITE(at))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("tick time must be a finite timestamp")));

	whole_seconds = at / USECS_PER_SEC;
	if (at < 0 && at % USECS_PER_SEC != 0)
		whole_seconds--;
	return (int32) (whole_seconds & 1);
}

/*
 * Flips one batch: status 0 -> 1 for up to "limit" pending rows of
 * "parity", in one statement.  Sets *taken to the rows it locked (fewer
 * than "limit": no more pending rows of that parity that it may take) and
 * returns the rows it flipped.
 *
 * The batch is picked through the partial index on (id % 2) WHERE status
 * = 0 and locked FOR UPDATE SKIP LOCKED: rows another transaction holds
 * are left for a later batch instead of waited for.  Each row is
 * then found again by its primary key (id, date).  Sequential and bitmap
 * scans and the join methods that would need them are disabled for the
 * statement: every pending row is in that index and every row in its
 * partition's primary key, however stale the planner's statistics are,
 * and a plain index scan stops as soon as the batch is full.
 *
 * Only for transactions that commit each batch: within one transaction
 * the flipped rows' index entries stay (their deleting transaction is
 * still running), and every later batch would walk all of them again.
 *
 * A row moved to another partition by a transaction that committed after
 * this statement's snapshot fails the lock with 40001: the caller retries.
 */
int64
opsdemo_flip_batch(int32 parity, int limit, uint64 *taken)
{
	Oid			nspid = opsdemo_schema_oid();
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		args[2];
	SPIPlanPtr	plan;
	int			guc_level;
	int			ret;
	bool		isnull;
	int64		flipped;

	(void) opsdemo_t1_relid(nspid);

	guc_level = opsdemo_pin_search_path();
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_bitmapscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_hashjoin", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_mergejoin", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
#define FLIP_BATCH_SQL(lock) \
	"WITH batch AS MATERIALIZED (" \
	"SELECT id, date FROM %1$s.t1" \
	" WHERE status OPERATOR(pg_catalog.=) 0" \
	" AND (id OPERATOR(pg_catalog.%%) 2) OPERATOR(pg_catalog.=) $1" \
	" LIMIT $2 " lock "), " \
	"flipped AS (" \
	"UPDATE %1$s.t1 t SET status = 1 FROM batch b" \
	" WHERE t.id OPERATOR(pg_catalog.=) b.id" \
	" AND t.date OPERATOR(pg_catalog.=) b.date" \
	" AND t.status OPERATOR(pg_catalog.=) 0" \
	" RETURNING 1) " \
	"SELECT (SELECT pg_catalog.count(*) FROM batch)," \
	" (SELECT pg_catalog.count(*) FROM flipped)"
	plan = tick_plan(&flip_batch_plan, nspid,
					 FLIP_BATCH_SQL("FOR UPDATE SKIP LOCKED"), 2, argtypes);
#undef FLIP_BATCH_SQL

	args[0] = Int32GetDatum(parity);
	args[1] = Int32GetDatum(limit);
	ret = execute_counted(plan, args, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "update batch failed: %s", SPI_result_code_string(ret));
	*taken = (uint64) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												  SPI_tuptable->tupdesc, 1, &isnull));
	flipped = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 2, &isnull));
	SPI_finish();

	AtEOXact_GUC(true, guc_level);
	return flipped;
}

/* May a failed batch simply be tried again? */
bool
opsdemo_batch_retryable(int sqlerrcode)
{
	/*
	 * Under REPEATABLE READ and SERIALIZABLE the retry would see the same
	 * snapshot and fail the same way: the caller's transaction must retry.
	 */
	if (IsolationUsesXactSnapshot())
		return false;
	return sqlerrcode == ERRCODE_T_R_SERIALIZATION_FAILURE ||
		sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED;
}

/*
 * One UPDATE of every pending row of "parity", as the caller's snapshot
 * sees them, reading only pending rows through the partial index (a
 * sequential scan is disabled for the statement: every pending row is in
 * that index, however stale the planner's statistics are).
 */
static int64
flip_all(int32 parity)
{
	Oid			nspid = opsdemo_schema_oid();
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1];
	SPIPlanPtr	plan;
	int			guc_level;
	int			ret;
	uint64		flipped;

	(void) opsdemo_t1_relid(nspid);

	guc_level = opsdemo_pin_search_path();
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	plan = tick_plan(&flip_all_plan, nspid,
					 "UPDATE %s.t1 SET status = 1"
					 " WHERE status OPERATOR(pg_catalog.=) 0"
					 " AND (id OPERATOR(pg_catalog.%%) 2) OPERATOR(pg_catalog.=) $1",
					 1, argtypes);
	args[0] = Int32GetDatum(parity);
	ret = execute_counted(plan, args, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "update tick failed: %s", SPI_result_code_string(ret));
	flipped = SPI_processed;
	SPI_finish();

	AtEOXact_GUC(true, guc_level);
	return (int64) flipped;
}

/*
 * Flips every pending row of the parity of "at" and returns how many: the
 * body of opsdemo_update_tick() and of the pg_cron update job.  One
 * statement in a subtransaction; when it fails with a serialization
 * failure (a row it waited for was moved to another month) or a deadlock,
 * it is rolled back alone and run again with a new snapshot.  The
 * caller's statement_timeout bounds the whole.
 *
 * Not in batches: a caller's single transaction cannot let go of the rows
 * flipped so far, so batches would only walk the same index entries again
 * and again (the built-in worker commits its batches, see
 * opsdemo_flip_batch).
 */
int64
opsdemo_update_rows(TimestampTz at)
{
	int32		parity = opsdemo_tick_parity(at);
	int			failures_in_a_row = 0;

	for (;;)
	{
		MemoryContext oldcontext = CurrentMemoryContext;
		ResourceOwner oldowner = CurrentResourceOwner;
		int64		flipped = 0;
		bool		failed = false;

		CHECK_FOR_INTERRUPTS();
		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(oldcontext);
		PG_TRY();
		{
			flipped = flip_all(parity);
			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(oldcontext);
			CurrentResourceOwner = oldowner;
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(oldcontext);
			edata = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(oldcontext);
			CurrentResourceOwner = oldowner;

			if (!opsdemo_batch_retryable(edata->sqlerrcode) ||
				++failures_in_a_row >= UPDATE_MAX_RETRIES)
				ReThrowError(edata);
			FreeErrorData(edata);
			failed = true;
		}
		PG_END_TRY();

		if (!failed)
			return flipped;
	}
}

/*
 * opsdemo_update_tick(at timestamptz default now()) returns bigint
 */
Datum
opsdemo_update_tick(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tick time must not be NULL")));
	PG_RETURN_INT64(opsdemo_update_rows(PG_GETARG_TIMESTAMPTZ(0)));
}
