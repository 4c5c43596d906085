/*-------------------------------------------------------------------------
 *
 * read_only_guard.c
 *	  A trigger that keeps a logically replicated copy of a table read-only
 *	  on the nodes that only receive it.
 *
 * opsdemo_read_only_guard() is installed as
 *
 *	  BEFORE INSERT OR UPDATE OR DELETE ... FOR EACH ROW
 *	  BEFORE TRUNCATE ... FOR EACH STATEMENT
 *
 * with one argument, the name of the node that owns the table's writes
 * (opsdemo_make_read_only() in the install script creates both triggers).
 * Every local write then fails with SQLSTATE 25006, the error of a write
 * in a read-only transaction, naming the table and the owning node.
 *
 * Changes of the logical replication workers pass:
 *
 *	- An ordinary (ENABLE, "origin") trigger does not fire when
 *	  session_replication_role = replica, and that is how the apply, table
 *	  synchronization and parallel apply workers run: normally the guard
 *	  never sees their changes at all.
 *	- After ALTER TABLE ... ENABLE ALWAYS TRIGGER it fires in them too, and
 *	  lets them through by asking whether this process is a logical
 *	  replication worker (IsLogicalWorker(), the same function from 15
 *	  through 18), while it rejects every other session, including one
 *	  that set session_replication_role = replica.
 *
 * One local change passes too: pg_opsdemo itself creating a month of a
 * guarded t1 moves that month's rows out of the default partition (DELETE
 * and INSERT of the same rows, see partitions.c).
 *
 * The guard is a seat belt against mistakes, not a security boundary:
 * a session with session_replication_role = replica (settable by a
 * superuser, or by a role granted SET on it since 15) writes past an
 * ordinary guard because the trigger does not fire, and ALTER TABLE ...
 * DISABLE TRIGGER (the table's owner) switches it off.  Both are
 * PostgreSQL's design: who may do them can change the table anyway.  The
 * regression test 15_read_only_guard shows both.
 *
 * Mistakes in the trigger's definition (AFTER instead of BEFORE, FOR EACH
 * STATEMENT on a row event, a view or a foreign table, a missing or empty
 * node name) cannot be refused at CREATE TRIGGER time: PostgreSQL calls a
 * trigger function only when the trigger fires.  They are reported by the
 * first local write, with SQLSTATE 39P01 (trigger protocol violated),
 * 42809 (wrong object type) or 22023 (invalid parameter value); the
 * install helper creates the triggers the one right way.  In a logical
 * replication worker the guard passes before any of these checks: a
 * mistake must be reported to someone writing locally, not stop
 * replication.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_class.h"
#include "commands/trigger.h"
#include "replication/logicalworker.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "opsdemo.h"

#define READ_ONLY_GUARD_NAME	"opsdemo_read_only_guard"

PG_FUNCTION_INFO_V1(opsdemo_read_only_guard);

/*
 * What a trigger that lets the change happen returns: the row to write for
 * BEFORE ROW triggers, anything (NULL) for the others.
 */
static Datum
pass_change(TriggerData *trigdata)
{
	if (!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event))
		return PointerGetDatum(NULL);
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		return PointerGetDatum(trigdata->tg_newtuple);
	return PointerGetDatum(trigdata->tg_trigtuple);
}

static const char *
event_name(TriggerEvent event)
{
	if (TRIGGER_FIRED_BY_INSERT(event))
		return "INSERT";
	if (TRIGGER_FIRED_BY_UPDATE(event))
		return "UPDATE";
	if (TRIGGER_FIRED_BY_DELETE(event))
		return "DELETE";
	return "TRUNCATE";
}

/*
 * Refuses every way of firing the guard but the two the header names, and
 * returns the owning node's name.
 */
static const char *
check_definition(TriggerData *trigdata)
{
	Relation	rel = trigdata->tg_relation;
	Trigger    *trigger = trigdata->tg_trigger;
	TriggerEvent event = trigdata->tg_event;
	char		relkind = rel->rd_rel->relkind;

	/*
	 * A row trigger on a partitioned table fires on its partitions, which
	 * are plain tables; a TRUNCATE trigger fires on the table it is on.
	 * Views only get INSTEAD OF row triggers or statement triggers, and a
	 * foreign table's rows live on another server.
	 */
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("trigger \"%s\" cannot guard relation \"%s\"",
						trigger->tgname, RelationGetRelationName(rel)),
				 errdetail_relkind_not_supported(relkind),
				 errhint("Function \"%s\" guards tables only.",
						 READ_ONLY_GUARD_NAME)));

	if (!TRIGGER_FIRED_BEFORE(event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" on table \"%s\" must be fired BEFORE %s",
						trigger->tgname, RelationGetRelationName(rel),
						event_name(event)),
				 errhint("Create the triggers with %s().",
						 "opsdemo_make_read_only")));

	/*
	 * Row level for INSERT, UPDATE and DELETE: a row trigger on a
	 * partitioned table is cloned to every partition, present and future, so
	 * writes that name a partition directly are refused too; a statement
	 * trigger fires only for the table the statement names.  TRUNCATE has
	 * statement triggers only.
	 */
	if (!TRIGGER_FIRED_BY_TRUNCATE(event) && !TRIGGER_FIRED_FOR_ROW(event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" on table \"%s\" must be fired FOR EACH ROW for %s",
						trigger->tgname, RelationGetRelationName(rel),
						event_name(event)),
				 errdetail("A statement-level trigger does not see writes that name a partition."),
				 errhint("Create the triggers with %s().",
						 "opsdemo_make_read_only")));

	if (trigger->tgnargs != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("trigger \"%s\" on table \"%s\" must have one argument, the name of the node that writes the table, not %d",
						trigger->tgname, RelationGetRelationName(rel),
						trigger->tgnargs),
				 errhint("Create the triggers with %s().",
						 "opsdemo_make_read_only")));
	if (trigger->tgargs[0][0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("trigger \"%s\" on table \"%s\" has an empty node name",
						trigger->tgname, RelationGetRelationName(rel)),
				 errhint("Create the triggers with %s().",
						 "opsdemo_make_read_only")));

	return trigger->tgargs[0];
}

/*
 * The trigger function.  Its only argument is the name of the node whose
 * writes reach this table by logical replication.
 */
Datum
opsdemo_read_only_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata;
	Relation	rel;
	const char *owner_node;

	/* SELECT opsdemo_read_only_guard() gets here: nothing stops it. */
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" was not called by trigger manager",
						READ_ONLY_GUARD_NAME)));
	trigdata = (TriggerData *) fcinfo->context;

	if (IsLogicalWorker())
		return pass_change(trigdata);

	/*
	 * pg_opsdemo creating a month of a guarded t1 (a subscriber's copy
	 * whose rows of that month arrived before the month existed there):
	 * the rows move from the default partition into the new one, unchanged.
	 */
	if (OidIsValid(opsdemo_moving_rows_of) &&
		TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) &&
		!TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) &&
		opsdemo_is_t1_or_partition(RelationGetRelid(trigdata->tg_relation),
								   opsdemo_moving_rows_of))
		return pass_change(trigdata);

	owner_node = check_definition(trigdata);
	rel = trigdata->tg_relation;
	ereport(ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 errmsg("table %s is read-only on this node",
					quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
											   RelationGetRelationName(rel))),
			 errdetail("Its rows are written on node \"%s\" and arrive here by logical replication.",
					   owner_node),
			 errhint("Write through node \"%s\".", owner_node)));

	PG_RETURN_NULL();			/* keep compiler quiet */
}
