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
 * NOT opsdemo_mv_sum_count_now(NEW.tableoid, OLD..., NEW...): when it adds
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
 *	- when its first argument is the row's own tableoid column, as in the
 *	  WHEN clause (a Var, not a value anyone can choose), and that is t1 or
 *	  one of its partitions.
 *
 * Called any other way it returns false and does nothing: a user cannot
 * forge a change to mv_sum with it.  The expressions that do run armed
 * (column defaults, generated columns, constraints, index expressions) are
 * t1's owner's, who can change mv_sum anyway.
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
	return previous;
}

void
opsdemo_mv_sum_now_end(int previous)
{
	armed_depth = previous;
}

/*
 * Is the call's first argument the tableoid column of the row the WHEN
 * clause is about?  TriggerEnabled() turns NEW's Vars into OUTER_VAR ones.
 */
static bool
first_arg_is_row_tableoid(FunctionCallInfo fcinfo)
{
	Node	   *expr = fcinfo->flinfo != NULL ? fcinfo->flinfo->fn_expr : NULL;
	Node	   *arg;
	Var		   *var;

	if (expr == NULL || !IsA(expr, FuncExpr) ||
		list_length(((FuncExpr *) expr)->args) < 1)
		return false;
	arg = linitial(((FuncExpr *) expr)->args);
	if (!IsA(arg, Var))
		return false;
	var = (Var *) arg;
	return var->varno == OUTER_VAR &&
		var->varattno == TableOidAttributeNumber;
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
 * opsdemo_mv_sum_count_now(row_table oid,
 *		old_status, old_amount, old_client_id, old_operation_type,
 *		new_status, new_amount, new_client_id, new_operation_type) -> boolean
 *
 * True if it counted the change (the old side subtracted, the new side
 * added, each if its status is 1); false if the trigger must.
 */
Datum
opsdemo_mv_sum_count_now(PG_FUNCTION_ARGS)
{
	if (armed_depth < 0 || trigger_depth() != armed_depth)
		PG_RETURN_BOOL(false);
	if (PG_NARGS() != 9 || PG_ARGISNULL(0) || !first_arg_is_row_tableoid(fcinfo))
		PG_RETURN_BOOL(false);
	if (!opsdemo_mv_sum_counts_relation(PG_GETARG_OID(0)))
		PG_RETURN_BOOL(false);

	count_side(fcinfo, 1, true);
	count_side(fcinfo, 5, false);
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
		armed_depth = -1;
}

void
opsdemo_mv_sum_now_init(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = mv_sum_now_process_utility;
	RegisterXactCallback(mv_sum_now_xact_callback, NULL);
}
