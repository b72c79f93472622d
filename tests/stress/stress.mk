# tests/stress/: invariant stress of cb.h, sanitizers, planted bugs, wraparound
# (docs/verification-stress.md has the figures). Steps, in order:
#   test-stress       2, 4, 8 threads x 10^6 calls, every rule set, fake and real clock,
#                     plain and with yield injection (-DSTRESS_YIELD, stress.h); keyed groups
#                     (stress_group.c): creation races, churn, eviction racing calls, share
#   test-tsan         stress and unit tests under ThreadSanitizer, gcc and clang
#   test-asan-stress  stress under AddressSanitizer + UBSan (clang; unit.mk's test-asan
#                     runs the unit tests so with gcc)
#   test-valgrind     unit tests under valgrind memcheck
#   test-planted      bugs 1, 2, 3 of tests/planted.py: the stress test must catch each with
#                     yield injection; without, whether it does is reported
#   test-wrap         generation tags through their wraps (2^16, 2^22, 2^29, 2^32) and
#                     counters through 2^64, under ASan + UBSan
# Every run is bounded by `timeout`; sanitizer runs are smaller than the plain ones.

STRESS_SRC    := tests/stress/stress_invariants.c tests/stress/stress.h cb.h
GROUP_SRC     := tests/stress/stress_group.c tests/stress/stress.h cb.h
STRESS_TSAN   := -O1 -g -fsanitize=thread
STRESS_ASAN   := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all
STRESS_RUN    := env TSAN_OPTIONS='halt_on_error=1 second_deadlock_stack=1' \
                 UBSAN_OPTIONS='halt_on_error=1 print_stacktrace=1' timeout 300

# Flavours of the stress program: compiler and flags, built as $(BUILD)/stress/<flavour>/.
STRESS_plain      := $(CC) $(CFLAGS)
STRESS_yield      := $(CC) $(CFLAGS) -DSTRESS_YIELD
STRESS_tsan-gcc   := gcc $(STRESS_TSAN) -DSTRESS_YIELD
STRESS_tsan-clang := clang $(STRESS_TSAN) -DSTRESS_YIELD
STRESS_asan       := clang $(STRESS_ASAN) -DSTRESS_YIELD
$(foreach n,1 2 3,$(eval STRESS_bug$(n) := $(CC) $(CFLAGS) -I$(BUILD)/planted/$(n)))
$(foreach n,1 2 3,$(eval STRESS_bug$(n)-yield := $(CC) $(CFLAGS) -I$(BUILD)/planted/$(n) -DSTRESS_YIELD))
stress_bin = $(BUILD)/stress/$(1)/stress_invariants
group_bin  = $(BUILD)/stress/$(1)/stress_group
$(foreach n,1 2 3,$(eval $(call stress_bin,bug$(n)) $(call stress_bin,bug$(n)-yield): $(BUILD)/planted/$(n)/cb.h))

STRESS_TSAN_UNIT := $(foreach c,gcc clang,$(TESTS_AREAS:%=$(BUILD)/tsan-$(c)/tests/test_%))

ALL        += $(call stress_bin,plain) $(call stress_bin,yield) $(call group_bin,plain) \
              $(call group_bin,yield)
TEST_STEPS += test-stress test-tsan test-asan-stress test-valgrind test-planted test-wrap
TEST_DEPS  += clang valgrind

.PHONY: test-stress test-tsan test-asan-stress test-valgrind test-planted test-wrap stress-deps

stress-deps:
	@$(NEED) clang valgrind

$(BUILD)/stress/%/stress_invariants: $(STRESS_SRC) | stress-deps
	@mkdir -p $(@D)
	$(STRESS_$*) $(WARN) -I. -o $@ tests/stress/stress_invariants.c $(TESTS_LIBS)

$(BUILD)/stress/%/stress_group: $(GROUP_SRC) | stress-deps
	@mkdir -p $(@D)
	$(STRESS_$*) $(WARN) -I. -o $@ tests/stress/stress_group.c $(TESTS_LIBS)

$(BUILD)/tsan-gcc/tests/test_%: tests/unit/test_%.c $(TESTS_SRC) | tests-deps stress-deps
	@mkdir -p $(@D)
	gcc $(WARN) $(STRESS_TSAN) -I. -o $@ $< tests/t_other.c $(TESTS_LD_$*) $(TESTS_LIBS)

$(BUILD)/tsan-clang/tests/test_%: tests/unit/test_%.c $(TESTS_SRC) | tests-deps stress-deps
	@mkdir -p $(@D)
	clang $(WARN) $(STRESS_TSAN) -I. -o $@ $< tests/t_other.c $(TESTS_LD_$*) $(TESTS_LIBS)

# $(1): command prefix, $(2): programs; runs every one, fails if any did.
stress_each = fail=0; for t in $(2); do echo "-- $$t"; $(1) $$t || fail=1; done; \
    exit $$fail

# $(1): program, $(2): threads, $(3): calls per thread; every scenario on both clocks.
stress_all = for t in $(2); do for c in fake real; do \
    $(STRESS_RUN) $(1) all $$t $(3) $$c || exit 1; done; done

# $(1): FLAVOUR=CALLS (calls per thread) words, $(2): threads; every group scenario (fake
# clock) of each flavour, each run even when another failed, so that one failure hides
# none of the others.
GROUP_SCENARIOS := create churn bulkhead evict share
group_all = fail=0; for fc in $(1); do for t in $(2); do for s in $(GROUP_SCENARIOS); do \
    $(STRESS_RUN) $(call group_bin,$${fc%=*}) $$s $$t $${fc\#*=} || fail=1; \
    done; done; done; exit $$fail

test-stress: $(call stress_bin,plain) $(call stress_bin,yield) $(call group_bin,plain) \
             $(call group_bin,yield)
	@$(call stress_all,$(call stress_bin,plain),2 4 8,1000000)
	@$(call stress_all,$(call stress_bin,yield),2 4 8,1000000)
	@$(call group_all,plain=1000000 yield=200000,2 8)

test-tsan: $(call stress_bin,tsan-gcc) $(call stress_bin,tsan-clang) $(STRESS_TSAN_UNIT) \
           $(call group_bin,tsan-gcc) $(call group_bin,tsan-clang)
	@$(call stress_all,$(call stress_bin,tsan-gcc),2 8,50000)
	@$(call stress_all,$(call stress_bin,tsan-clang),2 8,50000)
	@$(call stress_each,$(STRESS_RUN),$(STRESS_TSAN_UNIT))
	@$(call group_all,tsan-gcc=40000 tsan-clang=40000,8)

test-asan-stress: $(call stress_bin,asan) $(call group_bin,asan)
	@$(call stress_all,$(call stress_bin,asan),2 8,300000)
	@$(call group_all,asan=200000,2 8)

test-valgrind: $(TESTS_BIN) | stress-deps
	@$(call stress_each,$(STRESS_RUN) valgrind -q --error-exitcode=1 --leak-check=full \
	    --errors-for-leak-kinds=definite,$(TESTS_BIN))

# Bug 2 lives in the count window; 1 (half-open permits) and 3 (transitions) anywhere.
stress_scenario = $(if $(filter 2,$(1)),count,consecutive)
test-planted: $(foreach n,1 2 3,$(call stress_bin,bug$(n)) $(call stress_bin,bug$(n)-yield))
	@set -e; $(foreach n,1 2 3,for c in fake real; do \
	    echo "-- planted bug $(n), $$c clock, yield injection"; \
	    tests/stress/stress_expect.sh must $(STRESS_RUN) $(call stress_bin,bug$(n)-yield) \
	        $(call stress_scenario,$(n)) 8 1000000 $$c; \
	    echo "-- planted bug $(n), $$c clock, no yield injection"; \
	    tests/stress/stress_expect.sh may $(STRESS_RUN) $(call stress_bin,bug$(n)) \
	        $(call stress_scenario,$(n)) 8 1000000 $$c; done;)

# Not steps of `make test`: the proofs behind docs/verification-stress.md. Every check
# kills a mutant of cb.h; each planted bug is caught this fast (TRIALS runs per row).
.PHONY: stress-mutants stress-figures
stress-mutants:
	$(PYTHON) tests/stress/stress_mutants.py $(BUILD)/stress/mutants $(CC)

stress-figures: $(foreach f,plain yield $(foreach n,1 2 3,bug$(n) bug$(n)-yield),$(call stress_bin,$(f)))
	tests/stress/stress_figures.sh $(or $(TRIALS),10) $(BUILD)

# Generations start 256 below each width cb.h's generation tags have (16, 22, 29, 32
# bits), every thread's counters 4096 below 2^64; the time window's 2 ms buckets (the
# scenario time: 8 ms in 4) start 1000 below 2^31 and 2^32 epochs, where their 32-bit
# epoch tags change sign and wrap.
test-wrap: $(call stress_bin,asan)
	@for g in 0xff00 0x3fff00 0x1fffff00 0xffffff00; do \
	    $(STRESS_RUN) $(call stress_bin,asan) all 8 300000 fake $$g 0xfffffffffffff000 || exit 1; done
	@for ms in 4294965296 8589932592; do \
	    $(STRESS_RUN) $(call stress_bin,asan) time 8 300000 fake@$$ms || exit 1; done
