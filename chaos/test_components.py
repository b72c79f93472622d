"""The pieces of the harness, one by one: the fault proxy's modes against a real Redis,
the workload programs (flags, dead letters, real ENOMEM), and scenario-file errors."""

import json
import os
import signal
import subprocess
import textwrap
import time

import pytest
import redis

import faultproxy
import harness
import scenario
from components import PYTHON, RedisServer, free_port, leftover_processes, spawn


# ---- faultproxy ----

def timed_set(port, timeout=0.3):
    """(seconds taken, True or the exception) for one SET through a fresh connection."""
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=timeout, socket_connect_timeout=timeout)
    t = time.monotonic()
    try:
        out = r.set("k", "v")
    except redis.RedisError as e:
        out = e
    finally:
        r.close()
    return time.monotonic() - t, out


def proxy_commands(tmp_path):
    return [r["cmd"] for r in harness.read_jsonl(tmp_path / "proxy.jsonl") if r.get("event") == "command"]


def test_proxy_pass_forwards_and_counts_every_command(fault_proxy, redis_server, tmp_path):
    r = redis.Redis(host="127.0.0.1", port=fault_proxy.port, socket_timeout=2)
    assert r.set("a", "1") and r.get("a") == b"1"
    with r.pipeline(transaction=False) as p:  # pipelined commands arrive in one read
        p.set("b", "2").incr("n").incr("n")
        assert p.execute() == [True, 1, 2]
    assert redis_server.client().get("b") == b"2"
    assert proxy_commands(tmp_path) == ["SET", "GET", "SET", "INCRBY", "INCRBY"]  # redis-py sends INCRBY


def test_proxy_hang_never_answers_but_counts(fault_proxy, tmp_path):
    fault_proxy.set({"mode": "hang"})
    took, out = timed_set(fault_proxy.port, timeout=0.3)
    assert isinstance(out, redis.TimeoutError) and took >= 0.29
    assert proxy_commands(tmp_path) == ["SET"]
    fault_proxy.set({"mode": "pass"})
    assert timed_set(fault_proxy.port)[1] is True


def test_proxy_reset_and_refuse(fault_proxy):
    fault_proxy.set({"mode": "reset"})
    took, out = timed_set(fault_proxy.port)
    assert isinstance(out, redis.ConnectionError) and took < 0.2
    fault_proxy.set({"mode": "refuse"})
    took, out = timed_set(fault_proxy.port)
    assert isinstance(out, redis.ConnectionError) and "refused" in str(out).lower()
    fault_proxy.set({"mode": "pass"})  # listens again on the same port
    assert timed_set(fault_proxy.port)[1] is True


def test_proxy_latency_and_bandwidth_slow_replies_down(fault_proxy):
    fault_proxy.set({"mode": "latency", "ms": 150, "jitter-ms": 10})
    took, out = timed_set(fault_proxy.port, timeout=1)
    assert out is True and 0.135 <= took < 0.6
    fault_proxy.set({"mode": "bandwidth", "bytes-per-s": 100, "chunk": 4})
    took, out = timed_set(fault_proxy.port, timeout=2)  # 29 bytes of SET, 5 of +OK: 0.34 s
    assert out is True and 0.3 <= took < 1.5


def test_proxy_flap_alternates_between_phases(fault_proxy):
    fault_proxy.set({"mode": "flap", "period-ms": 200, "phases": [{"mode": "reset"}, {"mode": "pass"}]})
    outcomes = []
    for _ in range(16):
        outcomes.append(timed_set(fault_proxy.port)[1] is True)
        time.sleep(0.05)
    assert any(outcomes) and not all(outcomes)


@pytest.mark.parametrize("mode, error", [
    ({"mode": "sideways"}, "mode.mode: unknown mode 'sideways'"),
    ({"mode": "latency"}, "mode.ms: required"),
    ({"mode": "latency", "ms": -5}, "mode.ms: want a number >= 0"),
    ({"mode": "hang", "ms": 5}, "mode.ms: not a parameter of mode 'hang'"),
    ({"mode": "flap", "period-ms": 10, "phases": [{"mode": "hang"}]}, "mode.phases: want a list"),
    ({"mode": "flap", "period-ms": 10, "phases": [{"mode": "hang"}, {"mode": "x"}]},
     "mode.phases[1].mode: unknown mode"),
])
def test_proxy_control_rejects_bad_modes_naming_the_key(fault_proxy, mode, error):
    reply = faultproxy.ctl(fault_proxy.control, mode)
    assert reply["ok"] is False and reply["error"].startswith(error)
    assert timed_set(fault_proxy.port)[1] is True  # still passing traffic


def test_proxy_control_rejects_bad_json(fault_proxy):
    reply = faultproxy.ctl(fault_proxy.control, None)  # sends "null": not a mode object
    assert reply["ok"] is False and "want a table/object" in reply["error"]
    r = subprocess.run([PYTHON, faultproxy.__file__, "ctl", str(fault_proxy.control), "{nope"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode != 0 and "ctl" in r.stderr


def test_parse_commands_keeps_partial_commands_for_the_next_read():
    buf = bytearray(b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv")
    names, used = faultproxy.parse_commands(buf)
    assert names == ["PING"] and used == 14
    del buf[:used]
    buf += b"v\r\nget x\n"
    assert faultproxy.parse_commands(buf) == (["SET", "GET"], len(buf))


def test_faultproxy_bad_command_line():
    r = subprocess.run([PYTHON, str(harness.CHAOS / "faultproxy.py"), "--upstream", "nowhere"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "--upstream" in r.stderr and "HOST:PORT" in r.stderr


# ---- redis_client ----

def run_prog(chaos_bin, prog, *args, timeout=30):
    return subprocess.run([str(chaos_bin / prog), *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("flag, message", [
    ("--open-ms=abc", "--open-ms: bad value 'abc'"),
    ("--open-ms", "--open-ms needs a value"),
    ("--consecutive-failures=-1", "--consecutive-failures: bad value '-1'"),
    ("--failure-rate=2", "failure_rate"),
    ("--threads=0", "--threads: want 1..256"),
    ("--port=70000", "--port: want 1..65535"),
    ("--rate=fast", "--rate: bad value 'fast'"),
    ("--bogus=1", "unknown flag '--bogus=1'"),
])
def test_redis_client_rejects_bad_flags_by_name(chaos_bin, flag, message):
    r = run_prog(chaos_bin, "redis_client", "--dry-run", flag)
    assert r.returncode == 2 and message in r.stderr and r.stderr.startswith("redis_client: ")


def test_every_breaker_flag_reaches_the_breaker(chaos_bin):
    """cbflags.h: each flag named after a cb_config field sets that field."""
    flags = {"name": "x1", "consecutive-failures": 7, "window-calls": 50, "minimum-calls": 20,
             "failure-rate": 0.25, "failures-in-window": 9, "slow-call-ms": 30, "slow-call-rate": 0.75,
             "max-concurrent": 4, "open-ms": 1500, "backoff": 1.5, "max-open-ms": 6000,
             "jitter": 0.125, "half-open-calls": 3, "probe-timeout-ms": 900, "seed": 42,
             "warn-failure-rate": 0.125}
    r = run_prog(chaos_bin, "redis_client", "--dry-run", *(f"--{k}={v}" for k, v in flags.items()))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["breaker"] == {**flags, "window-ms": 0, "window-buckets": 0}
    r = run_prog(chaos_bin, "model_loader", "--dry-run", "--model=m", "--window-ms=2000",
                 "--window-buckets=20", "--failure-rate=0.5")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)["breaker"]
    assert (got["window-ms"], got["window-buckets"], got["window-calls"]) == (2000, 20, 0)


def test_redis_client_logs_every_call_and_balances_its_books(chaos_bin, redis_server, tmp_path):
    log = tmp_path / "client.jsonl"
    r = run_prog(chaos_bin, "redis_client", f"--port={redis_server.port}", "--threads=2", "--rate=200",
                 "--duration-ms=500", f"--log={log}", "--write-ratio=0.5", "--consecutive-failures=3")
    assert r.returncode == 0, r.stderr
    recs = harness.read_jsonl(log)
    calls = [c for c in recs if "op" in c]
    s = recs[-1]["summary"]
    assert s["calls"] == len(calls) == s["breaker"]["admitted"] and s["ok"] == len(calls) > 100
    assert {c["outcome"] for c in calls} == {"ok"} and {c["thread"] for c in calls} == {0, 1}
    n, lost = harness.check_writes(redis_server.client(), calls)
    assert n > 20 and not lost


def test_dead_letters_left_by_a_crashed_run_are_replayed_in_order(chaos_bin, redis_server, tmp_path):
    dl = tmp_path / "dead-letters"
    dl.write_text("".join(f"SET old:{i} v:old:{i}\n" for i in range(50)) + "SET old:0 v:last\n")
    (tmp_path / "dead-letters.done").write_text("0\n")
    log = tmp_path / "client.jsonl"
    r = run_prog(chaos_bin, "redis_client", f"--port={redis_server.port}", "--duration-ms=300",
                 f"--dead-letter={dl}", f"--log={log}", "--write-ratio=0")
    assert r.returncode == 0, r.stderr
    s = harness.read_jsonl(log)[-1]["summary"]
    assert s["dead_letters"] == {"written": 0, "replayed": 51, "pending": 0, "errors": 0}
    c = redis_server.client()
    assert c.get("old:49") == b"v:old:49" and c.get("old:0") == b"v:last"  # file order
    assert int((tmp_path / "dead-letters.done").read_text()) == dl.stat().st_size


def test_damaged_dead_letters_are_reported_not_replayed_blindly(chaos_bin, redis_server, tmp_path):
    dl, log = tmp_path / "dl", tmp_path / "client.jsonl"
    dl.write_text("SET a v:a\ngarbage\nSET b v:b\n")
    common = [f"--port={redis_server.port}", "--duration-ms=100", f"--dead-letter={dl}", f"--log={log}"]
    (tmp_path / "dl.done").write_text("soon\n")
    r = run_prog(chaos_bin, "redis_client", *common)
    assert r.returncode == 2 and f"{dl}.done: want the replayed offset" in r.stderr
    (tmp_path / "dl.done").write_text("999\n")
    r = run_prog(chaos_bin, "redis_client", *common)
    assert r.returncode == 2 and "replayed offset 999 is outside" in r.stderr
    (tmp_path / "dl.done").write_text("0\n")
    r = run_prog(chaos_bin, "redis_client", *common)
    assert r.returncode == 1  # a letter could not be replayed: the run says so
    s = harness.read_jsonl(log)[-1]["summary"]
    assert s["dead_letters"] == {"written": 0, "replayed": 2, "pending": 0, "errors": 1}
    assert redis_server.client().mget(["a", "b"]) == [b"v:a", b"v:b"]


def test_redis_client_spills_writes_while_redis_is_away_and_replays_them(chaos_bin, tmp_path):
    """No Redis at all at first: every write is rejected or fails into the dead-letter
    file; the drain at the end replays them once Redis is there."""
    port = free_port()
    log, dl = tmp_path / "client.jsonl", tmp_path / "dl"
    client = spawn([str(chaos_bin / "redis_client"), f"--port={port}", "--duration-ms=600", "--write-ratio=1",
                    f"--dead-letter={dl}", f"--log={log}", "--open-ms=200", "--drain-ms=8000"],
                   stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)
        d = tmp_path / "redis"
        d.mkdir()
        server = RedisServer(d)
        server.port = port
        server._spawn()
        try:
            assert client.wait(20) == 0, client.stderr.read()
            recs = harness.read_jsonl(log)
            s = recs[-1]["summary"]
            calls = [c for c in recs if "op" in c]
            assert s["rejected"] > 0 and s["dead_letters"]["written"] == s["dead_letters"]["replayed"] > 0
            n, lost = harness.check_writes(server.client(), calls)
            assert n > 0 and not lost
        finally:
            server.stop()
    finally:
        harness.stop_process(client)
        client.stderr.close()


# ---- model_loader ----

def test_model_loader_loads_then_fails_with_real_enomem(chaos_bin, tmp_path):
    model, control, log = tmp_path / "model.bin", tmp_path / "budget", tmp_path / "log.jsonl"
    harness.write_model(model, 8)
    common = [f"--model={model}", f"--control={control}", f"--log={log}", "--rate=20", "--duration-ms=300"]
    harness.write_budget(control, 64)
    assert run_prog(chaos_bin, "model_loader", *common).returncode == 0
    loads = [c for c in harness.read_jsonl(log) if "op" in c]
    assert loads and all(c["outcome"] == "ok" for c in loads)
    harness.write_budget(control, 4)  # half the model: malloc fails in the child
    assert run_prog(chaos_bin, "model_loader", *common, "--consecutive-failures=2").returncode == 0
    loads = [c for c in harness.read_jsonl(log) if "op" in c]
    assert [c["outcome"] for c in loads[:3]] == ["fail", "fail", "rejected"]
    assert loads[0]["error"] == "enomem"


def test_model_loader_detects_a_corrupt_model(chaos_bin, tmp_path):
    model, log = tmp_path / "model.bin", tmp_path / "log.jsonl"
    harness.write_model(model, 1)
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF
    model.write_bytes(data)
    r = run_prog(chaos_bin, "model_loader", f"--model={model}", f"--log={log}", "--duration-ms=150")
    assert r.returncode == 0
    loads = [c for c in harness.read_jsonl(log) if "op" in c]
    assert loads and loads[0]["outcome"] == "fail" and loads[0]["error"] == "bad model file"


@pytest.mark.parametrize("args, message", [
    ([], "--model=FILE is required"),
    (["--model=/nonexistent/m"], "--model=/nonexistent/m: No such file"),
    (["--model=MODEL", "--control=BUDGET"], "--control=BUDGET: bad budget 'lots'"),
    (["--model=MODEL", "--rate=0"], "--rate: want > 0"),
    (["--model=MODEL", "--jitter=1"], "jitter"),
])
def test_model_loader_rejects_bad_input_by_name(chaos_bin, tmp_path, args, message):
    model, budget = tmp_path / "m", tmp_path / "b"
    harness.write_model(model, 1)
    budget.write_text("lots\n")
    sub = {"MODEL": str(model), "BUDGET": str(budget)}
    args = [a.replace("MODEL", sub["MODEL"]).replace("BUDGET", sub["BUDGET"]) for a in args]
    r = run_prog(chaos_bin, "model_loader", *args, f"--log={tmp_path / 'log'}", "--duration-ms=100")
    message = message.replace("BUDGET", sub["BUDGET"])
    assert r.returncode == 2 and message in r.stderr, r.stderr


# ---- scenario files ----

GOOD = """
description = "x"
[breaker]
open-ms = 500
[workload]
duration-ms = 3000
[faults.f]
action = "proxy"
mode = { mode = "hang" }
at-ms = 500
duration-ms = 1000
"""


@pytest.mark.parametrize("edit, key, message", [
    (lambda s: s + "[oops", "", "not valid TOML"),
    (lambda s: "colour = 1\n" + s, "colour", "unknown key"),
    (lambda s: s + "colour = 1\n", "faults.f.colour", "unknown key"),
    (lambda s: s.replace('description = "x"', "description = 5"), "description", "want a str"),
    (lambda s: s.replace("open-ms = 500", 'open-ms = "soon"'), "breaker.open-ms", "bad value 'soon'"),
    (lambda s: s.replace("open-ms = 500", "failure-rate = 1.5"), "breaker.failure-rate", "failure_rate"),
    (lambda s: s.replace("open-ms = 500", "port = 1"), "breaker.port", "set by the harness"),
    (lambda s: s.replace("duration-ms = 3000", "threads = 0"), "workload.threads", "want 1..256"),
    (lambda s: s.replace("duration-ms = 3000", "speed = 2"), "workload.speed", "unknown flag"),
    (lambda s: s.replace('action = "proxy"', 'action = "meteor"'), "faults.f.action", "want one of"),
    (lambda s: s.replace('action = "proxy"', 'action = "budget"'), "faults.f.action", "does not apply"),
    (lambda s: s.replace('mode = "hang"', 'mode = "hang", ms = 3'), "faults.f.mode.ms", "not a parameter"),
    (lambda s: s.replace('mode = { mode = "hang" }\n', ""), "faults.f.mode", "required for action 'proxy'"),
    (lambda s: s.replace("at-ms = 500", "at-ms = -1"), "faults.f.at-ms", "want >= 0"),
    (lambda s: s.replace("at-ms = 500", "at-ms = 2500"), "faults.f.duration-ms", "ends after the workload"),
    (lambda s: s.replace("at-ms = 500", "at-ms = 500\nmax-calls-to-trip = 0"), "faults.f.max-calls-to-trip",
     "want >= 1"),
    (lambda s: s.replace("at-ms = 500", 'at-ms = 500\nreason = "bad luck"'), "faults.f.reason", "want one of"),
    (lambda s: s + '[faults.g]\naction = "kill"\nat-ms = 1000\nduration-ms = 100\n', "faults.g.at-ms", "overlaps"),
    (lambda s: s + "[expect]\nmin-opens = -2\n", "expect.min-opens", "want >= 0"),
    (lambda s: s + "[fast.workload]\nduration-ms = 1000\n", "faults.f.duration-ms", "ends after"),
    (lambda s: s + "[model]\nsize-mib = 4\n", "model", "only for program model_loader"),
])
def test_a_malformed_scenario_is_an_error_naming_file_and_key(chaos_bin, tmp_path, edit, key, message):
    path = tmp_path / "bad.toml"
    path.write_text(edit(GOOD))
    with pytest.raises(scenario.ScenarioError) as e:
        scenario.load(path, "fast")
    text = str(e.value)
    assert text.startswith(f"{path}: {key}") and message in text, text


def test_the_good_scenario_loads_with_resolved_values(chaos_bin, tmp_path):
    path = tmp_path / "good.toml"
    path.write_text(GOOD)
    sc = scenario.load(path, "full")
    assert sc["breaker"]["open-ms"] == 500 and sc["options"]["timeout-ms"] == 200
    assert sc["faults"][0]["mode"] == {"mode": "hang"} and sc["min_opens"] == 1


def test_harness_cli_reports_a_bad_scenario_without_a_traceback(chaos_bin, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(textwrap.dedent(GOOD).replace("open-ms = 500", "open-ms = -3"))
    r = subprocess.run([PYTHON, str(harness.CHAOS / "harness.py"), str(path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "breaker.open-ms" in r.stderr and "Traceback" not in r.stderr


# ---- the leftover check itself ----

def test_leftover_check_sees_live_processes_and_their_children(tmp_path):
    marker = str(tmp_path / "marker")
    p = spawn(["/bin/sh", "-c", f"{PYTHON} -c 'import time; time.sleep(30)' {marker} & wait"])
    harness.wait_until(lambda: len(leftover_processes(marker)) == 2, 5, "the shell and its child")
    harness.stop_process(p)  # the shell ends; its child lives on, orphaned
    orphans = leftover_processes(marker)
    assert len(orphans) == 1 and p.pid not in orphans
    os.kill(orphans[0], signal.SIGKILL)  # started by this test: ended by its pid
    harness.wait_until(lambda: not leftover_processes(marker), 5, "the orphan to end")


def test_leftover_check_sees_a_running_redis_server(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    server = RedisServer(d).start()
    try:
        assert server.proc.pid in leftover_processes(str(tmp_path))  # its cmdline is rewritten
    finally:
        server.stop()
    assert server.proc.pid not in leftover_processes(str(tmp_path))
