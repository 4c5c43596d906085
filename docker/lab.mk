# Lab targets (included from the top Makefile).  Each one is a thin call of
# docker/lab, which does the work and explains what is missing.
#
#   make up | down | restart | status | logs | psql-primary | psql-replica
#   make generate N=1000000
#   make lab-clean        wipe the lab's containers, network and data volumes
#   make lab-build        rebuild the images (make up rebuilds when sources changed)
#   make lab-check        which prerequisites are missing
#   PG=15 or PG=18 selects that PostgreSQL lab (default 17), e.g. make up PG=15
#
# `clean` stays PGXS's (build outputs): the tests and the image build run it,
# and a build-cleaning command must never destroy data.  Hence lab-clean.

LAB = $(CURDIR)/docker/lab
LAB_ENV = $(if $(PG),OPSDEMO_PG=$(PG))

.PHONY: up down restart status logs psql-primary psql-replica generate \
        lab-clean lab-build lab-check

lab: up

up down restart status:
	@$(LAB_ENV) $(LAB) $@

logs:
	@$(LAB_ENV) $(LAB) logs $(NODE)

psql-primary psql-replica:
	@$(LAB_ENV) $(LAB) psql $(subst psql-,,$@)

generate:
	@$(if $(N),,echo "usage: make generate N=<rows>" >&2; exit 2;) $(LAB_ENV) $(LAB) generate $(N)

lab-clean lab-build lab-check:
	@$(LAB_ENV) $(LAB) $(subst lab-,,$@)
