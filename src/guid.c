/*-------------------------------------------------------------------------
 *
 * guid.c
 *	  Time-ordered operation GUIDs.
 *
 * t1 is partitioned by date, and PostgreSQL only enforces uniqueness within
 * a partition (a unique index on a partitioned table must contain the
 * partition key).  We make operation_guid unique across the whole table by
 * making the GUID determine the date: every operation_guid is a UUID
 * version 7 (RFC 9562) whose 48-bit Unix millisecond timestamp plus the
 * 12-bit rand_a field (used, as the RFC allows, for the microseconds within
 * that millisecond) encode exactly the row's date.  A CHECK constraint on t1
 * enforces date = opsdemo_guid_time(operation_guid), so two rows with the
 * same GUID necessarily have the same date, land in the same partition, and
 * collide in the partition's unique btree index on (operation_guid, date).
 * Concurrent inserts of the same GUID are therefore resolved by the btree
 * unique check itself, with no lookup table and no SELECT-then-INSERT race.
 *
 * Time-ordered keys also keep the unique index's insertions near its right
 * edge, which is markedly cheaper than random UUIDs for bulk loads.
 *
 * The random bits of a GUID minted without a seed come from
 * pg_strong_random(), as gen_random_uuid()'s do: a fast PRNG's state can be
 * recovered from a few of its outputs, which would let anyone who sees some
 * GUIDs predict the next ones.  Only a seeded opsdemo_generate() uses its
 * PRNG for them, because it promises the same rows for the same seed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "opsdemo.h"

PG_FUNCTION_INFO_V1(opsdemo_guid);
PG_FUNCTION_INFO_V1(opsdemo_guid_time);

/* Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01). */
#define UNIX_TO_POSTGRES_USECS \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY)

/* The 48-bit millisecond field covers 1970-01-01 up to year 10889. */
#define GUID_MAX_UNIX_MS	((INT64CONST(1) << 48) - 1)

/*
 * Raise a clear error if "at" cannot be represented in an operation GUID.
 */
void
opsdemo_check_guid_range(TimestampTz at, const char *what)
{
	int64		unix_us;

	if (TIMESTAMP_NOT_FINITE(at))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("%s must be a finite timestamp", what)));

	unix_us = at + UNIX_TO_POSTGRES_USECS;
	if (unix_us < 0 || unix_us / 1000 > GUID_MAX_UNIX_MS)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("%s %s is outside the range of operation GUIDs",
						what, timestamptz_to_str(at)),
				 errdetail("Operation GUIDs encode times from 1970-01-01 00:00:00 UTC onwards.")));
}

/*
 * Build the UUIDv7 for "at" from caller-supplied random bits: the low 14
 * bits of random_a and the low 48 bits of random_b.
 */
void
opsdemo_guid_make(TimestampTz at, uint64 random_a, uint64 random_b,
				  pg_uuid_t *out)
{
	int64		unix_us = at + UNIX_TO_POSTGRES_USECS;
	uint64		unix_ms = (uint64) (unix_us / 1000);
	uint32		sub_ms = (uint32) (unix_us % 1000);
	unsigned char *b = out->data;

	b[0] = (unsigned char) (unix_ms >> 40);
	b[1] = (unsigned char) (unix_ms >> 32);
	b[2] = (unsigned char) (unix_ms >> 24);
	b[3] = (unsigned char) (unix_ms >> 16);
	b[4] = (unsigned char) (unix_ms >> 8);
	b[5] = (unsigned char) unix_ms;
	b[6] = (unsigned char) (0x70 | ((sub_ms >> 8) & 0x0F));
	b[7] = (unsigned char) sub_ms;
	/* variant 0b10, then 62 random bits */
	b[8] = (unsigned char) (0x80 | ((random_a >> 8) & 0x3F));
	b[9] = (unsigned char) random_a;
	b[10] = (unsigned char) (random_b >> 40);
	b[11] = (unsigned char) (random_b >> 32);
	b[12] = (unsigned char) (random_b >> 24);
	b[13] = (unsigned char) (random_b >> 16);
	b[14] = (unsigned char) (random_b >> 8);
	b[15] = (unsigned char) random_b;
}

/*
 * Strong random bytes are fetched a few kilobytes at a time: with OpenSSL
 * every pg_strong_random() call has a fixed cost, without it every call is
 * a read() of /dev/urandom, either of which per row would slow the
 * generator down measurably.  Bytes handed out are never handed out again.
 */
#define STRONG_POOL_SIZE	4096

static unsigned char strong_pool[STRONG_POOL_SIZE];
static int	strong_pool_next = STRONG_POOL_SIZE;	/* empty */

static uint64
strong_random_uint64(void)
{
	uint64		result;

	if (strong_pool_next + (int) sizeof(result) > STRONG_POOL_SIZE)
	{
		if (!pg_strong_random(strong_pool, STRONG_POOL_SIZE))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate random values")));
		strong_pool_next = 0;
	}
	memcpy(&result, strong_pool + strong_pool_next, sizeof(result));
	/* What was handed out must not linger where a later read could find it. */
	memset(strong_pool + strong_pool_next, 0, sizeof(result));
	strong_pool_next += sizeof(result);
	return result;
}

/*
 * Build the UUIDv7 for "at" with random bits from pg_strong_random(): the
 * GUID of every row whose caller did not ask for reproducible data.
 */
void
opsdemo_guid_make_strong(TimestampTz at, pg_uuid_t *out)
{
	uint64		r = strong_random_uint64();

	/* 14 bits for random_a, 48 for random_b: all that a GUID keeps */
	opsdemo_guid_make(at, r >> 50, r & ((UINT64CONST(1) << 48) - 1), out);
}

/*
 * Decode the time of an operation GUID.  Returns false for UUIDs that are
 * not pg_opsdemo operation GUIDs (wrong version or variant, or a sub-
 * millisecond field that is not a microsecond count).
 */
bool
opsdemo_guid_time_of(const pg_uuid_t *uuid, TimestampTz *at)
{
	const unsigned char *b = uuid->data;
	uint64		unix_ms;
	uint32		sub_ms;

	if ((b[6] & 0xF0) != 0x70 || (b[8] & 0xC0) != 0x80)
		return false;

	sub_ms = ((uint32) (b[6] & 0x0F) << 8) | b[7];
	if (sub_ms >= 1000)
		return false;

	unix_ms = ((uint64) b[0] << 40) | ((uint64) b[1] << 32) |
		((uint64) b[2] << 24) | ((uint64) b[3] << 16) |
		((uint64) b[4] << 8) | (uint64) b[5];

	*at = (TimestampTz) (unix_ms * 1000 + sub_ms) - UNIX_TO_POSTGRES_USECS;
	return true;
}

/*
 * opsdemo_guid(at timestamptz) returns uuid
 *
 * A fresh operation GUID for a row dated "at".
 */
Datum
opsdemo_guid(PG_FUNCTION_ARGS)
{
	TimestampTz at = PG_GETARG_TIMESTAMPTZ(0);
	pg_uuid_t  *result = palloc(sizeof(pg_uuid_t));

	opsdemo_check_guid_range(at, "operation time");
	opsdemo_guid_make_strong(at, result);
	PG_RETURN_UUID_P(result);
}

/*
 * opsdemo_guid_time(guid uuid) returns timestamptz
 *
 * The date encoded in an operation GUID, or NULL if the UUID is not one.
 * Immutable, so t1's CHECK constraint can use it.
 */
Datum
opsdemo_guid_time(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *uuid = PG_GETARG_UUID_P(0);
	TimestampTz at;

	if (!opsdemo_guid_time_of(uuid, &at))
		PG_RETURN_NULL();
	PG_RETURN_TIMESTAMPTZ(at);
}
