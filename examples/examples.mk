# examples/: programs a user copies from, and the demo.
#   make demo   build, start Redis behind the fault proxy, run redis_client through a
#               4 s Redis hang with a live status line; then four Redis shards, one of
#               which hangs and opens alone; a report and a plot for each act
EXAMPLES := $(BUILD)/examples/redis_breaker
ALL      += $(EXAMPLES)

.PHONY: demo

$(BUILD)/examples/redis_breaker: examples/redis_breaker.c cb.h | $(BUILD) deps-chaos
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) -o $@ $< -lhiredis $(LDLIBS)

# The rules for redis_client and deps-chaos are in chaos/chaos.mk.
demo: $(BUILD)/chaos/redis_client | deps-chaos
	@CHAOS_BIN=$(abspath $(BUILD))/chaos $(PYTHON) chaos/harness.py --live --demo examples/demo.toml \
	    examples/demo-shards.toml
