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
 * Months that have no partition yet are loaded differently (issue 14): into
 * a standalone table t1_YYYY_MM_load_PID, created in the caller's transaction
 * with t1's columns, defaults, generated columns and CHECK constraints plus
 * a CHECK constraint equal to the month's bound, without indexes.  Rows go
 * in by heap multi-insert with their constraints checked; when the month is
 * complete its indexes are built by a sorted build (opsdemo_partition_prepare)
 * instead of a million btree insertions; mv_sum's deltas of its status-1
 * rows are summed here instead of queueing AFTER ROW events.  At the end the
 * table is renamed and attached: the bound constraint lets ATTACH PARTITION
 * skip scanning it, and its indexes are already those of a partition.  No
 * one else can see the table before the caller commits, so nobody waits on
 * it while it fills; the attach takes what creating a month takes (see
 * attach_staged_months).  Any error rolls the table back with the
 * transaction: nothing is left behind, nothing reaches mv_sum.
 *
 * This path is taken only where it is equivalent to inserting through t1:
 * t1 has no triggers but the extension's mv_sum triggers (their row trigger
 * firing in this session), no indexes of its own, and is in no publication
 * (rows that were in a table before it was attached are never sent to a
 * subscriber: PostgreSQL publishes inserts, not attachments).  A month that
 * someone else created meanwhile, or whose rows wait in the default
 * partition, gets the staged rows through t1 instead (see
 * attach_staged_months).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/tupconvert.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/partition.h"
#include "catalog/pg_publication.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "commands/progress.h"
#include "commands/trigger.h"
#include "executor/execPartition.h"
#include "executor/executor.h"
#include "executor/nodeModifyTable.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_relation.h"
#include "pgstat.h"
#include "rewrite/rewriteHandler.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/ruleutils.h"
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
	bool		staged;			/* a month's load table: no indexes yet */
	bool		fast_generated; /* its generated columns are t1's own */
	bool		checks_known;	/* its CHECK constraints are t1's own */
} Batch;

/* mv_sum's change by one group of a staged month's status-1 rows. */
typedef struct StagedGroupKey
{
	int64		client_id;
	bool		online;
} StagedGroupKey;

typedef struct StagedGroup
{
	StagedGroupKey key;			/* must be first */
	int64		cents;
	Numeric		spilled;		/* cents beyond int64, rarely needed */
	int64		count;
} StagedGroup;

/* A month that had no partition when the load began. */
typedef struct StagedMonth
{
	int			month;			/* opsdemo_utc_month_index() */
	TimestampTz lo;
	TimestampTz hi;
	char		name[NAMEDATALEN];	/* t1_YYYY_MM: what it becomes */
	char		load_name[NAMEDATALEN]; /* t1_YYYY_MM_load_PID: while it
										 * fills */
	Oid			relid;
	bool		indexed;
	HTAB	   *groups;
} StagedMonth;

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

	/* months loaded into tables of their own, in date order */
	StagedMonth *staged;
	int			nstaged;
	StagedMonth *staging;		/* the one being filled, or NULL */
	Relation	staging_rel;
	TupleConversionMap *staging_map;	/* t1's row to the load table's */
	AttrNumber	att_client_id;	/* t1's generated columns, 0 if absent */
	AttrNumber	att_operation_type;
	Datum		online_text;
	Datum		offline_text;
	Oid			nspid;			/* the extension's schema */
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
	int			previous;
	int			i;

	if (batch->nused == 0)
		return;

	oldcxt = MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));
	table_multi_insert(rri->ri_RelationDesc, batch->slots, batch->nused,
					   state->mycid, 0, state->bistate);
	MemoryContextSwitchTo(oldcxt);

	/*
	 * mv_sum's insert trigger counts the rows as they pass its WHEN clause
	 * instead of queueing an event each (mv_sum_now.c): nothing of the
	 * caller's is evaluated here.
	 */
	previous = opsdemo_mv_sum_now_begin();
	PG_TRY();
	{
		for (i = 0; i < batch->nused; i++)
		{
			TupleTableSlot *slot = batch->slots[i];
			List	   *recheck = NIL;

			if (rri->ri_NumIndices > 0 && !batch->staged)
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

			/* Queues AFTER ROW events and transition tuples, if any. */
			if (!batch->staged)
				ExecARInsertTriggers(estate, rri, slot, recheck,
									 state->transition_capture);

			list_free(recheck);
			ExecClearTuple(slot);
			ResetPerTupleExprContext(estate);
		}
	}
	PG_FINALLY();
	{
		opsdemo_mv_sum_now_end(previous);
	}
	PG_END_TRY();

	state->inserted += batch->nused;
	batch->nused = 0;
}

/* Flush the rows of the relation being filled and forget it. */
static void
batch_reset(GenerateState *state)
{
	Batch	   *batch = &state->batch;
	int			i;

	batch_flush(state);
	for (i = 0; i < batch->nslots; i++)
		ExecDropSingleTupleTableSlot(batch->slots[i]);
	batch->nslots = 0;
	batch->rri = NULL;
	batch->staged = false;
	ReleaseBulkInsertStatePin(state->bistate);
}

/*
 * An expression of rel as pg_get_expr shows it with search_path =
 * pg_catalog: every name outside pg_catalog schema-qualified, so that the
 * text says which functions and operators it calls.
 */
static char *
deparse_pinned(Node *expr, Relation rel)
{
	int			nestlevel = NewGUCNestLevel();
	char	   *shown;

	(void) set_config_option("search_path", "pg_catalog", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	shown = deparse_expression(expr,
							   deparse_context_for(RelationGetRelationName(rel),
												   RelationGetRelid(rel)),
							   false, false);
	AtEOXact_GUC(true, nestlevel);
	return shown;
}

/*
 * t1's CHECK constraints as the extension creates them.  Every row the
 * generator makes satisfies them by construction (its GUID encodes its
 * date, its message has the account number as a string, its status and
 * operation type come from the fixed sets), so for a partition whose CHECK
 * constraints are exactly these (and, for a load table, its bound, which
 * queue_staged_row checks in C) the generator checks NOT NULL only: their
 * jsonb and GUID expressions were 13 % of a load into filled months.
 * Anything else on the partition, or a BEFORE ROW trigger that may change
 * the row, and every constraint is evaluated as usual.
 */
static const struct
{
	const char *name;
	const char *expr;			/* %s: the extension's schema */
}			known_checks[] =
{
	{
		"t1_message_check",
		"((message ? 'account_number'::text) AND "
		"(jsonb_typeof((message -> 'account_number'::text)) = 'string'::text))"
	},
	{
		"t1_operation_guid_encodes_date",
		"(NOT (%s.opsdemo_guid_time(operation_guid) IS DISTINCT FROM date))"
	},
	{
		"t1_operation_type_check",
		"(operation_type = ANY (ARRAY['online'::text, 'offline'::text]))"
	},
	{
		"t1_status_check",
		"(status = ANY (ARRAY[0, 1]))"
	},
};

static bool
checks_known(Relation rel, Oid nspid, const char *bound_name)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	const char *nspname = quote_identifier(get_namespace_name(nspid));

	for (int i = 0; constr != NULL && i < constr->num_check; i++)
	{
		ConstrCheck *check = &constr->check[i];
		const char *expected = NULL;

		if (bound_name != NULL && strcmp(check->ccname, bound_name) == 0)
			continue;
		for (int k = 0; k < lengthof(known_checks); k++)
			if (strcmp(check->ccname, known_checks[k].name) == 0)
				expected = psprintf(known_checks[k].expr, nspname);
		if (expected == NULL ||
			strcmp(deparse_pinned(stringToNode(check->ccbin), rel),
				   expected) != 0)
			return false;
	}
	return true;
}

/*
 * The constraints of a row about to be inserted into batch->rri: NOT NULL
 * only where its CHECK constraints are known to hold.  Assert-enabled
 * builds evaluate them all anyway, to catch a generator that broke one.
 */
static void
check_row(Batch *batch, TupleTableSlot *slot, EState *estate)
{
	ResultRelInfo *rri = batch->rri;
	TupleDesc	desc = RelationGetDescr(rri->ri_RelationDesc);

	if (desc->constr == NULL)
		return;
#ifndef USE_ASSERT_CHECKING
	if (batch->checks_known && !batch->single_row)
	{
		bool		not_null_holds = true;

		for (int i = 0; desc->constr->has_not_null && i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (att->attnotnull && !att->attisdropped &&
				slot_attisnull(slot, att->attnum))
			{
				not_null_holds = false; /* ExecConstraints reports it */
				break;
			}
		}
		if (not_null_holds)
			return;
	}
#endif
	ExecConstraints(rri, slot, estate);
}

/*
 * The expressions of t1's generated columns, as pg_get_expr shows them:
 * for a relation whose generated columns are exactly these, the generator
 * sets their values from the operation it drew (the message is built from
 * the same values) instead of evaluating two jsonb expressions per row.
 */
#define GENERATED_CLIENT_ID		"((message ->> 'client_id'::text))::bigint"
#define GENERATED_OPERATION_TYPE "(message ->> 'operation_type'::text)"

static bool
generated_known(Relation rel, AttrNumber *att_client_id,
				AttrNumber *att_operation_type)
{
	TupleDesc	desc = RelationGetDescr(rel);

	*att_client_id = 0;
	*att_operation_type = 0;
	if (desc->constr == NULL || !desc->constr->has_generated_stored)
		return false;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Node	   *expr;
		char	   *shown;

		if (att->attisdropped || att->attgenerated == '\0')
			continue;
		if (att->attgenerated != ATTRIBUTE_GENERATED_STORED)
			return false;
		expr = build_column_default(rel, att->attnum);
		if (expr == NULL)
			return false;
		shown = deparse_pinned(expr, rel);
		if (strcmp(NameStr(att->attname), "client_id") == 0 &&
			att->atttypid == INT8OID &&
			strcmp(shown, GENERATED_CLIENT_ID) == 0)
			*att_client_id = att->attnum;
		else if (strcmp(NameStr(att->attname), "operation_type") == 0 &&
				 att->atttypid == TEXTOID &&
				 strcmp(shown, GENERATED_OPERATION_TYPE) == 0)
			*att_operation_type = att->attnum;
		else
			return false;
	}
	return *att_client_id != 0 && *att_operation_type != 0;
}

/* Make rri the partition being filled, flushing the previous one. */
static void
batch_switch(GenerateState *state, ResultRelInfo *rri)
{
	Batch	   *batch = &state->batch;
	AttrNumber	att_client_id;
	AttrNumber	att_operation_type;

	batch_reset(state);

	if (rri->ri_FdwRoutine != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("opsdemo_generate cannot write to foreign partition \"%s\"",
						RelationGetRelationName(rri->ri_RelationDesc))));

	batch->rri = rri;
	batch->single_row = rri->ri_TrigDesc != NULL &&
		(rri->ri_TrigDesc->trig_insert_before_row ||
		 rri->ri_TrigDesc->trig_insert_instead_row);
	/* The values are set in the root row, whence the map copies them. */
	batch->fast_generated = state->att_client_id != 0 &&
		generated_known(rri->ri_RelationDesc, &att_client_id,
						&att_operation_type);
	batch->checks_known = batch->fast_generated &&
		checks_known(rri->ri_RelationDesc, state->nspid, NULL);
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
		partrel->rd_att->constr->has_generated_stored &&
		(!batch->fast_generated || batch->single_row))
		ExecComputeStoredGenerated(rri, estate, slot, CMD_INSERT);

	check_row(batch, slot, estate);
	/* A BEFORE ROW trigger may have moved the row out of its partition. */
	if (batch->single_row && partrel->rd_rel->relispartition)
		ExecPartitionCheck(rri, slot, estate, true);

	ExecMaterializeSlot(slot);
	batch->nused++;
	if (batch->single_row || batch->nused == BATCH_MAX_ROWS)
		batch_flush(state);
}

/*
 * Why months without a partition cannot be loaded into tables of their own
 * (see the file header), or NULL if they can.
 */
static const char *
staging_refused(Relation rel, const OpsdemoTarget *target,
				AttrNumber *att_client_id, AttrNumber *att_operation_type)
{
	TriggerDesc *trigdesc = rel->trigdesc;
	bool		counted = false;
	List	   *indexes;

	/*
	 * The attach holds ACCESS EXCLUSIVE on the default partition until the
	 * transaction ends: brief only when the call is a transaction of its
	 * own.  In a transaction block the months are created beforehand by the
	 * partition worker, whose locks last milliseconds whatever the caller
	 * does next.
	 */
	if (IsTransactionBlock() || GetCurrentTransactionNestLevel() > 1)
		return "the call is inside a transaction block";

	if (!generated_known(rel, att_client_id, att_operation_type))
		return "t1's generated columns are not the extension's";

	indexes = RelationGetIndexList(rel);
	if (indexes != NIL)
		return "t1 has indexes of its own";

	for (int i = 0; trigdesc != NULL && i < trigdesc->numtriggers; i++)
	{
		Trigger    *trigger = &trigdesc->triggers[i];
		char	   *funcname = get_func_name(trigger->tgfoid);
		bool		fires;

		if (funcname == NULL ||
			get_func_namespace(trigger->tgfoid) != target->nspid ||
			(strcmp(funcname, "opsdemo_mv_sum_row_trigger") != 0 &&
			 strcmp(funcname, "opsdemo_mv_sum_statement_trigger") != 0))
			return "t1 has triggers other than the extension's";

		if (SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA)
			fires = trigger->tgenabled == TRIGGER_FIRES_ALWAYS ||
				trigger->tgenabled == TRIGGER_FIRES_ON_REPLICA;
		else
			fires = trigger->tgenabled == TRIGGER_FIRES_ALWAYS ||
				trigger->tgenabled == TRIGGER_FIRES_ON_ORIGIN;
		if (fires && strcmp(funcname, "opsdemo_mv_sum_row_trigger") == 0 &&
			TRIGGER_FOR_ROW(trigger->tgtype) &&
			TRIGGER_FOR_AFTER(trigger->tgtype) &&
			TRIGGER_FOR_INSERT(trigger->tgtype))
			counted = true;
	}
	if (!counted)
		return "mv_sum's insert trigger does not fire in this session";

	/*
	 * PostgreSQL publishes a partition's inserts, not its attachment: rows
	 * that were in the table before it became a partition would never
	 * reach a subscriber of t1.
	 */
	if (XLogLogicalInfoActive() &&
		(GetRelationPublications(target->t1_relid) != NIL ||
		 GetSchemaPublications(target->nspid) != NIL ||
		 GetAllTablesPublications() != NIL))
		return "t1 is published";
	return NULL;
}

/* Run one utility statement or query of the generator's own, in SPI. */
static void
run_sql(const char *sql, int nargs, Oid *argtypes, Datum *values, int expected)
{
	int			ret;

	ret = SPI_execute_with_args(sql, nargs, argtypes, values, NULL, false, 0);
	if (ret != expected)
		elog(ERROR, "opsdemo_generate: statement failed (%s): %s",
			 SPI_result_code_string(ret), sql);
}

static const char *
bound_literal(int month)
{
	return psprintf("'%04d-%02d-01 00:00:00+00'", month / 12, month % 12 + 1);
}

/*
 * The months of [from, to) that have no partition get a load table each,
 * created now so that a name or privilege problem stops the call before
 * any row is made.  Returns how many.
 */
static int
create_load_tables(GenerateState *state, const OpsdemoTarget *target,
				   TimestampTz from, TimestampTz to)
{
	int			first = opsdemo_utc_month_index(from);
	int			last = opsdemo_utc_month_index(to - 1);
	int			not_exempt = 0;
	const char *nspname = quote_identifier(get_namespace_name(target->nspid));
	const char *datecol;
	OpsdemoSavedUser saved_user;

	state->staged = palloc0(sizeof(StagedMonth) * (last - first + 1));
	state->nstaged = 0;
	for (int m = first; m <= last; m++)
	{
		StagedMonth *sm;
		HASHCTL		ctl;

		if (opsdemo_partition_exists_for(target->nspid,
										 opsdemo_utc_month_start(m)))
			continue;

		sm = &state->staged[state->nstaged++];
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(StagedGroupKey);
		ctl.entrysize = sizeof(StagedGroup);
		ctl.hcxt = CurrentMemoryContext;
		sm->groups = hash_create("opsdemo_generate mv_sum groups", 1024, &ctl,
								 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		sm->month = m;
		sm->lo = opsdemo_utc_month_start(m);
		sm->hi = opsdemo_utc_month_start(m + 1);
		opsdemo_month_partition_name(m, sm->name);
		/*
		 * The backend's pid in the name: two loads of the same month must
		 * not wait on each other's uncommitted pg_class entry.
		 */
		snprintf(sm->load_name, NAMEDATALEN, "%s_load_%d", sm->name,
				 MyProcPid);
		if (!opsdemo_month_exempt(m))
			not_exempt++;
	}
	if (state->nstaged == 0)
		return 0;
	opsdemo_check_partition_limit(target->t1_relid, not_exempt, from, to,
								  opsdemo_max_partitions);

	datecol = quote_identifier(get_attname(target->t1_relid, target->att_date,
										   false));
	opsdemo_become_owner(target->t1_relid, &saved_user);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	for (int i = 0; i < state->nstaged; i++)
	{
		StagedMonth *sm = &state->staged[i];

		/*
		 * The bound as a constraint: ATTACH PARTITION then knows every row
		 * belongs to the month without scanning the table.
		 */
		run_sql(psprintf("CREATE TABLE %s.%s (LIKE %s.%s INCLUDING DEFAULTS "
						 "INCLUDING GENERATED INCLUDING CONSTRAINTS INCLUDING STORAGE, "
						 "CONSTRAINT %s CHECK (%s OPERATOR(pg_catalog.>=) %s::pg_catalog.timestamptz "
						 "AND %s OPERATOR(pg_catalog.<) %s::pg_catalog.timestamptz))",
						 nspname, quote_identifier(sm->load_name),
						 nspname, quote_identifier(OPSDEMO_TABLE_NAME),
						 quote_identifier(psprintf("%s_bound", sm->load_name)),
						 datecol, bound_literal(sm->month),
						 datecol, bound_literal(sm->month + 1)),
				0, NULL, NULL, SPI_OK_UTILITY);
		sm->relid = get_relname_relid(sm->load_name, target->nspid);
		if (!OidIsValid(sm->relid))
			elog(ERROR, "opsdemo_generate: load table \"%s\" not found",
				 sm->load_name);
	}
	SPI_finish();
	opsdemo_restore_user(&saved_user);
	CommandCounterIncrement();
	return state->nstaged;
}

static StagedMonth *
staged_month(GenerateState *state, int month)
{
	for (int i = 0; i < state->nstaged; i++)
		if (state->staged[i].month == month)
			return &state->staged[i];
	return NULL;
}

/* Start filling a month's load table. */
static void
stage_begin(GenerateState *state, StagedMonth *sm)
{
	Batch	   *batch = &state->batch;
	ResultRelInfo *rri = makeNode(ResultRelInfo);

	batch_reset(state);
	state->staging = sm;
	state->staging_rel = table_open(sm->relid, RowExclusiveLock);
	/* Errors name t1's columns, as for a row routed through t1. */
	InitResultRelInfo(rri, state->staging_rel, 0, state->root_rri, 0);
	state->staging_map =
		convert_tuples_by_name(RelationGetDescr(state->root_rri->ri_RelationDesc),
							   RelationGetDescr(state->staging_rel));
	batch->rri = rri;
	batch->staged = true;
	batch->single_row = false;
	batch->fast_generated = true;	/* checked on t1, copied by LIKE */
	batch->checks_known = checks_known(state->staging_rel, state->nspid,
									   psprintf("%s_bound", sm->load_name));
}

/*
 * Build a complete month's indexes (and the rest of what makes a month's
 * partition) in one sorted pass each.  Still under its load name: the
 * final names could collide with a concurrent creator of the month.
 */
static void
stage_index(StagedMonth *sm, const OpsdemoTarget *target)
{
	OpsdemoSavedUser saved_user;
	Oid			argtypes[1] = {REGCLASSOID};
	Datum		values[1] = {ObjectIdGetDatum(sm->relid)};

	opsdemo_become_owner(target->t1_relid, &saved_user);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	run_sql(psprintf("SELECT %s.opsdemo_partition_prepare($1)",
					 quote_identifier(get_namespace_name(target->nspid))),
			1, argtypes, values, SPI_OK_SELECT);
	SPI_finish();
	opsdemo_restore_user(&saved_user);
	sm->indexed = true;
}

/* The month being loaded is complete. */
static void
stage_finish(GenerateState *state, const OpsdemoTarget *target)
{
	StagedMonth *sm = state->staging;

	batch_reset(state);
	table_close(state->staging_rel, NoLock);
	state->staging_rel = NULL;
	state->staging = NULL;
	if (state->staging_map != NULL)
		free_conversion_map(state->staging_map);
	state->staging_map = NULL;
	stage_index(sm, target);
}

/* Queue a root-form row for the month being loaded into its own table. */
static void
queue_staged_row(GenerateState *state, TupleTableSlot *rootslot,
				 const OpsdemoOperation *op, TimestampTz at, bool processed)
{
	Batch	   *batch = &state->batch;
	TupleTableSlot *slot = batch_next_slot(batch);

	/* The load table's bound constraint, which ATTACH trusts. */
	if (at < state->staging->lo || at >= state->staging->hi)
		elog(ERROR, "opsdemo_generate: row dated %s is outside the month of \"%s\"",
			 timestamptz_to_str(at), state->staging->load_name);

	if (state->staging_map != NULL)
		slot = execute_attr_map_slot(state->staging_map->attrMap, rootslot, slot);
	else
		ExecCopySlot(slot, rootslot);
	slot->tts_tableOid = state->staging->relid;
	check_row(batch, slot, state->estate);
	ExecMaterializeSlot(slot);

	if (processed)
	{
		StagedGroupKey key;
		StagedGroup *group;
		bool		found;

		memset(&key, 0, sizeof(key));
		key.client_id = op->client_id;
		key.online = op->online;
		group = hash_search(state->staging->groups, &key, HASH_ENTER, &found);
		if (!found)
		{
			group->cents = 0;
			group->spilled = NULL;
			group->count = 0;
		}
		if (pg_add_s64_overflow(group->cents, op->amount_cents, &group->cents))
		{
			Numeric		more = int64_div_fast_to_numeric(group->cents, 2);

			group->spilled = group->spilled == NULL ? more :
				DatumGetNumeric(DirectFunctionCall2(numeric_add,
													NumericGetDatum(group->spilled),
													NumericGetDatum(more)));
			group->cents = op->amount_cents;
		}
		group->count++;
	}

	batch->nused++;
	if (batch->nused == BATCH_MAX_ROWS)
		batch_flush(state);
}

/* A staged month's status-1 rows are now t1's: count them in mv_sum. */
static void
count_staged_groups(StagedMonth *sm)
{
	HASH_SEQ_STATUS seq;
	StagedGroup *group;
	text	   *online = cstring_to_text("online");
	text	   *offline = cstring_to_text("offline");

	hash_seq_init(&seq, sm->groups);
	while ((group = hash_seq_search(&seq)) != NULL)
	{
		Numeric		sum = int64_div_fast_to_numeric(group->cents, 2);

		if (group->spilled != NULL)
			sum = DatumGetNumeric(DirectFunctionCall2(numeric_add,
													  NumericGetDatum(sum),
													  NumericGetDatum(group->spilled)));
		opsdemo_mv_sum_add_group(group->key.client_id,
								 group->key.online ? online : offline,
								 sum, group->count);
	}
}

/*
 * Take ACCESS EXCLUSIVE on the default partition for the attach without
 * queueing for it: a queued request makes every later locker of it (the
 * update job, readers of t1 not pruned to other months) wait behind it for
 * as long as the transaction it waits for runs.  Polls instead, for up to
 * opsdemo.partition_lock_timeout (or the caller's lock_timeout if shorter),
 * the partition creator's limit for the same lock, then fails with 55P03.
 */
static void
lock_default_partition(Oid default_relid)
{
	int			timeout = opsdemo_partition_lock_timeout;
	TimestampTz started = GetCurrentTimestamp();

	if (LockTimeout > 0 && (timeout <= 0 || LockTimeout < timeout))
		timeout = LockTimeout;
	while (!ConditionalLockRelationOid(default_relid, AccessExclusiveLock))
	{
		if (timeout > 0 &&
			TimestampDifferenceExceeds(started, GetCurrentTimestamp(), timeout))
			ereport(ERROR,
					(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
					 errmsg("opsdemo_generate could not lock \"%s\" to attach the months it loaded",
							get_rel_name(default_relid)),
					 errdetail("Another transaction held a lock on it for longer than %d ms.",
							   timeout),
					 errhint("The load is rolled back. Run it again when that transaction has ended, or raise opsdemo.partition_lock_timeout.")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, WAIT_EVENT_PG_SLEEP);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Make every load table the partition of its month.  Takes what creating a
 * month takes, in the same order (the creation lock, SHARE UPDATE EXCLUSIVE
 * on t1, ACCESS EXCLUSIVE on the default partition, the last without
 * queueing: see lock_default_partition), then for each month:
 * renames the table and its indexes to the month's names, attaches it (no
 * scan of it: its bound constraint; a scan of the default partition, as
 * for every new month) and drops the bound constraint, so the partition is
 * the same as one created empty.  These locks are held until the caller's
 * transaction ends.
 *
 * A month that another session created meanwhile (the insert job creates
 * this month and the next), whose rows wait in the default partition, or
 * of a t1 published meanwhile, gets the staged rows by INSERT through t1
 * instead: its rows then pass through its indexes, triggers and
 * publications like any insert, and mv_sum counts them by its trigger.
 */
static void
attach_staged_months(GenerateState *state, const OpsdemoTarget *target)
{
	const char *nspname = quote_identifier(get_namespace_name(target->nspid));
	const char *t1name = quote_identifier(OPSDEMO_TABLE_NAME);
	OpsdemoSavedUser saved_user;
	Oid			default_relid;
	Relation	rel;
	AttrNumber	att_client_id;
	AttrNumber	att_operation_type;
	bool		through_t1;
	StringInfoData columns;
	int			not_exempt = 0;

	opsdemo_become_owner(target->t1_relid, &saved_user);
	(void) DirectFunctionCall2(pg_advisory_xact_lock_int4,
							   Int32GetDatum(OPSDEMO_LOCK_CLASS),
							   Int32GetDatum(OPSDEMO_LOCK_PARTITIONS));
	LockRelationOid(target->t1_relid, ShareUpdateExclusiveLock);
	default_relid = get_default_partition_oid(target->t1_relid);
	if (OidIsValid(default_relid))
		lock_default_partition(default_relid);
	AcceptInvalidationMessages();

	/* What may have changed since the load began. */
	rel = table_open(target->t1_relid, AccessShareLock);
	through_t1 = staging_refused(rel, target, &att_client_id,
								 &att_operation_type) != NULL;
	initStringInfo(&columns);
	for (int i = 0; i < RelationGetDescr(rel)->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), i);

		if (att->attisdropped || att->attgenerated != '\0')
			continue;
		appendStringInfo(&columns, "%s%s", columns.len > 0 ? ", " : "",
						 quote_identifier(NameStr(att->attname)));
	}
	table_close(rel, AccessShareLock);

	for (int i = 0; i < state->nstaged; i++)
		if (!opsdemo_partition_exists_for(target->nspid, state->staged[i].lo) &&
			!opsdemo_month_exempt(state->staged[i].month))
			not_exempt++;
	opsdemo_check_partition_limit(target->t1_relid, not_exempt,
								  state->staged[0].lo,
								  state->staged[state->nstaged - 1].hi,
								  opsdemo_max_partitions);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	for (int i = 0; i < state->nstaged; i++)
	{
		StagedMonth *sm = &state->staged[i];
		const char *load = quote_identifier(sm->load_name);
		bool		attach = !through_t1 &&
			!opsdemo_partition_exists_for(target->nspid, sm->lo);

		if (attach && OidIsValid(default_relid))
		{
			Oid			argtypes[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
			Datum		values[2] = {TimestampTzGetDatum(sm->lo),
			TimestampTzGetDatum(sm->hi)};

			run_sql(psprintf("SELECT 1 FROM %s.%s WHERE %s OPERATOR(pg_catalog.>=) $1 "
							 "AND %s OPERATOR(pg_catalog.<) $2 LIMIT 1",
							 nspname, quote_identifier(get_rel_name(default_relid)),
							 quote_identifier(get_attname(target->t1_relid, target->att_date, false)),
							 quote_identifier(get_attname(target->t1_relid, target->att_date, false))),
					2, argtypes, values, SPI_OK_SELECT);
			attach = SPI_processed == 0;
		}

		if (attach)
		{
			Relation	loadrel = table_open(sm->relid, AccessExclusiveLock);
			List	   *indexes = RelationGetIndexList(loadrel);
			ListCell   *lc;
			size_t		prefix = strlen(sm->load_name);

			table_close(loadrel, NoLock);
			foreach(lc, indexes)
			{
				char	   *iname = get_rel_name(lfirst_oid(lc));

				if (strncmp(iname, sm->load_name, prefix) != 0)
					continue;
				run_sql(psprintf("ALTER INDEX %s.%s RENAME TO %s", nspname,
								 quote_identifier(iname),
								 quote_identifier(psprintf("%s%s", sm->name,
														   iname + prefix))),
						0, NULL, NULL, SPI_OK_UTILITY);
			}
			run_sql(psprintf("ALTER TABLE %s.%s RENAME TO %s", nspname, load,
							 quote_identifier(sm->name)),
					0, NULL, NULL, SPI_OK_UTILITY);
			run_sql(psprintf("ALTER TABLE %s.%s ATTACH PARTITION %s.%s "
							 "FOR VALUES FROM (%s) TO (%s)",
							 nspname, t1name, nspname, quote_identifier(sm->name),
							 bound_literal(sm->month), bound_literal(sm->month + 1)),
					0, NULL, NULL, SPI_OK_UTILITY);
			run_sql(psprintf("ALTER TABLE %s.%s DROP CONSTRAINT %s", nspname,
							 quote_identifier(sm->name),
							 quote_identifier(psprintf("%s_bound", sm->load_name))),
					0, NULL, NULL, SPI_OK_UTILITY);
			count_staged_groups(sm);
		}
		else
		{
			/* Makes the month, moving its rows out of the default partition. */
			if (!opsdemo_partition_exists_for(target->nspid, sm->lo))
				(void) opsdemo_partitions_create_here(target->nspid,
													  target->t1_relid,
													  sm->lo, sm->hi,
													  opsdemo_max_partitions);
			run_sql(psprintf("INSERT INTO %s.%s (%s) OVERRIDING SYSTEM VALUE "
							 "SELECT %s FROM %s.%s",
							 nspname, t1name, columns.data, columns.data,
							 nspname, load),
					0, NULL, NULL, SPI_OK_INSERT);
			run_sql(psprintf("DROP TABLE %s.%s", nspname, load),
					0, NULL, NULL, SPI_OK_UTILITY);
		}
	}
	SPI_finish();
	opsdemo_restore_user(&saved_user);
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
	const char *staging_refusal;
	TimestampTz month_end = DT_NOBEGIN;	/* of the month of the last row */

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
	memset(&state, 0, sizeof(state));
	state.nspid = target.nspid;
	staging_refusal = staging_refused(rel, &target, &state.att_client_id,
									  &state.att_operation_type);
	table_close(rel, AccessShareLock);

	if (staging_refusal == NULL)
		(void) create_load_tables(&state, &target,
								  args.period_start, args.period_end);
	else
	{
		ereport(DEBUG1,
				(errmsg_internal("opsdemo_generate: new months are created before the load: %s",
								 staging_refusal)));
		opsdemo_partitions_ensure_range(target.nspid, target.t1_relid,
										args.period_start, args.period_end);
	}

	rel = table_open(target.t1_relid, RowExclusiveLock);
	opsdemo_resolve_columns(rel, &target);
	desc = RelationGetDescr(rel);
	if (!generated_known(rel, &state.att_client_id, &state.att_operation_type))
		state.att_client_id = state.att_operation_type = 0;
	state.online_text = PointerGetDatum(cstring_to_text("online"));
	state.offline_text = PointerGetDatum(cstring_to_text("offline"));

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
		if (state.att_client_id != 0)
		{
			values[state.att_client_id - 1] = Int64GetDatum(op.client_id);
			isnull[state.att_client_id - 1] = false;
			values[state.att_operation_type - 1] =
				op.online ? state.online_text : state.offline_text;
			isnull[state.att_operation_type - 1] = false;
		}

		ExecStoreVirtualTuple(rootslot);
		rootslot->tts_tableOid = target.t1_relid;
		MemoryContextSwitchTo(oldcxt);

		/* Rows come in date order: a new month begins at most once. */
		if (state.nstaged > 0 && at >= month_end)
		{
			int			month = opsdemo_utc_month_index(at);
			StagedMonth *sm = staged_month(&state, month);

			month_end = opsdemo_utc_month_start(month + 1);
			if (state.staging != NULL)
				stage_finish(&state, &target);
			if (sm != NULL)
				stage_begin(&state, sm);
		}
		if (state.staging != NULL)
			queue_staged_row(&state, rootslot, &op, at,
							 DatumGetInt16(values[target.att_status - 1]) == 1);
		else
			queue_row(&state, rootslot);

		if ((k + 1) % PROGRESS_EVERY == 0)
			pgstat_progress_update_param(PROGRESS_COPY_TUPLES_PROCESSED,
										 state.inserted);
	}

	if (state.staging != NULL)
		stage_finish(&state, &target);
	batch_flush(&state);
	/* Months of the period without a row still become partitions. */
	for (k = 0; k < state.nstaged; k++)
		if (!state.staged[k].indexed)
			stage_index(&state.staged[k], &target);
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

	/* t1 is closed: ATTACH PARTITION refuses a table this session uses. */
	if (state.nstaged > 0)
		attach_staged_months(&state, &target);

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
