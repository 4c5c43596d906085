/*-------------------------------------------------------------------------
 *
 * opsdemo.h
 *	  Declarations shared by the pg_opsdemo source files.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OPSDEMO_H
#define OPSDEMO_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "fmgr.h"
#include "storage/latch.h"
#include "storage/spin.h"
#include "utils/numeric.h"
#include "utils/relcache.h"
#include "utils/uuid.h"

#if PG_VERSION_NUM < 150000
#error "pg_opsdemo requires PostgreSQL 15 or later"
#endif

#define OPSDEMO_EXTENSION_NAME	"pg_opsdemo"
#define OPSDEMO_TABLE_NAME		"t1"

/*
 * Column names of t1 that the C code writes.  Looked up by name at run time
 * so that a renamed or dropped column gives a clear error instead of
 * writing the wrong attribute.
 */
#define OPSDEMO_COL_DATE		"date"
#define OPSDEMO_COL_AMOUNT		"amount"
#define OPSDEMO_COL_STATUS		"status"
#define OPSDEMO_COL_GUID		"operation_guid"
#define OPSDEMO_COL_MESSAGE		"message"

/* Largest n opsdemo_generate accepts in one call. */
#define OPSDEMO_GENERATE_MAX_ROWS	INT64CONST(1000000000)

/* Private progress slot used by opsdemo_generate for the requested row count. */
#define OPSDEMO_PROGRESS_ROWS_TOTAL	10

/* catalog.c: where the extension's objects live */
typedef struct OpsdemoTarget
{
	Oid			nspid;			/* schema of the extension */
	char	   *nspname;
	Oid			t1_relid;
	AttrNumber	att_date;
	AttrNumber	att_amount;
	AttrNumber	att_status;
	AttrNumber	att_guid;
	AttrNumber	att_message;
} OpsdemoTarget;

extern Oid	opsdemo_schema_oid(void);
extern Oid	opsdemo_t1_relid(Oid nspid);
extern void opsdemo_resolve_columns(Relation rel, OpsdemoTarget *target);
extern void opsdemo_check_insert_privilege(Oid relid);
extern Oid	opsdemo_rel_owner(Oid relid);
extern Oid	opsdemo_table_relid(Oid nspid, const char *relname);

/*
 * Running SQL as a table's owner, sandboxed: SECURITY_RESTRICTED_OPERATION
 * and search_path = pg_catalog, pg_temp (as REFRESH MATERIALIZED VIEW does).
 */
typedef struct OpsdemoSavedUser
{
	Oid			userid;
	int			sec_context;
	int			guc_nestlevel;
} OpsdemoSavedUser;

extern int	opsdemo_pin_search_path(void);
extern void opsdemo_become_owner(Oid relid, OpsdemoSavedUser *saved);
extern void opsdemo_restore_user(const OpsdemoSavedUser *saved);

/* guid.c: time-ordered operation GUIDs whose timestamp is the row's date */
extern void opsdemo_guid_make(TimestampTz at, uint64 random_a, uint64 random_b,
							  pg_uuid_t *out);
extern bool opsdemo_guid_time_of(const pg_uuid_t *uuid, TimestampTz *at);
extern void opsdemo_check_guid_range(TimestampTz at, const char *what);

/* rowgen.c: the model of one synthetic operation, shared by generator and ticks */
typedef struct OpsdemoRng
{
	uint64		s[4];
} OpsdemoRng;

typedef struct OpsdemoOperation
{
	int64		client_id;
	bool		online;
	int64		amount_cents;
	int			account_index;	/* which of the client's accounts */
} OpsdemoOperation;

extern void opsdemo_rng_seed(OpsdemoRng *rng, uint64 seed);
extern uint64 opsdemo_rng_next(OpsdemoRng *rng);
extern double opsdemo_rng_double(OpsdemoRng *rng);
extern void opsdemo_operation_draw(OpsdemoRng *rng, int32 clients,
								   OpsdemoOperation *op);
extern Datum opsdemo_operation_amount(const OpsdemoOperation *op);
extern Datum opsdemo_operation_message(const OpsdemoOperation *op);

/* partitions.c */
extern int	opsdemo_partitions_ensure_range(Oid nspid, Oid t1_relid,
											TimestampTz from, TimestampTz to);
extern bool opsdemo_partition_exists_for(Oid nspid, TimestampTz at);
extern int	opsdemo_utc_month_index(TimestampTz at);
extern TimestampTz opsdemo_utc_month_start(int month_index);
extern void opsdemo_month_partition_name(int month_index, char *name);
extern bool opsdemo_month_exempt(int month_index);
extern void opsdemo_check_partition_limit(Oid t1_relid, int not_exempt,
										  TimestampTz from, TimestampTz to,
										  int max_partitions);
extern void opsdemo_check_range(TimestampTz from, TimestampTz to,
							   const char *what);

/* partitions.c, partition_worker.c, guid.c: partition creation, GUID randomness */

/*
 * Partition creation is serialized by the transaction-level advisory lock
 * (OPSDEMO_LOCK_CLASS, OPSDEMO_LOCK_PARTITIONS) in the two-int4 key space,
 * i.e. pg_advisory_xact_lock(1869640548, 1): kept apart from the one-bigint
 * keys applications use.  The class id is "opsd" in ASCII.
 */
#define OPSDEMO_LOCK_CLASS			1869640548
#define OPSDEMO_LOCK_PARTITIONS		1

extern int	opsdemo_max_partitions;
extern int	opsdemo_partition_lock_timeout;

/*
 * t1 while opsdemo_partitions_create_here() creates months, and may move
 * rows of a new month out of t1's default partition; InvalidOid otherwise.
 * The read-only guard lets that move pass: the same rows, in the right
 * partition, on a node where t1 is a guarded copy.
 */
extern Oid	opsdemo_moving_rows_of;

extern void opsdemo_partitions_init(void);
extern int	opsdemo_partitions_create_here(Oid nspid, Oid t1_relid,
										   TimestampTz from, TimestampTz to,
										   int max_partitions);

/* partition_worker.c */
extern bool opsdemo_partitions_create_in_worker(Oid nspid, Oid t1_relid,
												TimestampTz from, TimestampTz to,
												int max_partitions,
												int lock_timeout_ms,
												int *created);

/*
 * guid.c: a GUID for "at" whose random bits come from pg_strong_random();
 * for every GUID not minted by a seeded generator.
 */
extern void opsdemo_guid_make_strong(TimestampTz at, pg_uuid_t *out);



/* mv_sum.c: incremental maintenance of mv_sum */
extern void opsdemo_mv_sum_init(void);

/* mv_sum.c: relation checks, subtraction for retention */
extern bool opsdemo_is_t1_or_partition(Oid relid, Oid t1_relid);
extern void opsdemo_mv_sum_subtract_relation(Oid relid);

/* mv_sum.c: a group's change counted by the generator itself (issue 14) */
extern void opsdemo_mv_sum_add_group(int64 client_id, const text *operation_type,
									 Numeric sum, int64 count);

/* mv_sum.c: for mv_sum_now.c */
extern void opsdemo_mv_sum_add_delta(int64 client_id, const text *operation_type,
									 Datum sum, int64 count, bool negative);
extern bool opsdemo_mv_sum_relation_columns(Oid relid, AttrNumber cols[4]);

/*
 * mv_sum_now.c: while armed (begin .. end, around a statement of the
 * extension's own), t1's rows are counted as they are written
 */
extern void opsdemo_mv_sum_now_init(void);
extern int	opsdemo_mv_sum_now_begin(void);
extern void opsdemo_mv_sum_now_end(int previous);

/* jobs.c: the job bodies, called by the SQL functions and both schedulers */
extern int64 opsdemo_insert_rows(TimestampTz at, int nrows);
extern int64 opsdemo_update_rows(TimestampTz at);
extern int32 opsdemo_tick_parity(TimestampTz at);
extern int64 opsdemo_flip_batch(int32 parity, int limit, uint64 *taken);
extern bool opsdemo_batch_retryable(int sqlerrcode);

/* settings.c: the scheduler's settings */
typedef enum OpsdemoScheduler
{
	OPSDEMO_SCHEDULER_WORKER,
	OPSDEMO_SCHEDULER_PG_CRON,
	OPSDEMO_SCHEDULER_OFF
} OpsdemoScheduler;

extern int	opsdemo_scheduler;
extern int	opsdemo_insert_interval;
extern int	opsdemo_update_interval;
extern char *opsdemo_database;
extern char *opsdemo_role;
extern int	opsdemo_insert_batch_size;
extern int	opsdemo_update_batch_size;
extern int	opsdemo_history_retention;
extern bool opsdemo_force_on_subscriber;

extern void opsdemo_settings_define(void);
extern const char *opsdemo_scheduler_name(int scheduler);

/* worker.c: the built-in scheduler's background worker */
extern void opsdemo_worker_init(void);

/* worker_state.c: the worker's state in shared memory */
#define OPSDEMO_JOB_INSERT		0
#define OPSDEMO_JOB_UPDATE		1
#define OPSDEMO_NJOBS			2
#define OPSDEMO_ERROR_LEN		256
#define OPSDEMO_STATE_LEN		256

typedef struct OpsdemoJobState
{
	int64		interval_ms;
	int64		runs;
	int64		failures;
	int64		skipped;
	int64		consecutive_failures;
	int64		last_result;
	TimestampTz last_start;
	int64		last_duration_us;
	TimestampTz next_due;
	char		last_error[OPSDEMO_ERROR_LEN];
} OpsdemoJobState;

typedef struct OpsdemoShared
{
	slock_t		mutex;
	pid_t		worker_pid;
	Latch	   *worker_latch;
	bool		stopped;		/* opsdemo_worker_stop() since the last
								 * opsdemo_worker_start(): every worker that
								 * starts, or is between ticks, exits */
	bool		connecting;		/* inside BackgroundWorkerInitializeConnection */
	bool		connect_failed; /* ... and the last attempt died there */
	bool		restart_pending;	/* exited non-zero: the postmaster starts
									 * it again after RESTART_SECONDS */
	char		state[OPSDEMO_STATE_LEN];
	OpsdemoJobState jobs[OPSDEMO_NJOBS];
} OpsdemoShared;

extern const char *const opsdemo_job_names[OPSDEMO_NJOBS];

extern void opsdemo_shmem_request(void);
extern OpsdemoShared *opsdemo_shared(void);
extern void opsdemo_set_state(const char *fmt,...) pg_attribute_printf(1, 2);

/* schedule.c, run_record.c: slot arithmetic and recording runs */

/* schedule.c: when each job of the built-in worker is due */
extern TimestampTz opsdemo_slot_after(TimestampTz t, int64 interval_ms);
extern void opsdemo_schedule_refresh(TimestampTz now);
extern void opsdemo_schedule_idle(TimestampTz now);
extern int	opsdemo_schedule_next_job(TimestampTz *due);
extern bool opsdemo_schedule_take(int j, TimestampTz now, TimestampTz *scheduled);
extern void opsdemo_schedule_after_run(int j, TimestampTz scheduled, bool failed);
extern int	opsdemo_schedule_tick_budget_ms(void);

/* run_record.c: one run of a job, by either scheduler */
typedef struct OpsdemoRun
{
	int			job;			/* OPSDEMO_JOB_* */
	const char *scheduler;		/* "worker" or "pg_cron" */
	TimestampTz scheduled;
	TimestampTz started;
	int64		duration_us;
	bool		ok;
	int64		result;			/* rows flipped, or the last id inserted */
	char		error[OPSDEMO_ERROR_LEN];	/* "message (SQLSTATE xxxxx)" */
} OpsdemoRun;

extern void opsdemo_run_set_error(OpsdemoRun *run, const ErrorData *edata);
extern void opsdemo_run_count(const OpsdemoRun *run);
extern void opsdemo_run_write_history(const OpsdemoRun *run, bool purge);
extern void opsdemo_run_record_at_commit(const OpsdemoRun *run);

#endif							/* OPSDEMO_H */
