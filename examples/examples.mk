# examples/: programs a user copies from, and the demo.
#   make demo         build, start Redis behind the fault proxy, run redis_client through
#                     a 4 s Redis hang with a live status line; then four Redis shards, one
#                     of which hangs and opens alone; a report and a plot for each act
#   make test-readme  the README's quick start, saved as the file its command names with
#                     cb.h beside it, built with that command (-Wall -Wextra -Werror added)
#                     and run (check_readme.py); fails once the block stops compiling
# cbctl-watch.service is a systemd unit that keeps an incidents log of the shared
# breakers of a service (cbctl watch --log, docs/cbctl.md).
EXAMPLES := $(BUILD)/examples/redis_breaker
ALL      += $(EXAMPLES)
TEST_STEPS += test-readme

.PHONY: demo test-readme

$(BUILD)/examples/redis_breaker: examples/redis_breaker.c cb.h | $(BUILD) deps-chaos
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) -o $@ $< -lhiredis $(LDLIBS)

# The rules for redis_client and deps-chaos are in chaos/chaos.mk.
demo: $(BUILD)/chaos/redis_client | deps-chaos
	@CHAOS_BIN=$(abspath $(BUILD))/chaos $(PYTHON) chaos/harness.py --live --demo examples/demo.toml \
	    examples/demo-shards.toml

test-readme: README.md cb.h examples/check_readme.py
	$(PYTHON) examples/check_readme.py README.md cb.h $(BUILD)/readme
