#!/usr/bin/python3
"""Write docs/bench.md and its chart from the outputs of make bench.

usage: report.py --out-dir build/bench/out --md docs/bench.md --png docs/bench.png
                 [--cc CC] [--cflags CFLAGS] [--run-flags FLAGS]

Reads cb_bench.json (Google Benchmark 1.7 JSON), instr.json, peers-*.json and, when
present, xcheck.json, scaling.json, layout.json and group_size.json from --out-dir. Every figure in the report comes from those files;
bench/notes.md, hand-written analysis, is appended when it exists.
"""
import argparse
import glob
import json
import os
import platform
import statistics
import subprocess

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

DIRECT = "BM_direct"
CB_CLOSED = "BM_cb_closed_success_consecutive"
CB_OPEN = "BM_cb_open_reject"
PRIVATE = "BM_cb_closed_success_consecutive_private"
PEER_OPS = {"closed_success": CB_CLOSED, "open_reject": CB_OPEN}
KEYED_BASE = "BM_direct_keyed"
HELD = "BM_group_held_key"
CHURN = "BM_group_churn"
KEYED = (KEYED_BASE, HELD, CHURN)   # reported in their own part, against KEYED_BASE
HELD_LIMIT_NS = 15
COLORS = {"direct": ("#888888", "direct call"), "cb": ("#1f77b4", "cb.h"),
          "c_peer": ("#ff7f0e", "C peers, same binary"), "peer": ("#d62728", "JavaScript, Python")}


def load(path):
    with open(path) as f:
        return json.load(f)


def medians(doc):
    """{(family, threads): (real ns, cpu ns)}: median over the repetitions, in the order
    the benchmarks are declared (interleaved runs report in the order they finish)."""
    runs = {}
    for e in sorted(doc["benchmarks"], key=lambda e: (e["family_index"], e["threads"])):
        if e["run_type"] == "iteration":
            runs.setdefault(e["run_name"], []).append(e)
    out = {}
    for run_name, es in runs.items():
        family, threads = run_name.rsplit("/threads:", 1)
        out[family, int(threads)] = (statistics.median(e["real_time"] for e in es),
                                     statistics.median(e["cpu_time"] for e in es))
    return out


def item_rates(doc):
    """{(family, threads): median items_per_second over the repetitions}, where reported."""
    runs = {}
    for e in doc["benchmarks"]:
        if e["run_type"] == "iteration" and "items_per_second" in e:
            runs.setdefault(e["run_name"], []).append(e["items_per_second"])
    out = {}
    for run_name, rates in runs.items():
        family, threads = run_name.rsplit("/threads:", 1)
        out[family, int(threads)] = statistics.median(rates)
    return out


def fmt(ns):
    return f"{ns:.2f}" if ns < 10 else f"{ns:.1f}" if ns < 100 else f"{ns:.0f}"


def machine(ctx, args):
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    os_name = platform.system()
    if os.path.exists("/etc/os-release"):
        with open("/etc/os-release") as f:
            os_name = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line).get(
                "PRETTY_NAME", os_name).strip('"')
    cc = subprocess.run([args.cc, "--version"], capture_output=True, text=True).stdout
    cc = cc.split("\n")[0]
    caches = ", ".join(f"L{c['level']} {c['type'].lower()} {c['size'] // 1024} KiB"
                       for c in ctx["caches"])
    load_avg = ", ".join(f"{x:.2f}" for x in ctx["load_avg"])
    return [
        f"- CPU: {model}, {ctx['num_cpus']} CPUs at {ctx['mhz_per_cpu']} MHz; {caches}",
        f"- System: {os_name}, Linux {platform.release()}; frequency scaling "
        f"{'on' if ctx['cpu_scaling_enabled'] else 'off or not exposed'}",
        f"- Compiler: {cc}, `{args.cflags}`",
        f"- Run: {ctx['date']} on {ctx['host_name']}; load average at start {load_avg}",
    ]


def scaling(m, family):
    """Per-thread call rate at 2 threads over the rate at 1, by wall clock and by CPU time.
    Google Benchmark's real_time at N threads is wall time / (N * iterations per thread)."""
    if (family, 2) not in m:
        return None, None
    (r1, c1), (r2, c2) = m[family, 1], m[family, 2]
    return r1 / (2 * r2), c1 / c2


def bars(m, instr, load_avg, num_cpus, layout=None, paired=None):
    """[(bar, measured, met or None, why)] for the overhead bars."""
    direct = m[DIRECT, 1][0]
    ins = instr.get("instructions_per_call", {})

    def extra_instr(family):
        a, b = ins.get(f"{family}/threads:1"), ins.get(f"{DIRECT}/threads:1")
        if a is None or b is None:
            return ""
        return f"{a - b:.0f} instructions per call over BM_direct"

    out = []
    for family, limit, what in [(CB_CLOSED, 3, "consecutive failures only"),
                                ("BM_cb_closed_success_count_window", 12, "count window")]:
        over = m[family, 1][0] - direct
        why = extra_instr(family)
        if family == CB_CLOSED and layout:
            why += (f"; the same loop at 64 stack offsets in this run (make bench-layout): "
                    f"min {fmt(layout['min'])}, median {fmt(layout['median'])}, max "
                    f"{fmt(layout['max'])} ns per call, i.e. {fmt(layout['median'] - direct)} ns "
                    f"over direct at the median")
            if over > limit:
                why += ("; the instructions are the same whatever the time: a slow stretch of a "
                        "shared machine or a slow stack layout lifts the figure (notes below)")
        out.append((f"CLOSED success, {what}: <= {limit} ns over a direct call",
                    f"{fmt(over)} ns ({fmt(m[family, 1][0])} - {fmt(direct)})", over <= limit, why))
    ns = m[CB_OPEN, 1][0]
    out.append(("OPEN reject <= 30 ns", f"{fmt(ns)} ns", ns <= 30, extra_instr(CB_OPEN)))
    mutex, cb = m["BM_mutex_closed_success", 1][0], m[CB_CLOSED, 1][0]
    open_ratio = m["BM_mutex_open_reject", 1][0] / m[CB_OPEN, 1][0]
    out.append((">= 10x faster than the gobreaker-style mutex breaker (CLOSED success, whole call)",
                f"{mutex / cb:.1f}x ({fmt(mutex)} / {fmt(cb)} ns)", mutex / cb >= 10,
                f"OPEN reject: {open_ratio:.1f}x (both must read a clock to leave OPEN)"))
    def scaling_of(family):
        """Paired figures (bench/scaling.py) where measured, else the main run's medians."""
        if paired and family in paired:
            return paired[family]["wall"], paired[family]["cpu"]
        return scaling(m, family)

    how = ("paired rounds, `make bench-scaling`" if paired else "medians of the main run")
    for family, what in [(CB_CLOSED, "consecutive failures only"),
                         ("BM_cb_closed_success_count_window", "count window")]:
        wall, cpu = scaling_of(family)
        bar = f"two threads keep >= 80% of one thread's per-thread rate (CLOSED success, {what})"
        if wall is None:
            out.append((bar, "not measured: one CPU", None, ""))
            continue
        dwall, dcpu = scaling_of(DIRECT)
        why = f"{how}; BM_direct, same run: {dwall:.0%} by wall clock, {dcpu:.0%} by CPU time"
        pwall, pcpu = scaling_of(PRIVATE) if (PRIVATE, 2) in m else (None, None)
        if pwall is not None:
            why += (f"; the same calls on a breaker per thread (nothing shared), same run: "
                    f"{pwall:.0%} by wall clock, {pcpu:.0%} by CPU time")
        if wall < 0.8 and pwall is not None and abs(pwall - wall) <= 0.1:
            why += ("; a breaker per thread, sharing nothing, scales within 10 points of the "
                    "shared one, so what is lost is the machine's (two vCPUs that share a "
                    "core or a busy host), not contention in cb.h: a machine with a core per "
                    "thread closes it")
        elif wall < 0.8 and cpu >= 0.8:
            why += (f"; CPU time per call held while wall time grew: the threads did not have a "
                    f"CPU each (load average {load_avg:.2f} on {num_cpus} CPUs)")
        elif wall < 0.8:
            why += ("; CPU time per call grew too: the threads contend for cache lines, or for "
                    "a core (CPUs of a VM may be SMT siblings on the host)")
        out.append((bar, f"{wall:.0%} by wall clock, {cpu:.0%} by CPU time", wall >= 0.8, why))
    out.append(("instruction counts from callgrind beside the times",
                f"{len(ins)} benchmarks counted", bool(ins), ""))
    return out


def keyed_groups(m, rates, ins, paired, sizes, ctx):
    """The "Keyed groups" part: its table and its goals, measured against KEYED_BASE."""
    md = ["## Keyed groups", ""]
    if (HELD, 1) not in m or (KEYED_BASE, 1) not in m:
        return md + ["Not measured: this cb_bench.json has no keyed-group rows.", ""]
    base = m[KEYED_BASE, 1][0]
    ib = ins.get(f"{KEYED_BASE}/threads:1")
    md += ["`BM_group_held_key`: a group of capacity 1024, `key_max = 16`, template "
           "`consecutive_failures = 5`, holding 1000 keys of 16 bytes, all made before timing; "
           "each call is `cb_group_allow` and `cb_group_record` (SUCCESS) around the protected "
           "call, on the next key of a fixed random order (a precomputed array of key "
           "pointers, cycled). `BM_direct_keyed` is the same key choice, the same code, around "
           "a direct call: the baseline, so \"over baseline\" is what the group adds. At 2 "
           "threads each thread takes its own half of the keys (no key shared). "
           "`BM_group_churn`: capacity 64, `idle_ms = 1`, a clock the loop moves 2 ms per call, "
           "and every call on a key never seen before: each call evicts an idle key and makes "
           "its own; keys made per second is Google Benchmark's `items_per_second` (keys over "
           "CPU time), and its loop is not the baseline's, so no difference is given. Scaling in the table is from the medians of the main run; the goal "
           "below uses paired rounds where `make bench-scaling` ran.", "",
           "| benchmark | ns/call | over baseline (ns) | instructions/call "
           "| instructions over baseline | ns/call, 2 threads | 2-thread scaling | keys made/s |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for family in KEYED:
        if (family, 1) not in m:
            continue
        ns = m[family, 1][0]
        i = ins.get(f"{family}/threads:1")
        wall, cpu = scaling(m, family)
        two = fmt(2 * m[family, 2][0]) if wall is not None else "-"
        scale = f"{wall:.0%} ({cpu:.0%})" if wall is not None else "-"
        rate = rates.get((family, 1))
        against = family == HELD   # churn's loop is not the baseline's: no difference
        md.append(f"| {family} | {fmt(ns)} | {fmt(ns - base) if against else '-'} "
                  f"| {f'{i:.0f}' if i is not None else '-'} "
                  f"| {f'{i - ib:.0f}' if i is not None and ib is not None and against else '-'} "
                  f"| {two} | {scale} | {f'{rate / 1e6:.2f} M' if rate else '-'} |")

    md += ["", "| goal | measured | verdict | notes |", "| --- | --- | --- | --- |"]
    held = m[HELD, 1][0]
    over = held - base
    ih = ins.get(f"{HELD}/threads:1")
    why = (f"{ih - ib:.0f} instructions per call over the baseline ({ih:.0f} - {ib:.0f})"
           if ih is not None and ib is not None else "instructions not counted (`make bench-instr`)")
    if over > HELD_LIMIT_NS:
        why += ("; `callgrind_annotate --inclusive=yes` of the kept profile says which functions "
                "they are in")
    md.append(f"| a held key: <= {HELD_LIMIT_NS} ns over the same key choice around a direct call "
              f"| {fmt(over)} ns ({fmt(held)} - {fmt(base)}) "
              f"| {'met' if over <= HELD_LIMIT_NS else '**missed**'} | {why} |")

    bar = ("two threads on different keys keep >= 80% of one thread's per-thread rate "
           "(BM_group_held_key)")
    if paired and HELD in paired:
        wall, cpu, how = paired[HELD]["wall"], paired[HELD]["cpu"], "paired rounds, `make bench-scaling`"
        refs = [(f, paired[f]) for f in (KEYED_BASE, DIRECT) if f in paired]
    else:
        (wall, cpu), how = scaling(m, HELD), "medians of the main run"
        refs = [(f, dict(zip(("wall", "cpu"), scaling(m, f)))) for f in (KEYED_BASE, DIRECT)
                if (f, 2) in m]
    if wall is None:
        md.append(f"| {bar} | not measured: one CPU | not measured | |")
    else:
        why = how
        for f, ref in refs:
            why += f"; {f}, same run: {ref['wall']:.0%} by wall clock, {ref['cpu']:.0%} by CPU time"
        if wall < 0.8 and cpu >= 0.8:
            why += (f"; CPU time per call held while wall time grew: the threads did not have a "
                    f"CPU each (load average {ctx['load_avg'][0]:.2f} on {ctx['num_cpus']} CPUs "
                    f"at the start of the main run)")
        elif wall < 0.8:
            why += ("; CPU time per call grew too: the threads contend for a line the group "
                    "shares, or for a core")
        md.append(f"| {bar} | {wall:.0%} by wall clock, {cpu:.0%} by CPU time "
                  f"| {'met' if wall >= 0.8 else '**missed**'} | {why} |")

    rate = rates.get((CHURN, 1))
    if rate:
        two = rates.get((CHURN, 2))
        md.append(f"| key churn: a key made and an idle one evicted per call (no goal set) "
                  f"| {rate / 1e6:.2f} M keys/s, {fmt(m[CHURN, 1][0])} ns per call "
                  f"| figure only | "
                  + (f"2 threads: {two / 1e6:.2f} M keys per CPU second (creation and eviction "
                     f"take the group's lock)" if two else "") + " |")
    if sizes:
        figs = "; ".join(f"{r['capacity']:,} keys x {r['key_max']} bytes: {r['bytes']:,} bytes, "
                         f"{r['bytes_per_key']:.0f} per key" for r in sizes["results"])
        md.append(f"| memory per key, `cb_group_size` / capacity (no goal set) | {figs} "
                  f"| figure only | template `{sizes['template']}`; every byte the group uses, "
                  "handle and history ring included (`make bench-size`) |")
    else:
        md.append("| memory per key, `cb_group_size` / capacity | not measured: `make bench-size` "
                  "| not measured | |")
    return md + [""]


def chart(m, peers, path):
    rows = [(f, ns) for (f, t), (ns, _) in m.items() if t == 1 and f not in KEYED]
    rows += [(f"{p['peer']} {p['op'].replace('_', ' ')}", p["median_ns"]) for p in peers
             if p["op"] in PEER_OPS]

    def color(name):
        kind = ("direct" if name == DIRECT else "cb" if name.startswith("BM_cb_")
                else "c_peer" if name.startswith("BM_") else "peer")
        return COLORS[kind][0]

    fig, ax = plt.subplots(figsize=(9, 0.32 * len(rows) + 1.2))
    names = [r[0] for r in rows][::-1]
    values = [r[1] for r in rows][::-1]
    ax.barh(names, values, color=[color(n) for n in names])
    ax.set_xscale("log")
    ax.set_xlabel("ns per call, median (log scale)")
    ax.legend(handles=[Patch(color=c, label=l) for c, l in COLORS.values()], loc="lower right",
              fontsize=8)
    for y, v in enumerate(values):
        ax.text(v * 1.05, y, fmt(v), va="center", fontsize=7)
    ax.set_xlim(min(values) * 0.7, max(values) * 3)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title("Protected no-op call, one thread")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", default="build/bench/out")
    p.add_argument("--md", default="docs/bench.md")
    p.add_argument("--png", default="docs/bench.png")
    p.add_argument("--cc", default="cc")
    p.add_argument("--cflags", default="")
    p.add_argument("--run-flags", default="")
    args = p.parse_args()

    doc = load(os.path.join(args.out_dir, "cb_bench.json"))
    m = medians(doc)
    instr = load(os.path.join(args.out_dir, "instr.json"))
    ins = instr["instructions_per_call"]
    peer_docs = [load(f) for f in sorted(glob.glob(os.path.join(args.out_dir, "peers-*.json")))]
    peers = [dict(r, runtime=d["runtime"]) for d in peer_docs for r in d["results"]]
    xpath = os.path.join(args.out_dir, "xcheck.json")
    xcheck = load(xpath) if os.path.exists(xpath) else None
    ctx = doc["context"]
    direct = m[DIRECT, 1][0]

    md = ["# Benchmark: the cost of a protected call", "",
          "Generated by `make bench` (bench/report.py) from `build/bench/out/*.json`; do not edit by hand.",
          "", "![ns per call](bench.png)", "", "## Machine", ""]
    md += machine(ctx, args)
    if ctx["load_avg"][0] > ctx["num_cpus"] / 2:
        md += ["", f"**The machine was busy** (load average {ctx['load_avg'][0]:.2f} on "
               f"{ctx['num_cpus']} CPUs when the run began): times are inflated and noisy, two-thread "
               "runs may share a CPU. Instruction counts do not depend on load."]
    md += ["", "## cb.h and the C peers", "",
           f"`build/bench/cb_bench {args.run_flags}`: ns per call is the median of the repetitions "
           "(real time); the protected function is the same noinline no-op in every row. "
           "Instructions per call are counted by callgrind (`make bench-instr`), from runs of N "
           "and 2N calls. At 2 threads, ns per call is each thread's wall time per call, and "
           "scaling is the per-thread call rate at 2 threads over the rate at 1 (wall clock; "
           "CPU time in brackets).", "",
           "| benchmark | ns/call | over direct (ns) | x BM_direct | instructions/call "
           "| ns/call, 2 threads | 2-thread scaling |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for (family, threads), (ns, _) in m.items():
        if threads != 1 or family in KEYED:
            continue
        i = ins.get(f"{family}/threads:1")
        wall, cpu = scaling(m, family)
        two = fmt(2 * m[family, 2][0]) if wall is not None else "-"
        scale = f"{wall:.0%} ({cpu:.0%})" if wall is not None else "-"
        md.append(f"| {family} | {fmt(ns)} | {fmt(ns - direct) if family != DIRECT else '-'} "
                  f"| {ns / direct:.2f} | {f'{i:.0f}' if i is not None else '-'} | {two} | {scale} |")
    md += ["", "Configurations: consecutive = `consecutive_failures = 5`; count window = "
           "`window_calls = 100, failure_rate = 0.5`; mixed count window: the same breaker, with "
           "every 64th call failing, so the window always holds a failure and every success "
           "takes the ring head (a full window of successes lets a success skip it); "
           "consecutive private: the consecutive case with a breaker per thread, nothing shared "
           "(the machine's own two-thread scaling for the same instructions); time window = `window_ms = 10000, "
           "failure_rate = 0.5`; slow call = `consecutive_failures = 5, slow_call_ms = 1000`; "
           "closed failure records FAILURE under a threshold it never reaches; open and half-open "
           "reject are entered with `cb_set_state` (the half-open probe permit is taken first). "
           "The mutex peer is gobreaker's algorithm in C (one pthread mutex taken before and "
           "after the call, a clock read in each, generation and counts); the naive peer updates "
           "one shared set of seq_cst atomic counters. Under valgrind a clock read is a system "
           "call, so the kernel's share of it is not in the instruction counts.", ""]

    lpath = os.path.join(args.out_dir, "layout.json")
    layout = load(lpath) if os.path.exists(lpath) else None
    spath = os.path.join(args.out_dir, "scaling.json")
    paired = load(spath)["results"] if os.path.exists(spath) else None
    gpath = os.path.join(args.out_dir, "group_size.json")
    sizes = load(gpath) if os.path.exists(gpath) else None
    md += keyed_groups(m, item_rates(doc), ins, paired, sizes, ctx)

    md += ["## Peers in other languages", "",
           "Same workload, same run: a no-op function called through the breaker while CLOSED "
           "(success) and while OPEN (rejected), timed with Google Benchmark's calibration; "
           "median ns per call. \"x cb.h\" is the peer's time over cb.h's for the same operation "
           f"({CB_CLOSED}, {CB_OPEN}).", "",
           "| peer | runtime | operation | ns/call | x cb.h |", "| --- | --- | --- | ---: | ---: |"]
    for r in peers:
        cb = PEER_OPS.get(r["op"])
        ratio = f"{r['median_ns'] / m[cb, 1][0]:.0f}" if cb else "-"
        md.append(f"| {r['peer']} | {r['runtime']} | {r['op'].replace('_', ' ')} "
                  f"| {fmt(r['median_ns'])} | {ratio} |")
    md += ["", "opossum runs with `timeout: false` (no per-call timer: cb.h has none); the "
           "Python breaker is used as a decorator; the direct rows are a plain call in that "
           "language.", ""]

    closed, rejected = m[CB_CLOSED, 1][0], m[CB_OPEN, 1][0]
    md += ["Published figures of peers that cannot run here (none is packaged by Debian or npm, "
           "this project's only sources; quoted from their published benchmarks, not measured), beside cb.h's "
           "from this run: "
           f"Polly v8 137.7 ns per call closed/success ({137.7 / closed:.0f}x cb.h) and 233.7 ns "
           f"open/rejected ({233.7 / rejected:.0f}x); Sentinel-Go's breaker check about 90-110 ns "
           f"({90 / closed:.0f}-{110 / closed:.0f}x); resilience4j about 190-320 ns of overhead "
           f"({190 / closed:.0f}-{320 / closed:.0f}x); opossum about 1 us (measured above in "
           "this run). Other machines, other workloads: ratios to within a factor of two.", ""]
    md += ["## Bars", "", "| bar | measured | verdict | notes |",
           "| --- | --- | --- | --- |"]
    for bar, measured, met, why in bars(m, instr, ctx["load_avg"][0], ctx["num_cpus"], layout,
                                        paired):
        verdict = "not measured" if met is None else "met" if met else "**missed**"
        md.append(f"| {bar} | {measured} | {verdict} | {why} |")

    md += ["", "## Cross-check against Google Benchmark", ""]
    if xcheck is None:
        md.append("Not run: `make bench-xcheck` writes `build/bench/out/xcheck.json`.")
    else:
        worst = max(xcheck["results"], key=lambda r: r["diff"])
        failed = [r["name"] for r in xcheck["results"] if not r["ok"]]
        md += [f"`make bench-xcheck` times the same compiled loops under Debian's libbenchmark "
               f"and cb_bench, {xcheck['rounds']} rounds of {xcheck['repetitions']} "
               f"repetition(s) under each, back to back, pinned to the same CPUs. The difference is "
               f"paired: the median over the rounds of each round's ratio cb_bench / Google "
               f"Benchmark, off 1 (the machine's speed drifts in steps; figures are comparable "
               f"only when taken close together). Rows with /threads:N are gated only on a "
               f"machine with at least 2N CPUs. Verdict: "
               f"**{'passed' if xcheck['passed'] else 'failed'}** (tolerance "
               f"{xcheck['tolerance']:.0%}); largest difference {worst['diff']:.1%} on "
               f"{worst['name']}" + (f"; over tolerance: {', '.join(failed)}." if failed else "."), "",
               "| benchmark | cb_bench ns (median) | Google Benchmark ns (median) | paired difference |",
               "| --- | ---: | ---: | ---: |"]
        md += [f"| {r['name']} | {fmt(r['cb_bench_ns'])} | {fmt(r['google_benchmark_ns'])} "
               f"| {r['diff']:.1%} |" for r in xcheck["results"]]
    md += ["", "## Reproduce", "",
           "- `make bench` runs everything here in turn (a few minutes) and rewrites this page; "
           "`make bench BENCH_MIN_TIME=0.2 BENCH_REPS=20` for steadier figures. Take figures on an "
           "idle machine.",
           "- `build/bench/cb_bench` takes Google Benchmark's flags (`--help`); "
           "`--benchmark_min_time=<N>x` (Google Benchmark 1.8's syntax) runs exactly N iterations.",
           "- `make bench-instr` keeps one callgrind profile per benchmark: "
           "`callgrind_annotate --auto=yes build/bench/out/callgrind/BM_cb_open_reject.callgrind cb.h` "
           "shows where the instructions go, line by line.",
           "- `make bench-xcheck` fails when cb_bench and Google Benchmark disagree by more than 15%; "
           "`bench/check_json.py FILE` checks any output against the 1.7 JSON shape.",
           "- `make bench-layout` times the CLOSED success loop at 64 stack offsets over a page "
           "(how much of a figure is the caller's layout; notes below).",
           "- `make bench-size` writes a keyed group's bytes per key (`cb_group_size`); "
           "`callgrind_annotate --inclusive=yes build/bench/out/callgrind/BM_group_held_key.callgrind` "
           "shows where a held key's instructions go, function by function."]
    notes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "notes.md")
    if os.path.exists(notes):
        with open(notes) as f:
            md += ["", f.read().rstrip()]
    with open(args.md, "w") as f:
        f.write("\n".join(md) + "\n")
    chart(m, peers, args.png)
    print(f"report: wrote {args.md} and {args.png}")


if __name__ == "__main__":
    main()
