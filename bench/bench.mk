# bench/: the cost of a protected call. Targets:
#   bench            everything below in turn, then docs/bench.md and docs/bench.png;
#                    fails at the end if the cross-check failed (the report says so too)
#   bench-run        build/bench/cb_bench (Google Benchmark 1.7 CLI and JSON) -> build/bench/out/cb_bench.json
#   bench-instr      callgrind instructions per call -> build/bench/out/instr.json
#   bench-peers      opossum, cockatiel (npm) and Python circuitbreaker -> build/bench/out/peers-*.json
#   bench-xcheck     the same loops under real Google Benchmark; fails on a > 15% difference
#   bench-report     docs/bench.md and docs/bench.png from build/bench/out
#   bench-scaling    two-thread scaling from paired 1- and 2-thread rounds -> build/bench/out/scaling.json
#   bench-layout     the CLOSED success loop at 64 stack offsets (bench/layout_sweep.c)
#                    -> build/bench/out/layout.json
#   bench-size       a keyed group's bytes per key (cb_group_size) -> build/bench/out/group_size.json
#   test-bench-smoke (in make test) a tiny run whose JSON must have the 1.7 shape; no timing
# Take figures on an idle machine: make bench BENCH_MIN_TIME=0.2 BENCH_REPS=10 for more.

BENCH_BIN      := $(BUILD)/bench/cb_bench
BENCH_GB       := $(BUILD)/bench/gb_xcheck
BENCH_OPS      := $(BUILD)/bench/ops.o
BENCH_SIZE     := $(BUILD)/bench/group_size
BENCH_OUT      := $(BUILD)/bench/out
BENCH_MIN_TIME ?= 0.1
BENCH_REPS     ?= 10
# Random interleaving spreads a drifting load over every benchmark, not the few it hits.
BENCH_FLAGS    := --benchmark_min_time=$(BENCH_MIN_TIME) --benchmark_repetitions=$(BENCH_REPS) \
                  --benchmark_enable_random_interleaving=true
BENCH_DEPS     := g++ libbenchmark-dev valgrind python3 python3-matplotlib python3-circuitbreaker nodejs

ALL        += $(BENCH_BIN) $(BENCH_SIZE)
TEST_STEPS += test-bench-smoke
TEST_DEPS  += python3

.PHONY: bench bench-deps bench-run bench-instr bench-peers bench-xcheck bench-report bench-layout bench-scaling \
        bench-size test-bench-smoke

$(BENCH_OPS): bench/ops.c bench/ops.h cb.h
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) -I. -c $< -o $@

$(BENCH_BIN): bench/cb_bench.c bench/ops.h $(BENCH_OPS)
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) -o $@ $< $(BENCH_OPS) $(LDLIBS) -lm

$(BENCH_GB): bench/xcheck.cc bench/ops.h $(BENCH_OPS)
	@mkdir -p $(@D)
	$(CXX) -std=c++17 -Wall -Wextra -Werror $(CFLAGS) -o $@ $< $(BENCH_OPS) -lbenchmark $(LDLIBS)

$(BENCH_SIZE): bench/group_size.c cb.h
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) -I. -o $@ $< $(LDLIBS)

bench-size: $(BENCH_SIZE)
	@mkdir -p $(BENCH_OUT)
	$(BENCH_SIZE) $(BENCH_OUT)/group_size.json

$(BUILD)/bench/layout_sweep: bench/layout_sweep.c cb.h
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) -I. -o $@ $< $(LDLIBS)

bench-scaling: $(BENCH_BIN)
	@mkdir -p $(BENCH_OUT)
	@if [ "$$(nproc)" -lt 2 ]; then echo "bench-scaling: one CPU, skipped"; rm -f $(BENCH_OUT)/scaling.json; \
	else $(PYTHON) bench/scaling.py $(BENCH_BIN) $(BENCH_OUT)/scaling.json --rounds 15; fi

bench-layout: $(BUILD)/bench/layout_sweep
	@mkdir -p $(BENCH_OUT)
	$(BUILD)/bench/layout_sweep $(BENCH_OUT)/layout.json

bench-deps:
	@$(NEED) $(BENCH_DEPS)
	@command -v npm >/dev/null || $(NEED) npm

# Steps one at a time, even under make -j: timings taken side by side disturb each other.
bench: bench-deps
	@for step in bench-run bench-scaling bench-layout bench-size bench-instr bench-peers; do \
	    $(MAKE) --no-print-directory $$step || exit 1; done
	@$(MAKE) --no-print-directory bench-xcheck; status=$$?; \
	    $(MAKE) --no-print-directory bench-report && exit $$status

bench-run: $(BENCH_BIN)
	@mkdir -p $(BENCH_OUT)
	$(BENCH_BIN) $(BENCH_FLAGS) --benchmark_out=$(BENCH_OUT)/cb_bench.json
	$(PYTHON) bench/check_json.py --fixed-names $(BENCH_OUT)/cb_bench.json

bench-instr: $(BENCH_BIN)
	@mkdir -p $(BENCH_OUT)/callgrind
	$(PYTHON) bench/instr.py $(BENCH_BIN) $(BENCH_OUT)/instr.json --keep $(BENCH_OUT)/callgrind

bench/node_modules/.package-lock.json: bench/package.json bench/package-lock.json
	cd bench && npm ci --no-audit --no-fund

bench-peers: bench/node_modules/.package-lock.json
	@mkdir -p $(BENCH_OUT)
	$(PYTHON) bench/peers.py $(BENCH_OUT)/peers-python.json $(BENCH_MIN_TIME) $(BENCH_REPS)
	node bench/peers.js $(BENCH_OUT)/peers-node.json $(BENCH_MIN_TIME) $(BENCH_REPS)

bench-xcheck: $(BENCH_BIN) $(BENCH_GB)
	@mkdir -p $(BENCH_OUT)
	$(PYTHON) bench/xcheck.py $(BENCH_BIN) $(BENCH_GB) $(BENCH_OUT)/xcheck.json \
	    --min-time 0.1 --repetitions 1 --rounds 15 --tolerance 0.15

bench-report:
	$(PYTHON) bench/report.py --out-dir $(BENCH_OUT) --md docs/bench.md --png docs/bench.png \
	    --cc "$(CC)" --cflags "$(CFLAGS)" --run-flags "$(BENCH_FLAGS)"

# Shape only, never speed: a run of every benchmark, and a filtered aggregates-only run.
test-bench-smoke: $(BENCH_BIN)
	@mkdir -p $(BUILD)/bench
	$(BENCH_BIN) --benchmark_min_time=0.001 --benchmark_repetitions=2 \
	    --benchmark_format=json --benchmark_out=$(BUILD)/bench/smoke.json >/dev/null
	$(BENCH_BIN) --benchmark_filter=BM_direct --benchmark_min_time=0.001 --benchmark_repetitions=3 \
	    --benchmark_report_aggregates_only=true --benchmark_format=json >$(BUILD)/bench/smoke-agg.json
	$(PYTHON) bench/check_json.py --fixed-names $(BUILD)/bench/smoke.json
	$(PYTHON) bench/check_json.py $(BUILD)/bench/smoke-agg.json

