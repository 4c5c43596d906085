/*-------------------------------------------------------------------------
 *
 * rowgen.c
 *	  The model of one synthetic operation, shared by the bulk generator and
 *	  the insert tick so that both produce rows of the same shape.
 *
 * Random numbers come from xoshiro256** seeded through splitmix64: fast,
 * statistically sound for data generation, and reproducible from a single
 * 64-bit seed on every platform (unlike random()).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "opsdemo.h"

/* Share of operations that are online; the rest are offline. */
#define ONLINE_SHARE		0.7

/* Amounts are log-normal around a median of 45.00 (cents below). */
#define AMOUNT_MEDIAN_CENTS 4500.0
#define AMOUNT_SIGMA		1.1
/* numeric(12,2) holds at most 9,999,999,999.99. */
#define AMOUNT_MAX_CENTS	INT64CONST(999999999999)

/* A client owns up to this many accounts. */
#define ACCOUNTS_PER_CLIENT 3

static inline uint64
rotl64(uint64 x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static inline uint64
splitmix64(uint64 *state)
{
	uint64		z = (*state += UINT64CONST(0x9E3779B97F4A7C15));

	z = (z ^ (z >> 30)) * UINT64CONST(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64CONST(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

void
opsdemo_rng_seed(OpsdemoRng *rng, uint64 seed)
{
	uint64		sm = seed;
	int			i;

	for (i = 0; i < 4; i++)
		rng->s[i] = splitmix64(&sm);
}

uint64
opsdemo_rng_next(OpsdemoRng *rng)
{
	uint64	   *s = rng->s;
	uint64		result = rotl64(s[1] * 5, 7) * 9;
	uint64		t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl64(s[3], 45);
	return result;
}

/* Uniform in [0, 1). */
double
opsdemo_rng_double(OpsdemoRng *rng)
{
	return (double) (opsdemo_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
}

/* Standard normal deviate (Box-Muller; one value per call keeps it stateless). */
static double
rng_normal(OpsdemoRng *rng)
{
	double		u1 = 1.0 - opsdemo_rng_double(rng);	/* (0, 1] */
	double		u2 = opsdemo_rng_double(rng);

	return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/*
 * Draw one operation.  Client activity is skewed (a few clients make many
 * operations, as in real payment data): the client id is clients * u^2.
 */
void
opsdemo_operation_draw(OpsdemoRng *rng, int32 clients, OpsdemoOperation *op)
{
	double		u = opsdemo_rng_double(rng);
	double		cents;

	op->client_id = 1 + (int64) (u * u * clients);
	if (op->client_id > clients)
		op->client_id = clients;
	op->online = opsdemo_rng_double(rng) < ONLINE_SHARE;

	cents = floor(AMOUNT_MEDIAN_CENTS * exp(AMOUNT_SIGMA * rng_normal(rng)));
	if (cents < 1.0)
		cents = 1.0;
	op->amount_cents = cents > (double) AMOUNT_MAX_CENTS ?
		AMOUNT_MAX_CENTS : (int64) cents;

	op->account_index = (int) (opsdemo_rng_next(rng) % ACCOUNTS_PER_CLIENT);
}

Datum
opsdemo_operation_amount(const OpsdemoOperation *op)
{
	return NumericGetDatum(int64_div_fast_to_numeric(op->amount_cents, 2));
}

static void
set_string(JsonbValue *v, const char *s, int len)
{
	v->type = jbvString;
	v->val.string.val = (char *) s;
	v->val.string.len = len;
}

/*
 * The message jsonb: {"client_id": N, "account_number": "...",
 * "operation_type": "online"|"offline"}.  Built directly as a JsonbValue
 * rather than parsed from text, which is most of why the generator beats
 * COPY.  Pairs are listed in jsonb's key order (shorter keys first, then
 * bytewise), which convertToJsonb requires.
 */
Datum
opsdemo_operation_message(const OpsdemoOperation *op)
{
	JsonbPair	pairs[3];
	JsonbValue	object;
	uint64		hash_state;
	char	   *account = palloc(21);

	/* A stable 20-digit account number per (client, account index). */
	hash_state = (uint64) op->client_id * ACCOUNTS_PER_CLIENT + op->account_index;
	/* PostgreSQL 18 has no INT64_MODIFIER: %llu with a cast fits all. */
	snprintf(account, 21, "40817810%012llu",
			 (unsigned long long) (splitmix64(&hash_state) % UINT64CONST(1000000000000)));

	set_string(&pairs[0].key, "client_id", 9);
	pairs[0].value.type = jbvNumeric;
	pairs[0].value.val.numeric = int64_to_numeric(op->client_id);
	pairs[0].order = 0;

	set_string(&pairs[1].key, "account_number", 14);
	set_string(&pairs[1].value, account, 20);
	pairs[1].order = 1;

	set_string(&pairs[2].key, "operation_type", 14);
	if (op->online)
		set_string(&pairs[2].value, "online", 6);
	else
		set_string(&pairs[2].value, "offline", 7);
	pairs[2].order = 2;

	object.type = jbvObject;
	object.val.object.nPairs = 3;
	object.val.object.pairs = pairs;

	return JsonbPGetDatum(JsonbValueToJsonb(&object));
}
