# chaos/: workload programs built on cb.h, the fault-injection suite and its report.
#   make chaos        every scenario in full settings, then build/chaos/out/report.md + PNGs
#   make test-chaos   every scenario in fast settings (a step of make test)
CHAOS_BIN   := $(BUILD)/chaos
CHAOS_PROGS := $(CHAOS_BIN)/redis_client $(CHAOS_BIN)/model_loader $(CHAOS_BIN)/log_shipper
# Scenario results, logs and the report (chaos/components.py reads it).
export CHAOS_OUT := $(abspath $(BUILD))/chaos/out
CHAOS_DEPS  := redis-server libhiredis-dev python3-pytest python3-redis python3-matplotlib
# The suite also runs chaos/test_replay.py, which needs tools/cb-replay when tools.mk builds it.
CHAOS_NEEDS := $(CHAOS_PROGS) $(filter %/cb-replay,$(ALL))
CHAOS_PYTEST = CHAOS_BIN=$(abspath $(CHAOS_BIN)) CB_REPLAY=$(abspath $(BUILD))/tools/cb-replay \
               $(PYTHON) -m pytest -q -p no:cacheprovider chaos

ALL        += $(CHAOS_PROGS)
TEST_STEPS += test-chaos
TEST_DEPS  += $(CHAOS_DEPS)

.PHONY: chaos test-chaos deps-chaos

deps-chaos:
	@$(NEED) $(CHAOS_DEPS)

$(CHAOS_BIN)/redis_client: chaos/redis_client.c chaos/workload.h tools/cbflags.h cb.h | $(BUILD) deps-chaos
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) -o $@ $< -lhiredis $(LDLIBS)

$(CHAOS_BIN)/model_loader: chaos/model_loader.c chaos/workload.h tools/cbflags.h cb.h | $(BUILD)
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) -o $@ $< $(LDLIBS)

$(CHAOS_BIN)/log_shipper: chaos/log_shipper.c chaos/workload.h tools/cbflags.h cb.h | $(BUILD)
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) -o $@ $< $(LDLIBS)

# The report is written whether or not every check passed; the exit status is pytest's.
test-chaos chaos: $(CHAOS_NEEDS) | deps-chaos
	@CHAOS_SETTINGS=$(if $(filter chaos,$@),full,fast) $(CHAOS_PYTEST); rc=$$?; \
	    $(PYTHON) chaos/report.py && exit $$rc
