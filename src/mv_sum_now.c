/*-------------------------------------------------------------------------
 *
 * mv_sum_now.c
 *	  Counting a row's change to mv_sum at the moment it is made, without
 *	  queueing a trigger event, while one of the extension's own statements
 *	  runs.
 *
 * mv_sum_insert and mv_sum_update are AFTER ROW triggers.  For each row
 * they let through, PostgreSQL stores an event, fetches the row again at
 * the end of the statement and calls the trigger function: most of what
 * mv_sum upkeep costs a bulk UPDATE or COPY.  The WHEN clause of an AFTER
 * trigger, though, is evaluated once per row just after the row was
 * written, with the row's old and new values, and only if the trigger is
 * enabled for the session (CREATE TRIGGER's documentation); an event is
 * queued only if it is true.  Their WHEN clauses end with
 * NOT opsdemo_mv_sum_count_now(NEW.tableoid, NEW.ctid, OLD..., NEW...): when it adds
 * the change to the pending deltas itself and returns true, no event is
 * queued, and mv_sum ends up exactly as if the trigger had fired (the
 * delta lands in the same subtransaction's frame; a row trigger that is
 * disabled evaluates no WHEN clause, so it counts nothing either way).
 *
 * The function is in WHEN clauses, which every writer of t1 evaluates with
 * its own rights: PUBLIC must be able to execute it.  So it counts only
 *
 *	- while "armed": around a statement of the extension's own (the jobs'
 *	  INSERT and UPDATE, the generator's inserts, a COPY FROM into t1 or a
 *	  partition without a WHERE clause), and only at the trigger depth it
 *	  was armed at, where nothing but that statement's own expressions run
 *	  (a user's trigger function runs one level deeper, and its statements
 *	  are counted the usual way);
 *	- when the call is exactly the WHEN clause's: every argument is the
 *	  row's own column (tableoid, ctid, OLD's and NEW's status, amount,
 *	  client_id, operation_type), not a value anyone can choose, and the
 *	  row is one of t1's or a partition's;
 *	- each row once: a copy of the call in another trigger's WHEN clause
 *	  (someone with the TRIGGER privilege on t1 can add one) finds the row
 *	  counted already and returns true, so neither queues an event.
 *
 * Called any other way it returns false and does nothing: a user cannot
 * forge a change to mv_sum with it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/sysattr.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "nodes/primnodes.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"

#include "opsdemo.h"

PG_FUNCTION_INFO_V1(opsdemo_mv_sum_count_now);

/* The trigger depth the current arming holds for; -1: not armed. */
static int	armed_depth = -1;

/*
 * The last row counted since arming began (outermost): a row is counted
 * once, however many WHEN clauses hold the call.  Within one statement no
 * other row can take its (tableoid, ctid): a row version this transaction
 * wrote cannot be pruned while it runs.
 */
static Oid	last_relid = InvalidOid;
static ItemPointerData last_ctid;

static ProcessUtility_hook_type prev_process_utility = NULL;

static int
trigger_depth(void)
{
	return DatumGetInt32(DirectFunctionCall1(pg_trigger_depth, (Datum) 0));
}

/*
 * Arms counting for statements at the current trigger depth; returns what
 * opsdemo_mv_sum_now_end() must restore.
 */
int
opsdemo_mv_sum_now_begin(void)
{
	int			previous = armed_depth;

	armed_depth = trigger_depth();
	if (previous < 0)
		last_relid = InvalidOid;
	return previous;
}

void
opsdemo_mv_sum_now_end(int previous)
{
	armed_depth = previous;
	if (previous < 0)
		last_relid = InvalidOid;
}

/* Argument positions of opsdemo_mv_sum_count_now() */
#define ARG_TABLE		0
#define ARG_CTID		1
#define ARG_OLD			2		/* status, amount, client_id, operation_type */
#define ARG_NEW			6		/* the same */
#define NARGS			10

/*
 * What the call site's shape was found to be, kept in fn_extra: the WHEN
 * clause of a given trigger on a given partition is always about that
 * partition's rows.
 */
typedef struct CallSite
{
	Oid			relid;
	bool		valid;
} CallSite;

static bool
is_column(Node *arg, int varno, AttrNumber attnum)
{
	return arg != NULL && IsA(arg, Var) &&
		((Var *) arg)->varno == varno && ((Var *) arg)->varattno == attnum;
}

static bool
is_null_const(Node *arg)
{
	return arg != NULL && IsA(arg, Const) && ((Const *) arg)->constisnull;
}

/*
 * Is the call exactly the one in t1's WHEN clauses: the row's own tableoid
 * and ctid, then OLD's (or four NULLs) and NEW's status, amount, client_id
 * and operation_type, as columns of relid (TriggerEnabled() turns OLD's
 * Vars into INNER_VAR and NEW's into OUTER_VAR ones)?  A value chosen by
 * whoever wrote the call can then not be counted, only the row itself.
 */
static bool
call_site_valid(FunctionCallInfo fcinfo, Oid relid)
{
	Node	   *expr = fcinfo->flinfo != NULL ? fcinfo->flinfo->fn_expr : NULL;
	List	   *args;
	AttrNumber	cols[4];
	bool		old_nulls = true;
	bool		old_columns = true;

	if (expr == NULL || !IsA(expr, FuncExpr))
		return false;
	args = ((FuncExpr *) expr)->args;
	if (list_length(args) != NARGS ||
		!is_column(list_nth(args, ARG_TABLE), OUTER_VAR, TableOidAttributeNumber) ||
		!is_column(list_nth(args, ARG_CTID), OUTER_VAR, SelfItemPointerAttributeNumber))
		return false;
	if (!opsdemo_mv_sum_relation_columns(relid, cols))
		return false;
	for (int i = 0; i < 4; i++)
	{
		if (!is_column(list_nth(args, ARG_NEW + i), OUTER_VAR, cols[i]))
			return false;
		old_nulls &= is_null_const(list_nth(args, ARG_OLD + i));
		old_columns &= is_column(list_nth(args, ARG_OLD + i), INNER_VAR, cols[i]);
	}
	return old_nulls || old_columns;
}

/* One side (old or new) of the change, if its status is 1. */
static void
count_side(FunctionCallInfo fcinfo, int first, bool negative)
{
	if (PG_ARGISNULL(first) || PG_GETARG_INT16(first) != 1)
		return;
	if (PG_ARGISNULL(first + 1) || PG_ARGISNULL(first + 2) ||
		PG_ARGISNULL(first + 3))
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("mv_sum cannot count a row with a null amount, client_id or operation_type")));
	opsdemo_mv_sum_add_delta(PG_GETARG_INT64(first + 2),
							 PG_GETARG_TEXT_PP(first + 3),
							 PG_GETARG_DATUM(first + 1), 1, negative);
}

/*
 * opsdemo_mv_sum_count_now(row_table oid, row_ctid tid,
 *		old_status, old_amount, old_client_id, old_operation_type,
 *		new_status, new_amount, new_client_id, new_operation_type) -> boolean
 *
 * True if the change is counted (now, or already by an earlier call for
 * the same row): the old side subtracted, the new side added, each if its
 * status is 1.  False if the trigger must count it.
 */
Datum
opsdemo_mv_sum_count_now(PG_FUNCTION_ARGS)
{
	CallSite   *site;
	Oid			relid;
	ItemPointer ctid;

	if (armed_depth < 0 || trigger_depth() != armed_depth)
		PG_RETURN_BOOL(false);
	if (PG_NARGS() != NARGS || PG_ARGISNULL(ARG_TABLE) || PG_ARGISNULL(ARG_CTID))
		PG_RETURN_BOOL(false);
	relid = PG_GETARG_OID(ARG_TABLE);
	ctid = (ItemPointer) PG_GETARG_POINTER(ARG_CTID);

	site = (CallSite *) fcinfo->flinfo->fn_extra;
	if (site == NULL || site->relid != relid)
	{
		if (site == NULL)
			site = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(CallSite));
		site->relid = relid;
		site->valid = call_site_valid(fcinfo, relid);
		fcinfo->flinfo->fn_extra = site;
	}
	if (!site->valid)
		PG_RETURN_BOOL(false);

	/* another trigger's WHEN clause may hold the same call */
	if (relid == last_relid && ItemPointerEquals(ctid, &last_ctid))
		PG_RETURN_BOOL(true);

	count_side(fcinfo, ARG_OLD, true);
	count_side(fcinfo, ARG_NEW, false);
	last_relid = relid;
	ItemPointerCopy(ctid, &last_ctid);
	PG_RETURN_BOOL(true);
}

/*
 * Is the COPY FROM's target t1 or one of its partitions?  Resolved here
 * without a lock; should the name lead COPY to another table after all,
 * the row_table check above refuses its rows.
 */
static bool
copy_into_t1(CopyStmt *stmt)
{
	Oid			relid;
	Oid			nspid;
	Oid			t1_relid;

	if (!stmt->is_from || stmt->relation == NULL || stmt->whereClause != NULL)
		return false;
	if (!IsTransactionState() ||
		!OidIsValid(get_extension_oid(OPSDEMO_EXTENSION_NAME, true)))
		return false;
	relid = RangeVarGetRelid(stmt->relation, NoLock, true);
	if (!OidIsValid(relid))
		return false;
	nspid = opsdemo_schema_oid();
	t1_relid = get_relname_relid(OPSDEMO_TABLE_NAME, nspid);
	return OidIsValid(t1_relid) && opsdemo_is_t1_or_partition(relid, t1_relid);
}

/*
 * COPY FROM without a WHERE clause evaluates no expression of the caller's:
 * its rows are counted as they are written.
 */
static void
mv_sum_now_process_utility(PlannedStmt *pstmt, const char *queryString,
						   bool readOnlyTree, ProcessUtilityContext context,
						   ParamListInfo params, QueryEnvironment *queryEnv,
						   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	bool		arm = IsA(parsetree, CopyStmt) && copy_into_t1((CopyStmt *) parsetree);
	int			previous = 0;

	if (arm)
		previous = opsdemo_mv_sum_now_begin();
	PG_TRY();
	{
		if (prev_process_utility)
			prev_process_utility(pstmt, queryString, readOnlyTree, context,
								 params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		if (arm)
			opsdemo_mv_sum_now_end(previous);
	}
	PG_END_TRY();
}

static void
mv_sum_now_xact_callback(XactEvent event, void *arg)
{
	/* Every arming ends with its statement; this only makes sure. */
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		armed_depth = -1;
		last_relid = InvalidOid;
	}
}

void
opsdemo_mv_sum_now_init(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = mv_sum_now_process_utility;
	RegisterXactCallback(mv_sum_now_xact_callback, NULL);
}
