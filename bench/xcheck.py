#!/usr/bin/python3
"""Cross-check cb_bench against Google Benchmark: both time the same compiled loops
(bench/ops.c), so their medians must agree.

usage: xcheck.py CB_BENCH GB_XCHECK OUT.json [--min-time S] [--repetitions N] [--tolerance F]

Both harnesses list the same benchmarks. Each benchmark runs under both, back to back
(alternating which goes first), with the same flags and pinned to the same CPUs (the
last N of this process's CPUs for /threads:N). Fails when any median real time differs
by more than the tolerance (default 15%), or when either output breaks the 1.7 shape.
"""
import argparse
import json
import os
import subprocess
import sys

import check_json


def list_tests(binary):
    out = subprocess.run([binary, "--benchmark_list_tests"], check=True, capture_output=True, text=True)
    return out.stdout.split()


def median_ns(binary, name, threads, args):
    cpus = sorted(os.sched_getaffinity(0))[-threads:]
    cmd = [binary, f"--benchmark_filter=^{name}$", f"--benchmark_min_time={args.min_time}",
           f"--benchmark_repetitions={args.repetitions}", "--benchmark_report_aggregates_only=true",
           "--benchmark_format=json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         preexec_fn=lambda: os.sched_setaffinity(0, cpus))
    doc = json.loads(out.stdout)
    errors = check_json.check(doc)
    if errors:
        sys.exit(f"xcheck: {binary} {name}: " + "; ".join(errors))
    medians = [e["real_time"] for e in doc["benchmarks"] if e.get("aggregate_name") == "median"]
    if len(medians) != 1:
        sys.exit(f"xcheck: {binary} {name}: expected one median, got {len(medians)}")
    return medians[0], cpus


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cb_bench")
    p.add_argument("gb_xcheck")
    p.add_argument("out")
    p.add_argument("--min-time", type=float, default=0.2)
    p.add_argument("--repetitions", type=int, default=5)
    p.add_argument("--tolerance", type=float, default=0.15)
    args = p.parse_args()

    names = list_tests(args.cb_bench)
    if names != list_tests(args.gb_xcheck):
        sys.exit("xcheck: the two harnesses list different benchmarks")
    results = []
    print(f"{'benchmark':<46} {'cb_bench':>10} {'gbench':>10} {'diff':>7}")
    for i, name in enumerate(names):
        threads = int(name.rsplit(":", 1)[1])
        order = [args.cb_bench, args.gb_xcheck][:: 1 if i % 2 == 0 else -1]
        ns = {b: median_ns(b, name, threads, args) for b in order}
        cb, cpus = ns[args.cb_bench]
        gb = ns[args.gb_xcheck][0]
        diff = abs(cb - gb) / gb
        ok = diff <= args.tolerance
        results.append({"name": name, "cpus": cpus, "cb_bench_ns": cb, "google_benchmark_ns": gb,
                        "diff": diff, "ok": ok})
        print(f"{name:<46} {cb:10.2f} {gb:10.2f} {diff:6.1%}{'' if ok else '  > tolerance'}")
    passed = all(r["ok"] for r in results)
    with open(args.out, "w") as f:
        json.dump({"min_time": args.min_time, "repetitions": args.repetitions,
                   "tolerance": args.tolerance, "passed": passed, "results": results}, f, indent=2)
        f.write("\n")
    print(f"xcheck: {'passed' if passed else 'FAILED'} (tolerance {args.tolerance:.0%})")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
