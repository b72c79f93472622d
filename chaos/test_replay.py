"""Tests of tools/cb-replay: golden outputs, hand-checked semantics, bad input.

Run by `make test-replay`; CB_REPLAY names the binary (default build/tools/cb-replay).
CB_REPLAY_UPDATE=1 rewrites the golden files instead of comparing (`make replay-golden`);
check the diff by hand against docs/replay.md before committing it.
"""

import json
import os
import re
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACES = os.path.join(ROOT, "chaos", "traces")
REPLAY = os.path.join(ROOT, os.environ.get("CB_REPLAY", "build/tools/cb-replay"))
UPDATE = os.environ.get("CB_REPLAY_UPDATE") == "1"
MS = 1_000_000


def replay(*args, stdin=None):
    return subprocess.run([REPLAY, *args], input=stdin, capture_output=True, text=True,
                          timeout=60, check=False)


def events(*args, stdin=None):
    """The transitions and the summary of a run that must succeed."""
    r = replay(*args, stdin=stdin)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(s) for s in r.stdout.splitlines()]
    return lines[:-1], lines[-1]["summary"]


def trace(*calls):
    """JSON lines from (t_ns, outcome[, duration_ns]) tuples."""
    keys = ("t_ns", "outcome", "duration_ns")
    return "".join(json.dumps(dict(zip(keys, c))) + "\n" for c in calls)


def moves(evs):
    return [(e["t_ns"], e["from"], e["to"], e["reason"]) for e in evs]


# ---- golden outputs ---------------------------------------------------------------
#
# chaos/traces/NAME.flags holds the arguments (one per line) that produced NAME.golden
# from NAME.jsonl; NAME.compare likewise for NAME.compare.golden. Besides the exact bytes,
# two goldens are checked against the semantics by hand, in test_model_oom_by_hand and
# test_redis_timeout_by_hand below.

def golden_cases():
    for f in sorted(os.listdir(TRACES)):
        base, ext = os.path.splitext(f)
        if ext in (".flags", ".compare"):
            yield pytest.param(base, ext, id=f)


def read_args(name, ext):
    with open(os.path.join(TRACES, name + ext), encoding="utf-8") as f:
        return [a for a in f.read().split("\n") if a]


@pytest.mark.parametrize("name,ext", list(golden_cases()))
def test_golden(name, ext):
    out = replay(*read_args(name, ext), os.path.join(TRACES, name + ".jsonl"))
    assert out.returncode == 0, out.stderr
    golden = os.path.join(TRACES, name + (".golden" if ext == ".flags" else ".compare.golden"))
    if UPDATE:
        with open(golden, "w", encoding="utf-8") as f:
            f.write(out.stdout)
    with open(golden, encoding="utf-8") as f:
        assert out.stdout == f.read()


def test_every_trace_has_a_golden():
    names = {os.path.splitext(f)[0] for f in os.listdir(TRACES) if f.endswith(".jsonl")}
    assert names and all(os.path.exists(os.path.join(TRACES, n + ".flags")) for n in names)


def test_traces_are_what_make_traces_writes(tmp_path):
    subprocess.run([sys.executable, os.path.join(TRACES, "make_traces.py"), str(tmp_path)],
                   check=True)
    made = sorted(os.listdir(tmp_path))
    assert made == sorted(f for f in os.listdir(TRACES) if f.endswith(".jsonl"))
    for f in made:
        with open(tmp_path / f, "rb") as a, open(os.path.join(TRACES, f), "rb") as b:
            assert a.read() == b.read(), f


def test_stdin_gives_the_same_bytes():
    path = os.path.join(TRACES, "flapping.jsonl")
    args = read_args("flapping", ".flags")
    with open(path, encoding="ascii") as f:
        from_stdin = replay(*args, "-", stdin=f.read())
    from_file = replay(*args, path)
    assert from_stdin.returncode == 0 and from_stdin.stdout == from_file.stdout


# ---- semantics, checked by hand ---------------------------------------------------

def test_model_oom_by_hand():
    # Loads at 0..19 s lasting 300 ms; those at 3..11 s fail after 50 ms.
    # Failures recorded at 3.05, 4.05, 5.05 s: the third opens (period 2000 ms) until
    # 7.05 s; the calls at 6 and 7 s are rejected; the one at 8 s is the probe, fails at
    # 8.05 s and re-opens with k = 1: 2000 * 2 = 4000 ms, until 12.05 s; 9..12 s are
    # rejected; the call at 13 s is the probe and succeeds at 13.3 s.
    evs, s = events(*read_args("model-oom", ".flags"), os.path.join(TRACES, "model-oom.jsonl"))
    assert moves(evs) == [
        (5050 * MS, "closed", "open", "consecutive_failures"),
        (8000 * MS, "open", "half_open", "open_elapsed"),
        (8050 * MS, "half_open", "open", "probe_failed"),
        (13000 * MS, "open", "half_open", "open_elapsed"),
        (13300 * MS, "half_open", "closed", "probes_succeeded"),
    ]
    assert [e["open_ms"] for e in evs if e["to"] == "open"] == [2000, 4000]
    assert [e["generation"] for e in evs] == [1, 2, 3, 4, 5]
    assert [e["line"] for e in evs] == [6, 9, 9, 14, 14]
    assert s == {"calls": 20, "admitted": 14, "rejected": 6,
                 "rejected_by": {"open": 6, "forced_open": 0, "half_open_full": 0, "bulkhead": 0},
                 "successes": 10, "failures": 4,
                 "ignored": 0, "slow": 0, "stale": 0, "opens": 2, "state": "closed",
                 "generation": 5, "end_ns": 19300 * MS}


def table(text):
    """The rows of a --compare table: {row name: [column values]}."""
    lines = text.split("\n\n")[0].splitlines()[1:]
    return {row[0]: row[1:] for row in (re.split(r"\s{2,}", line) for line in lines)}


def test_model_oom_compare_by_hand():
    # One outage, from the first failure (3 s) to the next success (12 s). With the
    # flags of model-oom.flags: opened at 5.05 s (detect 2050 ms); open 5.05-8 s and
    # 8.05-13 s (7900 ms); closed at 13.3 s (recover 1300 ms); failures let through at
    # 3, 4, 5 and 8 s; rejected at 6, 7, 9, 10, 11, 12 s, of which 12 s would succeed.
    out = replay(*read_args("model-oom", ".flags"), "--compare", "",
                 os.path.join(TRACES, "model-oom.jsonl"))
    assert out.returncode == 0, out.stderr
    assert table(out.stdout) == {
        "rejected calls": ["6"], "rejected that would succeed": ["1"],
        "failures let through": ["4"], "outages detected": ["1/1"],
        "time to detect, mean ms": ["2050.0"], "time to detect, max ms": ["2050.0"],
        "time open, ms": ["7900.0"], "outages recovered": ["1/1"],
        "time to recover, mean ms": ["1300.0"], "time to recover, max ms": ["1300.0"],
    }


def test_redis_timeout_by_hand():
    # Calls every 10 ms (line = 1 + t / 10 ms); those starting in [3 s, 7.8 s] time out
    # after 200 ms. The fifth timeout (call of 3.04 s, line 305) is recorded at 3.24 s and
    # opens for 1000 ms; the 19 calls admitted from 3.05 s to 3.23 s come back after the
    # transition: stale. The call of 3.24 s is rejected (the record at the same instant
    # goes first). The call of 4.24 s is the probe; it times out at 4.44 s and re-opens
    # for 2000 ms (backoff 2); so does the probe of 6.44 s (4000 ms, the cap). The probe
    # of 10.64 s succeeds after its round trip and closes. Admitted: 305 + 19 before the
    # open, 2 probes, 136 calls from 10.64 s on = 462; failures: 5 + 2 probes.
    evs, s = events(*read_args("redis-timeout", ".flags"),
                    os.path.join(TRACES, "redis-timeout.jsonl"))
    assert moves(evs)[:6] == [
        (3240 * MS, "closed", "open", "consecutive_failures"),
        (4240 * MS, "open", "half_open", "open_elapsed"),
        (4440 * MS, "half_open", "open", "probe_failed"),
        (6440 * MS, "open", "half_open", "open_elapsed"),
        (6640 * MS, "half_open", "open", "probe_failed"),
        (10640 * MS, "open", "half_open", "open_elapsed"),
    ]
    assert [e["open_ms"] for e in evs if e["to"] == "open"] == [1000, 2000, 4000]
    assert [e["line"] for e in evs] == [305, 425, 425, 645, 645, 1065, 1065]
    assert evs[6]["to"] == "closed" and 10640 * MS < evs[6]["t_ns"] < 10641 * MS
    assert (s["calls"], s["admitted"], s["rejected"], s["failures"], s["stale"]) == \
        (1200, 462, 738, 7, 19)
    assert s["successes"] + s["ignored"] == 462 - 7 - 19
    assert (s["opens"], s["state"], s["generation"]) == (3, "closed", 7)


def test_redis_timeout_compare_by_hand():
    # Column A (5 failures in a row, 1000 ms open, no backoff): the outage runs from the
    # first timeout (3 s) to the first call answered after the hang (7.81 s). Opened at
    # 3.24 s (detect 240 ms), then 4 periods of 1000 ms, each ended by a probe that times
    # out (4.24, 5.44, 6.64 s) until the probe of 7.84 s is answered when Redis resumes at
    # 8 s. Let through: 5 + 19 in flight at the open + 3 failed probes = 27. Rejected
    # successes: 7.81-7.83 s (open) and 7.85-8.00 s (half open, probe out) = 19.
    out = replay(*read_args("redis-timeout", ".compare"),
                 os.path.join(TRACES, "redis-timeout.jsonl"))
    assert out.returncode == 0, out.stderr
    a = {name: cols[0] for name, cols in table(out.stdout).items()}
    assert (a["failures let through"], a["rejected that would succeed"]) == ("27", "19")
    assert (a["time to detect, max ms"], a["time open, ms"]) == ("240.0", "4000.0")
    assert 180 < float(a["time to recover, max ms"]) < 191


def test_overlapping_calls_are_in_flight_together():
    # Three calls start before any ends; the second failure opens, so the third call's
    # record belongs to an older generation.
    evs, s = events("--consecutive-failures=2", "-", stdin=trace(
        (0, "failure", 100), (10, "failure", 100), (20, "failure", 100)))
    assert moves(evs) == [(110, "closed", "open", "consecutive_failures")]
    assert (s["admitted"], s["failures"], s["stale"]) == (3, 2, 1)


def test_record_goes_before_allow_at_the_same_instant():
    evs, s = events("--consecutive-failures=1", "-", stdin=trace(
        (0, "failure", 5), (5, "success")))
    assert moves(evs) == [(5, "closed", "open", "consecutive_failures")]
    assert (s["admitted"], s["rejected"]) == (1, 1)


def test_calls_ending_together_are_recorded_in_line_order():
    # Both end at 10 ns; the failure (line 1) opens first, so the success is stale.
    evs, s = events("--consecutive-failures=1", "-", stdin=trace(
        (0, "failure", 10), (5, "success", 5)))
    assert moves(evs) == [(10, "closed", "open", "consecutive_failures")]
    assert (s["successes"], s["stale"]) == (0, 1)


def test_timestamps_going_backwards_are_the_breakers_business():
    # Not an error: the trace is replayed as given, and the call at 1 s finds the
    # breaker still open from 10 s (a clock that goes back counts as not moving).
    evs, s = events("--consecutive-failures=1", "--open-ms=1000", "-", stdin=trace(
        (10_000 * MS, "failure"), (1000 * MS, "success"), (11_000 * MS, "success")))
    assert [e["to"] for e in evs] == ["open", "half_open", "closed"]
    assert (s["rejected"], s["successes"]) == (1, 1)


def test_ignored_and_missing_duration():
    evs, s = events("-", stdin=trace((0, "ignored"), (1, "success"), (2, "failure")))
    assert evs == []
    assert (s["ignored"], s["successes"], s["failures"], s["end_ns"]) == (1, 1, 1, 2)


def test_empty_trace_prints_the_summary_only():
    evs, s = events("-", stdin="")
    assert evs == [] and s["calls"] == 0 and s["state"] == "closed"


def test_slow_outage_needs_outage_slow_ms():
    path = os.path.join(TRACES, "slow-spike.jsonl")
    plain = replay("--compare", "--slow-call-ms=100 --slow-call-rate=0.5", path)
    slow = replay("--outage-slow-ms=100", "--compare",
                  "--slow-call-ms=100 --slow-call-rate=0.5", path)
    assert plain.returncode == slow.returncode == 0
    detected = [[ln.split()[-1] for ln in r.stdout.splitlines() if "outages detected" in ln]
                for r in (plain, slow)]
    # Without it only the few failures of the spike make (short) outages.
    assert detected[1] == ["1/1"] and detected[0] != detected[1]


def test_compare_of_a_long_trace_is_not_quadratic(tmp_path):
    # Every other call fails and each failure opens: 80,000 outages and 240,000
    # transitions in 160,000 lines. Scanning the transitions once per outage took 25 s;
    # a plain replay of the trace takes about 0.1 s.
    path = tmp_path / "long.jsonl"
    path.write_text("".join(
        f'{{"t_ns":{i * 10 * MS},"outcome":"{"failure" if i % 2 else "success"}",'
        f'"duration_ns":{MS}}}\n' for i in range(160_000)))
    start = time.monotonic()
    out = replay("--consecutive-failures=1", "--open-ms=5", "--compare", "", str(path))
    took = time.monotonic() - start
    assert out.returncode == 0, out.stderr
    rows = table(out.stdout)
    assert (rows["outages detected"], rows["outages recovered"]) == (["80000/80000"],
                                                                     ["79999/79999"])
    assert took < 5, f"--compare took {took:.1f} s"


def test_help():
    r = replay("--help")
    assert r.returncode == 0 and "--compare" in r.stdout and "--open-ms" in r.stdout


# ---- bad input --------------------------------------------------------------------

BAD_LINES = [
    ("", "empty line"),
    ("not json", "invalid JSON at column 1"),
    ('{"t_ns": 1, "outcome": "success"} x', "invalid JSON at column 35"),
    ('{"t_ns": 1, "outcome": "success"', "invalid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"outcome": "success"}', 'missing "t_ns"'),
    ('{"t_ns": 1}', 'missing "outcome"'),
    ('{"t_ns": 1, "outcome": "timeout"}', '"outcome" must be "success", "failure" or "ignored"'),
    ('{"t_ns": 1, "outcome": 0}', '"outcome" must be'),
    ('{"t_ns": -5, "outcome": "success"}', '"t_ns" is negative: -5'),
    ('{"t_ns": 1, "outcome": "success", "duration_ns": -1}', '"duration_ns" is negative'),
    ('{"t_ns": 1.5, "outcome": "success"}', '"t_ns" is not an integer: 1.5'),
    ('{"t_ns": "1", "outcome": "success"}', '"t_ns" must be a number'),
    ('{"t_ns": 1e300, "outcome": "success"}', '"t_ns" is too large'),
    ('{"t_ns": 9007199254740992, "outcome": "success"}', '"t_ns" is too large'),
    ('{"t_ns": 1, "outcome": "success", "dur": 5}', 'unknown key "dur"'),
    ('{"t_ns": 1, "t_ns": 2, "outcome": "success"}', 'duplicate key "t_ns"'),
]


@pytest.mark.parametrize("text,message", BAD_LINES, ids=[m for _, m in BAD_LINES])
def test_bad_line_is_named(tmp_path, text, message):
    path = tmp_path / "t.jsonl"
    path.write_text(trace((0, "success"), (1, "failure")) + text + "\n" + trace((9, "success")))
    r = replay(str(path))
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.startswith(f"cb-replay: {path}:3: {message}"), r.stderr
    assert r.stderr.count("\n") == 1


def test_bad_line_on_stdin_and_nul_byte():
    r = replay("-", stdin=trace((0, "success")) + '{"t_ns": 1,\0 "outcome": "success"}\n')
    assert (r.returncode, r.stderr) == (2, "cb-replay: <stdin>:2: NUL byte in line\n")


def test_crlf_lines_are_accepted():
    evs, s = events("-", stdin=trace((0, "success"), (1, "failure")).replace("\n", "\r\n"))
    assert s["calls"] == 2


def test_mangled_traces_never_crash():
    # Fixed seed: flip, drop and insert bytes in a real trace; every run must end with a
    # result (0) or one error line naming a trace line (2), never a signal.
    import random
    rng = random.Random(5)
    with open(os.path.join(TRACES, "model-oom.jsonl"), "rb") as f:
        clean = f.read()
    for _ in range(300):
        data = bytearray(clean)
        for _ in range(rng.randint(1, 4)):
            k = rng.randrange(len(data))
            op = rng.randrange(3)
            if op == 0:
                data[k] = rng.randrange(256)
            elif op == 1:
                del data[k]
            else:
                data.insert(k, rng.choice(b'{}[]",:-.0e9\n\0 '))
        r = subprocess.run([REPLAY, "-"], input=bytes(data), capture_output=True, timeout=10,
                           check=False)
        assert r.returncode in (0, 2), (r.returncode, bytes(data))
        if r.returncode == 2:
            assert re.match(rb"cb-replay: <stdin>:\d+: [^\n]+\n\Z", r.stderr), r.stderr


@pytest.mark.parametrize("args,message", [
    ([], "missing TRACE"),
    (["--open-ms=5"], "missing TRACE"),
    (["--bogus=1", "T"], "unknown flag '--bogus=1'"),
    (["--open-ms=x", "T"], "--open-ms: bad value 'x'"),
    (["--failure-rate=2", "T"], "bad breaker config: "),
    (["--compare", "T"], "--compare needs at least one CONFIG"),
    (["--compare", "--open-ms=1 --nope=2", "T"], "CONFIG A: unknown flag '--nope=2'"),
    (["--compare", "", "--failure-rate=7", "T"], "CONFIG B: bad breaker config: "),
    (["--outage-slow-ms=5", "T"], "--outage-slow-ms applies only with --compare"),
    (["--outage-slow-ms=-1", "--compare", "", "T"], "--outage-slow-ms: bad value '-1'"),
    (["/nonexistent/trace.jsonl"], "/nonexistent/trace.jsonl: No such file or directory"),
])
def test_bad_arguments(args, message):
    args = [os.path.join(TRACES, "model-oom.jsonl") if a == "T" else a for a in args]
    r = replay(*args)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("cb-replay: " + message), r.stderr
