/*-------------------------------------------------------------------------
 *
 * schedule.c
 *	  Slot arithmetic of the built-in scheduler: when each job is due, what
 *	  happens to a slot that cannot be kept, and how long a failing job
 *	  waits.
 *
 * Job j is due at every multiple of its interval counted from the Unix
 * epoch (with 5 s and 3 s: seconds divisible by 5 and by 3).  The next due
 * time is always derived from the schedule, never from when the previous
 * run ended, so lateness does not accumulate into drift.  A slot that
 * cannot start within half an interval of its due time is skipped and
 * counted, never run late in a burst; the same rule absorbs a forward
 * clock step, and a backward step is noticed because the next due time is
 * then more than one interval away.  After failures a job backs off
 * exponentially (1, 2, 4, ... intervals, up to BACKOFF_MAX_MS).
 *
 * The schedule is private to the worker process; what opsdemo_status()
 * shows of it is published to shared memory on every change.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "datatype/timestamp.h"

#include "opsdemo.h"

/* Longest pause between retries of a failing job. */
#define BACKOFF_MAX_MS		30000

/* Microseconds from the PostgreSQL epoch (2000-01-01) back to 1970-01-01. */
#define UNIX_EPOCH_OFFSET_US \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * USECS_PER_SEC)

typedef struct JobSchedule
{
	int64		interval_ms;
	TimestampTz next_due;
	TimestampTz retry_after;	/* back-off: no run before this */
} JobSchedule;

static JobSchedule schedule[OPSDEMO_NJOBS];

/* The first slot of the interval strictly after t. */
TimestampTz
opsdemo_slot_after(TimestampTz t, int64 interval_ms)
{
	int64		iv = interval_ms * 1000;
	int64		u = t + UNIX_EPOCH_OFFSET_US;
	int64		k = u / iv;

	if (u < 0 && u % iv != 0)
		k--;
	return (k + 1) * iv - UNIX_EPOCH_OFFSET_US;
}

static int64
configured_interval_ms(int j)
{
	return j == OPSDEMO_JOB_INSERT ? opsdemo_insert_interval :
		opsdemo_update_interval;
}

static void
publish(int j)
{
	OpsdemoShared *s = opsdemo_shared();

	SpinLockAcquire(&s->mutex);
	s->jobs[j].interval_ms = schedule[j].interval_ms;
	s->jobs[j].next_due = Max(schedule[j].next_due, schedule[j].retry_after);
	SpinLockRelease(&s->mutex);
}

static void
count_skipped(int j, int64 n)
{
	OpsdemoShared *s = opsdemo_shared();

	SpinLockAcquire(&s->mutex);
	s->jobs[j].skipped += n;
	SpinLockRelease(&s->mutex);
}

/*
 * Re-anchors a job's schedule when it is new, its interval changed, or the
 * clock stepped backwards (the next slot is then more than an interval
 * away).
 */
void
opsdemo_schedule_refresh(TimestampTz now)
{
	for (int j = 0; j < OPSDEMO_NJOBS; j++)
	{
		JobSchedule *js = &schedule[j];
		int64		iv = configured_interval_ms(j);

		if (js->interval_ms != iv || js->next_due == 0 ||
			js->next_due - now > iv * 1000)
		{
			js->interval_ms = iv;
			js->next_due = opsdemo_slot_after(now, iv);
			js->retry_after = 0;
			publish(j);
		}
	}
}

/* Idle: keep the slots moving without counting them as skipped. */
void
opsdemo_schedule_idle(TimestampTz now)
{
	for (int j = 0; j < OPSDEMO_NJOBS; j++)
	{
		if (schedule[j].next_due <= now)
		{
			schedule[j].next_due = opsdemo_slot_after(now, schedule[j].interval_ms);
			publish(j);
		}
	}
}

/* The job due first; the insert job first on a tie. */
int
opsdemo_schedule_next_job(TimestampTz *due)
{
	int			first = 0;

	for (int j = 1; j < OPSDEMO_NJOBS; j++)
		if (schedule[j].next_due < schedule[first].next_due)
			first = j;
	*due = schedule[first].next_due;
	return first;
}

/*
 * Job j is due at or before "now": should its slot run?  If so, returns
 * true with the slot in *scheduled.  Otherwise the slot is skipped (too
 * late, or backing off) and counted, and the caller asks again.
 */
bool
opsdemo_schedule_take(int j, TimestampTz now, TimestampTz *scheduled)
{
	JobSchedule *js = &schedule[j];
	int64		iv_us = js->interval_ms * 1000;
	TimestampTz slot = js->next_due;

	if (now - slot > iv_us / 2)
	{
		/*
		 * Too late for this slot: skip it and every slot up to now, except
		 * the latest one if it is itself still on time.
		 */
		TimestampTz last = opsdemo_slot_after(now, js->interval_ms) - iv_us;

		js->next_due = (now - last <= iv_us / 2) ? last : last + iv_us;
		count_skipped(j, (js->next_due - slot) / iv_us);
		publish(j);
		return false;
	}
	if (slot < js->retry_after)
	{
		count_skipped(j, 1);
		js->next_due = opsdemo_slot_after(slot, js->interval_ms);
		publish(j);
		return false;
	}
	*scheduled = slot;
	return true;
}

/*
 * Next due time of job j after a run of slot "scheduled"; "failed" runs
 * back off by the shared consecutive failure count (a pg_cron run may have
 * reset it since).
 */
void
opsdemo_schedule_after_run(int j, TimestampTz scheduled, bool failed)
{
	JobSchedule *js = &schedule[j];

	js->next_due = opsdemo_slot_after(scheduled, js->interval_ms);
	if (failed)
	{
		OpsdemoShared *s = opsdemo_shared();
		int64		failures;
		int64		delay_ms;

		SpinLockAcquire(&s->mutex);
		failures = s->jobs[j].consecutive_failures;
		SpinLockRelease(&s->mutex);

		delay_ms = js->interval_ms << Min(Max(failures, 1) - 1, 20);
		delay_ms = Min(delay_ms, Max(BACKOFF_MAX_MS, js->interval_ms));
		js->retry_after = scheduled + delay_ms * 1000;
	}
	else
		js->retry_after = 0;
	publish(j);
}

/*
 * The time one tick may take.  Both jobs share one process, so a tick that
 * runs longer than the shorter interval makes the other job late.
 */
int
opsdemo_schedule_tick_budget_ms(void)
{
	return (int) Min(schedule[OPSDEMO_JOB_INSERT].interval_ms,
					 schedule[OPSDEMO_JOB_UPDATE].interval_ms);
}
