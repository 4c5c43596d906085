/*-------------------------------------------------------------------------
 *
 * mv_sum.c
 *	  Keeps mv_sum (sum and count of t1's status = 1 rows per client_id and
 *	  operation_type) exact from the changed rows only.
 *
 * Row triggers on t1 (cloned to every partition, ENABLE ALWAYS so that a
 * logical replication apply worker fires them too) add each row's effect to
 * a per-transaction table of deltas, one entry per group.  The deltas are
 * applied to mv_sum in one statement, sorted by group, when the transaction
 * commits (or, with opsdemo.mv_sum_apply = statement, when each statement on
 * t1 ends).  Consequences:
 *
 *	- cost per changed row is a hash lookup and a numeric addition; cost per
 *	  transaction is one upsert of the touched groups, so a bulk flip of
 *	  millions of rows writes at most one mv_sum row per group;
 *	- at commit, writers lock mv_sum rows in one global order, so two
 *	  transactions that leave all their changes to commit never deadlock on
 *	  mv_sum.  A transaction that applies earlier (opsdemo_mv_sum_flush(),
 *	  opsdemo_mv_sum_verify(), opsdemo.mv_sum_apply = statement) holds the
 *	  rows it wrote from then on and can deadlock with any writer of the same
 *	  groups; PostgreSQL then aborts one of them (40P01);
 *	- under REPEATABLE READ and SERIALIZABLE the apply is a write like any
 *	  other: if another transaction changed one of the groups since the
 *	  snapshot, the apply (at COMMIT, by default) fails with a serialization
 *	  failure (40001) and the whole transaction rolls back, to be retried;
 *	- no transition tables, so COPY keeps its multi-insert path (it falls
 *	  back to one row at a time for INSERT transition tables on a
 *	  partitioned target), and statement triggers are not needed for
 *	  correctness (they never fire in an apply worker).
 *
 * Deltas are tracked per subtransaction: rows changed in a subtransaction
 * that rolls back are forgotten, and deltas applied inside a subtransaction
 * that rolls back become pending again.  A released subtransaction's deltas
 * are merged into its parent's, so memory does not grow with the number of
 * subtransactions.
 *
 * TRUNCATE, DROP and DETACH of a partition fire no row trigger: each
 * partition gets a BEFORE TRUNCATE trigger (opsdemo_partition_prepare), and
 * mv_sum_retention.c covers DROP and DETACH; all of them subtract the
 * partition's groups with opsdemo_mv_sum_subtract_relation.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/partition.h"
#include "catalog/pg_subscription.h"
#include "catalog/pg_subscription_rel.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "common/int.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "opsdemo.h"

#define OPSDEMO_MV_SUM_TABLE_NAME	"mv_sum"

/* opsdemo.mv_sum_apply */
typedef enum MvSumApply
{
	MV_SUM_APPLY_COMMIT,
	MV_SUM_APPLY_STATEMENT
}			MvSumApply;

static const struct config_enum_entry mv_sum_apply_options[] = {
	{"commit", MV_SUM_APPLY_COMMIT, false},
	{"statement", MV_SUM_APPLY_STATEMENT, false},
	{NULL, 0, false}
};

static int	mv_sum_apply = MV_SUM_APPLY_COMMIT;

/*
 * One group's change.  operation_type is the row's own text value (short
 * or long varlena header) while looking up, so a row costs no copy; the
 * entry's key holds a copy owned by its frame.
 */
#define GROUP_TYPE_PREFIX 12

/*
 * The first GROUP_TYPE_PREFIX bytes of operation_type (all of "online" and
 * "offline") are copied into the key itself: comparing keys then reads no
 * memory but the entry's own, which matters at one lookup per row.
 */
typedef struct GroupKey
{
	int64		client_id;
	uint32		type_len;
	char		type_prefix[GROUP_TYPE_PREFIX];
	const text *operation_type;
} GroupKey;

/*
 * A group's sum is kept in two parts: "units", an int64 count of 1/10000s
 * that takes every amount small and short enough (all of t1's:
 * numeric(12,2)), added without a palloc, and "sum" for anything else and
 * for what "units" could not hold any more.  group_settle() folds units
 * into sum before sum is read.
 */
typedef struct GroupDelta
{
	GroupKey	key;
	uint32		hash;			/* of key */
	char		status;			/* simplehash's */
	int			units_dscale;	/* largest display scale added to units */
	int64		units;
	Numeric		sum;
	int64		count;
} GroupDelta;

static uint32 group_hash(const GroupKey *key);
static int	group_compare(const GroupKey *a, const GroupKey *b);

/*
 * A frame's groups: simplehash (open addressing, the hash stored in the
 * entry) rather than dynahash, because every row counted looks its group
 * up here, and a dynahash lookup was most of what counting a row cost.
 * Entries move when the table grows: no pointer to one is kept across an
 * insertion.
 */
#define SH_PREFIX		group_tab
#define SH_ELEMENT_TYPE	GroupDelta
#define SH_KEY_TYPE		GroupKey
#define SH_KEY			key
#define SH_HASH_KEY(tb, k)	group_hash(&(k))
#define SH_EQUAL(tb, a, b)	(group_compare(&(a), &(b)) == 0)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a)	((a)->hash)
#define SH_SCOPE		static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/*
 * The common case, counted without touching a GroupDelta: a client_id in
 * [0, 2^55) and one of the first FAST_TYPES operation_types seen in the
 * transaction, with an amount that fits in units.  Its key is one integer,
 * client_id << 8 | the type's index in fast_types, and its entry a third
 * of a GroupDelta's size, so the few thousand groups of a bulk load stay
 * in the CPU's cache: counting a COPY's row looked up a GroupDelta in a
 * table the index insertions between two rows had pushed out of the
 * cache, and that one load was half of what counting the row cost (perf).
 * Before anything reads a frame's groups, fast_fold() moves its fast
 * entries into them.
 */
#define FAST_TYPES		8
#define FAST_TYPE_BITS	8
#define FAST_CLIENT_LIMIT	(INT64CONST(1) << (63 - FAST_TYPE_BITS))

typedef struct FastGroup
{
	uint64		key;			/* client_id << FAST_TYPE_BITS | type index */
	int64		units;
	int64		count;
	int16		units_dscale;
	char		status;			/* simplehash's */
} FastGroup;					/* 32 bytes */

static inline uint64 mix64(uint64 h);

#define SH_PREFIX		fast_tab
#define SH_ELEMENT_TYPE	FastGroup
#define SH_KEY_TYPE		uint64
#define SH_KEY			key
#define SH_HASH_KEY(tb, k)	((uint32) mix64(k))
#define SH_EQUAL(tb, a, b)	((a) == (b))
#define SH_SCOPE		static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/* The operation_types fast keys refer to, for the current transaction. */
static const text *fast_types[FAST_TYPES];
static int	n_fast_types = 0;

/*
 * The deltas of the rows one subtransaction (and the released ones below
 * it) changed.  While pending,
 * applied_in is invalid; once applied by a subtransaction other than the
 * one that recorded them, the frame is kept so that rolling back the
 * applying subtransaction makes it pending again.
 */
typedef struct DeltaFrame
{
	SubTransactionId recorded_in;
	SubTransactionId applied_in;
	group_tab_hash *groups;
	fast_tab_hash *fast;		/* NULL until the first fast row */
	MemoryContext cxt;
	struct DeltaFrame *next;
} DeltaFrame;

/*
 * All frames of the current transaction, newest first; NULL when none.  No
 * two have the same recorded_in and applied_in after a subcommit.
 */
static DeltaFrame *frames = NULL;
static MemoryContext frames_cxt = NULL;

/*
 * Column numbers of t1's columns, per relation (partitions may differ).  An
 * entry exists only for t1 and its partitions, once their column types have
 * been checked; it goes with any invalidation of the relation, and all of
 * them with an invalidation of t1 (a drop or rename of t1 leaves partitions
 * of a table that is no longer the extension's).
 */
typedef struct RelColumns
{
	Oid			relid;			/* hash key */
	AttrNumber	att_amount;
	AttrNumber	att_status;
	AttrNumber	att_client_id;
	AttrNumber	att_operation_type;
} RelColumns;

static HTAB *rel_columns = NULL;
static Oid	rel_columns_t1 = InvalidOid;

/* Saved plans of the apply statements and the mv_sum they were made for. */
static SPIPlanPtr upsert_plan = NULL;
static SPIPlanPtr delete_empty_plan = NULL;
static Oid	plans_relid = InvalidOid;

PG_FUNCTION_INFO_V1(opsdemo_mv_sum_row_trigger);
PG_FUNCTION_INFO_V1(opsdemo_mv_sum_statement_trigger);
PG_FUNCTION_INFO_V1(opsdemo_mv_sum_truncate_trigger);
PG_FUNCTION_INFO_V1(opsdemo_mv_sum_flush);
PG_FUNCTION_INFO_V1(opsdemo_mv_sum_absorb);

/* ---- group hash table ------------------------------------------------- */

/* murmur3's 64-bit finalizer: every bit of h moves every bit of the result */
static inline uint64
mix64(uint64 h)
{
	h ^= h >> 33;
	h *= UINT64CONST(0xff51afd7ed558ccd);
	h ^= h >> 33;
	h *= UINT64CONST(0xc4ceb9fe1a85ec53);
	h ^= h >> 33;
	return h;
}

static uint32
group_hash(const GroupKey *key)
{
	return hash_combine(hash_bytes_uint32((uint32) key->client_id ^
										  (uint32) (key->client_id >> 32)),
						hash_bytes((const unsigned char *) VARDATA_ANY(key->operation_type),
								   VARSIZE_ANY_EXHDR(key->operation_type)));
}

/*
 * Any total order will do, as long as every backend uses the same one:
 * client_id, then operation_type's bytes (memcmp), then its length.
 */
static int
group_compare(const GroupKey *a, const GroupKey *b)
{
	uint32		alen = a->type_len;
	uint32		blen = b->type_len;
	uint32		common = Min(alen, blen);
	int			cmp;

	if (a->client_id != b->client_id)
		return a->client_id < b->client_id ? -1 : 1;
	cmp = memcmp(a->type_prefix, b->type_prefix, Min(common, GROUP_TYPE_PREFIX));
	if (cmp != 0)
		return cmp;
	if (common > GROUP_TYPE_PREFIX)
	{
		cmp = memcmp(VARDATA_ANY(a->operation_type) + GROUP_TYPE_PREFIX,
					 VARDATA_ANY(b->operation_type) + GROUP_TYPE_PREFIX,
					 common - GROUP_TYPE_PREFIX);
		if (cmp != 0)
			return cmp;
	}
	return (alen > blen) - (alen < blen);
}

/* A key for (client_id, operation_type), pointing into operation_type. */
static void
group_key_init(GroupKey *key, int64 client_id, const text *operation_type)
{
	key->client_id = client_id;
	key->type_len = VARSIZE_ANY_EXHDR(operation_type);
	memset(key->type_prefix, 0, GROUP_TYPE_PREFIX);
	memcpy(key->type_prefix, VARDATA_ANY(operation_type),
		   Min(key->type_len, GROUP_TYPE_PREFIX));
	key->operation_type = operation_type;
}

/* ---- frames ----------------------------------------------------------- */

static void
frame_free(DeltaFrame *frame)
{
	MemoryContextDelete(frame->cxt);
	pfree(frame);
}

static DeltaFrame *
frame_new(SubTransactionId subid)
{
	DeltaFrame *frame;

	if (frames_cxt == NULL)
		frames_cxt = AllocSetContextCreate(TopTransactionContext,
										   "opsdemo mv_sum deltas",
										   ALLOCSET_DEFAULT_SIZES);
	frame = MemoryContextAllocZero(frames_cxt, sizeof(DeltaFrame));
	frame->recorded_in = subid;
	frame->applied_in = InvalidSubTransactionId;
	frame->cxt = AllocSetContextCreate(frames_cxt, "opsdemo mv_sum frame",
									   ALLOCSET_DEFAULT_SIZES);
	frame->groups = group_tab_create(frame->cxt, 64, NULL);
	frame->next = frames;
	frames = frame;
	return frame;
}

/* Removes the frames for which drop() says so. */
static void
frames_remove_if(bool (*drop) (DeltaFrame *, SubTransactionId),
				 SubTransactionId subid)
{
	DeltaFrame **link = &frames;

	while (*link != NULL)
	{
		DeltaFrame *frame = *link;

		if (drop(frame, subid))
		{
			*link = frame->next;
			frame_free(frame);
		}
		else
			link = &frame->next;
	}
}

static bool
recorded_in_subxact(DeltaFrame *frame, SubTransactionId subid)
{
	return frame->recorded_in == subid;
}

static bool
applied_where_recorded(DeltaFrame *frame, SubTransactionId subid)
{
	return frame->applied_in == frame->recorded_in;
}

/*
 * The numeric datum d (in any varlena form; a short header is read in
 * place, not copied) in units of 1/10000, with its display scale, if it is
 * a finite number below 10^12 with at most four decimal digits; false if
 * not.  This reads PostgreSQL's on-disk numeric format (numeric.c: a
 * uint16 header, for the long form an int16 weight, then base-10000
 * digits), which stays the same across majors because pg_upgrade keeps
 * numeric columns as they are.
 */
#define NUMERIC_BASE			10000
#define NUMERIC_HDR_SIGN_MASK	0xC000
#define NUMERIC_HDR_POS			0x0000
#define NUMERIC_HDR_NEG			0x4000
#define NUMERIC_HDR_SHORT		0x8000
#define NUMERIC_HDR_SHORT_NEG	0x2000
#define NUMERIC_HDR_SHORT_DSCALE_MASK	0x1F80
#define NUMERIC_HDR_SHORT_DSCALE_SHIFT	7
#define NUMERIC_HDR_SHORT_WEIGHT_SIGN	0x0040
#define NUMERIC_HDR_SHORT_WEIGHT_MASK	0x003F
#define NUMERIC_HDR_DSCALE_MASK	0x3FFF

static bool
numeric_units(Datum d, int64 *units, int *dscale)
{
	struct varlena *v = (struct varlena *) DatumGetPointer(d);
	const char *data;
	Size		len;
	uint16		header;
	int			weight;
	bool		negative;
	int			ndigits;
	int64		result = 0;

	if (VARATT_IS_SHORT(v))
	{
		data = VARDATA_SHORT(v);
		len = VARSIZE_SHORT(v) - VARHDRSZ_SHORT;
	}
	else if (!VARATT_IS_EXTENDED(v))
	{
		data = VARDATA(v);
		len = VARSIZE(v) - VARHDRSZ;
	}
	else
		return false;			/* compressed or out of line */

	if (len < sizeof(uint16))
		return false;
	memcpy(&header, data, sizeof(uint16));
	switch (header & NUMERIC_HDR_SIGN_MASK)
	{
		case NUMERIC_HDR_SHORT:
			negative = (header & NUMERIC_HDR_SHORT_NEG) != 0;
			*dscale = (header & NUMERIC_HDR_SHORT_DSCALE_MASK) >>
				NUMERIC_HDR_SHORT_DSCALE_SHIFT;
			weight = (header & NUMERIC_HDR_SHORT_WEIGHT_MASK) |
				((header & NUMERIC_HDR_SHORT_WEIGHT_SIGN) ?
				 ~NUMERIC_HDR_SHORT_WEIGHT_MASK : 0);
			data += sizeof(uint16);
			len -= sizeof(uint16);
			break;
		case NUMERIC_HDR_POS:
		case NUMERIC_HDR_NEG:
			{
				int16		w;

				if (len < 2 * sizeof(uint16))
					return false;
				negative = (header & NUMERIC_HDR_SIGN_MASK) == NUMERIC_HDR_NEG;
				*dscale = header & NUMERIC_HDR_DSCALE_MASK;
				memcpy(&w, data + sizeof(uint16), sizeof(int16));
				weight = w;
				data += 2 * sizeof(uint16);
				len -= 2 * sizeof(uint16);
			}
			break;
		default:
			return false;		/* NaN, infinity */
	}

	ndigits = len / sizeof(int16);
	/* digit i is worth NUMERIC_BASE^(weight + 1 - i) units */
	if (*dscale > 4 || (ndigits > 0 && (weight > 2 || ndigits > weight + 2)))
		return false;
	for (int i = 0; i < ndigits; i++)
	{
		int16		digit;

		memcpy(&digit, data + i * sizeof(int16), sizeof(int16));
		if (digit < 0 || digit >= NUMERIC_BASE)
			return false;
		result = result * NUMERIC_BASE + digit;
	}
	for (int i = ndigits; i < weight + 2; i++)
		result *= NUMERIC_BASE;
	*units = negative ? -result : result;
	return true;
}

/* Folds entry's units into its sum (in frame's memory). */
static void
group_settle(DeltaFrame *frame, GroupDelta *entry)
{
	MemoryContext oldcxt;
	Datum		units;
	Numeric		old;

	if (entry->units == 0 && entry->units_dscale == 0)
		return;
	oldcxt = MemoryContextSwitchTo(frame->cxt);
	/* exact: every value added had at most units_dscale decimals */
	units = DirectFunctionCall2(numeric_round,
								NumericGetDatum(int64_div_fast_to_numeric(entry->units, 4)),
								Int32GetDatum(entry->units_dscale));
	old = entry->sum;
	entry->sum = DatumGetNumeric(DirectFunctionCall2(numeric_add,
													 NumericGetDatum(old),
													 units));
	pfree(old);
	entry->units = 0;
	entry->units_dscale = 0;
	MemoryContextSwitchTo(oldcxt);
}

/* The group's entry in frame, a new one if it has none yet. */
static GroupDelta *
frame_entry(DeltaFrame *frame, int64 client_id, const text *operation_type)
{
	GroupKey	key;
	GroupDelta *entry;
	bool		found;
	MemoryContext oldcxt;

	group_key_init(&key, client_id, operation_type);
	entry = group_tab_insert(frame->groups, key, &found);
	if (!found)
	{
		/* The key must outlive the caller's value. */
		oldcxt = MemoryContextSwitchTo(frame->cxt);
		entry->key.operation_type = (const text *)
			cstring_to_text_with_len(VARDATA_ANY(operation_type),
									 VARSIZE_ANY_EXHDR(operation_type));
		entry->sum = int64_to_numeric(0);
		entry->units = 0;
		entry->units_dscale = 0;
		entry->count = 0;
		MemoryContextSwitchTo(oldcxt);
	}
	return entry;
}

/* Adds units (1/10000s, signed) with display scale dscale to entry. */
static void
entry_add_units(DeltaFrame *frame, GroupDelta *entry, int64 units, int dscale)
{
	int64		total;

	if (pg_add_s64_overflow(entry->units, units, &total))
	{
		group_settle(frame, entry);
		total = units;
	}
	entry->units = total;
	entry->units_dscale = Max(entry->units_dscale, dscale);
}

/*
 * Adds sum (a numeric datum) and count to the group's delta in frame, or
 * subtracts them when negative is set.
 */
static void
frame_add(DeltaFrame *frame, int64 client_id, const text *operation_type,
		  Datum sum, int64 count, bool negative)
{
	GroupDelta *entry;
	MemoryContext oldcxt;
	Numeric		old;
	int64		units;
	int			dscale;

	entry = frame_entry(frame, client_id, operation_type);
	entry->count += negative ? -count : count;

	if (numeric_units(sum, &units, &dscale))
	{
		/* |units| < 10^16: negating cannot overflow */
		entry_add_units(frame, entry, negative ? -units : units, dscale);
		return;
	}

	oldcxt = MemoryContextSwitchTo(frame->cxt);
	old = entry->sum;
	entry->sum = DatumGetNumeric(DirectFunctionCall2(negative ? numeric_sub : numeric_add,
													 NumericGetDatum(old),
													 sum));
	pfree(old);
	MemoryContextSwitchTo(oldcxt);
}

/*
 * The index of operation_type in fast_types, interning it if there is
 * room; -1 if there is none.  Compared by length and bytes: a row costs
 * no hash of its text.
 */
static int
fast_type_index(const text *operation_type)
{
	Size		len = VARSIZE_ANY_EXHDR(operation_type);
	int			i;

	for (i = 0; i < n_fast_types; i++)
		if (VARSIZE_ANY_EXHDR(fast_types[i]) == len &&
			memcmp(VARDATA_ANY(fast_types[i]), VARDATA_ANY(operation_type), len) == 0)
			return i;
	if (n_fast_types == FAST_TYPES)
		return -1;
	/* frames_cxt lives as long as the transaction, as fast_types do */
	fast_types[n_fast_types] = (const text *)
		MemoryContextAlloc(frames_cxt, VARHDRSZ + len);
	SET_VARSIZE(fast_types[n_fast_types], VARHDRSZ + len);
	memcpy(VARDATA(fast_types[n_fast_types]), VARDATA_ANY(operation_type), len);
	return n_fast_types++;
}

/* Moves one fast entry's delta into frame's groups and empties it. */
static void
fast_fold_one(DeltaFrame *frame, FastGroup *fast)
{
	GroupDelta *entry;

	entry = frame_entry(frame, (int64) (fast->key >> FAST_TYPE_BITS),
						fast_types[fast->key & ((1 << FAST_TYPE_BITS) - 1)]);
	entry->count += fast->count;
	entry_add_units(frame, entry, fast->units, fast->units_dscale);
	fast->units = 0;
	fast->count = 0;
	fast->units_dscale = 0;
}

/* Moves all of frame's fast entries into its groups. */
static void
fast_fold(DeltaFrame *frame)
{
	fast_tab_iterator it;
	FastGroup  *fast;

	if (frame->fast == NULL)
		return;
	fast_tab_start_iterate(frame->fast, &it);
	while ((fast = fast_tab_iterate(frame->fast, &it)) != NULL)
		fast_fold_one(frame, fast);
	fast_tab_destroy(frame->fast);
	frame->fast = NULL;
}

/* Adds units (1/10000s) and count to a fast entry of frame. */
static void
fast_add(DeltaFrame *frame, uint64 key, int64 units, int dscale, int64 count)
{
	FastGroup  *fast;
	bool		found;
	int64		total;

	if (frame->fast == NULL)
		frame->fast = fast_tab_create(frame->cxt, 32, NULL);
	fast = fast_tab_insert(frame->fast, key, &found);
	if (!found)
	{
		fast->units = 0;
		fast->count = 0;
		fast->units_dscale = 0;
	}
	if (pg_add_s64_overflow(fast->units, units, &total))
	{
		fast_fold_one(frame, fast);
		total = units;
	}
	fast->units = total;
	fast->count += count;
	fast->units_dscale = Max(fast->units_dscale, dscale);
}

/*
 * Adds a row's (or a group's) effect to the current subtransaction's
 * pending frame.
 */
static void
add_delta(int64 client_id, const text *operation_type, Datum sum,
		  int64 count, bool negative)
{
	SubTransactionId subid = GetCurrentSubTransactionId();
	DeltaFrame *frame;
	int64		units;
	int			dscale;
	int			type_index;

	/* Frames are merged at subcommit, so the list is short. */
	for (frame = frames; frame != NULL; frame = frame->next)
		if (frame->recorded_in == subid &&
			frame->applied_in == InvalidSubTransactionId)
			break;
	if (frame == NULL)
		frame = frame_new(subid);

	if (client_id >= 0 && client_id < FAST_CLIENT_LIMIT &&
		(type_index = fast_type_index(operation_type)) >= 0 &&
		numeric_units(sum, &units, &dscale))
	{
		/* |units| < 10^16: negating cannot overflow */
		fast_add(frame, ((uint64) client_id << FAST_TYPE_BITS) | (uint64) type_index,
				 negative ? -units : units, dscale, negative ? -count : count);
		return;
	}
	frame_add(frame, client_id, operation_type, sum, count, negative);
}

/*
 * A whole group's change, counted by opsdemo_generate for the rows it loads
 * into a month of its own (no row trigger fires there): pending like a
 * trigger's delta, in the current subtransaction.
 */
void
opsdemo_mv_sum_add_group(int64 client_id, const text *operation_type,
						 Numeric sum, int64 count)
{
	add_delta(client_id, operation_type, NumericGetDatum(sum), count, false);
}

/* A row's change counted as it is written (mv_sum_now.c). */
void
opsdemo_mv_sum_add_delta(int64 client_id, const text *operation_type,
						 Datum sum, int64 count, bool negative)
{
	add_delta(client_id, operation_type, sum, count, negative);
}

/*
 * Frames with the same recorded_in and applied_in share their fate in
 * every later commit and rollback, so one frame can hold both.  Merging
 * them at each subcommit keeps the number of frames bounded by the
 * nesting depth instead of growing with every released savepoint (a
 * PL/pgSQL loop with an EXCEPTION block, psql's ON_ERROR_ROLLBACK).  The
 * smaller frame is folded into the larger one, so a long series of small
 * subtransactions costs each only its own groups.
 */
/* Groups a frame holds, counting a group in both tables twice. */
static uint64
frame_size(DeltaFrame *frame)
{
	return frame->groups->members +
		(frame->fast != NULL ? frame->fast->members : 0);
}

static void
frames_merge_equal(void)
{
	DeltaFrame *frame;

	for (frame = frames; frame != NULL; frame = frame->next)
	{
		DeltaFrame **link = &frame->next;

		while (*link != NULL)
		{
			DeltaFrame *other = *link;
			DeltaFrame *into;
			DeltaFrame *from;
			group_tab_iterator it;
			GroupDelta *entry;

			if (other->recorded_in != frame->recorded_in ||
				other->applied_in != frame->applied_in)
			{
				link = &other->next;
				continue;
			}
			if (frame_size(other) > frame_size(frame))
			{
				into = other;
				from = frame;
			}
			else
			{
				into = frame;
				from = other;
			}
			fast_fold(from);
			group_tab_start_iterate(from->groups, &it);
			while ((entry = group_tab_iterate(from->groups, &it)) != NULL)
			{
				group_settle(from, entry);
				frame_add(into, entry->key.client_id, entry->key.operation_type,
						  NumericGetDatum(entry->sum), entry->count, false);
			}

			/* Keep the list node of "frame"; it takes over into's contents. */
			if (into == other)
			{
				group_tab_hash *groups = frame->groups;
				fast_tab_hash *fast = frame->fast;
				MemoryContext cxt = frame->cxt;

				frame->groups = other->groups;
				frame->fast = other->fast;
				frame->cxt = other->cxt;
				other->groups = groups;
				other->fast = fast;
				other->cxt = cxt;
			}
			*link = other->next;
			frame_free(other);
		}
	}
}

/* ---- transaction callbacks -------------------------------------------- */

static void mv_sum_apply_pending(void);

static void
mv_sum_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			if (frames != NULL)
				mv_sum_apply_pending();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* The memory went with TopTransactionContext. */
			frames = NULL;
			frames_cxt = NULL;
			n_fast_types = 0;
			break;
		default:
			break;
	}
}

static void
mv_sum_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	DeltaFrame *frame;

	if (frames == NULL)
		return;

	switch (event)
	{
		case SUBXACT_EVENT_ABORT_SUB:
			/* Its row changes are gone, and so are its writes to mv_sum. */
			frames_remove_if(recorded_in_subxact, mySubid);
			for (frame = frames; frame != NULL; frame = frame->next)
				if (frame->applied_in == mySubid)
					frame->applied_in = InvalidSubTransactionId;
			break;
		case SUBXACT_EVENT_COMMIT_SUB:
			for (frame = frames; frame != NULL; frame = frame->next)
			{
				if (frame->recorded_in == mySubid)
					frame->recorded_in = parentSubid;
				if (frame->applied_in == mySubid)
					frame->applied_in = parentSubid;
			}
			/* Now nothing can undo the one without the other. */
			frames_remove_if(applied_where_recorded, InvalidSubTransactionId);
			frames_merge_equal();
			break;
		default:
			break;
	}
}

static void
mv_sum_relcache_callback(Datum arg, Oid relid)
{
	if (rel_columns == NULL)
		return;
	if (OidIsValid(relid) && relid != rel_columns_t1)
		(void) hash_search(rel_columns, &relid, HASH_REMOVE, NULL);
	else
	{
		hash_destroy(rel_columns);
		rel_columns = NULL;
		rel_columns_t1 = InvalidOid;
	}
}

void
opsdemo_mv_sum_init(void)
{
	DefineCustomEnumVariable("opsdemo.mv_sum_apply",
							 "When t1's changes reach mv_sum: at commit, or at the end of each statement.",
							 "\"commit\" locks mv_sum rows only while committing, in one global order, so writers that all apply at commit do not deadlock on them; \"statement\" makes a transaction see its own changes in mv_sum, but holds mv_sum row locks from its first statement on, so it can deadlock with other writers of the same groups.",
							 &mv_sum_apply,
							 MV_SUM_APPLY_COMMIT,
							 mv_sum_apply_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);
	RegisterXactCallback(mv_sum_xact_callback, NULL);
	RegisterSubXactCallback(mv_sum_subxact_callback, NULL);
	CacheRegisterRelcacheCallback(mv_sum_relcache_callback, (Datum) 0);
}

/* ---- applying deltas -------------------------------------------------- */

static int
group_delta_cmp(const void *a, const void *b)
{
	return group_compare(&(*(GroupDelta *const *) a)->key,
						 &(*(GroupDelta *const *) b)->key);
}

/*
 * mv_sum copied in by logical replication and maintained here from t1's
 * changes would count every change twice: refuse rather than drift.
 */
static void
check_not_subscribed(Oid relid)
{
	Relation	rel = table_open(SubscriptionRelRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	Oid			subid = InvalidOid;

	ScanKeyInit(&key, Anum_pg_subscription_rel_srrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, SubscriptionRelSrrelidSrsubidIndexId, true,
							  NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
		subid = ((Form_pg_subscription_rel) GETSTRUCT(tuple))->srsubid;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	if (OidIsValid(subid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("mv_sum is both replicated into this node and maintained from t1's changes"),
				 errdetail("Subscription \"%s\" copies mv_sum; counting t1's changes here as well would count them twice.",
						   get_subscription_name(subid, false)),
				 errhint("Publish t1 alone: every node keeps its own mv_sum from t1's changes.")));
}

static SPIPlanPtr
prepare_saved(const char *fmt, const char *nspname, int nargs, Oid *argtypes)
{
	StringInfoData sql;
	SPIPlanPtr	plan;

	initStringInfo(&sql);
	appendStringInfo(&sql, fmt, nspname, nspname);
	/*
	 * Generic plans: custom ones would be planned at every commit (the plan
	 * cache keeps preferring them, since they see each array's length).
	 */
	plan = SPI_prepare_cursor(sql.data, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "could not prepare mv_sum statement: %s",
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not save mv_sum statement");
	pfree(sql.data);
	return plan;
}

/*
 * Apply the sorted, merged deltas to mv_sum.  Runs as mv_sum's owner, so a
 * role that may change t1 need not be able to write mv_sum directly.
 */
static void
apply_to_mv_sum(GroupDelta **deltas, int ndeltas)
{
	Oid			nspid = opsdemo_schema_oid();
	Oid			relid = opsdemo_table_relid(nspid, OPSDEMO_MV_SUM_TABLE_NAME);
	Datum	   *clients = palloc(sizeof(Datum) * ndeltas);
	Datum	   *types = palloc(sizeof(Datum) * ndeltas);
	Datum	   *sums = palloc(sizeof(Datum) * ndeltas);
	Datum	   *counts = palloc(sizeof(Datum) * ndeltas);
	Datum		args[4];
	Oid			argtypes[4] = {INT8ARRAYOID, TEXTARRAYOID, NUMERICARRAYOID, INT8ARRAYOID};
	OpsdemoSavedUser saved_user;
	bool		emptied = false;
	int			ret;
	uint64		i;

	check_not_subscribed(relid);

	for (i = 0; i < (uint64) ndeltas; i++)
	{
		clients[i] = Int64GetDatum(deltas[i]->key.client_id);
		types[i] = PointerGetDatum(deltas[i]->key.operation_type);
		sums[i] = NumericGetDatum(deltas[i]->sum);
		counts[i] = Int64GetDatum(deltas[i]->count);
	}
	args[0] = PointerGetDatum(construct_array(clients, ndeltas, INT8OID,
											  sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[1] = PointerGetDatum(construct_array(types, ndeltas, TEXTOID,
											  -1, false, TYPALIGN_INT));
	args[2] = PointerGetDatum(construct_array(sums, ndeltas, NUMERICOID,
											  -1, false, TYPALIGN_INT));
	args[3] = PointerGetDatum(construct_array(counts, ndeltas, INT8OID,
											  sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));

	opsdemo_become_owner(relid, &saved_user);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (plans_relid != relid)
	{
		const char *nspname = quote_identifier(get_namespace_name(nspid));

		if (upsert_plan)
			SPI_freeplan(upsert_plan);
		if (delete_empty_plan)
			SPI_freeplan(delete_empty_plan);
		upsert_plan = delete_empty_plan = NULL;
		plans_relid = InvalidOid;

		/*
		 * The input is sorted by group, and INSERT takes the row locks in
		 * input order: every writer locks mv_sum rows in the same order.
		 */
		upsert_plan = prepare_saved(
									"INSERT INTO %s.mv_sum AS m (client_id, operation_type, total_sum, row_count) "
									"SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), "
									"pg_catalog.unnest($3), pg_catalog.unnest($4)) "
									"ON CONFLICT (client_id, operation_type) DO UPDATE "
									"SET total_sum = m.total_sum OPERATOR(pg_catalog.+) excluded.total_sum, "
									"row_count = m.row_count OPERATOR(pg_catalog.+) excluded.row_count "
									"RETURNING m.row_count OPERATOR(pg_catalog.=) 0",
									nspname, 4, argtypes);
		/* Groups that fall to nothing disappear. */
		delete_empty_plan = prepare_saved(
										  "DELETE FROM %s.mv_sum AS m "
										  "USING ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS d(c, t) "
										  "WHERE m.client_id OPERATOR(pg_catalog.=) d.c "
										  "AND m.operation_type OPERATOR(pg_catalog.=) d.t "
										  "AND m.row_count OPERATOR(pg_catalog.=) 0",
										  nspname, 2, argtypes);
		plans_relid = relid;
	}

	ret = SPI_execute_plan(upsert_plan, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "mv_sum upsert failed: %s", SPI_result_code_string(ret));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i],
									   SPI_tuptable->tupdesc, 1, &isnull)))
		{
			emptied = true;
			break;
		}
	}
	/* Most commits empty no group: the cleanup is then skipped. */
	if (emptied)
	{
		ret = SPI_execute_plan(delete_empty_plan, args, NULL, false, 0);
		if (ret != SPI_OK_DELETE)
			elog(ERROR, "mv_sum cleanup failed: %s", SPI_result_code_string(ret));
	}

	SPI_finish();
	opsdemo_restore_user(&saved_user);
}

/*
 * Marks every pending frame as applied by the current subtransaction.  A
 * frame recorded here too is simply dropped: its rows and its effect on
 * mv_sum now live and die together.
 */
static void
mark_pending_applied(void)
{
	SubTransactionId subid = GetCurrentSubTransactionId();
	DeltaFrame *frame;

	for (frame = frames; frame != NULL; frame = frame->next)
		if (frame->applied_in == InvalidSubTransactionId)
			frame->applied_in = subid;
	frames_remove_if(applied_where_recorded, InvalidSubTransactionId);
}

/*
 * Applies every pending delta to mv_sum, merged per group and in group
 * order.  Returns the number of groups written.
 */
static int
apply_pending_deltas(void)
{
	MemoryContext tmpcxt;
	MemoryContext oldcxt;
	GroupDelta **all;
	int			nall = 0;
	int			nmerged = 0;
	long		capacity = 0;
	DeltaFrame *frame;
	Numeric		zero;
	int			i;

	for (frame = frames; frame != NULL; frame = frame->next)
		if (frame->applied_in == InvalidSubTransactionId)
		{
			fast_fold(frame);
			capacity += frame->groups->members;
		}
	if (capacity == 0)
		return 0;

	tmpcxt = AllocSetContextCreate(CurrentMemoryContext,
								   "opsdemo mv_sum apply",
								   ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(tmpcxt);

	all = palloc(sizeof(GroupDelta *) * capacity);
	for (frame = frames; frame != NULL; frame = frame->next)
	{
		group_tab_iterator it;
		GroupDelta *entry;

		if (frame->applied_in != InvalidSubTransactionId)
			continue;
		group_tab_start_iterate(frame->groups, &it);
		while ((entry = group_tab_iterate(frame->groups, &it)) != NULL)
		{
			group_settle(frame, entry);
			all[nall++] = entry;
		}
	}
	qsort(all, nall, sizeof(GroupDelta *), group_delta_cmp);

	/* Merge equal groups from different frames into fresh entries. */
	for (i = 0; i < nall; i++)
	{
		GroupDelta *merged;

		if (nmerged > 0 && group_compare(&all[nmerged - 1]->key, &all[i]->key) == 0)
		{
			merged = all[nmerged - 1];
			merged->sum = DatumGetNumeric(DirectFunctionCall2(numeric_add,
															  NumericGetDatum(merged->sum),
															  NumericGetDatum(all[i]->sum)));
			merged->count += all[i]->count;
			continue;
		}
		merged = palloc(sizeof(GroupDelta));
		*merged = *all[i];
		all[nmerged++] = merged;
	}

	/* Groups whose changes cancel out need no write. */
	zero = int64_to_numeric(0);
	for (i = 0, nall = 0; i < nmerged; i++)
		if (all[i]->count != 0 ||
			!DatumGetBool(DirectFunctionCall2(numeric_eq,
											  NumericGetDatum(all[i]->sum),
											  NumericGetDatum(zero))))
			all[nall++] = all[i];

	if (nall > 0)
		apply_to_mv_sum(all, nall);

	MemoryContextSwitchTo(oldcxt);
	mark_pending_applied();
	MemoryContextDelete(tmpcxt);
	return nall;
}

/* Pre-commit: the last chance to make mv_sum match what commits. */
static void
mv_sum_apply_pending(void)
{
	PushActiveSnapshot(GetTransactionSnapshot());
	(void) apply_pending_deltas();
	PopActiveSnapshot();
}

/* ---- triggers --------------------------------------------------------- */

/*
 * True if relid is t1 itself or a partition of it (at any depth).
 */
bool
opsdemo_is_t1_or_partition(Oid relid, Oid t1_relid)
{
	List	   *ancestors;
	bool		result;

	if (relid == t1_relid)
		return true;
	if (!get_rel_relispartition(relid))
		return false;
	ancestors = get_partition_ancestors(relid);
	result = list_member_oid(ancestors, t1_relid);
	list_free(ancestors);
	return result;
}

/*
 * The column numbers of rel's mv_sum columns.  The trigger functions are
 * reachable from any CREATE TRIGGER their EXECUTE privilege allows, so
 * before reading a single attribute make sure rel is the extension's t1 or
 * one of its partitions and that every column has the type the code reads
 * it as: a look-alike table could otherwise forge mv_sum groups, and a
 * column of another type would be read through the wrong representation.
 */
static RelColumns *
columns_of(Relation rel, const char *funcname)
{
	static const char *const names[4] = {OPSDEMO_COL_AMOUNT, OPSDEMO_COL_STATUS,
	"client_id", "operation_type"};
	static const Oid types[4] = {NUMERICOID, INT2OID, INT8OID, TEXTOID};
	Oid			relid = RelationGetRelid(rel);
	TupleDesc	desc = RelationGetDescr(rel);
	RelColumns	found_cols;
	AttrNumber *targets[4] = {&found_cols.att_amount, &found_cols.att_status,
	&found_cols.att_client_id, &found_cols.att_operation_type};
	RelColumns *cols;
	Oid			t1_relid;
	bool		found;
	int			i;

	if (rel_columns != NULL)
	{
		cols = hash_search(rel_columns, &relid, HASH_FIND, NULL);
		if (cols != NULL)
			return cols;
	}

	t1_relid = opsdemo_t1_relid(opsdemo_schema_oid());
	if (!opsdemo_is_t1_or_partition(relid, t1_relid))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("function \"%s\" can only be fired by table \"%s\" or its partitions",
						funcname, OPSDEMO_TABLE_NAME),
				 errdetail("\"%s\" is not the table \"%s\" of extension \"%s\" or a partition of it.",
						   RelationGetRelationName(rel), OPSDEMO_TABLE_NAME,
						   OPSDEMO_EXTENSION_NAME)));

	for (i = 0; i < 4; i++)
	{
		AttrNumber	attnum = get_attnum(relid, names[i]);
		Form_pg_attribute att;

		if (attnum <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of relation \"%s\" does not exist",
							names[i], RelationGetRelationName(rel)),
					 errhint("mv_sum maintenance reads this column; rename it back or recreate the extension.")));
		att = TupleDescAttr(desc, attnum - 1);
		if (att->atttypid != types[i])
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("column \"%s\" of relation \"%s\" has type %s, but mv_sum maintenance reads it as %s",
							names[i], RelationGetRelationName(rel),
							format_type_be(att->atttypid),
							format_type_be(types[i])),
					 errhint("Change the column back to type %s or recreate the extension.",
							 format_type_be(types[i]))));
		*targets[i] = attnum;
	}

	if (rel_columns == NULL || rel_columns_t1 != t1_relid)
	{
		HASHCTL		ctl;

		if (rel_columns != NULL)
			hash_destroy(rel_columns);
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(RelColumns);
		ctl.hcxt = CacheMemoryContext;
		rel_columns = hash_create("opsdemo mv_sum columns", 16, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		rel_columns_t1 = t1_relid;
	}
	cols = hash_search(rel_columns, &relid, HASH_ENTER, &found);
	found_cols.relid = relid;
	*cols = found_cols;
	return cols;
}

/*
 * If relid is t1 or one of its partitions, sets cols to the column numbers
 * of its status, amount, client_id and operation_type (erroring as
 * columns_of does on a column of the wrong type) and returns true.
 */
bool
opsdemo_mv_sum_relation_columns(Oid relid, AttrNumber cols[4])
{
	RelColumns *found = NULL;
	Relation	rel;
	Oid			t1_relid;

	if (rel_columns != NULL)
		found = hash_search(rel_columns, &relid, HASH_FIND, NULL);
	if (found == NULL)
	{
		t1_relid = opsdemo_t1_relid(opsdemo_schema_oid());
		if (!opsdemo_is_t1_or_partition(relid, t1_relid))
			return false;
		/* The caller is writing the row: the relation is open and locked. */
		rel = RelationIdGetRelation(relid);
		if (rel == NULL)
			return false;
		found = columns_of(rel, "opsdemo_mv_sum_count_now");
		RelationClose(rel);
	}
	cols[0] = found->att_status;
	cols[1] = found->att_amount;
	cols[2] = found->att_client_id;
	cols[3] = found->att_operation_type;
	return true;
}

static void
add_row(TupleTableSlot *slot, RelColumns *cols, bool negative)
{
	bool		isnull[4];
	Datum		status = slot_getattr(slot, cols->att_status, &isnull[0]);
	Datum		amount;
	Datum		client_id;
	Datum		operation_type;

	if (isnull[0] || DatumGetInt16(status) != 1)
		return;
	amount = slot_getattr(slot, cols->att_amount, &isnull[1]);
	client_id = slot_getattr(slot, cols->att_client_id, &isnull[2]);
	operation_type = slot_getattr(slot, cols->att_operation_type, &isnull[3]);
	if (isnull[1] || isnull[2] || isnull[3])
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("mv_sum cannot count a row with a null amount, client_id or operation_type")));
	add_delta(DatumGetInt64(client_id), DatumGetTextPP(operation_type),
			  amount, 1, negative);
}

static void
check_trigger_call(FunctionCallInfo fcinfo, const char *funcname,
				   bool row_level)
{
	TriggerData *trigdata;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" was not called by trigger manager",
						funcname)));
	trigdata = (TriggerData *) fcinfo->context;
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" must be fired AFTER", funcname)));
	if (row_level != (TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) != 0))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" must be fired FOR EACH %s",
						funcname, row_level ? "ROW" : "STATEMENT")));
}

/*
 * AFTER INSERT OR UPDATE OR DELETE ... FOR EACH ROW on t1: records the old
 * row's contribution as negative and the new row's as positive.  A move
 * between partitions arrives as a DELETE and an INSERT.
 */
Datum
opsdemo_mv_sum_row_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	RelColumns *cols;

	check_trigger_call(fcinfo, "opsdemo_mv_sum_row_trigger", true);
	cols = columns_of(trigdata->tg_relation, "opsdemo_mv_sum_row_trigger");

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		add_row(trigdata->tg_trigslot, cols, false);
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		add_row(trigdata->tg_trigslot, cols, true);
	else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		add_row(trigdata->tg_trigslot, cols, true);
		add_row(trigdata->tg_newslot, cols, false);
	}
	return PointerGetDatum(NULL);
}

/*
 * AFTER ... FOR EACH STATEMENT on t1: with opsdemo.mv_sum_apply =
 * statement, the statement's changes reach mv_sum now.
 */
Datum
opsdemo_mv_sum_statement_trigger(PG_FUNCTION_ARGS)
{
	check_trigger_call(fcinfo, "opsdemo_mv_sum_statement_trigger", false);
	(void) columns_of(((TriggerData *) fcinfo->context)->tg_relation,
					  "opsdemo_mv_sum_statement_trigger");
	if (mv_sum_apply == MV_SUM_APPLY_STATEMENT && frames != NULL)
		(void) apply_pending_deltas();
	return PointerGetDatum(NULL);
}

/*
 * Records the removal of every status = 1 row of relation relid (a
 * partition of t1 that is about to be truncated, detached or dropped):
 * subtracts its groups, read as the relation's owner (the caller may lack
 * SELECT).  The caller holds a lock that keeps writers out.  The rows are
 * read with a fresh snapshot, not the transaction's: under REPEATABLE READ
 * the latter can miss rows committed since it was taken, which TRUNCATE
 * and DROP remove all the same.
 */
void
opsdemo_mv_sum_subtract_relation(Oid relid)
{
	StringInfoData sql;
	OpsdemoSavedUser saved_user;
	SPIPlanPtr	plan;
	uint64		i;
	int			ret;

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT client_id, operation_type, pg_catalog.sum(amount), pg_catalog.count(*) "
					 "FROM ONLY %s WHERE status OPERATOR(pg_catalog.=) 1 "
					 "GROUP BY client_id, operation_type",
					 quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												get_rel_name(relid)));

	opsdemo_become_owner(relid, &saved_user);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	plan = SPI_prepare(sql.data, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "could not prepare reading the groups of \"%s\": %s",
			 get_rel_name(relid), SPI_result_code_string(SPI_result));
	ret = SPI_execute_snapshot(plan, NULL, NULL, GetLatestSnapshot(),
							   InvalidSnapshot, true, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading the groups of \"%s\" failed: %s",
			 get_rel_name(relid), SPI_result_code_string(ret));

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull[4];
		Datum		client_id = SPI_getbinval(tuple, desc, 1, &isnull[0]);
		Datum		type = SPI_getbinval(tuple, desc, 2, &isnull[1]);
		Datum		sum = SPI_getbinval(tuple, desc, 3, &isnull[2]);
		Datum		count = SPI_getbinval(tuple, desc, 4, &isnull[3]);

		if (isnull[0] || isnull[1] || isnull[2] || isnull[3])
			continue;
		add_delta(DatumGetInt64(client_id), DatumGetTextPP(type),
				  sum, DatumGetInt64(count), true);
	}
	SPI_finish();
	opsdemo_restore_user(&saved_user);
	pfree(sql.data);
}

/*
 * BEFORE TRUNCATE on a partition: subtracts the groups of its status = 1
 * rows.  TRUNCATE has locked the partition ACCESS EXCLUSIVE already.
 */
Datum
opsdemo_mv_sum_truncate_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" must be fired BEFORE TRUNCATE",
						"opsdemo_mv_sum_truncate_trigger")));
	rel = trigdata->tg_relation;
	(void) columns_of(rel, "opsdemo_mv_sum_truncate_trigger");
	opsdemo_mv_sum_subtract_relation(RelationGetRelid(rel));
	return PointerGetDatum(NULL);
}

/* ---- SQL-callable ----------------------------------------------------- */

/*
 * opsdemo_mv_sum_flush() returns integer
 *
 * Applies this transaction's pending changes to mv_sum now rather than at
 * commit, so the transaction can read them; returns the groups written.
 * The mv_sum rows written stay locked until the transaction ends, outside
 * the global order of the commit-time apply: see the file header.
 */
Datum
opsdemo_mv_sum_flush(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(frames != NULL ? apply_pending_deltas() : 0);
}

/*
 * opsdemo_mv_sum_absorb() returns void
 *
 * Internal, for opsdemo_mv_sum_rebuild(): the recompute that follows covers
 * every pending change, so applying them too would count them twice.
 */
Datum
opsdemo_mv_sum_absorb(PG_FUNCTION_ARGS)
{
	if (frames != NULL)
		mark_pending_applied();
	PG_RETURN_VOID();
}
