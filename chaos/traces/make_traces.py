#!/usr/bin/python3
"""Writes the canned cb-replay traces (chaos/traces/*.jsonl).

Usage: make_traces.py [OUTDIR]   (default: the directory of this script)

Each trace is a synthetic but realistic outage, generated from a fixed seed with integer
arithmetic only, so the files are the same on every machine; test_replay.py checks that
the committed files are exactly what this script writes. Arrivals are open loop (a server
taking requests at a steady rate), so calls overlap while the dependency hangs.
"""

import json
import os
import random
import sys

MS = 1_000_000  # ns


def line(t_ns, outcome, duration_ns):
    return json.dumps({"t_ns": t_ns, "outcome": outcome, "duration_ns": duration_ns})


def redis_timeout(rng):
    """100 calls/s for 12 s; Redis hangs from 3 s to 8 s behind a 200 ms client timeout.

    A call that would still be waiting when Redis resumes gets its answer then. About one
    call in 200 is abandoned by its caller (ignored)."""
    hang_from, hang_to, timeout = 3000 * MS, 8000 * MS, 200 * MS
    out = []
    for i in range(1200):
        t = i * 10 * MS
        rtt = rng.randint(150_000, 600_000)
        if hang_from <= t < hang_to:
            if t + timeout <= hang_to:
                out.append(line(t, "failure", timeout))
            else:
                out.append(line(t, "success", hang_to - t + rtt))
        elif rng.randrange(200) == 0:
            out.append(line(t, "ignored", rtt))
        else:
            out.append(line(t, "success", rtt))
    return out


def flapping(rng):
    """50 calls/s for 20 s; the dependency is up for 0.5-2 s, then refuses connections
    (fast failures) for 0.2-1.5 s, over and over."""
    out, t, end = [], 0, 20_000 * MS
    up, phase_end = True, rng.randint(500, 2000) * MS
    while t < end:
        while t >= phase_end:
            up = not up
            phase_end += rng.randint(500, 2000) * MS if up else rng.randint(200, 1500) * MS
        if up:
            out.append(line(t, "success", rng.randint(200_000, 800_000)))
        else:
            out.append(line(t, "failure", rng.randint(50_000, 200_000)))
        t += 20 * MS
    return out


def slow_spike(rng):
    """100 calls/s for 10 s; from 3 s to 7 s answers take 150-400 ms (1 in 20 fails)."""
    out = []
    for i in range(1000):
        t = i * 10 * MS
        if 3000 * MS <= t < 7000 * MS:
            outcome = "failure" if rng.randrange(20) == 0 else "success"
            out.append(line(t, outcome, rng.randint(150, 400) * MS))
        else:
            out.append(line(t, "success", rng.randint(300_000, 1_000_000)))
    return out


def model_oom(rng):
    """One model load a second for 20 s; loads take 300 ms. From 3 s to 12 s the memory
    budget is too small and each load dies of ENOMEM after 50 ms. Small enough to check
    by hand (see model-oom.golden)."""
    del rng
    return [line(s * 1000 * MS, "failure", 50 * MS) if 3 <= s < 12
            else line(s * 1000 * MS, "success", 300 * MS) for s in range(20)]


TRACES = {
    "redis-timeout": redis_timeout,
    "flapping": flapping,
    "slow-spike": slow_spike,
    "model-oom": model_oom,
}


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    for name, make in TRACES.items():
        lines = make(random.Random(name))
        with open(os.path.join(outdir, name + ".jsonl"), "w", encoding="ascii") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
