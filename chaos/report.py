#!/usr/bin/python3
"""Writes the chaos report: a Markdown file with a table per scenario, and a PNG timeline
per scenario (call latency by outcome on a log scale, the breaker state as a band, the
fault windows shaded; for a keyed group, each key's rate of calls and its state band).

    report.py                          every scenario of chaos/scenarios -> build/chaos/out/report.md
    report.py --output FILE DIR...     the results in DIR... (each NAME/ with result.json)
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CHAOS = Path(__file__).resolve().parent
sys.path.insert(0, str(CHAOS))
from components import OUT  # noqa: E402
OUTCOME_STYLE = {"ok": ("tab:green", "ok"), "fail": ("tab:red", "failed"),
                 "rejected": ("tab:blue", "rejected by the breaker")}
STATE_COLOUR = {"closed": "tab:green", "open": "tab:red", "half_open": "tab:orange",
                "forced_open": "darkred", "disabled": "grey", "metrics_only": "lightgreen"}



def state_band(band, trans, t0, end):
    """The breaker's states over the run as coloured bars: closed until the first of the
    transitions trans, then each state until the next, the last until end (s)."""
    state, since = "closed", 0.0
    for t in trans + [{"t_ns": t0 + end * 1e9, "to": None}]:
        at = (t["t_ns"] - t0) / 1e9
        band.broken_barh([(since, max(at - since, 0))], (0, 1), color=STATE_COLOUR.get(state, "black"))
        state, since = t["to"], at
    band.set_yticks([])

def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def plot(run_dir, result):
    """run_dir/timeline.png from the call log and the result's fault windows."""
    recs = read_jsonl(run_dir / "client.jsonl")
    t0 = result["start_ns"]
    calls = [r for r in recs if "op" in r]
    trans = sorted((r for r in recs if r.get("event") == "transition"), key=lambda r: r["generation"])
    end = max([(c["t_ns"] + c["latency_ns"] - t0) / 1e9 for c in calls] or [1.0])
    fig, (ax, band) = plt.subplots(2, 1, figsize=(11, 5.5), sharex=True,
                                   gridspec_kw={"height_ratios": [5, 1]})
    for outcome, (colour, label) in OUTCOME_STYLE.items():
        pts = [((c["t_ns"] - t0) / 1e9, max(c["latency_ns"], 1) / 1e6) for c in calls if c["outcome"] == outcome]
        if pts:
            ax.scatter(*zip(*pts), s=4, c=colour, label=f"{label} ({len(pts)})", rasterized=True, linewidths=0)
    timeout = result["metrics"]["timeout_ms"]
    ax.axhline(timeout, ls="--", c="black", lw=0.8, label=f"client timeout {timeout} ms")
    for f in result["faults"]:
        for a in (ax, band):
            a.axvspan(f["start_ms"] / 1e3, f["end_ms"] / 1e3, color="tab:orange", alpha=0.15, lw=0)
        ax.annotate(f"{f['name']} ({f['action']})", (f["start_ms"] / 1e3, 1), xycoords=("data", "axes fraction"),
                    xytext=(2, -12), textcoords="offset points", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("call latency, ms (log)")
    ax.legend(loc="upper right", fontsize=8, markerscale=3)
    verdict = "pass" if result["pass"] else "FAIL"
    ax.set_title(f"{result['scenario']} ({result.get('settings', '')} settings): {verdict}", fontsize=10)
    state_band(band, trans, t0, end)
    band.set_ylabel("breaker")
    band.set_xlabel("seconds since the workload started (shaded: fault)")
    band.set_xlim(0, end)
    handles = [plt.Rectangle((0, 0), 1, 1, color=STATE_COLOUR[s]) for s in ("closed", "open", "half_open")]
    band.legend(handles, ["closed", "open", "half open"], loc="upper right", fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(run_dir / "timeline.png", dpi=110)
    plt.close(fig)


def plot_group(run_dir, result, bin_s=0.1):
    """run_dir/timeline.png for a keyed group: each key's ok and rejected calls per second
    (bins of bin_s), and one state band per key, the fault windows shaded."""
    recs = read_jsonl(run_dir / "client.jsonl")
    t0 = result["start_ns"]
    keys = result["keys"]
    calls = [r for r in recs if "op" in r]
    end = max([(c["t_ns"] + c["latency_ns"] - t0) / 1e9 for c in calls] or [1.0])
    nbins = int(end / bin_s) + 1
    fig, axes = plt.subplots(1 + len(keys), 1, figsize=(11, 4 + 0.45 * len(keys)), sharex=True,
                             gridspec_kw={"height_ratios": [8] + [1] * len(keys)})
    ax = axes[0]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    xs = [i * bin_s for i in range(nbins)]
    for i, k in enumerate(keys):
        for outcome, style in (("ok", "-"), ("rejected", ":")):
            n = [0] * nbins
            for c in calls:
                if c.get("group_key") == k and c["outcome"] == outcome:
                    n[min(nbins - 1, int((c["t_ns"] - t0) / 1e9 / bin_s))] += 1
            if any(n):
                ax.plot(xs, [v / bin_s for v in n], style, c=colours[i % len(colours)], lw=1,
                        label=f"{k} {'ok' if outcome == 'ok' else 'rejected'}")
    ax.set_yscale("symlog", linthresh=10)
    ax.set_ylabel(f"calls/s per key ({bin_s * 1000:.0f} ms bins)")
    ax.legend(loc="upper right", fontsize=7, ncol=2)
    verdict = "pass" if result["pass"] else "FAIL"
    ax.set_title(f"{result['scenario']} ({result.get('settings', '')} settings): {verdict}", fontsize=10)
    for f in result["faults"]:
        for a in axes:
            a.axvspan(f["start_ms"] / 1e3, f["end_ms"] / 1e3, color="tab:orange", alpha=0.15, lw=0)
        ax.annotate(f"{f['name']} ({f['action']}, {f.get('key')})", (f["start_ms"] / 1e3, 1),
                    xycoords=("data", "axes fraction"), xytext=(2, -12), textcoords="offset points", fontsize=8)
    for band, k in zip(axes[1:], keys):
        trans = sorted((r for r in recs if r.get("event") == "transition" and r.get("group_key") == k),
                       key=lambda r: r["generation"])
        state_band(band, trans, t0, end)
        band.set_ylabel(k, rotation=0, ha="right", va="center", fontsize=8)
    axes[-1].set_xlabel("seconds since the workload started (shaded: fault)")
    axes[-1].set_xlim(0, end)
    handles = [plt.Rectangle((0, 0), 1, 1, color=STATE_COLOUR[s]) for s in ("closed", "open", "half_open")]
    axes[1].legend(handles, ["closed", "open", "half open"], loc="upper right", fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(run_dir / "timeline.png", dpi=110)
    plt.close(fig)


def fmt(v, spec="", none="n/a"):
    return none if v is None else format(v, spec)


def overview_row(r):
    m = r.get("metrics", {})
    faults = [f for f in r.get("faults", []) if f["trip"]]
    trips = ", ".join(f"{fmt(f['calls_to_trip'])} (<= {fmt(f['max_calls_to_trip'])})" for f in faults)
    recover = ", ".join(f"{fmt(f['recover_ms'], '.0f')} (<= {fmt(f['recover_bound_ms'], '.0f')})" for f in faults)
    return (f"| {r['scenario']} | {'pass' if r['pass'] else '**FAIL**'} | {trips or 'n/a'} | "
            f"{fmt(m.get('rejected_p99_us'), '.2f')} | {fmt(m.get('timeout_ms'))} | "
            f"{fmt(m.get('timeout_ratio'), ',.0f')}{'x' if m.get('timeout_ratio') else ''} | {recover or 'n/a'} | "
            f"{fmt(m.get('traffic_while_open'))} (<= {fmt(m.get('traffic_allowed'))}) | "
            f"{fmt(m.get('lost_writes'), none='n/a')} |")


def section(r, link):
    m = r.get("metrics", {})
    lines = [f"## {r['scenario']}: {'pass' if r['pass'] else 'FAIL'}", "", r.get("description", ""), ""]
    if r.get("rerun"):
        lines += [f"Note: {r['rerun']}.", ""]
    if "flags" in r:
        lines += [f"Breaker: `{r['flags']}`", ""]
    if m:
        lines += [f"Calls: {m['calls']} ({m['ok']} ok, {m['fail']} failed, {m['rejected']} rejected); "
                  f"opens: {m['opens']}; p99 latency: ok {m['ok_p99_us']:,.0f} us, failed "
                  f"{m['fail_p99_us']:,.0f} us, rejected {fmt(m['rejected_p99_us'], ',.2f')} us; "
                  f"run took {m['wall_s']} s.", ""]
    lines += ["| check | expected | measured | |", "| --- | --- | --- | --- |"]
    for c in r["checks"]:
        lines.append(f"| {c['check']} | {c['expected']} | {c['measured']} | {'ok' if c['pass'] else '**FAIL**'} |")
    for e in r.get("errors", []):
        lines.append(f"| error | | {e} | **FAIL** |")
    if link:
        lines += ["", f"![{r['scenario']} timeline]({link})"]
    return lines + [""]


def write_report(run_dirs, output):
    output = Path(output)
    results = []
    for d in run_dirs:
        d = Path(d)
        try:
            r = json.loads((d / "result.json").read_text())
        except (OSError, ValueError) as e:
            r = {"scenario": d.name, "pass": False, "checks": [], "errors": [f"no result: {e}"]}
        link = None
        if "start_ns" in r and (d / "client.jsonl").exists():
            (plot_group if r.get("keys") else plot)(d, r)
            link = os.path.relpath(d / "timeline.png", output.parent)
        results.append((r, link))
    settings = sorted({r.get("settings", "?") for r, _ in results})
    lines = ["# Chaos report", "",
             f"{time.strftime('%Y-%m-%d %H:%M')}, {'/'.join(settings)} settings, {platform.node()} "
             f"({os.cpu_count()} CPUs, {platform.platform()}). Every figure is measured by "
             "chaos/harness.py from the logs of a run against a real redis-server behind "
             "chaos/faultproxy.py (or real ENOMEM under RLIMIT_AS); see docs/chaos.md.", "",
             "| scenario | result | admitted calls to trip (max) | rejected p99, us | client timeout, ms | "
             "timeout / p99 | recovery after the fault, ms (bound) | traffic while open (probes + in flight) "
             "| writes lost |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [overview_row(r) for r, _ in results] + [""]
    for r, link in results:
        lines += section(r, link)
    output.write_text("\n".join(lines))
    return all(r["pass"] for r, _ in results)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="*", type=Path, help="result dirs (default: build/chaos/out/NAME per scenario)")
    ap.add_argument("--output", type=Path, default=OUT / "report.md")
    args = ap.parse_args(argv)
    dirs = args.dirs or [OUT / p.stem for p in sorted((CHAOS / "scenarios").glob("*.toml"))]
    ok = write_report(dirs, args.output)
    print(f"report: {args.output}" + ("" if ok else " (some scenarios failed)"))


if __name__ == "__main__":
    main(sys.argv[1:])
