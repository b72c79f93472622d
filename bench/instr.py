#!/usr/bin/python3
"""Instructions per call of each single-thread benchmark, counted by callgrind.

usage: instr.py CB_BENCH OUT.json [--iterations N] [--keep DIR] [--filter REGEX]

Each benchmark runs under valgrind --tool=callgrind twice, for exactly N and 2N
iterations (--benchmark_min_time=<N>x); the difference of the two totals divided by N
is the loop's cost per call, with start-up, set-up and reporting cancelled out. The
count does not depend on the machine's load. --keep stores the 2N profile of each
benchmark in DIR, for callgrind_annotate. --filter counts only the benchmarks whose
family matches REGEX (e.g. BM_group), into OUT.json alone.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile


def instructions(binary, name, iterations, out_file):
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}",
           binary, f"--benchmark_filter=^{name}$", f"--benchmark_min_time={iterations}x",
           "--benchmark_format=json"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with open(out_file) as f:
        for line in f:
            m = re.match(r"(?:summary|totals):\s+(\d+)", line)
            if m:
                return int(m.group(1))
    sys.exit(f"instr: no instruction total in {out_file}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cb_bench")
    p.add_argument("out")
    p.add_argument("--iterations", type=int, default=100000)
    p.add_argument("--keep")
    p.add_argument("--filter", default="")
    args = p.parse_args()

    listed = subprocess.run([args.cb_bench, "--benchmark_list_tests", "--benchmark_filter=/threads:1$"],
                            check=True, capture_output=True, text=True).stdout.split()
    n = args.iterations
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in listed:
            family = name.split("/")[0]
            if not re.search(args.filter, family):
                continue
            keep = os.path.join(args.keep, f"{family}.callgrind") if args.keep else None
            once = instructions(args.cb_bench, name, n, os.path.join(tmp, "n"))
            twice = instructions(args.cb_bench, name, 2 * n, keep or os.path.join(tmp, "2n"))
            results[name] = (twice - once) / n
            print(f"{name:<46} {results[name]:8.1f} instructions/call")
    with open(args.out, "w") as f:
        json.dump({"tool": "valgrind --tool=callgrind", "iterations": [n, 2 * n],
                   "instructions_per_call": results}, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
