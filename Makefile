# pg_opsdemo: PGXS build.  `make && make install` builds and installs the
# extension into the PostgreSQL found by PG_CONFIG; `make test` runs every test.

EXTENSION   = pg_opsdemo
MODULE_big  = pg_opsdemo
OBJS        = src/module.o \
              src/catalog.o \
              src/guid.o \
              src/partitions.o \
              src/partition_worker.o \
              src/generate.o \
              src/rowgen.o \
              src/jobs.o \
              src/mv_sum.o \
              src/mv_sum_retention.o \
              src/settings.o \
              src/schedule.o \
              src/run_record.o \
              src/worker.o \
              src/worker_state.o \
              src/cron.o \
              src/read_only_guard.o \
              src/mv_sum_now.o
DATA        = pg_opsdemo--1.0.sql pg_opsdemo--1.1.sql pg_opsdemo--1.0--1.1.sql \
              pg_opsdemo--1.2.sql pg_opsdemo--1.1--1.2.sql \
              pg_opsdemo--1.3.sql pg_opsdemo--1.2--1.3.sql
PGFILEDESC  = "pg_opsdemo - partitioned operations table, bulk generator and jobs"

# pg_regress (sql/, expected/) runs against an already running server;
# test/run-tests starts a throwaway one.
REGRESS      = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
ISOLATION    = $(patsubst test/isolation/specs/%.spec,%,$(sort $(wildcard test/isolation/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test/isolation
TAP_TESTS    = 1
PROVE_TESTS  = test/t/*.pl

PG_CFLAGS   = -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare \
              -Wno-missing-field-initializers -Werror=implicit-function-declaration

PG_CONFIG  ?= pg_config
PGXS       := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(PGXS),)
include $(PGXS)
else
# No server headers yet, as on a fresh machine: `make test` installs them
# (test/install-deps); the build targets cannot do without them.
all install installcheck:
	@echo "$(PG_CONFIG) not found: install postgresql-server-dev-<major> or set PG_CONFIG (make test installs what it needs)" >&2; exit 1
endif
include lab/lab.mk

# PGXS appends --dbname=contrib_regression; these name our test databases.
CONTRIB_TESTDB   = opsdemo_regress
ISOLATION_TESTDB = opsdemo_isolation

.PHONY: test bench bench-mv-sum
# The whole suite, from whatever the machine has: test/run-tests first
# installs what is missing (test/install-deps), so this is also CI's command.
test:
	test/run-tests

bench:
	bench/generate

.PHONY: bench-scheduler
bench-scheduler:
	bench/scheduler

bench-mv-sum:
	bench/mv_sum
