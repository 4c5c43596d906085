/*-------------------------------------------------------------------------
 *
 * module.c
 *	  pg_opsdemo module entry point.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "opsdemo.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	opsdemo_mv_sum_init();
	opsdemo_mv_sum_now_init();
	opsdemo_partitions_init();
	opsdemo_worker_init();
}
