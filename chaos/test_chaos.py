"""Every scenario in chaos/scenarios/, run against real components; each expectation is
computed from the logs (see harness.analyze). CHAOS_SETTINGS=fast (make test) or full
(make chaos). Results and logs go to build/chaos/out/NAME/."""

import json
import os
import subprocess

import pytest

import harness
import scenario

SCENARIOS = sorted((harness.CHAOS / "scenarios").glob("*.toml"))
SETTINGS = os.environ.get("CHAOS_SETTINGS", "fast")
REPLAY = harness.CHAOS.parent / os.environ.get("CB_REPLAY", "build/tools/cb-replay")
REQUIRED = {"redis-timeout", "redis-down", "redis-pause", "redis-oom", "flapping", "latency-spike",
            "model-oom", "multi-thread", "redis-shards", "log-flood"}


def test_every_required_scenario_is_there():
    assert REQUIRED <= {p.stem for p in SCENARIOS}


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario(path, chaos_bin):
    sc = scenario.load(path, SETTINGS)
    result = harness.run_scenario(sc, harness.OUT / sc["name"])
    if result.get("stalled"):  # the harness itself ran late: measure again, and say so
        first = [c["measured"] for c in result["checks"] if c["check"].startswith("harness kept")]
        result = harness.run_scenario(sc, harness.OUT / sc["name"])
        result["rerun"] = f"run again: the first run's harness was late ({first[0]})"
        (harness.OUT / sc["name"] / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    failed = [f"{c['check']}: measured {c['measured']}, want {c['expected']}"
              for c in result["checks"] if not c["pass"]]
    assert result["pass"], "\n".join(failed + result.get("errors", []))
    # The trace for tools/cb-replay holds every call the breaker admitted, in time order.
    trace = harness.read_jsonl(harness.OUT / sc["name"] / "trace.jsonl")
    m = result["metrics"]
    assert len(trace) == m["ok"] + m["fail"]
    assert [t["t_ns"] for t in trace] == sorted(t["t_ns"] for t in trace)

    # One client thread calls in sequence, so tools/cb-replay, fed the trace and the run's
    # breaker flags, must take the breaker through the same transitions at the same times.
    # (A keyed group's keys are many breakers, and dominant_share is the group's: no replay.)
    if sc["options"].get("threads", 1) == 1 and not sc["group"] and os.access(REPLAY, os.X_OK):
        r = subprocess.run([str(REPLAY), *result["flags"].split(), str(harness.OUT / sc["name"] / "trace.jsonl")],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        replayed = [t for t in map(json.loads, r.stdout.splitlines()) if "summary" not in t]
        live = sorted((t for t in harness.read_jsonl(harness.OUT / sc["name"] / "client.jsonl")
                       if t.get("event") == "transition"), key=lambda t: t["generation"])
        key = ("from", "to", "reason", "generation")
        assert [[t[k] for k in key] for t in replayed] == [[t[k] for k in key] for t in live]
        assert all(abs(a["t_ns"] - b["t_ns"]) < 5e6 for a, b in zip(replayed, live))
