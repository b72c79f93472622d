# tests/shm/: breakers shared between processes through a mapped file. Steps, in order:
#   test-shm       shm_file.c (plain and ASan+UBSan), shm_trust.c (files of another user,
#                  links, damaged and rewritten headers; plain and ASan+UBSan),
#                  registry_threads.c (plain and TSan), then shm_cross.c: the cross-process
#                  accounting run, >= 100 kill -9 of a probe holder, random kills, and
#                  bulkhead places of killed processes settled (those of live ones kept)
#   test-cbctl     test_shm_cbctl.py: every cbctl command and its errors, cbctl serve
#                  scraped over 127.0.0.1 (also past 1,500 slow clients), promtool check
#                  metrics on the exposition; test_shm_cbctl_groups.py: the same on group
#                  files, hostile keys, key label bounds, group health;
#                  test_shm_cbctl_log.py: watch --log (every transition once, in order,
#                  across rotations and restarts; gaps; keys; the log's own safety),
#                  show --history and the history in metrics --json
# Also, after a change of the file format (with CB__VERSION bumped): shm-golden (rewrites
# tests/shm/shm_golden.cb, which shm_file.c reads back field by field).

SHM_BUILD   := $(BUILD)/shm
SHM_TESTS   := $(SHM_BUILD)/shm_file $(SHM_BUILD)/asan/shm_file $(SHM_BUILD)/shm_trust \
               $(SHM_BUILD)/asan/shm_trust $(SHM_BUILD)/registry_threads \
               $(SHM_BUILD)/tsan/registry_threads $(SHM_BUILD)/shm_cross
SHM_DRIVE   := $(SHM_BUILD)/shm_drive

ALL        += $(SHM_TESTS) $(SHM_DRIVE)
TEST_STEPS += test-shm test-cbctl
TEST_DEPS  += libmicrohttpd-dev libcjson-dev prometheus python3-pytest

.PHONY: test-shm test-cbctl shm-golden

# shm_file and shm_trust are linked with the second translation unit as well.
SHM_WITH_OTHER = $(if $(filter shm_file shm_trust,$*),tests/t_other.c)

$(SHM_BUILD)/%: tests/shm/%.c $(TESTS_SRC) tests/shm/t_dir.h
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) -I. -o $@ $< $(SHM_WITH_OTHER) $(LDLIBS)

$(SHM_BUILD)/asan/%: tests/shm/%.c $(TESTS_SRC) tests/shm/t_dir.h
	@mkdir -p $(@D)
	$(CC) $(WARN) $(TESTS_SAN) -I. -o $@ $< $(SHM_WITH_OTHER) $(LDLIBS)

$(SHM_BUILD)/tsan/%: tests/shm/%.c $(TESTS_SRC) tests/shm/t_dir.h
	@mkdir -p $(@D)
	$(CC) $(WARN) -O1 -g -fsanitize=thread -I. -o $@ $< $(SHM_WITH_OTHER) $(LDLIBS)

$(SHM_DRIVE): tests/shm/shm_drive.c cb.h tools/cbflags.h
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) -I. -o $@ $< $(LDLIBS)

test-shm: $(SHM_TESTS)
	@fail=0; for t in $^; do echo "-- $$t"; \
	    case $$t in */tsan/*) r=20000;; *) r=100000;; esac; REG_ROUNDS=$$r $$t || fail=1; \
	done; exit $$fail

SHM_GOLDEN_FLAGS := --name=golden --window-calls=20 --failure-rate=0.9 --open-ms=1000
shm-golden: $(CBCTL_BIN) $(SHM_DRIVE)
	rm -f tests/shm/shm_golden.cb
	$(CBCTL_BIN) create tests/shm/shm_golden.cb $(SHM_GOLDEN_FLAGS)
	$(CBCTL_BIN) set tests/shm/shm_golden.cb open
	$(CBCTL_BIN) reset tests/shm/shm_golden.cb
	$(SHM_DRIVE) tests/shm/shm_golden.cb $(SHM_GOLDEN_FLAGS) s=6 i=1 f=4

test-cbctl: $(CBCTL_BIN) $(SHM_DRIVE)
	@$(NEED) python3-pytest prometheus
	CBCTL=$(CBCTL_BIN) SHM_DRIVE=$(SHM_DRIVE) $(PYTHON) -m pytest -q -p no:cacheprovider \
	    tests/shm/test_shm_cbctl.py tests/shm/test_shm_cbctl_groups.py \
	    tests/shm/test_shm_cbctl_log.py
