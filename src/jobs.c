/*-------------------------------------------------------------------------
 *
 * jobs.c
 *	  The bodies of the two recurring jobs.  Every scheduler (the built-in
 *	  worker, pg_cron, a user's own loop) calls exactly these functions.
 *
 *	  opsdemo_insert_tick(): one new operation, status 0, dated now.
 *	  opsdemo_update_tick(at): status 0 -> 1 for the ids whose parity
 *	  matches the parity of the seconds of "at".
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
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
static TickPlan update_plan;

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
	plan = SPI_prepare(sql.data, nargs, argtypes);
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
		opsdemo_guid_make(at, opsdemo_rng_next(&tick_rng),
						  opsdemo_rng_next(&tick_rng), &guid);
		args[0] = TimestampTzGetDatum(at);
		args[1] = opsdemo_operation_amount(&op);
		args[2] = UUIDPGetDatum(&guid);
		args[3] = opsdemo_operation_message(&op);

		ret = SPI_execute_plan(plan, args, NULL, false, 1);
		if (ret != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
			elog(ERROR, "insert tick failed: %s", SPI_result_code_string(ret));
		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1, &isnull));
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_finish();

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
 * Flips status 0 -> 1 for even ids when the seconds of "at" are even, for
 * odd ids otherwise; returns the number of rows flipped.  Only pending rows
 * are read, through the partial index on (id % 2) WHERE status = 0: a
 * sequential scan is disabled for the statement because every pending row
 * is in that index, however stale the planner's statistics are.
 */
int64
opsdemo_update_rows(TimestampTz at)
{
	Oid			nspid;
	int64		whole_seconds;
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1];
	SPIPlanPtr	plan;
	int			save_nestlevel;
	int			ret;
	uint64		flipped;

	if (TIMESTAMP_NOT_FINITE(at))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("tick time must be a finite timestamp")));

	nspid = opsdemo_schema_oid();
	(void) opsdemo_t1_relid(nspid);

	/*
	 * Seconds since 2000-01-01 00:00:00 UTC, a whole minute boundary: their
	 * parity is the parity of the seconds field (time zone offsets are whole
	 * minutes).  Floor division keeps times before 2000 right.
	 */
	whole_seconds = at / USECS_PER_SEC;
	if (at < 0 && at % USECS_PER_SEC != 0)
		whole_seconds--;
	args[0] = Int32GetDatum((int32) (whole_seconds & 1));

	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("enable_seqscan", "off",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	plan = tick_plan(&update_plan, nspid,
					 "UPDATE %s.t1 SET status = 1 WHERE status = 0 AND id %% 2 = $1",
					 1, argtypes);
	ret = SPI_execute_plan(plan, args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "update tick failed: %s", SPI_result_code_string(ret));
	flipped = SPI_processed;
	SPI_finish();

	AtEOXact_GUC(true, save_nestlevel);

	return (int64) flipped;
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
