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
 * point checks the caller's INSERT privilege, then runs the DDL as t1's
 * owner under SECURITY_RESTRICTED_OPERATION with a safe search_path, the
 * way REFRESH MATERIALIZED VIEW runs a view's query.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "opsdemo.h"

PG_FUNCTION_INFO_V1(opsdemo_partitions_ensure);

/* More months than this in one call is almost certainly a mistake. */
#define MAX_MONTHS_PER_CALL 240

/* First instant of the UTC month containing "at", and its year and month. */
static void
utc_month_of(TimestampTz at, int *year, int *month)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(at, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	*year = tm.tm_year;
	*month = tm.tm_mon;
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
	int			from_year,
				from_month,
				to_year,
				to_month;

	opsdemo_check_guid_range(from, psprintf("%s start", what));
	opsdemo_check_guid_range(to, psprintf("%s end", what));
	if (from >= to)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is empty or inverted", what),
				 errdetail("Start %s is not before end %s.",
						   pstrdup(timestamptz_to_str(from)),
						   pstrdup(timestamptz_to_str(to)))));

	utc_month_of(from, &from_year, &from_month);
	utc_month_of(to, &to_year, &to_month);
	if ((to_year - from_year) * 12 + (to_month - from_month) >= MAX_MONTHS_PER_CALL)
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
	int			year,
				month;
	char		name[NAMEDATALEN];

	utc_month_of(at, &year, &month);
	snprintf(name, sizeof(name), "%s_%04d_%02d", OPSDEMO_TABLE_NAME, year, month);
	return OidIsValid(get_relname_relid(name, nspid));
}

/*
 * Create the missing monthly partitions covering [from, to).  The caller
 * has checked privileges; this runs the DDL as t1's owner.  Returns the
 * number of partitions created.
 */
int
opsdemo_partitions_ensure_range(Oid nspid, Oid t1_relid,
								TimestampTz from, TimestampTz to)
{
	OpsdemoSavedUser saved_user;
	StringInfoData sql;
	Oid			argtypes[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		args[2];
	bool		isnull;
	int			created;
	int			ret;

	opsdemo_become_owner(t1_relid, &saved_user);

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT %s.opsdemo_partitions_create($1, $2)",
					 quote_identifier(get_namespace_name(nspid)));
	args[0] = TimestampTzGetDatum(from);
	args[1] = TimestampTzGetDatum(to);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_with_args(sql.data, 2, argtypes, args, NULL, false, 1);
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
