/*-------------------------------------------------------------------------
 *
 * catalog.c
 *	  Locating the extension's schema, t1 and its columns.
 *
 * Everything is resolved by OID from the extension's own schema, never
 * through search_path, so a caller's search_path cannot redirect our
 * writes to a look-alike table.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "opsdemo.h"

/*
 * The extension's schema, and t1 in it, as last looked up.  Every job tick
 * and every commit that applies mv_sum deltas needs the schema, and
 * looking it up is two catalog index scans.  The extension is not
 * relocatable, so the schema can only change by dropping the extension,
 * which drops t1: an invalidation of t1 (or of every relation) forgets the
 * cached schema, in this backend at the drop and in others at their next
 * transaction start or lock.
 */
static Oid	cached_nspid = InvalidOid;
static Oid	cached_t1_relid = InvalidOid;

static void
schema_cache_callback(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == cached_t1_relid)
		cached_nspid = cached_t1_relid = InvalidOid;
}

static Oid
schema_oid_lookup(void)
{
	Oid			extoid = get_extension_oid(OPSDEMO_EXTENSION_NAME, true);
	Oid			nspid = InvalidOid;
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;

	if (!OidIsValid(extoid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"%s\" is not installed in this database",
						OPSDEMO_EXTENSION_NAME)));

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
		nspid = ((Form_pg_extension) GETSTRUCT(tuple))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	if (!OidIsValid(nspid))
		elog(ERROR, "could not find schema of extension \"%s\"",
			 OPSDEMO_EXTENSION_NAME);
	return nspid;
}

Oid
opsdemo_schema_oid(void)
{
	static bool callback_registered = false;
	Oid			nspid;
	Oid			t1_relid;

	if (OidIsValid(cached_nspid))
		return cached_nspid;

	nspid = schema_oid_lookup();

	/* Without t1 there is nothing whose invalidation would tell a drop. */
	t1_relid = get_relname_relid(OPSDEMO_TABLE_NAME, nspid);
	if (OidIsValid(t1_relid))
	{
		if (!callback_registered)
		{
			CacheRegisterRelcacheCallback(schema_cache_callback, (Datum) 0);
			callback_registered = true;
		}
		cached_t1_relid = t1_relid;
		cached_nspid = nspid;
	}
	return nspid;
}

Oid
opsdemo_table_relid(Oid nspid, const char *relname)
{
	Oid			relid = get_relname_relid(relname, nspid);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"%s.%s\" does not exist",
						get_namespace_name(nspid), relname),
				 errhint("pg_opsdemo's table was dropped or renamed; rename it back to \"%s\" or recreate the extension.",
						 relname)));
	return relid;
}

Oid
opsdemo_t1_relid(Oid nspid)
{
	Oid			relid = opsdemo_table_relid(nspid, OPSDEMO_TABLE_NAME);

	if (get_rel_relkind(relid) != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s.%s\" is not a partitioned table",
						get_namespace_name(nspid), OPSDEMO_TABLE_NAME),
				 errhint("pg_opsdemo's table was replaced; recreate the extension.")));
	return relid;
}

static AttrNumber
resolve_column(Relation rel, const char *colname)
{
	AttrNumber	attnum = get_attnum(RelationGetRelid(rel), colname);

	if (attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist",
						colname, RelationGetRelationName(rel)),
				 errhint("pg_opsdemo writes this column; rename it back or recreate the extension.")));
	return attnum;
}

void
opsdemo_resolve_columns(Relation rel, OpsdemoTarget *target)
{
	target->att_date = resolve_column(rel, OPSDEMO_COL_DATE);
	target->att_amount = resolve_column(rel, OPSDEMO_COL_AMOUNT);
	target->att_status = resolve_column(rel, OPSDEMO_COL_STATUS);
	target->att_guid = resolve_column(rel, OPSDEMO_COL_GUID);
	target->att_message = resolve_column(rel, OPSDEMO_COL_MESSAGE);
}

void
opsdemo_check_insert_privilege(Oid relid)
{
	AclResult	aclresult = pg_class_aclcheck(relid, GetUserId(), ACL_INSERT);

	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_TABLE, get_rel_name(relid));
}

Oid
opsdemo_rel_owner(Oid relid)
{
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * Pins search_path to pg_catalog, pg_temp until AtEOXact_GUC(true, level)
 * with the returned level (or the end of the transaction).  Every SQL
 * statement the C code runs does this first, so that no function or
 * operator planted in a schema of the caller's search_path can capture one
 * of its unqualified names.
 */
int
opsdemo_pin_search_path(void)
{
	int			level = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return level;
}

void
opsdemo_become_owner(Oid relid, OpsdemoSavedUser *saved)
{
	GetUserIdAndSecContext(&saved->userid, &saved->sec_context);
	SetUserIdAndSecContext(opsdemo_rel_owner(relid),
						   saved->sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	saved->guc_nestlevel = opsdemo_pin_search_path();
}

/* Also undoes every setting changed since opsdemo_become_owner. */
void
opsdemo_restore_user(const OpsdemoSavedUser *saved)
{
	AtEOXact_GUC(false, saved->guc_nestlevel);
	SetUserIdAndSecContext(saved->userid, saved->sec_context);
}
