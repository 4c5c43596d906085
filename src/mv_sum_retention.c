/*-------------------------------------------------------------------------
 *
 * mv_sum_retention.c
 *	  Dropping old months of t1 without leaving mv_sum wrong.
 *
 * Dropping or detaching a partition removes its rows from t1 without firing
 * a single row trigger, so mv_sum would go on counting them.  Two ways in,
 * one rule: whoever removes a partition first subtracts its status = 1
 * groups, holding the same locks the removal takes (ACCESS EXCLUSIVE on t1,
 * then on the partition, in that order, so no writer can change the rows in
 * between and no deadlock arises against DML, which locks in that order
 * too).  The subtraction is an ordinary pending delta: it reaches mv_sum at
 * commit, and vanishes with the DROP if that rolls back.
 *
 *	- opsdemo_partitions_drop(before) is the retention workflow: it drops
 *	  every monthly partition that lies wholly before "before".
 *	- The event trigger opsdemo_partition_guard corrects mv_sum the same way
 *	  for a bare DROP TABLE or ALTER TABLE t1 DETACH PARTITION of a t1
 *	  partition (this also covers pg_restore --clean), and refuses DETACH
 *	  PARTITION ... CONCURRENTLY and FINALIZE: those commit while writers may
 *	  still change the partition, so no subtraction could be exact.
 *
 * Not covered: partitions that disappear as a side effect of another
 * object's drop (DROP SCHEMA ... CASCADE of a schema holding a partition,
 * DROP OWNED), which no ddl_command_start event names.  DDL is not
 * replicated, so on a logical replica these run (or not) on their own, and
 * keep that node's mv_sum exact for that node's t1.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "opsdemo.h"

/* The trigger opsdemo_partition_prepare puts on every partition. */
#define TRUNCATE_TRIGGER_NAME	"mv_sum_truncate"

PG_FUNCTION_INFO_V1(opsdemo_partitions_drop);
PG_FUNCTION_INFO_V1(opsdemo_partition_guard);

/*
 * Set while opsdemo_partitions_drop runs its own DETACH and DROP, which
 * have been accounted for already.
 */
static bool partitions_drop_running = false;

static bool
owned_by_current_user(Oid relid)
{
#if PG_VERSION_NUM >= 160000
	return object_ownercheck(RelationRelationId, relid, GetUserId());
#else
	return pg_class_ownercheck(relid, GetUserId());
#endif
}

/*
 * The upper bound of a range partition whose bound is one timestamptz
 * value; false for the default partition and anything else.
 */
static bool
partition_upper_bound(Oid relid, TimestampTz *upper)
{
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Datum		datum;
	bool		isnull;
	bool		result = false;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	datum = SysCacheGetAttr(RELOID, tuple, Anum_pg_class_relpartbound, &isnull);
	if (!isnull)
	{
		PartitionBoundSpec *spec = castNode(PartitionBoundSpec,
											stringToNode(TextDatumGetCString(datum)));

		if (!spec->is_default && spec->strategy == PARTITION_STRATEGY_RANGE &&
			list_length(spec->upperdatums) == 1)
		{
			PartitionRangeDatum *prd = linitial_node(PartitionRangeDatum,
													 spec->upperdatums);

			if (prd->kind == PARTITION_RANGE_DATUM_VALUE && IsA(prd->value, Const))
			{
				Const	   *c = castNode(Const, prd->value);

				if (!c->constisnull && c->consttype == TIMESTAMPTZOID)
				{
					*upper = DatumGetTimestampTz(c->constvalue);
					result = true;
				}
			}
		}
	}
	ReleaseSysCache(tuple);
	return result;
}

/* Runs one utility statement as relid's owner, search_path pinned. */
static void
run_as_owner(Oid relid, const char *sql)
{
	OpsdemoSavedUser saved_user;
	int			ret;

	opsdemo_become_owner(relid, &saved_user);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute(sql, false, 0);
	if (ret != SPI_OK_UTILITY)
		elog(ERROR, "\"%s\" failed: %s", sql, SPI_result_code_string(ret));
	SPI_finish();
	opsdemo_restore_user(&saved_user);
}

static char *
qualified_name(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

/*
 * Takes partrelid's rows out of mv_sum before it leaves t1.  Locks as the
 * removal itself does: t1 first, then the partition.
 */
static void
subtract_leaving_partition(Oid t1_relid, Oid partrelid)
{
	LockRelationOid(t1_relid, AccessExclusiveLock);
	LockRelationOid(partrelid, AccessExclusiveLock);
	opsdemo_mv_sum_subtract_relation(partrelid);
}

/*
 * opsdemo_partitions_drop(before timestamptz) returns integer
 *
 * Detaches and drops every partition of t1 whose range ends at or before
 * "before" (never the default partition), subtracting their rows from
 * mv_sum, all in the caller's transaction; returns how many it dropped.
 * Runs the DDL as t1's owner: EXECUTE on this function is the right to
 * remove old data.
 */
Datum
opsdemo_partitions_drop(PG_FUNCTION_ARGS)
{
	TimestampTz before = PG_GETARG_TIMESTAMPTZ(0);
	Oid			t1_relid = opsdemo_t1_relid(opsdemo_schema_oid());
	List	   *partitions;
	ListCell   *lc;
	int32		dropped = 0;

	/* Before any partition lock: DETACH needs this one anyway. */
	LockRelationOid(t1_relid, AccessExclusiveLock);
	partitions = find_inheritance_children(t1_relid, NoLock);

	foreach(lc, partitions)
	{
		Oid			partrelid = lfirst_oid(lc);
		TimestampTz upper;
		char	   *partname;
		StringInfoData sql;

		if (!partition_upper_bound(partrelid, &upper) || upper > before)
			continue;

		partname = qualified_name(partrelid);
		subtract_leaving_partition(t1_relid, partrelid);

		initStringInfo(&sql);
		appendStringInfo(&sql, "ALTER TABLE %s DETACH PARTITION %s",
						 qualified_name(t1_relid), partname);
		partitions_drop_running = true;
		PG_TRY();
		{
			run_as_owner(t1_relid, sql.data);
			resetStringInfo(&sql);
			appendStringInfo(&sql, "DROP TABLE %s", partname);
			run_as_owner(partrelid, sql.data);
		}
		PG_FINALLY();
		{
			partitions_drop_running = false;
		}
		PG_END_TRY();
		pfree(sql.data);
		dropped++;
	}
	PG_RETURN_INT32(dropped);
}

static void
refuse_concurrent_detach(Oid partrelid, bool finalize)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("cannot detach partition \"%s\" of \"%s\" %s",
					get_rel_name(partrelid), OPSDEMO_TABLE_NAME,
					finalize ? "with FINALIZE" : "concurrently"),
			 errdetail("Its rows would leave mv_sum's totals while other transactions may still change them."),
			 errhint("Use opsdemo_partitions_drop() to remove old months, or DETACH PARTITION without CONCURRENTLY.")));
}

/* DROP TABLE naming partitions of t1: subtract them first. */
static void
guard_drop(DropStmt *stmt, Oid t1_relid)
{
	ListCell   *lc;

	foreach(lc, stmt->objects)
	{
		RangeVar   *rv = makeRangeVarFromNameList((List *) lfirst(lc));
		Oid			relid = RangeVarGetRelid(rv, NoLock, true);

		/*
		 * Leave refusals to DROP itself (missing, not the owner, t1 being an
		 * extension member); it checks before it locks, and so do we.
		 */
		if (!OidIsValid(relid) || relid == t1_relid ||
			!opsdemo_is_t1_or_partition(relid, t1_relid) ||
			!owned_by_current_user(relid))
			continue;
		subtract_leaving_partition(t1_relid, relid);
	}
}

/* ALTER TABLE t1 DETACH PARTITION: subtract the partition first. */
static void
guard_detach(AlterTableStmt *stmt, Oid t1_relid)
{
	ListCell   *lc;
	Oid			relid = InvalidOid;

	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);
		PartitionCmd *partcmd;
		Oid			partrelid;

		if (cmd->subtype != AT_DetachPartition &&
			cmd->subtype != AT_DetachPartitionFinalize)
			continue;
		if (!OidIsValid(relid))
			relid = RangeVarGetRelid(stmt->relation, NoLock, true);
		if (relid != t1_relid || !owned_by_current_user(relid))
			return;
		partcmd = castNode(PartitionCmd, cmd->def);
		partrelid = RangeVarGetRelid(partcmd->name, NoLock, true);
		if (!OidIsValid(partrelid) ||
			!opsdemo_is_t1_or_partition(partrelid, t1_relid))
			continue;
		if (cmd->subtype == AT_DetachPartitionFinalize || partcmd->concurrent)
			refuse_concurrent_detach(partrelid,
									 cmd->subtype == AT_DetachPartitionFinalize);

		subtract_leaving_partition(t1_relid, partrelid);
		/* Detached, its TRUNCATE would subtract its rows a second time. */
		run_as_owner(partrelid,
					 psprintf("DROP TRIGGER IF EXISTS %s ON %s",
							  quote_identifier(TRUNCATE_TRIGGER_NAME),
							  qualified_name(partrelid)));
	}
}

/*
 * Event trigger on ddl_command_start for DROP TABLE and ALTER TABLE.
 */
Datum
opsdemo_partition_guard(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;
	Node	   *parsetree;
	Oid			extoid;
	Oid			nspid;
	Oid			t1_relid;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" was not called by event trigger manager",
						"opsdemo_partition_guard")));
	trigdata = (EventTriggerData *) fcinfo->context;
	if (strcmp(trigdata->event, "ddl_command_start") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" must be fired on ddl_command_start",
						"opsdemo_partition_guard")));
	if (partitions_drop_running)
		PG_RETURN_VOID();

	parsetree = trigdata->parsetree;
	if (!(IsA(parsetree, DropStmt) &&
		  ((DropStmt *) parsetree)->removeType == OBJECT_TABLE) &&
		!IsA(parsetree, AlterTableStmt))
		PG_RETURN_VOID();

	/*
	 * This runs for every DROP TABLE and ALTER TABLE in the database: with
	 * the extension's t1 gone or replaced there is nothing to protect, and
	 * failing here would block unrelated DDL.
	 */
	extoid = get_extension_oid(OPSDEMO_EXTENSION_NAME, true);
	if (!OidIsValid(extoid))
		PG_RETURN_VOID();
	nspid = opsdemo_schema_oid();
	t1_relid = get_relname_relid(OPSDEMO_TABLE_NAME, nspid);
	if (!OidIsValid(t1_relid) ||
		get_rel_relkind(t1_relid) != RELKIND_PARTITIONED_TABLE)
		PG_RETURN_VOID();

	if (IsA(parsetree, DropStmt))
		guard_drop((DropStmt *) parsetree, t1_relid);
	else
		guard_detach((AlterTableStmt *) parsetree, t1_relid);
	PG_RETURN_VOID();
}
