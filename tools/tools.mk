# tools/: command-line programs built on cb.h. Included by the top-level Makefile.

# ---- cb-replay: virtual-time replay of traces (docs/replay.md) ----------------------

CB_REPLAY_BIN := $(BUILD)/tools/cb-replay
ALL        += $(CB_REPLAY_BIN)
TEST_STEPS += test-replay
TEST_DEPS  += libcjson-dev python3-pytest

.PHONY: deps-replay test-replay replay-golden

deps-replay:
	@$(NEED) libcjson-dev

$(CB_REPLAY_BIN): tools/cb-replay.c cb.h tools/cbflags.h | deps-replay
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) -I. -o $@ $< -lcjson $(LDLIBS)

test-replay: $(CB_REPLAY_BIN)
	CB_REPLAY=$(CB_REPLAY_BIN) $(PYTHON) -m pytest -q -p no:cacheprovider chaos/test_replay.py

# Rewrites chaos/traces/*.golden from the current cb-replay; check the diff by hand.
replay-golden: $(CB_REPLAY_BIN)
	CB_REPLAY=$(CB_REPLAY_BIN) CB_REPLAY_UPDATE=1 $(PYTHON) -m pytest -q -p no:cacheprovider \
	    chaos/test_replay.py -k golden
