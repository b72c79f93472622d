# tests/fuzz/: the reference models (model.c; model_group.c for keyed groups) against cb.h,
# by libFuzzer (differential fuzzing). See docs/verification.md. Targets:
#   fuzz         each libFuzzer target for FUZZ_TIME seconds (default 60); new inputs go
#                to $(BUILD)/fuzz/new-<target>, crashes to $(BUILD)/fuzz/<target>-crash-*
#   fuzz-merge   fold those new inputs into the committed corpus, minimized
#   test-fuzz    (make test) replay the committed corpus; replay it against each planted
#                bug (in the model or in cb.h), which must be caught; then fuzz
#                FUZZ_TEST_TIME seconds (default 12) each

FUZZ_TIME      ?= 60
FUZZ_TEST_TIME ?= 12
FUZZ_TARGETS   := fuzz_diff fuzz_config fuzz_group
# Planted bugs, named <target>-<where><n>: where is model (MODEL_BUG in tests/fuzz/model.c,
# 7..9 in tests/fuzz/model_group.c) or cb (bug n of tests/planted.py, applied to a copy of
# cb.h). The committed corpus must catch every one.
FUZZ_BUGS      := fuzz_diff-model1 fuzz_diff-model2 fuzz_diff-model3 fuzz_diff-model4 \
                  fuzz_diff-model5 fuzz_config-model6 fuzz_diff-cb4 fuzz_diff-cb5 \
                  fuzz_group-model7 fuzz_group-model8 fuzz_group-model9
FUZZ_FLAGS     := $(WARN) -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_BINS      := $(FUZZ_TARGETS:%=$(BUILD)/fuzz/%)
FUZZ_BUG_BINS  := $(FUZZ_BUGS:%=$(BUILD)/fuzz/%)
FUZZ_SRC       := tests/fuzz/model.c tests/fuzz/model.h tests/fuzz/fuzz_input.h cb.h
FUZZ_GROUP_SRC := tests/fuzz/model_group.c tests/fuzz/model_group.h
# fuzz_extra(target): the sources it links beside its own and model.c
fuzz_extra = $(if $(filter fuzz_group,$(1)),tests/fuzz/model_group.c)
# fuzz_corpus(target): its committed corpus
fuzz_corpus = tests/fuzz/corpus/$(patsubst fuzz_group,group,$(1))

TEST_STEPS += test-fuzz

.PHONY: deps-verify fuzz fuzz-merge test-fuzz

deps-verify:
	@$(NEED) clang

$(FUZZ_BINS): $(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_SRC) | deps-verify
	@mkdir -p $(@D)
	clang $(FUZZ_FLAGS) -I. -o $@ $< tests/fuzz/model.c $(call fuzz_extra,$(@F)) -lm $(LDLIBS)
$(BUILD)/fuzz/fuzz_group $(filter $(BUILD)/fuzz/fuzz_group-%,$(FUZZ_BUG_BINS)): $(FUZZ_GROUP_SRC)

bug_target = $(word 1,$(subst -, ,$(1)))
bug_flag = $(patsubst model%,-DMODEL_BUG=%,$(patsubst cb%,-I$(BUILD)/planted/%,$(word 2,$(subst -, ,$(1)))))
$(foreach b,$(filter %-cb4 %-cb5,$(FUZZ_BUG_BINS)),$(eval $(b): $(BUILD)/planted/$(patsubst cb%,%,$(word 2,$(subst -, ,$(notdir $(b)))))/cb.h))

$(FUZZ_BUG_BINS): $(FUZZ_SRC) tests/fuzz/fuzz_diff.c tests/fuzz/fuzz_config.c tests/fuzz/fuzz_group.c | deps-verify
	@mkdir -p $(@D)
	clang $(FUZZ_FLAGS) $(call bug_flag,$(@F)) -I. -o $@ tests/fuzz/$(call bug_target,$(@F)).c \
	    tests/fuzz/model.c $(call fuzz_extra,$(call bug_target,$(@F))) -lm $(LDLIBS)

# fuzz_run(target, seconds): fuzz from the committed corpus, new inputs kept apart
fuzz_run = mkdir -p $(BUILD)/fuzz/new-$(1) && \
    $(BUILD)/fuzz/$(1) -max_total_time=$(2) -print_final_stats=1 \
        -artifact_prefix=$(BUILD)/fuzz/$(1)- $(BUILD)/fuzz/new-$(1) $(call fuzz_corpus,$(1)) \
        > $(BUILD)/fuzz/$(1).log 2>&1 || { tail -40 $(BUILD)/fuzz/$(1).log; exit 1; }; \
    echo "$(1): $$(sed -n 's/^stat::number_of_executed_units: *//p' $(BUILD)/fuzz/$(1).log) runs in $(2) s,\
 corpus $$(ls $(call fuzz_corpus,$(1)) | wc -l) committed + $$(ls $(BUILD)/fuzz/new-$(1) | wc -l) new"

fuzz: $(FUZZ_BINS)
	@set -e; $(foreach t,$(FUZZ_TARGETS),$(call fuzz_run,$(t),$(FUZZ_TIME));)
	@echo "fuzz: keep what was found with: make fuzz-merge"

fuzz-merge: $(FUZZ_BINS)
	@set -e; $(foreach t,$(FUZZ_TARGETS), \
	    $(BUILD)/fuzz/$(t) -merge=1 $(call fuzz_corpus,$(t)) $(BUILD)/fuzz/new-$(t) 2>&1 | grep '^MERGE-OUTER: [0-9]';)

test-fuzz: $(FUZZ_BINS) $(FUZZ_BUG_BINS)
	@set -e; $(foreach t,$(FUZZ_TARGETS), \
	    $(BUILD)/fuzz/$(t) -runs=0 -artifact_prefix=$(BUILD)/fuzz/$(t)- $(call fuzz_corpus,$(t)) \
	        > $(BUILD)/fuzz/$(t).replay.log 2>&1 || \
	        { tail -40 $(BUILD)/fuzz/$(t).replay.log; exit 1; }; \
	    echo "$(t): corpus of $$(ls $(call fuzz_corpus,$(t)) | wc -l) replayed, no mismatch";)
	@set -e; $(foreach b,$(FUZZ_BUGS), \
	    if $(BUILD)/fuzz/$(b) -runs=0 -artifact_prefix=$(BUILD)/fuzz/$(b)- \
	        $(call fuzz_corpus,$(call bug_target,$(b))) > $(BUILD)/fuzz/$(b).log 2>&1; \
	    then echo "planted bug $(b): NOT caught by the corpus"; exit 1; fi; \
	    echo "planted bug $(b): caught: $$(grep -m1 '^fuzz_' $(BUILD)/fuzz/$(b).log)";)
	@set -e; $(foreach t,$(FUZZ_TARGETS),$(call fuzz_run,$(t),$(FUZZ_TEST_TIME));)

# ---- fuzz_shm: a shared file's bytes, and a live file rewritten under its callers ----
#   test-fuzz-shm    (make test) the committed corpus replayed, then fuzzed for
#                    FUZZ_SHM_SECONDS (default 15) on a scratch copy of it
#   fuzz-shm         a longer run (FUZZ_SHM_SECONDS=600 by default there)
#   fuzz-shm-corpus  after a change of the file format (CB__VERSION bumped): rewrites
#                    tests/fuzz/corpus/shm/

FUZZ_SHM    := $(BUILD)/fuzz/fuzz_shm
FUZZ_SHM_CORPUS := tests/fuzz/corpus/shm
FUZZ_SHM_SECONDS ?= 15
# libFuzzer's runtime is a Recommends of clang in Debian 12, so it is named here.
FUZZ_SHM_DEPS := clang libclang-rt-14-dev

TEST_STEPS += test-fuzz-shm
TEST_DEPS  += $(FUZZ_SHM_DEPS)

.PHONY: test-fuzz-shm fuzz-shm fuzz-shm-corpus

$(FUZZ_SHM): tests/fuzz/fuzz_shm.c cb.h
	@$(NEED) $(FUZZ_SHM_DEPS)
	@mkdir -p $(@D)
	clang $(WARN) -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	    -I. -o $@ $< $(LDLIBS)

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
	$(CC) $(WARN) $(CFLAGS) -DFUZZ_SHM_MAKE_CORPUS -I. -o $@ $< $(LDLIBS)

fuzz-shm-corpus: $(BUILD)/fuzz/fuzz_shm_corpus
	rm -rf $(FUZZ_SHM_CORPUS) && mkdir -p $(FUZZ_SHM_CORPUS)
	$< $(FUZZ_SHM_CORPUS)
