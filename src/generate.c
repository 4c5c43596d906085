/*-------------------------------------------------------------------------
 *
 * generate.c
 *	  opsdemo_generate(): bulk generation of t1 rows.
 *
 * Rows are built directly as Datums (no text or binary parsing) and written
 * with the same machinery COPY FROM uses: tuple routing to the partition,
 * batched table_multi_insert(), index insertion per row, constraint and
 * generated-column evaluation, BEFORE/AFTER ROW triggers, statement
 * triggers and transition-table capture.  Rows are produced in date order,
 * so only one partition is active at a time and the time-ordered unique
 * keys are appended at the right edge of their indexes.
 *
 * Memory is constant in n: values live in the per-tuple context, the batch
 * slots are reused, and nothing accumulates per row (AFTER ROW triggers, if
 * a user adds any, queue their events exactly as COPY would).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/progress.h"
#include "commands/trigger.h"
#include "executor/execPartition.h"
#include "executor/executor.h"
#include "executor/nodeModifyTable.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_relation.h"
#include "pgstat.h"
#include "rewrite/rewriteHandler.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/timestamp.h"
#include "utils/backend_progress.h"

#include "opsdemo.h"

PG_FUNCTION_INFO_V1(opsdemo_generate);

/* As COPY FROM (FORMAT binary): flush every 1000 rows. */
#define BATCH_MAX_ROWS		1000
/* Report progress every this many rows. */
#define PROGRESS_EVERY		10000

/* Default period: three months ending now. */
#define DEFAULT_PERIOD_MONTHS 3

typedef struct GenerateArgs
{
	int64		n;
	TimestampTz period_start;
	TimestampTz period_end;
	uint64		seed;
	bool		seeded;			/* reproducible data set asked for */
	int32		clients;
	double		processed_share;
} GenerateArgs;

/* The partition currently being filled and its pending rows. */
typedef struct Batch
{
	ResultRelInfo *rri;
	TupleTableSlot *slots[BATCH_MAX_ROWS];
	int			nslots;			/* slots created for this partition */
	int			nused;
	bool		single_row;		/* partition has BEFORE ROW triggers */
} Batch;

typedef struct GenerateState
{
	EState	   *estate;
	ModifyTableState *mtstate;
	ResultRelInfo *root_rri;
	PartitionTupleRouting *proute;
	TransitionCaptureState *transition_capture;
	BulkInsertState bistate;
	CommandId	mycid;
	Batch		batch;
	int64		row_number;		/* for the error context */
	int64		inserted;
} GenerateState;

static void
generate_error_callback(void *arg)
{
	GenerateState *state = (GenerateState *) arg;

	errcontext("opsdemo_generate, row " INT64_FORMAT, state->row_number);
}

/* Validate and complete the SQL arguments. */
static void
read_arguments(FunctionCallInfo fcinfo, GenerateArgs *args)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("number of rows must not be NULL")));
	args->n = PG_GETARG_INT64(0);
	if (args->n <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("number of rows must be positive, got " INT64_FORMAT,
						args->n)));
	if (args->n > OPSDEMO_GENERATE_MAX_ROWS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("number of rows " INT64_FORMAT " exceeds the maximum of " INT64_FORMAT,
						args->n, OPSDEMO_GENERATE_MAX_ROWS),
				 errhint("Call opsdemo_generate several times for larger data sets.")));

	args->period_end = PG_ARGISNULL(2) ?
		GetCurrentTransactionStartTimestamp() : PG_GETARG_TIMESTAMPTZ(2);

	if (PG_ARGISNULL(1))
	{
		Interval   *back = palloc0(sizeof(Interval));

		back->month = DEFAULT_PERIOD_MONTHS;
		args->period_start =
			DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
													TimestampTzGetDatum(args->period_end),
													IntervalPGetDatum(back)));
	}
	else
		args->period_start = PG_GETARG_TIMESTAMPTZ(1);

	opsdemo_check_range(args->period_start, args->period_end,
					   "generation period");

	args->seeded = !PG_ARGISNULL(3);
	if (!args->seeded)
	{
		if (!pg_strong_random(&args->seed, sizeof(args->seed)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate a random seed")));
	}
	else
		args->seed = (uint64) PG_GETARG_INT64(3);

	args->clients = PG_ARGISNULL(4) ? 1000 : PG_GETARG_INT32(4);
	if (args->clients <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("number of clients must be positive, got %d",
						args->clients)));

	args->processed_share = PG_ARGISNULL(5) ? 0.0 : PG_GETARG_FLOAT8(5);
	if (!(args->processed_share >= 0.0 && args->processed_share <= 1.0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("processed share must be between 0 and 1")));
}

/*
 * Check INSERT privilege on the columns we write, as the executor would for
 * INSERT INTO t1 (date, amount, status, operation_guid, message).
 */
static List *
build_range_table(Relation rel, const OpsdemoTarget *target, List **perminfos)
{
	RangeTblEntry *rte = makeNode(RangeTblEntry);
	Bitmapset  *cols = NULL;
	AttrNumber	written[] = {target->att_date, target->att_amount,
		target->att_status, target->att_guid, target->att_message};
	int			i;

	for (i = 0; i < lengthof(written); i++)
		cols = bms_add_member(cols,
							  written[i] - FirstLowInvalidHeapAttributeNumber);

	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(rel);
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;

#if PG_VERSION_NUM >= 160000
	{
		RTEPermissionInfo *perminfo = addRTEPermissionInfo(perminfos, rte);

		perminfo->requiredPerms = ACL_INSERT;
		perminfo->insertedCols = cols;
		ExecCheckPermissions(list_make1(rte), *perminfos, true);
	}
#else
	rte->requiredPerms = ACL_INSERT;
	rte->insertedCols = cols;
	ExecCheckRTPerms(list_make1(rte), true);
	*perminfos = NIL;
#endif
	return list_make1(rte);
}

static void
batch_flush(GenerateState *state)
{
	Batch	   *batch = &state->batch;
	ResultRelInfo *rri = batch->rri;
	EState	   *estate = state->estate;
	MemoryContext oldcxt;
	int			i;

	if (batch->nused == 0)
		return;

	oldcxt = MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));
	table_multi_insert(rri->ri_RelationDesc, batch->slots, batch->nused,
					   state->mycid, 0, state->bistate);
	MemoryContextSwitchTo(oldcxt);

	for (i = 0; i < batch->nused; i++)
	{
		TupleTableSlot *slot = batch->slots[i];
		List	   *recheck = NIL;

		if (rri->ri_NumIndices > 0)
		{
			oldcxt = MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));
			recheck = ExecInsertIndexTuples(rri, slot, estate,
											false, false, NULL, NIL
#if PG_VERSION_NUM >= 160000
											,false
#endif
				);
			MemoryContextSwitchTo(oldcxt);
		}

		/* Queues AFTER ROW events and transition tuples, if there are any. */
		ExecARInsertTriggers(estate, rri, slot, recheck,
							 state->transition_capture);

		list_free(recheck);
		ExecClearTuple(slot);
		ResetPerTupleExprContext(estate);
	}

	state->inserted += batch->nused;
	batch->nused = 0;
}

/* Make rri the partition being filled, flushing the previous one. */
static void
batch_switch(GenerateState *state, ResultRelInfo *rri)
{
	Batch	   *batch = &state->batch;
	int			i;

	batch_flush(state);
	for (i = 0; i < batch->nslots; i++)
		ExecDropSingleTupleTableSlot(batch->slots[i]);
	batch->nslots = 0;

	if (rri->ri_FdwRoutine != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("opsdemo_generate cannot write to foreign partition \"%s\"",
						RelationGetRelationName(rri->ri_RelationDesc))));

	batch->rri = rri;
	batch->single_row = rri->ri_TrigDesc != NULL &&
		(rri->ri_TrigDesc->trig_insert_before_row ||
		 rri->ri_TrigDesc->trig_insert_instead_row);
	ReleaseBulkInsertStatePin(state->bistate);
}

static TupleTableSlot *
batch_next_slot(Batch *batch)
{
	if (batch->nused == batch->nslots)
		batch->slots[batch->nslots++] =
			table_slot_create(batch->rri->ri_RelationDesc, NULL);
	return batch->slots[batch->nused];
}

/*
 * Route one root-form row to its partition and queue it, flushing when the
 * batch is full.
 */
static void
queue_row(GenerateState *state, TupleTableSlot *rootslot)
{
	EState	   *estate = state->estate;
	Batch	   *batch = &state->batch;
	ResultRelInfo *rri;
	TupleConversionMap *map;
	TupleTableSlot *slot;
	Relation	partrel;

	rri = ExecFindPartition(state->mtstate, state->root_rri, state->proute,
							rootslot, estate);
	if (rri != batch->rri)
		batch_switch(state, rri);
	partrel = rri->ri_RelationDesc;

	slot = batch_next_slot(batch);
#if PG_VERSION_NUM >= 160000
	map = ExecGetRootToChildMap(rri, estate);
#else
	map = rri->ri_RootToPartitionMap;
#endif
	if (map != NULL)
		slot = execute_attr_map_slot(map->attrMap, rootslot, slot);
	else
		ExecCopySlot(slot, rootslot);
	slot->tts_tableOid = RelationGetRelid(partrel);

	if (batch->single_row)
	{
		if (!ExecBRInsertTriggers(estate, rri, slot))
		{
			ExecClearTuple(slot);
			return;				/* a BEFORE ROW trigger skipped the row */
		}
	}

	if (partrel->rd_att->constr != NULL &&
		partrel->rd_att->constr->has_generated_stored)
		ExecComputeStoredGenerated(rri, estate, slot, CMD_INSERT);

	if (partrel->rd_att->constr != NULL)
		ExecConstraints(rri, slot, estate);
	/* A BEFORE ROW trigger may have moved the row out of its partition. */
	if (batch->single_row && partrel->rd_rel->relispartition)
		ExecPartitionCheck(rri, slot, estate, true);

	ExecMaterializeSlot(slot);
	batch->nused++;
	if (batch->single_row || batch->nused == BATCH_MAX_ROWS)
		batch_flush(state);
}

/*
 * Expressions for the columns opsdemo_generate does not supply (id from
 * its identity sequence, anything a user added with a default).  Generated
 * columns are computed per partition by ExecComputeStoredGenerated.
 */
static ExprState **
prepare_defaults(Relation rel, const OpsdemoTarget *target)
{
	TupleDesc	desc = RelationGetDescr(rel);
	ExprState **defaults = palloc0(sizeof(ExprState *) * desc->natts);
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		AttrNumber	attnum = att->attnum;
		Node	   *expr;

		if (att->attisdropped || att->attgenerated ||
			attnum == target->att_date || attnum == target->att_amount ||
			attnum == target->att_status || attnum == target->att_guid ||
			attnum == target->att_message)
			continue;
		expr = build_column_default(rel, attnum);
		if (expr != NULL)
			defaults[i] = ExecInitExpr(expression_planner((Expr *) expr), NULL);
	}
	return defaults;
}

Datum
opsdemo_generate(PG_FUNCTION_ARGS)
{
	GenerateArgs args;
	OpsdemoTarget target;
	GenerateState state;
	Relation	rel;
	List	   *rtable;
	List	   *perminfos = NIL;
	TupleTableSlot *rootslot;
	ExprState **defaults;
	OpsdemoRng	rng;
	ErrorContextCallback errcallback;
	TupleDesc	desc;
	double		span;
	instr_time	started,
				elapsed;
	int64		k;
	double		seconds;
	MemoryContext rowcxt;

	read_arguments(fcinfo, &args);
	INSTR_TIME_SET_CURRENT(started);

	/*
	 * The rows are written below the executor, so its read-only check must
	 * be made here (a hot standby's transactions are read-only too).
	 */
	PreventCommandIfReadOnly("opsdemo_generate()");
	PreventCommandIfParallelMode("opsdemo_generate()");

	target.nspid = opsdemo_schema_oid();
	target.t1_relid = opsdemo_t1_relid(target.nspid);

	/*
	 * Check privileges and row-level security before creating partitions,
	 * so a caller who may not insert changes nothing.  t1 is closed again
	 * meanwhile: ATTACH PARTITION refuses a table this session holds open.
	 */
	rel = table_open(target.t1_relid, AccessShareLock);
	opsdemo_resolve_columns(rel, &target);
	rtable = build_range_table(rel, &target, &perminfos);
	if (check_enable_rls(target.t1_relid, InvalidOid, false) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("opsdemo_generate is not supported for tables with row-level security")));
	table_close(rel, AccessShareLock);

	opsdemo_partitions_ensure_range(target.nspid, target.t1_relid,
									args.period_start, args.period_end);

	rel = table_open(target.t1_relid, RowExclusiveLock);
	opsdemo_resolve_columns(rel, &target);
	desc = RelationGetDescr(rel);

	memset(&state, 0, sizeof(state));
	state.estate = CreateExecutorState();
#if PG_VERSION_NUM >= 180000
	ExecInitRangeTable(state.estate, rtable, perminfos, bms_make_singleton(1));
#elif PG_VERSION_NUM >= 160000
	ExecInitRangeTable(state.estate, rtable, perminfos);
#else
	ExecInitRangeTable(state.estate, rtable);
#endif
	state.root_rri = makeNode(ResultRelInfo);
	ExecInitResultRelation(state.estate, state.root_rri, 1);
#if PG_VERSION_NUM >= 180000
	CheckValidResultRel(state.root_rri, CMD_INSERT, ONCONFLICT_NONE, NIL);
#elif PG_VERSION_NUM >= 170000
	CheckValidResultRel(state.root_rri, CMD_INSERT, NIL);
#else
	CheckValidResultRel(state.root_rri, CMD_INSERT);
#endif

	state.mtstate = makeNode(ModifyTableState);
	state.mtstate->ps.plan = NULL;
	state.mtstate->ps.state = state.estate;
	state.mtstate->operation = CMD_INSERT;
	state.mtstate->mt_nrels = 1;
	state.mtstate->resultRelInfo = state.root_rri;
	state.mtstate->rootResultRelInfo = state.root_rri;

	AfterTriggerBeginQuery();
	state.transition_capture = state.mtstate->mt_transition_capture =
		MakeTransitionCaptureState(rel->trigdesc, target.t1_relid, CMD_INSERT);
	state.proute = ExecSetupPartitionTupleRouting(state.estate, rel);
	state.bistate = GetBulkInsertState();
	state.mycid = GetCurrentCommandId(true);

	rootslot = table_slot_create(rel, &state.estate->es_tupleTable);
	defaults = prepare_defaults(rel, &target);

	ExecBSInsertTriggers(state.estate, state.root_rri);

	pgstat_progress_start_command(PROGRESS_COMMAND_COPY, target.t1_relid);
	{
		const int	index[] = {PROGRESS_COPY_COMMAND, PROGRESS_COPY_TYPE,
		OPSDEMO_PROGRESS_ROWS_TOTAL};
		const int64 val[] = {PROGRESS_COPY_COMMAND_FROM,
		PROGRESS_COPY_TYPE_CALLBACK, args.n};

		pgstat_progress_update_multi_param(3, index, val);
	}

	errcallback.callback = generate_error_callback;
	errcallback.arg = &state;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	/*
	 * The row being built lives in its own context: flushing a batch resets
	 * the executor's per-tuple context while the next row is in hand.
	 */
	rowcxt = AllocSetContextCreate(CurrentMemoryContext,
								   "opsdemo_generate row",
								   ALLOCSET_DEFAULT_SIZES);

	opsdemo_rng_seed(&rng, args.seed);
	span = (double) (args.period_end - args.period_start);

	for (k = 0; k < args.n; k++)
	{
		ExprContext *econtext = GetPerTupleExprContext(state.estate);
		MemoryContext oldcxt;
		OpsdemoOperation op;
		TimestampTz at;
		pg_uuid_t  *guid;
		Datum	   *values = rootslot->tts_values;
		bool	   *isnull = rootslot->tts_isnull;
		int			i;

		CHECK_FOR_INTERRUPTS();
		state.row_number = k + 1;

		ExecClearTuple(rootslot);
		MemoryContextReset(rowcxt);
		oldcxt = MemoryContextSwitchTo(rowcxt);

		/*
		 * Stratified dates: row k falls in the k-th of n equal slices of the
		 * period, so dates are uniform, strictly inside the period and
		 * already sorted without holding any rows.
		 */
		at = args.period_start +
			(TimestampTz) (span * (((double) k + opsdemo_rng_double(&rng)) /
								   (double) args.n));
		if (at >= args.period_end)
			at = args.period_end - 1;

		opsdemo_operation_draw(&rng, args.clients, &op);
		guid = palloc(sizeof(pg_uuid_t));
		if (args.seeded)
			opsdemo_guid_make(at, opsdemo_rng_next(&rng), opsdemo_rng_next(&rng),
							  guid);
		else
			opsdemo_guid_make_strong(at, guid);

		for (i = 0; i < desc->natts; i++)
		{
			isnull[i] = true;
			if (defaults[i] != NULL)
			{
				Form_pg_attribute att = TupleDescAttr(desc, i);

				values[i] = ExecEvalExpr(defaults[i], econtext, &isnull[i]);
				if (!isnull[i])
					values[i] = datumCopy(values[i], att->attbyval, att->attlen);
			}
		}

		values[target.att_date - 1] = TimestampTzGetDatum(at);
		isnull[target.att_date - 1] = false;
		values[target.att_amount - 1] = opsdemo_operation_amount(&op);
		isnull[target.att_amount - 1] = false;
		values[target.att_status - 1] =
			Int16GetDatum(opsdemo_rng_double(&rng) < args.processed_share ? 1 : 0);
		isnull[target.att_status - 1] = false;
		values[target.att_guid - 1] = UUIDPGetDatum(guid);
		isnull[target.att_guid - 1] = false;
		values[target.att_message - 1] = opsdemo_operation_message(&op);
		isnull[target.att_message - 1] = false;

		ExecStoreVirtualTuple(rootslot);
		rootslot->tts_tableOid = target.t1_relid;
		MemoryContextSwitchTo(oldcxt);

		queue_row(&state, rootslot);

		if ((k + 1) % PROGRESS_EVERY == 0)
			pgstat_progress_update_param(PROGRESS_COPY_TUPLES_PROCESSED,
										 state.inserted);
	}

	batch_flush(&state);
	error_context_stack = errcallback.previous;
	MemoryContextDelete(rowcxt);
	pgstat_progress_update_param(PROGRESS_COPY_TUPLES_PROCESSED, state.inserted);

	ExecASInsertTriggers(state.estate, state.root_rri, state.transition_capture);
	AfterTriggerEndQuery(state.estate);

	for (k = 0; k < state.batch.nslots; k++)
		ExecDropSingleTupleTableSlot(state.batch.slots[k]);
	FreeBulkInsertState(state.bistate);
	ExecResetTupleTable(state.estate->es_tupleTable, false);
	ExecCleanupTupleRouting(state.mtstate, state.proute);
	ExecCloseResultRelations(state.estate);
	ExecCloseRangeTableRelations(state.estate);
	FreeExecutorState(state.estate);
	table_close(rel, NoLock);

	pgstat_progress_end_command();

	INSTR_TIME_SET_CURRENT(elapsed);
	INSTR_TIME_SUBTRACT(elapsed, started);
	seconds = INSTR_TIME_GET_DOUBLE(elapsed);
	ereport(NOTICE,
			(errmsg("opsdemo_generate: inserted " INT64_FORMAT " rows in %.3f s (%.0f rows/s)",
					state.inserted, seconds,
					seconds > 0 ? state.inserted / seconds : 0.0)));

	PG_RETURN_INT64(state.inserted);
}
