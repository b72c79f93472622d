#!/usr/bin/python3
"""Cross-check cb_bench against Google Benchmark: both time the same compiled loops
(bench/ops.c), so their medians must agree.

usage: xcheck.py CB_BENCH GB_XCHECK OUT.json [--min-time S] [--repetitions N]
                 [--rounds K] [--tolerance F]

Both harnesses must list the same benchmarks. Each benchmark runs K rounds under both,
back to back, alternating which goes first, with the same flags and pinned to the same
CPUs (the last N of this process's CPUs for /threads:N). The comparison is paired: each
round gives one ratio, cb_bench's median over Google Benchmark's median of that round,
and the verdict is on the median of those ratios. A virtual machine's speed drifts in
steps that last from a tenth of a second to seconds (seen here: the same loop at 44 ns,
then 70 ns, in one process; bench/notes.md), so two figures are comparable only when taken
close together; a ratio of two pooled medians would compare different stretches of the
drift. Fails when the median ratio is off 1 by more than the tolerance (default 15%) on
any benchmark it gates, or when either output breaks the 1.7 shape. A /threads:N
benchmark is gated only on a machine with at least 2N CPUs: with fewer, its threads share
CPUs with each other and the system, and contended benchmarks (mutex, naive, windows)
swing by tens of percent from run to run in either harness; their rows are still printed.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

import check_json


def list_tests(binary):
    out = subprocess.run([binary, "--benchmark_list_tests"], check=True, capture_output=True, text=True)
    return out.stdout.split()


# Address-space randomisation moves a fast path by up to 40% from one process to the next
# on some machines (4 KiB aliasing between stack and heap; bench/notes.md): both harnesses
# run with it off, so they are compared on steady layouts.
NO_ASLR = ["setarch", "-R"] if shutil.which("setarch") else []


def repetitions_ns(binary, name, cpus, args):
    cmd = NO_ASLR + [binary, f"--benchmark_filter=^{name}$", f"--benchmark_min_time={args.min_time}",
                     f"--benchmark_repetitions={args.repetitions}", "--benchmark_format=json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         preexec_fn=lambda: os.sched_setaffinity(0, cpus))
    doc = json.loads(out.stdout)
    errors = check_json.check(doc)
    if errors:
        sys.exit(f"xcheck: {binary} {name}: " + "; ".join(errors))
    runs = [e for e in doc["benchmarks"] if e["run_type"] == "iteration"]
    if len(runs) != args.repetitions:
        sys.exit(f"xcheck: {binary} {name}: {len(runs)} repetitions, not {args.repetitions}")
    return runs


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cb_bench")
    p.add_argument("gb_xcheck")
    p.add_argument("out")
    p.add_argument("--min-time", type=float, default=0.2)
    p.add_argument("--repetitions", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--tolerance", type=float, default=0.15)
    args = p.parse_args()

    names = list_tests(args.cb_bench)
    if names != list_tests(args.gb_xcheck):
        sys.exit("xcheck: the two harnesses list different benchmarks")
    results = []
    print(f"{'benchmark (median real time, ns)':<46} {'cb_bench':>10} {'gbench':>10} {'diff':>7}"
          f" {'cpu diff':>8}   (diff: median of the rounds' ratios, off 1)")
    for i, name in enumerate(names):
        cpus = sorted(os.sched_getaffinity(0))[-int(name.rsplit(":", 1)[1]):]
        runs = {args.cb_bench: [], args.gb_xcheck: []}
        ratios = {"real_time": [], "cpu_time": []}
        for r in range(args.rounds):
            this_round = {}
            for b in list(runs)[:: 1 if (i + r) % 2 == 0 else -1]:
                this_round[b] = repetitions_ns(b, name, cpus, args)
                runs[b] += this_round[b]
            for t in ratios:
                cb_r, gb_r = (statistics.median(e[t] for e in this_round[b])
                              for b in (args.cb_bench, args.gb_xcheck))
                ratios[t].append(cb_r / gb_r)
        cb, gb = ({t: statistics.median(e[t] for e in runs[b]) for t in ("real_time", "cpu_time")}
                  for b in (args.cb_bench, args.gb_xcheck))
        diff = abs(statistics.median(ratios["real_time"]) - 1)
        cpu_diff = abs(statistics.median(ratios["cpu_time"]) - 1)
        threads = int(name.rsplit(":", 1)[1])
        gated = len(os.sched_getaffinity(0)) >= 2 * threads
        ok = diff <= args.tolerance or not gated
        results.append({"name": name, "cpus": cpus, "gated": gated, "cb_bench_ns": cb["real_time"],
                        "google_benchmark_ns": gb["real_time"], "diff": diff,
                        "cb_bench_cpu_ns": cb["cpu_time"], "google_benchmark_cpu_ns": gb["cpu_time"],
                        "cpu_diff": cpu_diff, "round_ratios": ratios["real_time"], "ok": ok})
        print(f"{name:<46} {cb['real_time']:10.2f} {gb['real_time']:10.2f} {diff:6.1%} {cpu_diff:8.1%}"
              f"{'' if diff <= args.tolerance else '  > tolerance' if gated else '  (not gated: too few CPUs)'}")
    passed = all(r["ok"] for r in results)
    with open(args.out, "w") as f:
        json.dump({"min_time": args.min_time, "repetitions": args.repetitions, "rounds": args.rounds,
                   "tolerance": args.tolerance, "passed": passed, "results": results}, f, indent=2)
        f.write("\n")
    print(f"xcheck: {'passed' if passed else 'FAILED'} (tolerance {args.tolerance:.0%})")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
