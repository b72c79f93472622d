# tools/cbctl.mk: cbctl and the shared-memory tests. Included by the Makefile.
#   test-shm       tests/shm_file.c (plain and ASan+UBSan), tests/registry_threads.c
#                  (plain and TSan), then tests/shm_cross.c: the cross-process
#                  accounting run, >= 100 kill -9 of a probe holder, random kills, and
#                  bulkhead places of killed processes settled (those of live ones kept)
#   test-cbctl     tests/test_shm_cbctl.py: every cbctl command and its errors, cbctl serve
#                  scraped over 127.0.0.1 (also past 1,500 slow clients), promtool check
#                  metrics on the exposition
#   test-fuzz-shm  tests/fuzz/fuzz_shm.c: the committed corpus replayed, then fuzzed for
#                  FUZZ_SHM_SECONDS (default 15) on a scratch copy of it
# Also: fuzz-shm (a longer fuzz run, FUZZ_SHM_SECONDS=600 by default there), and after a
# change of the file format (with CB__VERSION bumped): fuzz-shm-corpus (rewrites
# tests/fuzz/corpus/shm/) and shm-golden (rewrites tests/shm_golden.cb).

CBCTL_BIN   := $(BUILD)/tools/cbctl
SHM_BUILD   := $(BUILD)/shm
SHM_TESTS   := $(SHM_BUILD)/shm_file $(SHM_BUILD)/asan/shm_file $(SHM_BUILD)/shm_trust \
               $(SHM_BUILD)/asan/shm_trust $(SHM_BUILD)/registry_threads \
               $(SHM_BUILD)/tsan/registry_threads $(SHM_BUILD)/shm_cross
SHM_DRIVE   := $(SHM_BUILD)/shm_drive
FUZZ_SHM    := $(BUILD)/fuzz/fuzz_shm
FUZZ_SHM_CORPUS := tests/fuzz/corpus/shm
FUZZ_SHM_SECONDS ?= 15
SHM_SAN     := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all
# libFuzzer's runtime is a Recommends of clang in Debian 12, so it is named here.
FUZZ_SHM_DEPS := clang libclang-rt-14-dev

ALL        += $(CBCTL_BIN)
TEST_STEPS += test-shm test-cbctl test-fuzz-shm
TEST_DEPS  += libmicrohttpd-dev libcjson-dev prometheus python3-pytest $(FUZZ_SHM_DEPS)

.PHONY: deps-cbctl test-shm test-cbctl test-fuzz-shm fuzz-shm fuzz-shm-corpus shm-golden

deps-cbctl:
	@$(NEED) libmicrohttpd-dev libcjson-dev

$(CBCTL_BIN): tools/cbctl.c cb.h tools/cbflags.h | deps-cbctl
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) -I. -o $@ $< -lmicrohttpd -lcjson $(LDLIBS)

$(SHM_BUILD)/shm_file: tests/shm_file.c tests/t_other.c tests/t.h cb.h
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) -I. -o $@ $< tests/t_other.c $(LDLIBS)

$(SHM_BUILD)/asan/shm_file: tests/shm_file.c tests/t_other.c tests/t.h cb.h
	@mkdir -p $(@D)
	$(CC) $(WARN) $(SHM_SAN) -I. -o $@ $< tests/t_other.c $(LDLIBS)

$(SHM_BUILD)/shm_trust: tests/shm_trust.c tests/t_other.c tests/t.h cb.h
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) -I. -o $@ $< tests/t_other.c $(LDLIBS)

$(SHM_BUILD)/asan/shm_trust: tests/shm_trust.c tests/t_other.c tests/t.h cb.h
	@mkdir -p $(@D)
	$(CC) $(WARN) $(SHM_SAN) -I. -o $@ $< tests/t_other.c $(LDLIBS)

$(SHM_BUILD)/registry_threads: tests/registry_threads.c tests/t.h cb.h
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) -I. -o $@ $< $(LDLIBS)

$(SHM_BUILD)/tsan/registry_threads: tests/registry_threads.c tests/t.h cb.h
	@mkdir -p $(@D)
	$(CC) $(WARN) -O1 -g -fsanitize=thread -I. -o $@ $< $(LDLIBS)

$(SHM_BUILD)/shm_cross: tests/shm_cross.c tests/t.h cb.h
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) -I. -o $@ $< $(LDLIBS)

$(SHM_DRIVE): tests/shm_drive.c cb.h tools/cbflags.h
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) -I. -o $@ $< $(LDLIBS)

test-shm: $(SHM_TESTS)
	@fail=0; for t in $^; do echo "-- $$t"; \
	    case $$t in */tsan/*) r=20000;; *) r=100000;; esac; REG_ROUNDS=$$r $$t || fail=1; \
	done; exit $$fail

# The breaker tests/shm_file.c reads back, field by field: a change of the format that
# leaves CB__VERSION alone fails that test instead of misreading old files.
SHM_GOLDEN_FLAGS := --name=golden --window-calls=20 --failure-rate=0.9 --open-ms=1000
shm-golden: $(CBCTL_BIN) $(SHM_DRIVE)
	rm -f tests/shm_golden.cb
	$(CBCTL_BIN) create tests/shm_golden.cb $(SHM_GOLDEN_FLAGS)
	$(CBCTL_BIN) set tests/shm_golden.cb open
	$(CBCTL_BIN) reset tests/shm_golden.cb
	$(SHM_DRIVE) tests/shm_golden.cb $(SHM_GOLDEN_FLAGS) s=6 i=1 f=4

test-cbctl: $(CBCTL_BIN) $(SHM_DRIVE)
	@$(NEED) python3-pytest prometheus
	CBCTL=$(CBCTL_BIN) SHM_DRIVE=$(SHM_DRIVE) $(PYTHON) -m pytest -q -p no:cacheprovider \
	    tests/test_shm_cbctl.py

$(FUZZ_SHM): tests/fuzz/fuzz_shm.c cb.h
	@$(NEED) $(FUZZ_SHM_DEPS)
	@mkdir -p $(@D)
	clang $(WARN) -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	    -o $@ $< $(LDLIBS)

# $(call fuzz_shm_quiet,ARGS): run the fuzzer with its output in $(BUILD)/fuzz/shm.log;
# print the summary, or on failure the end of the log (crash files: $(BUILD)/fuzz/shm-*).
fuzz_shm_quiet = if $(FUZZ_SHM) -artifact_prefix=$(BUILD)/fuzz/shm- $(1) > $(BUILD)/fuzz/shm.log 2>&1; \
    then grep -E 'DONE' $(BUILD)/fuzz/shm.log; \
    else tail -n 80 $(BUILD)/fuzz/shm.log; echo "fuzz_shm: FAILED, log in $(BUILD)/fuzz/shm.log"; exit 1; fi

# Fuzzes a scratch copy of the corpus: the committed one changes only by fuzz-shm-corpus.
fuzz_shm_run = rm -rf $(BUILD)/fuzz/shm-work && mkdir -p $(BUILD)/fuzz/shm-work && \
    cp $(FUZZ_SHM_CORPUS)/* $(BUILD)/fuzz/shm-work/ && \
    $(call fuzz_shm_quiet,-max_total_time=$(1) -max_len=16384 -timeout=10 $(BUILD)/fuzz/shm-work)

test-fuzz-shm: $(FUZZ_SHM)
	@$(call fuzz_shm_quiet,-runs=0 $(FUZZ_SHM_CORPUS))
	@$(call fuzz_shm_run,$(FUZZ_SHM_SECONDS))

fuzz-shm: FUZZ_SHM_SECONDS = 600
fuzz-shm: $(FUZZ_SHM)
	@$(call fuzz_shm_run,$(FUZZ_SHM_SECONDS))

$(BUILD)/fuzz/fuzz_shm_corpus: tests/fuzz/fuzz_shm.c cb.h
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) -DFUZZ_SHM_MAKE_CORPUS -o $@ $< $(LDLIBS)

fuzz-shm-corpus: $(BUILD)/fuzz/fuzz_shm_corpus
	rm -rf $(FUZZ_SHM_CORPUS) && mkdir -p $(FUZZ_SHM_CORPUS)
	$< $(FUZZ_SHM_CORPUS)
