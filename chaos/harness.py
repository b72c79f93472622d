#!/usr/bin/python3
"""Runs chaos scenarios against real components and checks what the logs say.

    harness.py [--settings fast|full] [--out DIR] [--live] SCENARIO.toml...

For each scenario: start redis-server and the fault proxy (one of each per shard with
[redis] shards; or write a model file, or a log directory), run the workload program,
inject the faults on schedule, check that no write was lost, stop everything, then
compute every expectation from the JSON logs into DIR/NAME/result.json,
next to the logs and the trace of the calls the breaker saw (trace.jsonl, for
tools/cb-replay). Exit status 0 when every check of every scenario passed.
"""

import argparse
import bisect
import contextlib
import json
import math
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import types
import zlib
from pathlib import Path

import redis

from components import CHAOS, OUT, FaultProxy, RedisServer, leftover_processes, spawn, stop_process, wait_until
import scenario as scn

MAX_LATE_MS, MAX_APPLY_MS = 500, 3000  # beyond these the machine, not the breaker, is measured


def read_jsonl(path):
    """The JSON objects of a JSON-lines file; a bad line is an error naming it."""
    recs = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            try:
                recs.append(json.loads(line))
            except ValueError as e:
                raise ValueError(f"{path}:{n}: bad JSON line ({e}): {line[:120]!r}") from None
    return recs


def write_model(path, size_mib, seed=1):
    """Test weights in model_loader's format: magic, length, CRC-32, payload."""
    payload = random.Random(seed).randbytes(size_mib << 20)
    with open(path, "wb") as f:
        f.write(b"CBMODEL1" + struct.pack("<QII", len(payload), zlib.crc32(payload), 0) + payload)


def write_budget(path, mib):
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(f"{mib}\n")
    tmp.replace(path)  # the loader never reads a half-written budget


def write_level(path, level):
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(f"{level}\n")
    tmp.replace(path)


def apply_fault(ctx, fault, start):
    """Starts (start=True) or ends a fault; returns once it is in force / fully over."""
    a = fault["action"]
    if ctx.redises:  # the fault's shard
        ctx.redis, ctx.proxy = ctx.redises[fault["shard"]], ctx.proxies[fault["shard"]]
    if a == "proxy":
        ctx.proxy.set(fault["mode"] if start else {"mode": "pass"})
    elif a == "sigstop" and start:
        ctx.redis.pause()
    elif a == "sigstop":
        ctx.redis.resume()
    elif a == "kill" and start:
        ctx.redis.kill9()
    elif a == "kill":
        ctx.redis.restart()
    elif a == "client-pause":
        if start:
            ctx.redis.client().execute_command("CLIENT", "PAUSE", fault["duration_ms"], "ALL")
        else:
            ctx.redis.wait_ready()  # PING is paused too: it answers once the pause is over
    elif a == "oom":
        ctx.redis.client().config_set("maxmemory", 1 if start else 0)
    elif a == "budget":
        write_budget(ctx.control, fault["budget_mib"] if start else ctx.budget_mib)
    elif a == "log-level":
        write_level(ctx.control, fault["level"] if start else "info")


def check_writes(r, calls):
    """Every key the workload SET must hold "v:" + key. r is a Redis client, or a list of
    them, one per shard (calls with a group_key "shard-N" went to r[N]). Returns (keys,
    lost keys)."""
    clients = r if isinstance(r, list) else [r]
    shard = {}
    for c in calls:
        if c["op"] in ("set", "replay"):
            shard[c["key"]] = int(c["group_key"].rsplit("-", 1)[1]) if "group_key" in c else 0
    keys = sorted({c["key"] for c in calls if c["op"] == "set"})
    lost = []
    for n, client in enumerate(clients):
        mine = [k for k in keys if shard[k] == n]
        for i in range(0, len(mine), 500):
            batch = mine[i:i + 500]
            for k, v in zip(batch, client.mget(batch)):
                if v != f"v:{k}".encode():
                    lost.append(k)
    return len(keys), lost


def run_scenario(sc, out_dir, live=False):
    """Runs one loaded scenario; returns its result (also in out_dir/result.json)."""
    out_dir = Path(out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    opts = sc["options"]
    wall0 = time.monotonic()
    run = {"faults": [], "errors": [], "exit_status": None, "writes": None, "lost": None,
           "late_ms": 0.0, "apply_ms": 0.0}
    with tempfile.TemporaryDirectory(prefix="cb-chaos-") as tmp:
        tmp = Path(tmp)
        with contextlib.ExitStack() as stack:
            ctx = types.SimpleNamespace(redis=None, proxy=None, redises=[], proxies=[], control=tmp / "budget",
                                        budget_mib=sc["budget_mib"])
            exe = str(scn.bin_dir() / sc["program"])
            if sc["program"] == "redis_client" and sc["shards"]:
                for n in range(sc["shards"]):
                    (tmp / f"redis-{n}").mkdir()
                    ctx.redises.append(stack.enter_context(RedisServer(tmp / f"redis-{n}", sc["appendonly"])))
                for n, r in enumerate(ctx.redises):
                    ctx.proxies.append(stack.enter_context(FaultProxy(r.port, tmp / f"proxy-{n}.jsonl")))
                args = [exe, f"--port={ctx.proxies[0].port}", f"--dead-letter={tmp / 'dead-letters'}",
                        "--shard-ports=" + ",".join(str(p.port) for p in ctx.proxies)]
            elif sc["program"] == "redis_client":
                (tmp / "redis").mkdir()
                ctx.redis = stack.enter_context(RedisServer(tmp / "redis", sc["appendonly"]))
                ctx.proxy = stack.enter_context(FaultProxy(ctx.redis.port, tmp / "proxy.jsonl"))
                args = [exe, f"--port={ctx.proxy.port}", f"--dead-letter={tmp / 'dead-letters'}"]
            elif sc["program"] == "log_shipper":
                (tmp / "logs").mkdir()
                ctx.control = tmp / "level"
                write_level(ctx.control, "info")
                args = [exe, f"--dir={tmp / 'logs'}", f"--sink={tmp / 'sink.jsonl'}", f"--control={ctx.control}"]
            else:
                write_model(tmp / "model.bin", sc["model_mib"])
                write_budget(ctx.control, sc["budget_mib"])
                args = [exe, f"--model={tmp / 'model.bin'}", f"--control={ctx.control}",
                        f"--witness={tmp / 'witness.jsonl'}"]
            args += [f"--log={tmp / 'client.jsonl'}"] + (["--status-ms=250"] if live else []) + sc["flags"]
            with open(tmp / "client.stderr", "wb") as err:
                client = spawn(args, stdout=subprocess.DEVNULL, stderr=None if live else err)
            stack.callback(stop_process, client)
            t0 = time.monotonic_ns()
            steps = sorted([(f["at_ms"], 0, f) for f in sc["faults"]] +
                           [(f["at_ms"] + f["duration_ms"], 1, f) for f in sc["faults"]],
                           key=lambda s: (s[0], s[1]))
            try:
                for at_ms, end, f in steps:
                    due = t0 + at_ms * 1_000_000
                    wait_until(lambda: client.poll() is not None or time.monotonic_ns() >= due,
                               at_ms / 1000 + 10, f"fault {f['name']}", step=0.001)
                    if client.poll() is not None:
                        raise RuntimeError(f"{sc['program']} exited early, before fault {f['name']}")
                    woke = time.monotonic_ns()
                    apply_fault(ctx, f, start=not end)
                    t = time.monotonic_ns()  # the fault is in force, or fully over
                    run["late_ms"] = max(run["late_ms"], (woke - due) / 1e6)
                    run["apply_ms"] = max(run["apply_ms"], (t - woke) / 1e6)
                    if end:
                        run["faults"][-1]["end_ns"] = t  # faults never overlap
                    else:
                        run["faults"].append({"name": f["name"], "start_ns": t})
                    if live:
                        print(f"\n  >> {(t - t0) / 1e9:5.1f}s fault {f['name']}: "
                              f"{f['action']} {'over' if end else 'begins'}", file=sys.stderr)
                limit = (opts["duration-ms"] + opts.get("drain-ms", 0)) / 1000 + 20
                client.wait(max(1.0, limit - (time.monotonic_ns() - t0) / 1e9))
                run["exit_status"] = client.returncode
                if ctx.redis or ctx.redises:
                    calls = [c for c in read_jsonl(tmp / "client.jsonl") if "op" in c]
                    run["writes"], run["lost"] = check_writes([r.client() for r in ctx.redises or [ctx.redis]], calls)
            except subprocess.TimeoutExpired:
                run["errors"].append(f"{sc['program']} did not finish within {limit:.0f} s")
            except (RuntimeError, TimeoutError, OSError, ValueError, redis.RedisError) as e:
                run["errors"].append(str(e))
        run["leftovers"] = leftover_processes(str(tmp))
        for name in ("client.jsonl", "client.stderr", "proxy.jsonl", "proxy.stderr", "witness.jsonl",
                     "dead-letters", "redis/redis.log", "sink.jsonl", "logs/shipper.log"):
            if (tmp / name).exists():
                shutil.copy(tmp / name, out_dir / Path(name).name)
        for n in range(sc["shards"]):
            for name in (f"proxy-{n}.jsonl", f"proxy-{n}.stderr", f"dead-letters.{n}"):
                if (tmp / name).exists():
                    shutil.copy(tmp / name, out_dir / name)
            if (tmp / f"redis-{n}" / "redis.log").exists():
                shutil.copy(tmp / f"redis-{n}" / "redis.log", out_dir / f"redis-{n}.log")
    run["wall_s"] = time.monotonic() - wall0
    err = out_dir / "client.stderr"
    run["stderr"] = err.read_text(errors="replace").strip()[-300:] if err.exists() else ""
    try:
        result = (analyze_group if sc["group"] else analyze)(sc, out_dir, run)
    except (OSError, ValueError, KeyError, StopIteration) as e:
        result = {"scenario": sc["name"], "pass": False, "checks": [],
                  "errors": run["errors"] + [f"cannot analyse the logs: {e!r}"]}
    result.update(description=sc["description"], settings=sc["settings"], program=sc["program"])
    (out_dir / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def nearest_rank(sorted_vals, p):
    return sorted_vals[max(1, math.ceil(p * len(sorted_vals))) - 1] if sorted_vals else None



def trip_checks(check, f, out, who, opens, admitted, s):
    """Fault f's trip of `who` (the breaker, or a group's key), from its opens in the
    fault's window and the calls admitted to it: none when f must not trip it; else it
    opens, within max_calls_to_trip calls from the fault's start s, for f's reason. True
    when it opened (the checks of its open periods follow)."""
    if not f["trip"]:
        check(f"{f['name']}: {who} stays closed", "0 opens", f"{len(opens)} opens", not opens)
        return False
    check(f"{f['name']}: {who} opens", "opens", "opens" if opens else "never opened", opens)
    if not opens:
        return False
    first = opens[0]
    out["calls_to_trip"] = sum(1 for c in admitted if s <= c["t_ns"] < first["t_ns"])
    out["reason"] = first["reason"]
    if f["max_calls_to_trip"]:
        check(f"{f['name']}: admitted calls of {who} from fault start to open", f"<= {f['max_calls_to_trip']}",
              out["calls_to_trip"], out["calls_to_trip"] <= f["max_calls_to_trip"])
    if f["reason"]:
        check(f"{f['name']}: reason", f["reason"], first["reason"], first["reason"] == f["reason"])
    return True


def accounting(check, b, summary, calls, per_key=None):
    """The exactly-once accounting identity of the breaker's (or the group's summed)
    counters b against the call log, and per key when per_key (its verdict) is given;
    returns the log's counts by outcome."""
    n = {o: sum(1 for c in calls if c["outcome"] == o) for o in ("ok", "fail", "rejected")}
    ident = (b["admitted"] + b["rejected"] == summary["calls"] == len(calls) and
             b["admitted"] == b["successes"] + b["failures"] + b["ignored"] + b["stale"] and
             b["admitted"] == n["ok"] + n["fail"] and b["rejected"] == n["rejected"] and
             per_key is not False)
    keyed = per_key is not None
    check("accounting identity (every key's counters = call log)" if keyed else
          "accounting identity (breaker counters = call log)",
          "admitted + rejected = calls; admitted = successes + failures + ignored + stale" +
          (", per key" if keyed else ""),
          f"{b['admitted']} + {b['rejected']} = {summary['calls']} (log {len(calls)}); "
          f"{b['successes']} + {b['failures']} + {b['ignored']} + {b['stale']}" +
          (f"; per key {'equal' if per_key else 'DIFFERENT'}" if keyed else ""), ident)
    return n

def analyze(sc, out_dir, run):
    """Every expectation of the scenario, computed from the logs in out_dir."""
    recs = read_jsonl(out_dir / "client.jsonl")
    calls = [r for r in recs if "op" in r]
    trans = sorted((r for r in recs if r.get("event") == "transition"), key=lambda r: r["generation"])
    summary = next(r["summary"] for r in reversed(recs) if "summary" in r)
    start_ns = next(r["t_ns"] for r in recs if r.get("event") == "start")
    opts, brk = sc["options"], sc["breaker"]
    timeout_ms = opts["timeout-ms"]
    interval_ms = 1000 / opts["rate"] if opts["rate"] else 0
    slack = sc["recover_slack_ms"]
    admitted = [c for c in calls if c["outcome"] != "rejected"]
    checks = []

    def check(name, expected, measured, ok):
        checks.append({"check": name, "expected": str(expected), "measured": str(measured), "pass": bool(ok)})

    def ms(t_ns):
        return (t_ns - start_ns) / 1e6

    # Per fault: did it trip, how fast, and how soon after it ended did the breaker close.
    faults, windows = [], []
    for f, rec in zip(sc["faults"], run["faults"]):
        s, e = rec["start_ns"], rec.get("end_ns", math.inf)
        horizon = e + (timeout_ms + slack) * 1e6  # calls in flight at the end may still fail
        windows.append((s, horizon))
        opens = [t for t in trans if t["to"] == "open" and s <= t["t_ns"] <= horizon]
        out = {"name": f["name"], "action": f["action"], "start_ms": ms(s), "end_ms": ms(e), "trip": f["trip"],
               "max_calls_to_trip": f["max_calls_to_trip"], "calls_to_trip": None, "reason": None,
               "recover_ms": None, "recover_bound_ms": None}
        faults.append(out)
        if not trip_checks(check, f, out, "breaker", opens, admitted, s):
            continue
        last = opens[-1]
        close = next((t for t in trans if t["to"] == "closed" and t["generation"] > last["generation"]), None)
        bound = last["open_ms"] + timeout_ms + interval_ms + slack
        out["recover_bound_ms"] = bound
        if close:
            out["recover_ms"] = max(0.0, (close["t_ns"] - e) / 1e6)
        check(f"{f['name']}: closes within one open period + a probe after the fault ends",
              f"<= {bound:.0f} ms (open {last['open_ms']} + timeout {timeout_ms} + "
              f"call interval {interval_ms:.0f} + slack {slack})",
              "never" if close is None else f"{out['recover_ms']:.0f} ms",
              close is not None and out["recover_ms"] <= bound)

    stray = [t for t in trans if t["to"] == "open" and not any(a <= t["t_ns"] <= b for a, b in windows)]
    check("no opens outside the fault windows", "0", len(stray), not stray)
    b = summary["breaker"]
    check("opens", f">= {sc['min_opens']}", b["opens"], b["opens"] >= sc["min_opens"])

    # Rejections must take microseconds, not the client timeout.
    rej = sorted(c["latency_ns"] for c in calls if c["outcome"] == "rejected")
    p99_us = nearest_rank(rej, 0.99) / 1e3 if rej else None
    ratio = timeout_ms * 1e3 / p99_us if p99_us else None
    if rej or sc["min_opens"]:
        check("rejected calls' p99 latency", f"<= {sc['max_rejected_p99_us']} us",
              "no rejected calls" if p99_us is None else f"{p99_us:.2f} us ({ratio:,.0f}x under the "
              f"{timeout_ms} ms timeout)", p99_us is not None and p99_us <= sc["max_rejected_p99_us"])

    # Traffic that reached the dependency while the breaker was open (until it closed
    # again): at most the probes plus the calls already in flight when it opened.
    if sc["program"] == "redis_client":
        side = [r["t_ns"] for r in read_jsonl(out_dir / "proxy.jsonl")
                if r.get("event") == "command" or r.get("action") == "reject"]
        side_name = "commands at the proxy"
    else:
        wpath = out_dir / "witness.jsonl"
        side = [r["t_ns"] for r in read_jsonl(wpath)] if wpath.exists() else []
        side_name = "loads started"
    episodes = open_episodes(trans)
    traffic, allowed, bad = open_traffic(episodes, side, admitted, brk["half-open-calls"], ms)
    check(f"traffic while open ({side_name})", f"<= probes + calls in flight at the open ({allowed})",
          f"{traffic} in {len(episodes)} open periods" + (f": {'; '.join(bad)}" if bad else ""), not bad)

    # Exactly-once accounting, from the breaker's counters and from the call log.
    n = accounting(check, b, summary, calls)

    stalled = final_checks(check, sc, run, summary, admitted, out_dir)
    lat = summary["latency"]
    return {
        "scenario": sc["name"], "pass": all(c["pass"] for c in checks), "checks": checks, "stalled": stalled,
        "flags": summary["flags"], "faults": faults, "start_ns": start_ns, "errors": run["errors"],
        "metrics": {
            "calls": summary["calls"], "ok": n["ok"], "fail": n["fail"], "rejected": n["rejected"],
            "opens": b["opens"], "timeout_ms": timeout_ms, "rejected_p99_us": p99_us, "timeout_ratio": ratio,
            "ok_p99_us": lat["ok"]["p99_ns"] / 1e3, "fail_p99_us": lat["fail"]["p99_ns"] / 1e3,
            "traffic_while_open": traffic, "traffic_allowed": allowed,
            "writes": run["writes"], "lost_writes": None if run["lost"] is None else len(run["lost"]),
            "dead_letters": summary.get("dead_letters"), "wall_s": round(run["wall_s"], 1)},
    }


def open_episodes(trans):
    """One breaker's (or key's) open periods: from each transition to open until the next
    close, with the half-open rounds between."""
    episodes, cur = [], None
    for t in trans:
        if t["to"] in ("open", "forced_open") and cur is None:
            cur = {"open": t["t_ns"], "close": math.inf, "half_opens": 0}
        elif t["to"] == "half_open" and cur:
            cur["half_opens"] += 1
        elif t["to"] == "closed" and cur:
            cur["close"] = t["t_ns"]
            episodes.append(cur)
            cur = None
    return episodes + ([cur] if cur else [])


def open_traffic(episodes, side, admitted, half_open_calls, ms):
    """What reached the dependency side (times in side) in each open period, against the
    probes plus the calls in flight at the open: (seen, allowed, [overruns])."""
    traffic = allowed = 0
    bad = []
    for ep in episodes:
        seen = sum(1 for t in side if ep["open"] <= t < ep["close"])
        inflight = sum(1 for c in admitted if c["t_ns"] < ep["open"] < c["t_ns"] + c["latency_ns"])
        may = ep["half_opens"] * half_open_calls + inflight
        traffic, allowed = traffic + seen, allowed + may
        if seen > may:
            bad.append(f"{seen} > {may} in the open period at {ms(ep['open']):.0f} ms")
    return traffic, allowed, bad


def final_checks(check, sc, run, summary, admitted, out_dir):
    """Writes, dead letters, exit status, leftovers, errors and the harness's schedule;
    writes trace.jsonl. Returns whether the run was stalled."""
    dl = summary.get("dead_letters")
    if run["writes"] is not None:
        check("writes lost (every SET key in Redis at the end)", 0,
              f"{len(run['lost'])} of {run['writes']}" + (f", e.g. {run['lost'][:3]}" if run["lost"] else ""),
              not run["lost"])
        check("dead letters all replayed", "0 pending, 0 errors",
              f"{dl['written']} written, {dl['replayed']} replayed, {dl['pending']} pending, "
              f"{dl['errors']} errors", dl["pending"] == 0 and dl["errors"] == 0)
    check(f"{sc['program']} exit status", 0, f"{run['exit_status']} {run['stderr']}".strip(),
          run["exit_status"] == 0)
    check("no process left behind", "none", run["leftovers"] or "none", not run["leftovers"])
    for e in run["errors"]:
        check("run", "no error", e, False)
    # On a machine so loaded that the harness itself ran late, timings say nothing about
    # the breaker: such a run is marked stalled (and the suite runs it once more).
    stalled = run["late_ms"] > MAX_LATE_MS or run["apply_ms"] > MAX_APPLY_MS
    check("harness kept its schedule (machine not stalled)",
          f"faults applied <= {MAX_LATE_MS} ms late, each within {MAX_APPLY_MS} ms",
          f"{run['late_ms']:.0f} ms late, longest {run['apply_ms']:.0f} ms", not stalled)

    # The trace of every call the breaker saw an outcome of, for tools/cb-replay (a group's
    # calls carry their key).
    with open(out_dir / "trace.jsonl", "w") as f:
        for c in sorted(admitted, key=lambda c: c["t_ns"]):
            t = {"t_ns": c["t_ns"], "outcome": "success" if c["outcome"] == "ok" else "failure",
                 "duration_ns": c["latency_ns"]}
            f.write(json.dumps(t | ({"key": c["group_key"]} if "group_key" in c else {})) + "\n")
    return stalled


def analyze_group(sc, out_dir, run):
    """A keyed group's expectations: per key, from the logs in out_dir. Each fault names
    the key it must open; every other key must stay closed and keep its rate."""
    recs = read_jsonl(out_dir / "client.jsonl")
    calls = [r for r in recs if "op" in r]
    summary = next(r["summary"] for r in reversed(recs) if "summary" in r)
    start_ns = next(r["t_ns"] for r in recs if r.get("event") == "start")
    opts, brk, grp = sc["options"], sc["breaker"], summary["group"]
    keys = sorted(summary["keys"])
    trans = {k: sorted((r for r in recs if r.get("event") == "transition" and r.get("group_key") == k),
                       key=lambda r: r["generation"]) for k in keys}
    kcalls = {k: [c for c in calls if c.get("group_key") == k] for k in keys}
    admitted = [c for c in calls if c["outcome"] != "rejected"]
    kadm = {k: [c for c in kcalls[k] if c["outcome"] != "rejected"] for k in keys}
    timeout_ms = opts.get("timeout-ms", 0)
    # The next call after an open period is the probe: a thread's next call, or for the
    # shipper's own log at info level its next line (the stats line, once a second).
    interval_ms = 1000 / opts["rate"] if opts.get("rate") else 1000
    slack = sc["recover_slack_ms"]
    dominant = grp["dominant_share"] > 0
    window_ms = grp["dominant_window_ms"]
    every_ms = window_ms / 10
    end_ns = max(c["t_ns"] + c["latency_ns"] for c in calls)
    checks = []

    def check(name, expected, measured, ok):
        checks.append({"check": name, "expected": str(expected), "measured": str(measured), "pass": bool(ok)})

    def ms(t_ns):
        return (t_ns - start_ns) / 1e6

    def ok_rate(k, a, b):
        return sum(1 for c in kcalls[k] if c["outcome"] == "ok" and a <= c["t_ns"] < b) / max((b - a) / 1e9, 1e-9)

    # Calls in flight at a fault's end may still fail; a dominant key's share takes a
    # window to age out.
    after_ms = max(timeout_ms, window_ms if dominant else 0) + slack
    first_fault = min(r["start_ns"] for r in run["faults"]) if run["faults"] else end_ns
    before = (start_ns + 500e6, first_fault)  # the rate before any fault, after a warm-up
    faults, windows = [], {k: [] for k in keys}
    for f, rec in zip(sc["faults"], run["faults"]):
        k, s, e = f["key"], rec["start_ns"], rec.get("end_ns", math.inf)
        horizon = e + after_ms * 1e6
        if k not in trans:
            check(f"{f['name']}: key {k} exists", "used", f"keys: {', '.join(keys)}", False)
            continue
        windows[k].append((s, horizon))
        opens = [t for t in trans[k] if t["to"] == "open" and s <= t["t_ns"] <= horizon]
        out = {"name": f["name"], "action": f["action"], "key": k, "start_ms": ms(s), "end_ms": ms(e),
               "trip": f["trip"], "max_calls_to_trip": f["max_calls_to_trip"], "calls_to_trip": None,
               "reason": None, "recover_ms": None, "recover_bound_ms": None, "open_ms": [o["open_ms"] for o in opens]}
        faults.append(out)
        others = [t for j in keys if j != k for t in trans[j] if t["to"] == "open" and s <= t["t_ns"] <= horizon]
        check(f"{f['name']}: only {k} opens", "0 opens of the other keys",
              f"{len(others)} opens" + (f" ({', '.join(sorted({t['group_key'] for t in others}))})" if others else ""),
              not others)
        if before[1] - before[0] >= 250e6:
            ratios = {j: ok_rate(j, s, e) / max(ok_rate(j, *before), 1e-9) for j in keys if j != k}
            out["rates"] = {j: [round(ok_rate(j, *before), 1), round(ok_rate(j, s, e), 1)] for j in keys if j != k}
            worst = min(ratios, key=ratios.get)
            check(f"{f['name']}: the other keys keep their rate (ok calls/s during the fault / before)",
                  f">= {sc['min_rate_ratio']}",
                  ", ".join(f"{j} {out['rates'][j][1]:.0f}/{out['rates'][j][0]:.0f}" for j in sorted(ratios)) +
                  f" (lowest {ratios[worst]:.2f})", ratios[worst] >= sc["min_rate_ratio"])
        if not trip_checks(check, f, out, k, opens, kadm[k], s):
            continue
        last = opens[-1]
        if f["backoff"]:
            # each open period of the key chosen longer than the last (until max-open-ms),
            # and lasting longer too: from the open to the half-open that ended it
            lasted = []
            for o in opens:
                ho = next((t for t in trans[k] if t["to"] == "half_open" and t["t_ns"] > o["t_ns"]), None)
                lasted.append(round((ho["t_ns"] - o["t_ns"]) / 1e6) if ho else None)
            out["open_lasted_ms"] = lasted
            cap = brk["max-open-ms"]
            longer = len(opens) >= 2 and all(b["open_ms"] > a["open_ms"] or a["open_ms"] >= cap
                                             for a, b in zip(opens, opens[1:]))
            held = [d for d in lasted if d is not None]
            longer = longer and all(b > a for a, b in zip(held, held[1:])) and \
                all(d >= o["open_ms"] for d, o in zip(lasted, opens) if d is not None)
            check(f"{f['name']}: backoff, each open of {k} longer than the last (up to max-open-ms {cap})",
                  ">= 2 opens, periods and their measured lengths increasing",
                  f"periods {[o['open_ms'] for o in opens]} ms, lasted {lasted} ms", longer)
        close = next((t for t in trans[k] if t["to"] == "closed" and t["generation"] > last["generation"]), None)
        bound = last["open_ms"] + timeout_ms + interval_ms + slack
        out["recover_bound_ms"] = bound
        if close:
            out["recover_ms"] = max(0.0, (close["t_ns"] - max(e, last["t_ns"])) / 1e6)
        check(f"{f['name']}: {k} closes within one open period + a probe after the fault ends (or its last open)",
              f"<= {bound:.0f} ms (open {last['open_ms']} + timeout {timeout_ms} + "
              f"call interval {interval_ms:.0f} + slack {slack})",
              "never" if close is None else f"{out['recover_ms']:.0f} ms",
              close is not None and out["recover_ms"] <= bound)

    stray = [t for k in keys for t in trans[k] if t["to"] == "open" and
             not any(a <= t["t_ns"] <= b for a, b in windows[k])]
    check("no opens outside the fault windows of their key", "0",
          f"{len(stray)}" + (f" ({', '.join(sorted({t['group_key'] for t in stray}))})" if stray else ""), not stray)
    b = summary["breaker"]
    check("opens", f">= {sc['min_opens']}", b["opens"], b["opens"] >= sc["min_opens"])

    delays = dominance_delays(kadm, trans, start_ns, end_ns, grp) if dominant else {}
    if dominant:
        bound = every_ms + slack
        worst = max((d for k in delays for d, _ in delays[k]), default=0.0)
        check(f"dominant_share ({grp['dominant_share']} of the last {window_ms} ms) opens a key "
              "within one check interval of reaching it",
              f"<= {bound:.0f} ms (check every {every_ms:.0f} + slack {slack})",
              "; ".join(f"{k}: {', '.join(f'{d:.0f}' + ('' if opened else ' (share fell back)') for d, opened in v)}"
                        for k, v in delays.items() if v) or "no key reached the share", worst <= bound)

    # Rejections must take microseconds, not a client timeout.
    rej = sorted(c["latency_ns"] for c in calls if c["outcome"] == "rejected")
    p99_us = nearest_rank(rej, 0.99) / 1e3 if rej else None
    ratio = timeout_ms * 1e3 / p99_us if p99_us and timeout_ms else None
    if rej or sc["min_opens"]:
        check("rejected calls' p99 latency", f"<= {sc['max_rejected_p99_us']} us",
              "no rejected calls" if p99_us is None else f"{p99_us:.2f} us" +
              (f" ({ratio:,.0f}x under the {timeout_ms} ms timeout)" if ratio else ""),
              p99_us is not None and p99_us <= sc["max_rejected_p99_us"])

    # Traffic that reached each key's dependency while that key was open.
    if sc["program"] == "redis_client":
        side = {k: [r["t_ns"] for r in read_jsonl(out_dir / f"proxy-{k.rsplit('-', 1)[1]}.jsonl")
                    if r.get("event") == "command" or r.get("action") == "reject"] for k in keys}
        side_name = "commands at the key's proxy"
    else:
        sink = read_jsonl(out_dir / "sink.jsonl") if (out_dir / "sink.jsonl").exists() else []
        side = {k: [r["t_ns"] for r in sink if r["source"] == k] for k in keys}
        side_name = "lines of the key in the sink"
    traffic = allowed = 0
    bad, periods = [], 0
    for k in keys:
        eps = open_episodes(trans[k])
        seen, may, over = open_traffic(eps, side[k], kadm[k], brk["half-open-calls"], ms)
        traffic, allowed, periods = traffic + seen, allowed + may, periods + len(eps)
        bad += [f"{k}: {o}" for o in over]
    check(f"traffic while open ({side_name})", f"<= probes + calls in flight at the open ({allowed})",
          f"{traffic} in {periods} open periods" + (f": {'; '.join(bad)}" if bad else ""), not bad)

    # Exactly-once accounting, per key and in all, from the group's counters and the log.
    per_key = all(v["admitted"] == sum(1 for c in kadm[k]) and
                  v["rejected"] == sum(1 for c in kcalls[k] if c["outcome"] == "rejected") and
                  v["admitted"] == v["successes"] + v["failures"] + v["ignored"] + v["stale"]
                  for k, v in summary["keys"].items())
    n = accounting(check, b, summary, calls, per_key)

    stalled = final_checks(check, sc, run, summary, admitted, out_dir)
    lat = summary["latency"]
    return {
        "scenario": sc["name"], "pass": all(c["pass"] for c in checks), "checks": checks, "stalled": stalled,
        "flags": summary["flags"], "faults": faults, "start_ns": start_ns, "errors": run["errors"],
        "keys": keys,
        "metrics": {
            "calls": summary["calls"], "ok": n["ok"], "fail": n["fail"], "rejected": n["rejected"],
            "opens": b["opens"], "timeout_ms": timeout_ms or None, "rejected_p99_us": p99_us,
            "timeout_ratio": ratio, "ok_p99_us": lat["ok"]["p99_ns"] / 1e3, "fail_p99_us": lat["fail"]["p99_ns"] / 1e3,
            "traffic_while_open": traffic, "traffic_allowed": allowed,
            "writes": run["writes"], "lost_writes": None if run["lost"] is None else len(run["lost"]),
            "dead_letters": summary.get("dead_letters"), "wall_s": round(run["wall_s"], 1),
            "dominance_delays_ms": {k: [round(d) for d, _ in v] for k, v in delays.items()},
            "keys": {k: {"opens": v["opens"], "admitted": v["admitted"], "rejected": v["rejected"]}
                     for k, v in summary["keys"].items()}},
    }


def dominance_delays(kadm, trans, start_ns, end_ns, grp, step_ms=5):
    """For each key, each stretch of time in which it was CLOSED and held at least the
    dominant share of the group's admitted calls in the last window (the group having
    dominant_min_calls of them): how long from its start until the key opened with
    dominant_share (opened True), or, had the share fallen back first, how long it lasted
    (opened False). On a grid of step_ms."""
    w = grp["dominant_window_ms"] * 1e6
    times = {k: [c["t_ns"] for c in sorted(v, key=lambda c: c["t_ns"])] for k, v in kadm.items()}
    changes = {k: [(t["t_ns"], t["to"], t["reason"]) for t in trans[k]] for k in kadm}
    out = {k: [] for k in kadm}
    since = {k: None for k in kadm}
    t = start_ns
    while t <= end_ns + step_ms * 1e6:
        cnt = {k: bisect.bisect_right(v, t) - bisect.bisect_right(v, t - w) for k, v in times.items()}
        total = sum(cnt.values())
        for k in kadm:
            i = bisect.bisect_right(changes[k], (t, "~"))
            closed = i == 0 or changes[k][i - 1][1] == "closed"
            held = closed and total >= grp["dominant_min_calls"] and cnt[k] > 0 and \
                cnt[k] >= grp["dominant_share"] * total
            if held and since[k] is None:
                since[k] = t
            elif not held and since[k] is not None:
                opened = next((c for c in changes[k] if c[0] >= since[k] and c[1] == "open"), None)
                if opened and opened[0] <= t and opened[2] == "dominant_share":
                    out[k].append(((opened[0] - since[k]) / 1e6, True))
                else:
                    out[k].append(((t - since[k]) / 1e6, False))
                since[k] = None
        t += step_ms * 1e6
    for k, t0 in since.items():  # still held when the run ended
        if t0 is not None:
            out[k].append(((end_ns - t0) / 1e6, False))
    return out


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenarios", nargs="+", help="scenario TOML files")
    ap.add_argument("--settings", choices=("fast", "full"), default="full")
    ap.add_argument("--out", type=Path, default=OUT, help="results go to OUT/NAME/ (default build/chaos/out)")
    ap.add_argument("--live", action="store_true", help="show the workload's live status line")
    ap.add_argument("--demo", action="store_true", help="--live, then a report and a plot per scenario")
    args = ap.parse_args(argv)
    try:
        scs = [scn.load(p, args.settings) for p in args.scenarios]
    except scn.ScenarioError as e:
        sys.exit(f"harness.py: {e}")
    live = args.live or args.demo
    ok = True
    for sc in scs:
        if live:
            print(f"== {sc['name']}: {' '.join(sc['description'].split())}\n"
                  f"   {sc['program']} {' '.join(sc['flags'])}", flush=True)
        r = run_scenario(sc, args.out / sc["name"], live=live)
        ok &= r["pass"]
        for c in r["checks"]:
            print(f"  {'ok  ' if c['pass'] else 'FAIL'} {c['check']}: {c['measured']} (want {c['expected']})")
        print(f"{sc['name']}: {'pass' if r['pass'] else 'FAIL'}")
        if args.demo:
            import report  # matplotlib loads slowly: only when a report is wanted
            out = args.out / sc["name"]
            report.write_report([out], out / "report.md")
            print(f"report: {out / 'report.md'}\ntimeline plot: {out / 'timeline.png'}\n"
                  f"trace for tools/cb-replay: {out / 'trace.jsonl'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main(sys.argv[1:])
