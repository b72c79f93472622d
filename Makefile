# cb.h build. Targets: all (default), test, demo, bench, chaos, fuzz, model, clean.
# CC, CFLAGS and BUILD are overridable: make CC=clang CFLAGS='-O3'.
CC      ?= cc
CFLAGS  ?= -O2 -g
WARN    := -std=c11 -Wall -Wextra -Wpedantic -Werror
BUILD   ?= build
PYTHON  := /usr/bin/python3
TEST_JOBS ?= 2  # make test builds each step's programs this many at a time (its tests run one by one)
NEED    := scripts/need.sh
LDLIBS  := -lpthread
# Python writes no __pycache__ into the source tree; pytest runs with -p no:cacheprovider.
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: all test demo clean deps-base
.DEFAULT_GOAL := all

# Each area adds its programs to ALL, its test steps to TEST_STEPS (run in order) and
# the Debian packages it needs to TEST_DEPS.
ALL        :=
TEST_STEPS :=
TEST_DEPS  := build-essential clang valgrind

# Tools first: the tests of tests/shm/ name cbctl's rule.
include examples/examples.mk
include tools/tools.mk
include tools/cbctl.mk
include tests/tests.mk
include model/model.mk
include bench/bench.mk
include chaos/chaos.mk

all: $(ALL)

deps-test:
	@$(NEED) $(TEST_DEPS)

test: deps-test
	@set -e; t0=$$(date +%s); for step in $(TEST_STEPS); do \
	    s=$$(date +%s); echo "== $$step"; $(MAKE) -j$(TEST_JOBS) --no-print-directory $$step; \
	    echo "== $$step: $$(( $$(date +%s) - s )) s"; done; \
	    echo "== make test: all steps passed in $$(( $$(date +%s) - t0 )) s"

$(BUILD):
	@mkdir -p $@

clean:
	rm -rf $(BUILD)
