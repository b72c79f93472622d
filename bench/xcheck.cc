// The loops of ops.c timed by Google Benchmark itself, to cross-check cb_bench
// (make bench-xcheck). Registered with the same names and thread counts.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <unistd.h>

#include "ops.h"

static void run_op(benchmark::State &state, const bench_op *op)
{
    // One benchmark runs at a time. Thread 0 sets up before the start barrier inside
    // KeepRunningBatch, and tears down after the stop barrier, so every thread sees ctx.
    static void *ctx;
    if (state.thread_index() == 0 && !(ctx = op->setup(op->param, state.threads()))) {
        std::fprintf(stderr, "gb_xcheck: %s: setup failed\n", op->name);
        std::exit(1);
    }
    const benchmark::IterationCount n = state.max_iterations;
    while (state.KeepRunningBatch(n))
        bench_run_loop(op, ctx, static_cast<uint64_t>(n));
    if (op->items)
        state.SetItemsProcessed(state.iterations() * op->items);
    if (state.thread_index() == 0)
        op->teardown(ctx);
}

int main(int argc, char **argv)
{
    bench_init();
    const int ncpu = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
    for (size_t i = 0; i < bench_ops_count; i++)
        benchmark::RegisterBenchmark(bench_ops[i].name, run_op, &bench_ops[i])
            ->ThreadRange(1, ncpu > 1 ? ncpu : 1);
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
