# Lab targets (included from the top Makefile): `make <command> LAB=<topology>
# [NODE=<node>]`.  Each one is a thin call of lab/lab, which does the work
# and explains what is missing.
#
#   make up | down | restart | status | logs [NODE=] | psql NODE=
#   make lab-clean        wipe the topology's containers, network, data volumes
#   make lab-build        rebuild the images (make up rebuilds when sources changed)
#   make lab-check        which prerequisites are missing
#   LAB=logical           the topology (lab/<LAB>/; default logical, seed 000's lab)
#   PG=15 or PG=18        that PostgreSQL major (default 17), e.g. make up PG=15
# Topology "logical" also has: make generate N=1000000, make psql-primary,
# make psql-replica.  Topology "streaming": make wal-load N=, make sync
# SYNC='FIRST 1 (pg2, pg3)' | 'ANY 1 (pg2, pg3)' | off, make stop|kill|start|
# promote|rejoin|reclone NODE=pgN, make sync-block-demo (all with LAB=streaming).
# Topology "mesh": make write NODE=node1 TABLE=test, make check, make failover
# NODE=node4, make stop|kill|start NODE=nodeN (all with LAB=mesh).
# Topology "ha": make switchover [NODE=pgN], make failover [NODE=pgN],
# make kill|start|stop NODE=, make partition|heal NODE=, make etcd-kill
# NODE=etcdN (all with LAB=ha).
#
# `clean` stays PGXS's (build outputs): the tests and the image build run it,
# and a build-cleaning command must never destroy data.  Hence lab-clean.

LAB ?= logical
LAB_DRIVER = $(CURDIR)/lab/lab
LAB_RUN = $(if $(PG),OPSDEMO_PG=$(PG)) $(LAB_DRIVER) --topology $(LAB)

.PHONY: lab up down restart status logs psql psql-primary psql-replica generate \
        lab-clean lab-build lab-check wal-load sync sync-block-demo stop kill start promote rejoin reclone \
        write failover switchover partition heal etcd-kill

lab: up

up down restart status:
	@$(LAB_RUN) $@

logs:
	@$(LAB_RUN) logs $(NODE)

psql:
	@$(if $(NODE),,echo "usage: make psql NODE=<node> [LAB=<topology>]" >&2; exit 2;) $(LAB_RUN) psql $(NODE)

psql-primary psql-replica:
	@$(LAB_RUN) psql $(subst psql-,,$@)

generate:
	@$(if $(N),,echo "usage: make generate N=<rows>" >&2; exit 2;) $(LAB_RUN) generate $(N)

lab-clean lab-build lab-check:
	@$(LAB_RUN) $(subst lab-,,$@)

wal-load:
	@$(if $(N),,echo "usage: make wal-load LAB=$(LAB) N=<rows>" >&2; exit 2;) $(LAB_RUN) wal-load $(N)

sync:
	@$(if $(SYNC),,echo "usage: make sync LAB=$(LAB) SYNC='FIRST 1 (pg2, pg3)'|'ANY 1 (pg2, pg3)'|off" >&2; exit 2;) $(LAB_RUN) sync "$(SYNC)"

sync-block-demo:
	@$(LAB_RUN) $@

stop kill start promote rejoin reclone:
	@$(if $(NODE),,echo "usage: make $@ LAB=$(LAB) NODE=<node>" >&2; exit 2;) $(LAB_RUN) $@ $(NODE)

write:
	@$(if $(and $(NODE),$(TABLE)),,echo "usage: make write LAB=$(LAB) NODE=<node> TABLE=<table>" >&2; exit 2;) $(LAB_RUN) write $(NODE) $(TABLE)

# NODE is optional where the topology picks one (ha); mesh requires it.
failover switchover:
	@$(LAB_RUN) $@ $(NODE)

partition heal etcd-kill:
	@$(if $(NODE),,echo "usage: make $@ LAB=$(LAB) NODE=<node>" >&2; exit 2;) $(LAB_RUN) $@ $(NODE)

# `make check LAB=<topology>`: the lab's copies against their writers
# (lab/lab verify; lab/lab check is lab-check's prerequisites).  PGXS has a
# `check` of its own (it says to use installcheck): the lab's takes its
# place only when LAB is given and check is asked for, so that make warns
# about the overridden recipe only then.
ifneq ($(origin LAB),file)
ifneq ($(filter check,$(MAKECMDGOALS)),)
.PHONY: check
check:
	@$(LAB_RUN) verify
endif
endif
