#!/usr/bin/python3
"""Two-thread scaling, paired: per-thread call rate at 2 threads over the rate at 1.

usage: scaling.py CB_BENCH OUT.json [--rounds K] [--min-time S] [FAMILY ...]

Each round runs FAMILY/threads:1 and FAMILY/threads:2 back to back (alternating which goes
first), one repetition each, and takes one ratio; the figure is the median of the rounds'
ratios, by wall clock and by CPU time. The two rows of a plain run are timed minutes
apart, and on a machine whose speed drifts in steps (bench/notes.md) their quotient can
swing by 20 points from run to run; pairs taken back to back compare like with like, as
bench/xcheck.py does for the two harnesses. Needs at least 2 CPUs.
"""
import argparse
import json
import os
import statistics
import sys

from xcheck import repetitions_ns

# BM_group_held_key at 2 threads: each thread on its own half of the keys; BM_direct_keyed,
# the same key choice around a direct call, is the machine's figure for it.
FAMILIES = ["BM_direct", "BM_cb_closed_success_consecutive",
            "BM_cb_closed_success_consecutive_private", "BM_cb_closed_success_count_window",
            "BM_direct_keyed", "BM_group_held_key"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cb_bench")
    p.add_argument("out")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--min-time", type=float, default=0.1)
    p.add_argument("families", nargs="*", default=FAMILIES)
    args = p.parse_args()
    args.repetitions = 1   # what repetitions_ns reads
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        sys.exit("scaling: needs at least 2 CPUs")
    results = {}
    print(f"{'benchmark (per-thread rate, 2 threads / 1)':<46} {'wall':>6} {'cpu':>6}   (median of paired rounds)")
    for i, family in enumerate(args.families):
        ratios = {"real_time": [], "cpu_time": []}
        for r in range(args.rounds):
            got = {}
            for n in ((1, 2) if (i + r) % 2 == 0 else (2, 1)):
                got[n] = repetitions_ns(args.cb_bench, f"{family}/threads:{n}", cpus[-n:], args)[0]
            # real_time at N threads is wall time / (N * iterations per thread)
            ratios["real_time"].append(got[1]["real_time"] / (2 * got[2]["real_time"]))
            ratios["cpu_time"].append(got[1]["cpu_time"] / got[2]["cpu_time"])
        wall, cpu = (statistics.median(ratios[t]) for t in ("real_time", "cpu_time"))
        results[family] = {"wall": wall, "cpu": cpu, "round_ratios": ratios["real_time"]}
        print(f"{family:<46} {wall:6.0%} {cpu:6.0%}")
    with open(args.out, "w") as f:
        json.dump({"rounds": args.rounds, "min_time": args.min_time, "results": results}, f, indent=2)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
