#!/usr/bin/python3
"""Times Python's circuitbreaker (Debian python3-circuitbreaker) on cb_bench's workload:
a protected no-op call in CLOSED (success) and in OPEN (rejected), beside a direct call.

usage: peers.py OUT.json [min_time_seconds] [repetitions]
"""
import json
import platform
import statistics
import sys
import time

from importlib.metadata import version

from circuitbreaker import CircuitBreaker, CircuitBreakerError

HOUR_S = 3600


def noop():
    return 0


def fail():
    raise RuntimeError("dependency down")


def timed(batch, n):
    t0 = time.perf_counter_ns()
    batch(n)
    return time.perf_counter_ns() - t0


def measure(batch, min_time, repetitions):
    """Google Benchmark's calibration: grow n until one batch lasts min_time, then time
    `repetitions` batches of n calls; the median ns per call is the figure."""
    target, n = min_time * 1e9, 1
    ns = timed(batch, n)
    while ns < target:
        m = target * 1.4 / max(ns, 1) if ns / target > 0.1 else 10
        n = max(round(m * n), n + 1)
        ns = timed(batch, n)
    per_call = [timed(batch, n) / n for _ in range(repetitions)]
    return {"iterations": n, "repetitions_ns": per_call, "median_ns": statistics.median(per_call)}


def direct(n):
    for _ in range(n):
        noop()


def reject_all(call):
    def batch(n):
        for _ in range(n):
            try:
                call()
            except CircuitBreakerError:
                continue
            raise AssertionError("open breaker admitted a call")
    return batch


def main(argv):
    out = argv[0]
    min_time = float(argv[1]) if len(argv) > 1 else 0.2
    repetitions = int(argv[2]) if len(argv) > 2 else 5
    peer = f"circuitbreaker {version('circuitbreaker')}"

    # The decorator is how the library is meant to be used; it is what users pay for.
    closed = CircuitBreaker(failure_threshold=5, recovery_timeout=HOUR_S, name="closed")(noop)

    def closed_success(n):
        for _ in range(n):
            closed()

    tripped = CircuitBreaker(failure_threshold=5, recovery_timeout=HOUR_S, name="tripped")
    failing, protected = tripped(fail), tripped(noop)
    for _ in range(5):
        try:
            failing()
        except RuntimeError:
            pass
    if not tripped.opened:
        raise SystemExit("peers.py: circuitbreaker did not open")

    results = []
    for name, op, batch in [("python", "direct", direct), (peer, "closed_success", closed_success),
                            (peer, "open_reject", reject_all(protected))]:
        results.append(dict(peer=name, op=op, **measure(batch, min_time, repetitions)))
        print(f"{name:<18} {op:<15} {results[-1]['median_ns']:.1f} ns")
    doc = {"runtime": f"python {platform.python_version()}", "min_time": min_time, "results": results}
    with open(out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
