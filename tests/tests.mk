# tests/: every test of cb.h, one folder per kind, each with its own .mk:
#   unit/    one program per area of the core, plain, C++ and ASan+UBSan; promtool
#   stress/  invariant stress with injected yields, TSan, ASan, valgrind, planted bugs, wraps
#   fuzz/    the reference model (fuzz/model.c) against cb.h, libFuzzer; spin (model/)
#   shm/     shared files: trust, crashes across processes, cbctl end to end, fuzz_shm
# Shared by the kinds: t.h (assertions, fake clock, threads), t_other.c (a second
# translation unit that drives the inline fast path) and planted.py (bugs planted in a
# copy of cb.h for the tests that must catch them).

TESTS_LIBS := -lpthread -lm
TESTS_SAN  := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all
TESTS_SRC  := tests/t_other.c tests/t.h cb.h

# cb.h with planted bug N of tests/planted.py, for the tests that must catch it.
$(BUILD)/planted/%/cb.h: cb.h tests/planted.py
	$(PYTHON) tests/planted.py $* $(@D)

# Every test runs even when another fails or did not build; the step fails if any did.
tests_run = for t in $(1); do echo "-- $$t"; \
    if [ -x $$t ]; then $$t || fail=1; else echo "$$t: not built"; fail=1; fi; done

include tests/unit/unit.mk
include tests/stress/stress.mk
include tests/fuzz/fuzz.mk
include tests/shm/shm.mk
