/*-------------------------------------------------------------------------
 *
 * partitions.c
 *	  Monthly partitions of t1.
 *
 * Policy: both.  Monthly partitions (UTC months, named t1_YYYY_MM) are
 * created ahead of need: the generator creates those of its period before
 * writing, the insert tick keeps the current and the next month present.
 * A DEFAULT partition catches any other date, so an insert never fails for
 * lack of a partition.  When a month is created while t1_default already
 * holds rows of that month, those rows are moved through the root table
 * (DELETE + INSERT on t1) so that triggers and logical replication see the
 * move.
 *
 * Creating partitions needs ownership of t1, but every role that may
 * INSERT into t1 may cause the months it writes to be created: the entry
 * points check the caller's INSERT privilege, then run the DDL as t1's
 * owner under SECURITY_RESTRICTED_OPERATION with a safe search_path, the
 * way REFRESH MATERIALIZED VIEW runs a view's query.
 *
 * ATTACH PARTITION locks the default partition in ACCESS EXCLUSIVE mode,
 * which blocks every reader of t1.  The months are therefore created by a
 * background worker in a short transaction of its own
 * (partition_worker.c), not in the caller's transaction, which may go on
 * loading for minutes.  The caller's transaction does the work itself only
 * where the worker could not: see creation_needs_caller().
 *
 * The number of partitions is bounded by opsdemo.max_partitions, so that a
 * role with nothing but INSERT cannot fill the catalog (and the lock table
 * of every query on t1) with months no one needs.  The months around now
 * are exempt: the insert job needs them, and the bound must not become a
 * way to stop it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/partition.h"
#include "catalog/pg_inherits.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "opsdemo.h"

PG_FUNCTION_INFO_V1(opsdemo_partitions_ensure);

/* More months than this in one call is almost certainly a mistake. */
#define MAX_MONTHS_PER_CALL 240

int			opsdemo_max_partitions = 240;
int			opsdemo_partition_lock_timeout = 10000;

void
opsdemo_partitions_init(void)
{
	DefineCustomIntVariable("opsdemo.max_partitions",
							"Most monthly partitions of t1 that pg_opsdemo creates.",
							"opsdemo_partitions_ensure, opsdemo_generate and the "
							"insert job refuse to create a month beyond it; last "
							"month, this month and next month are always created.",
							&opsdemo_max_partitions,
							240, 0, 100000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("opsdemo.partition_lock_timeout",
							"Longest wait of the partition-creating worker for a lock.",
							"The caller's lock_timeout applies instead when it is shorter.",
							&opsdemo_partition_lock_timeout,
							10000, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
}

/* Months since year 0 of the UTC month containing "at". */
int
opsdemo_utc_month_index(TimestampTz at)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(at, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	return tm.tm_year * 12 + (tm.tm_mon - 1);
}

/* The first instant of a month given by opsdemo_utc_month_index(). */
TimestampTz
opsdemo_utc_month_start(int month_index)
{
	struct pg_tm tm;
	TimestampTz result;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = month_index / 12;
	tm.tm_mon = month_index % 12 + 1;
	tm.tm_mday = 1;
	if (tm2timestamp(&tm, 0, NULL, &result) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	return result;
}

/* The name of a month's partition, t1_YYYY_MM, into name[NAMEDATALEN]. */
void
opsdemo_month_partition_name(int month_index, char *name)
{
	snprintf(name, NAMEDATALEN, "%s_%04d_%02d", OPSDEMO_TABLE_NAME,
			 month_index / 12, month_index % 12 + 1);
}

/* The partition of one month: t1_YYYY_MM, and whether it is one of t1's. */
static bool
month_partition_exists(Oid nspid, int month_index)
{
	char		name[NAMEDATALEN];
	Oid			relid;

	opsdemo_month_partition_name(month_index, name);
	relid = get_relname_relid(name, nspid);

	/*
	 * A table of that name that is not a partition does not count: the
	 * creator then reports it rather than leaving the month in the default
	 * partition for ever.
	 */
	return OidIsValid(relid) && get_rel_relispartition(relid);
}

static int
count_missing_months(Oid nspid, TimestampTz from, TimestampTz to,
					 int exempt_first, int exempt_last, int *not_exempt)
{
	int			last = opsdemo_utc_month_index(to - 1);
	int			missing = 0;

	*not_exempt = 0;
	for (int m = opsdemo_utc_month_index(from); m <= last; m++)
	{
		if (month_partition_exists(nspid, m))
			continue;
		missing++;
		if (m < exempt_first || m > exempt_last)
			(*not_exempt)++;
	}
	return missing;
}

/*
 * Validate a [from, to) range of operation dates before anything is
 * created for it: both ends representable in an operation GUID, not empty,
 * and not so long that it would create an absurd number of partitions.
 * "what" names the range in messages ("generation period", ...).
 */
void
opsdemo_check_range(TimestampTz from, TimestampTz to, const char *what)
{
	opsdemo_check_guid_range(from, psprintf("%s start", what));
	opsdemo_check_guid_range(to, psprintf("%s end", what));
	if (from >= to)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is empty or inverted", what),
				 errdetail("Start %s is not before end %s.",
						   pstrdup(timestamptz_to_str(from)),
						   pstrdup(timestamptz_to_str(to)))));

	if (opsdemo_utc_month_index(to) - opsdemo_utc_month_index(from) >= MAX_MONTHS_PER_CALL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s from %s to %s spans more than %d months", what,
						pstrdup(timestamptz_to_str(from)),
						pstrdup(timestamptz_to_str(to)),
						MAX_MONTHS_PER_CALL),
				 errhint("Each month of the range gets its own partition.")));
}

bool
opsdemo_partition_exists_for(Oid nspid, TimestampTz at)
{
	return month_partition_exists(nspid, opsdemo_utc_month_index(at));
}

Oid			opsdemo_moving_rows_of = InvalidOid;

/* Number of partitions of t1 that are not its default partition. */
static int
count_month_partitions(Oid t1_relid)
{
	List	   *children = find_inheritance_children(t1_relid, NoLock);
	Oid			default_relid = get_default_partition_oid(t1_relid);
	int			n = list_length(children);

	if (OidIsValid(default_relid) && list_member_oid(children, default_relid))
		n--;
	list_free(children);
	return n;
}

/*
 * Refuse to add not_exempt months (those other than last, this and next
 * month) to [from, to) beyond max_partitions.
 */
void
opsdemo_check_partition_limit(Oid t1_relid, int not_exempt,
							  TimestampTz from, TimestampTz to,
							  int max_partitions)
{
	int			existing;

	if (not_exempt <= 0)
		return;
	existing = count_month_partitions(t1_relid);
	if (existing + not_exempt > max_partitions)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("partitions of \"%s\" would exceed opsdemo.max_partitions (%d)",
						OPSDEMO_TABLE_NAME, max_partitions),
				 errdetail("Monthly partitions: %d existing, %d more needed for the range from %s to %s.",
						   existing, not_exempt,
						   pstrdup(timestamptz_to_str(from)),
						   pstrdup(timestamptz_to_str(to))),
				 errhint("Drop months that are no longer needed, or ask a superuser to raise opsdemo.max_partitions.")));
}

/* Is the month exempt from opsdemo.max_partitions (last, this or next)? */
bool
opsdemo_month_exempt(int month_index)
{
	int			now_month = opsdemo_utc_month_index(GetCurrentTimestamp());

	return month_index >= now_month - 1 && month_index <= now_month + 1;
}

/*
 * Create the missing monthly partitions covering [from, to) in the current
 * transaction, as t1's owner, and return how many were created.  The caller
 * has checked privileges.  Runs in the partition worker, or in the caller's
 * own transaction where the worker cannot be used.
 */
int
opsdemo_partitions_create_here(Oid nspid, Oid t1_relid,
							   TimestampTz from, TimestampTz to,
							   int max_partitions)
{
	OpsdemoSavedUser saved_user;
	StringInfoData sql;
	Oid			argtypes[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		args[2];
	int			now_month;
	int			missing;
	int			not_exempt;
	Oid			default_relid;
	bool		isnull;
	int			created;
	int			ret;

	opsdemo_become_owner(t1_relid, &saved_user);

	/*
	 * Bounds are written by opsdemo_partitions_create in ISO format and UTC
	 * already; pinning the settings here too keeps them right when the SQL
	 * objects are still those of version 1.0, which formatted them in the
	 * caller's DateStyle and TimeZone.  opsdemo_restore_user undoes this.
	 */
	(void) set_config_option("datestyle", "ISO, YMD", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("timezone", "UTC", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("intervalstyle", "postgres", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);

	/*
	 * One creator at a time, in a key space of our own (see opsdemo.h).
	 * Another creator may have made some of our months while we waited, and
	 * syscache entries saying they do not exist may be stale.
	 */
	(void) DirectFunctionCall2(pg_advisory_xact_lock_int4,
							   Int32GetDatum(OPSDEMO_LOCK_CLASS),
							   Int32GetDatum(OPSDEMO_LOCK_PARTITIONS));
	AcceptInvalidationMessages();

	now_month = opsdemo_utc_month_index(GetCurrentTimestamp());
	missing = count_missing_months(nspid, from, to, now_month - 1, now_month + 1,
								   &not_exempt);
	if (missing == 0)
	{
		opsdemo_restore_user(&saved_user);
		return 0;
	}

	opsdemo_check_partition_limit(t1_relid, not_exempt, from, to,
								  max_partitions);

	/*
	 * Take ATTACH PARTITION's locks up front, in its order (t1, then the
	 * default partition): once the default partition is ours, no transaction
	 * still writing into it can commit rows of a month between their move
	 * and the attach.
	 */
	LockRelationOid(t1_relid, ShareUpdateExclusiveLock);
	default_relid = get_default_partition_oid(t1_relid);
	if (OidIsValid(default_relid))
		LockRelationOid(default_relid, AccessExclusiveLock);

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT %s.opsdemo_partitions_create($1, $2)",
					 quote_identifier(get_namespace_name(nspid)));
	args[0] = TimestampTzGetDatum(from);
	args[1] = TimestampTzGetDatum(to);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	opsdemo_moving_rows_of = t1_relid;
	PG_TRY();
	{
		ret = SPI_execute_with_args(sql.data, 2, argtypes, args, NULL, false, 1);
	}
	PG_FINALLY();
	{
		opsdemo_moving_rows_of = InvalidOid;
	}
	PG_END_TRY();
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "partition maintenance query failed: %s",
			 SPI_result_code_string(ret));
	created = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();

	opsdemo_restore_user(&saved_user);
	pfree(sql.data);
	return isnull ? 0 : created;
}

/* Does this backend hold a lock of at least "weakest" on the object? */
static bool
holds_lock(const LOCKTAG *tag, LOCKMODE weakest)
{
	for (LOCKMODE mode = weakest; mode <= MaxLockMode; mode++)
	{
#if PG_VERSION_NUM >= 170000
		if (LockHeldByMe(tag, mode, false))
#else
		if (LockHeldByMe(tag, mode))
#endif
			return true;
	}
	return false;
}

/*
 * Why the months must be created in the caller's transaction, or NULL if
 * the worker can create them.  The caller waits for the worker, so a lock
 * of the caller's that the worker needs would be a deadlock no one
 * detects: the worker needs the creation lock, SHARE UPDATE EXCLUSIVE on
 * t1, ACCESS EXCLUSIVE on the default partition, and to see every row of
 * the month in the default partition (a caller who wrote any holds a lock
 * on it).  Anything else it waits for at most its lock timeout.
 */
static const char *
creation_needs_caller(Oid t1_relid)
{
	LOCKTAG		tag;
	Oid			default_relid;

	if (!IsUnderPostmaster)
		return "no background workers in single-user mode";

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, OPSDEMO_LOCK_CLASS,
						 OPSDEMO_LOCK_PARTITIONS, 2);
	if (holds_lock(&tag, ExclusiveLock))
		return "this transaction holds the partition creation lock";

	SET_LOCKTAG_RELATION(tag, MyDatabaseId, t1_relid);
	if (holds_lock(&tag, ShareUpdateExclusiveLock))
		return "this transaction holds a lock on t1 that conflicts with ATTACH PARTITION";

	default_relid = get_default_partition_oid(t1_relid);
	if (OidIsValid(default_relid))
	{
		SET_LOCKTAG_RELATION(tag, MyDatabaseId, default_relid);
		if (holds_lock(&tag, AccessShareLock))
			return "this transaction has used the default partition";
	}
	return NULL;
}

/*
 * Create the missing monthly partitions covering [from, to).  The caller
 * has checked privileges.  Returns the number of partitions created.
 */
int
opsdemo_partitions_ensure_range(Oid nspid, Oid t1_relid,
								TimestampTz from, TimestampTz to)
{
	int			not_exempt;
	const char *reason;
	int			created;

	/* The common case, every month present, costs a syscache lookup each. */
	if (count_missing_months(nspid, from, to, 0, -1, &not_exempt) == 0)
		return 0;

	/* The worker would otherwise write where the caller may not. */
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot create partitions of \"%s\" during recovery",
						OPSDEMO_TABLE_NAME),
				 errhint("Create the months on the primary.")));
	if (XactReadOnly)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot create partitions of \"%s\" in a read-only transaction",
						OPSDEMO_TABLE_NAME)));

	reason = creation_needs_caller(t1_relid);
	if (reason == NULL)
	{
		int			timeout = opsdemo_partition_lock_timeout;

		if (LockTimeout > 0 && LockTimeout < timeout)
			timeout = LockTimeout;
		if (opsdemo_partitions_create_in_worker(nspid, t1_relid, from, to,
												opsdemo_max_partitions,
												timeout, &created))
		{
			/* Route our next rows by the partitions the worker attached. */
			AcceptInvalidationMessages();
			return created;
		}

		/*
		 * Readers of t1 now wait for the caller's commit: worth a line in
		 * the server log, unlike the expected cases below.
		 */
		ereport(LOG,
				(errmsg("no background worker could be started to create partitions of \"%s\"; creating them in the calling transaction",
						OPSDEMO_TABLE_NAME),
				 errdetail("The default partition stays locked in ACCESS EXCLUSIVE mode until that transaction ends."),
				 errhint("Raise max_worker_processes.")));
	}
	else
		ereport(DEBUG1,
				(errmsg_internal("pg_opsdemo: creating partitions of t1 in the calling transaction: %s",
								 reason)));
	return opsdemo_partitions_create_here(nspid, t1_relid, from, to,
										  opsdemo_max_partitions);
}

/*
 * opsdemo_partitions_ensure(from timestamptz, to timestamptz) returns integer
 *
 * Creates the monthly partitions covering [from, to) that do not exist yet
 * and returns how many it created.
 */
Datum
opsdemo_partitions_ensure(PG_FUNCTION_ARGS)
{
	TimestampTz from;
	TimestampTz to;
	Oid			nspid;
	Oid			relid;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("partition range bounds must not be NULL")));
	from = PG_GETARG_TIMESTAMPTZ(0);
	to = PG_GETARG_TIMESTAMPTZ(1);

	opsdemo_check_range(from, to, "partition range");

	nspid = opsdemo_schema_oid();
	relid = opsdemo_t1_relid(nspid);
	opsdemo_check_insert_privilege(relid);

	PG_RETURN_INT32(opsdemo_partitions_ensure_range(nspid, relid, from, to));
}
