"""cbctl against real shared breaker files: every command, its errors, and `cbctl serve`
scraped over 127.0.0.1 while worker processes drive (and are SIGKILLed on) the breakers.

Run by `make test-cbctl`, which sets CBCTL and SHM_DRIVE to the built programs."""
import json
import os
import pathlib
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import pytest

CBCTL = os.path.abspath(os.environ.get("CBCTL", "build/tools/cbctl"))
DRIVE = os.path.abspath(os.environ.get("SHM_DRIVE", "build/shm/shm_drive"))
TIMEOUT = 20

# A breaker with a window, so that it has a failure rate: opens at 50% of >= 10 calls.
REDIS = ["--name=redis", "--window-calls=20", "--failure-rate=0.5", "--open-ms=300",
         "--probe-timeout-ms=300"]
DB = ["--name=db", "--consecutive-failures=3", "--open-ms=60000"]


def cbctl(*args, check=None):
    """Runs cbctl; check=N asserts the exit status."""
    p = subprocess.run([CBCTL, *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT)
    if check is not None:
        assert p.returncode == check, f"cbctl {args}: exit {p.returncode}\n{p.stdout}{p.stderr}"
    return p


def drive(path, flags, *steps):
    p = subprocess.run([DRIVE, str(path), *flags, *steps], capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr
    return p.stdout


def create(path, flags):
    cbctl("create", path, *flags, check=0)
    return path


def state_of(path):
    return json.loads(cbctl("metrics", "--json", path, check=0).stdout)[0]


def promtool_ok(text):
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=TIMEOUT)
    assert p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), p.stdout + p.stderr


@pytest.fixture
def files(tmp_path):
    return create(tmp_path / "redis.cb", REDIS), create(tmp_path / "db.cb", DB)


# ---- help and command lines ----------------------------------------------------------

COMMANDS = ["ls", "show", "watch", "set", "reset", "metrics", "serve", "create"]


def test_help_names_every_command_and_each_command_has_its_own():
    out = cbctl("--help", check=0).stdout
    for c in COMMANDS:
        assert re.search(rf"^  {c} ", out, re.M), c
        assert cbctl(c, "--help", check=0).stdout.startswith(f"usage: cbctl {c}")


@pytest.mark.parametrize("args, message", [
    ([], "usage: cbctl COMMAND"),
    (["frobnicate"], "unknown command 'frobnicate'"),
    (["show"], "name at least one FILE"),
    (["show", "--bogus", "x"], "unknown option '--bogus'"),
    (["set", "x"], "takes FILE and STATE"),
    (["reset"], "takes exactly one FILE"),
    (["ls"], "takes exactly one DIR"),
    (["ls", "a", "b"], "takes exactly one DIR"),
    (["metrics", "x"], "choose one of --json and --prometheus"),
    (["metrics", "--json", "--prometheus", "x"], "choose one of --json and --prometheus"),
    (["metrics", "--json=yes", "x"], "--json takes no value"),
    (["watch", "--interval-ms=5", "x"], "--interval-ms: bad value '5'"),
    (["watch", "--count=0", "x"], "--count: bad value '0'"),
    (["watch", "--count"], "--count needs a value"),
    (["serve", "x"], "--listen HOST:PORT is required"),
    (["serve", "--listen", "localhost:80", "x"], "not a numeric IPv4 or IPv6 address"),
    (["serve", "--listen", "127.0.0.1", "x"], "want HOST:PORT"),
    (["serve", "--listen", "127.0.0.1:70000", "x"], "--listen port: bad value '70000'"),
    (["serve", "--listen", "127.0.0.1:0", "--warn-failure-rate=1.5", "x"], "--warn-failure-rate"),
    (["serve", "--listen", "127.0.0.1:0", "--max-connections=0", "x"],
     "--max-connections: bad value '0'"),
    (["serve", "--listen", "127.0.0.1:0", "--header-timeout-ms=5", "x"],
     "--header-timeout-ms: bad value '5'"),
    (["create", "x", "--open-ms=soon"], "--open-ms: bad value 'soon'"),
    (["create", "x", "--failure-rate=2"], "cb_config.failure_rate = 2"),
    (["create", "x", "--window-calls=10", "--window-ms=100"], "set one window, not both"),
])
def test_a_bad_command_line_is_exit_2_with_a_message_naming_the_problem(args, message, tmp_path,
                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)     # relative FILE operands land here, should one be created
    p = cbctl(*args, check=2)
    assert message in p.stderr
    assert "--help" in p.stderr
    assert p.stdout == "" and os.listdir(tmp_path) == []


# ---- files that cannot be used ------------------------------------------------------

def layout():
    """Where the fields of a breaker file lie (offsets differ between builds)."""
    out = subprocess.run([DRIVE, "--layout"], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def damaged(tmp_path, name, edit):
    """A copy of a real breaker file, edited by edit(bytearray, layout)."""
    good = create(tmp_path / f"good-{name}", REDIS)
    data = bytearray(good.read_bytes())
    edit(data, layout())
    bad = tmp_path / name
    bad.write_bytes(bytes(data))
    old = time.time() - 60      # not a file being created right now: no wait for its creator
    os.utime(bad, (old, old))
    return bad


def flip_name(data, at):
    data[at["cfg"] + 2] ^= 0x20     # the stored name, under the header checksum


def zero_ready(data, at):
    data[at["ready"]:at["ready"] + 8] = bytes(8)


def cut_window(data, at):
    del data[at["header"] + 8:]     # the header whole, the window storage cut


def fifo(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    return tmp_path / "pipe"


def text_file(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    return tmp_path / "notes.txt"


@pytest.mark.parametrize("make, message", [
    (lambda t: t / "missing.cb", "No such file or directory"),
    (lambda t: t, "not a regular file"),
    (fifo, "not a regular file"),
    (text_file, "not a breaker file"),
    (lambda t: damaged(t, "short.cb", lambda d, at: d.__delitem__(slice(100, None))), "truncated"),
    (lambda t: damaged(t, "flipped.cb", flip_name), "shared breaker file is truncated or damaged"),
    (lambda t: damaged(t, "unready.cb", zero_ready), "shared breaker file is truncated or damaged"),
    (lambda t: damaged(t, "unborn.cb", lambda d, at: d.__setitem__(slice(0, 8), bytes(8))),
     "never initialised: its creator died"),
    (lambda t: damaged(t, "cut.cb", cut_window), "truncated or damaged"),
])
@pytest.mark.parametrize("command", [["show", "{f}"], ["metrics", "--json", "{f}"],
                                     ["set", "{f}", "open"], ["reset", "{f}"],
                                     ["watch", "--count=1", "{f}"]])
def test_a_file_that_cannot_be_used_is_exit_1_naming_file_and_reason(tmp_path, make, message,
                                                                     command):
    path = str(make(tmp_path))
    p = cbctl(*[a.format(f=path) for a in command], check=1)
    assert f"{path}: " in p.stderr and message in p.stderr, p.stderr
    assert not (tmp_path / "missing.cb").exists(), "cbctl must never create a file"


def test_create_on_a_file_of_another_config_shows_both_configs(tmp_path, files):
    redis, _ = files
    p = cbctl("create", redis, "--name=redis", "--window-calls=50", check=1)
    assert "another layout or config" in p.stderr
    assert "the file holds: --name=redis --window-calls=20" in p.stderr
    assert re.search(r"asked for:      --name=redis .*--window-calls=50 ", p.stderr)


def test_create_in_a_missing_folder_says_why(tmp_path):
    p = cbctl("create", tmp_path / "no" / "x.cb", check=1)
    assert f"{tmp_path / 'no' / 'x.cb'}: input/output error: No such file or directory" in p.stderr


def test_a_symlink_is_refused_and_its_target_left_alone(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("precious\n")
    link = tmp_path / "link.cb"
    link.symlink_to(target)
    p = cbctl("create", link, *REDIS, check=1)
    assert f"{link}: shared file refused for safety" in p.stderr and "symbolic link" in p.stderr
    p = cbctl("show", link, check=1)
    assert "symbolic link" in p.stderr
    assert target.read_text() == "precious\n"


def test_files_are_created_0600_whatever_the_umask_and_0660_with_group_shared(tmp_path):
    old = os.umask(0)
    try:
        create(tmp_path / "private.cb", REDIS)
        cbctl("--group-shared", "create", tmp_path / "group.cb", *REDIS, check=0)
    finally:
        os.umask(old)
    assert (tmp_path / "private.cb").stat().st_mode & 0o7777 == 0o600
    assert (tmp_path / "group.cb").stat().st_mode & 0o7777 == 0o660
    os.chmod(tmp_path / "group.cb", 0o666)
    p = cbctl("--group-shared", "show", tmp_path / "group.cb", check=1)
    assert "writable by every user" in p.stderr


@pytest.fixture
def public_dir():
    """A folder a second user can write in (pytest's own are private to root)."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="cbctl-test-", dir="/tmp"))
    os.chmod(d, 0o1777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to play a second user (uid 65534)")
def test_a_file_of_another_user_is_refused_naming_its_owner(public_dir):
    path = public_dir / "planted.cb"

    def as_nobody():
        os.setgroups([])
        os.setgid(0)    # group 0: one of ours
        os.setuid(65534)
    subprocess.run([CBCTL, "--group-shared", "create", str(path), *REDIS], check=True,
                   capture_output=True, timeout=TIMEOUT, preexec_fn=as_nobody)
    assert path.stat().st_uid == 65534
    for command in (["show", path], ["reset", path], ["metrics", "--json", path]):
        p = cbctl(*command, check=1)
        assert "owned by uid 65534" in p.stderr and "sudo -u" in p.stderr, p.stderr
    assert "redis" in cbctl("--group-shared", "show", path, check=0).stdout


def test_metrics_refuses_two_files_with_one_breaker_name(tmp_path, files):
    redis, _ = files
    twin = create(tmp_path / "twin.cb", REDIS)
    p = cbctl("metrics", "--prometheus", redis, twin, check=1)
    assert "both hold the name 'redis'" in p.stderr


# ---- commands -----------------------------------------------------------------------

def test_show_prints_state_counters_window_config_and_history(files):
    redis, db = files
    drive(redis, REDIS, "s=6", "f=4", "i=1")
    out = cbctl("show", redis, db, check=0).stdout
    assert f"redis  {redis}" in out and f"db  {db}" in out
    assert "state     closed, generation 0" in out
    assert "11 admitted, 0 rejected, 0 in flight" in out
    assert "6 successes, 4 failures, 1 ignored, 0 slow, 0 stale" in out
    assert "window    last 20 calls: 10 calls, failure rate 40.0% (4/10)" in out
    assert "config    --name=redis --window-calls=20 --minimum-calls=10 --failure-rate=0.5" in out
    assert "window    none (consecutive failures only)" in out
    drive(redis, REDIS, "f=2")
    out = cbctl("show", redis, check=0).stdout
    assert re.search(r"state     open, generation 1, for \d+ ms, retry after \d+ ms", out)
    assert re.search(r"gen 1 .* ago  closed -> open \(failure_rate\), open 300 ms", out)


def test_set_moves_to_every_state_and_reset_closes(files):
    redis, _ = files
    gen = 0
    for name, state in [("open", "open"), ("half-open", "half_open"), ("forced_open", "forced_open"),
                        ("disabled", "disabled"), ("metrics-only", "metrics_only"),
                        ("closed", "closed")]:
        before = state_of(redis)["state"]
        gen += 1
        assert cbctl("set", redis, name, check=0).stdout == \
            f"redis: {before} -> {state} (generation {gen})\n"
        assert state_of(redis)["state"] == state
    drive(redis, REDIS, "s=1")
    cbctl("set", redis, "forced-open", check=0)
    assert cbctl("reset", redis, check=0).stdout == "redis: forced_open -> closed (generation 8)\n"
    s = state_of(redis)
    assert (s["state"], s["generation"], s["admitted"]) == ("closed", 8, 1)   # counters kept
    p = cbctl("set", redis, "ajar", check=2)
    assert "unknown state 'ajar'" in p.stderr


def test_a_state_set_by_cbctl_is_seen_by_the_processes_using_the_breaker(files):
    redis, _ = files
    cbctl("set", redis, "forced-open", check=0)
    assert drive(redis, REDIS, "s=5") == "admitted 0 rejected 5\n"
    cbctl("reset", redis, check=0)
    assert drive(redis, REDIS, "s=5") == "admitted 5 rejected 0\n"


def test_ls_lists_breaker_files_skips_others_and_reports_damaged_ones(tmp_path, files):
    (tmp_path / "notes.txt").write_text("not a breaker\n")
    (tmp_path / "sub").mkdir()
    drive(files[0], REDIS, "s=3", "f=1")
    out = cbctl("ls", tmp_path, check=0).stdout.splitlines()
    assert out[0].split() == ["FILE", "NAME", "STATE", "GEN", "FAILURE", "RATE"]
    assert [line.split()[:4] for line in out[1:]] == [["db.cb", "db", "closed", "0"],
                                                      ["redis.cb", "redis", "closed", "0"]]
    assert out[2].endswith("25.0% (1/4)") and out[1].endswith(" -")
    damaged(tmp_path, "zz.cb", flip_name)
    p = cbctl("ls", tmp_path, check=1)
    assert re.search(r"^zz\.cb +\? +error: shared breaker file is truncated or damaged", p.stdout, re.M)
    assert "good-zz.cb" in p.stdout


def test_ls_of_an_empty_or_missing_folder(tmp_path):
    assert "(no breaker or group files in" in cbctl("ls", tmp_path, check=0).stdout
    p = cbctl("ls", tmp_path / "nope", check=1)
    assert "No such file or directory" in p.stderr


def test_ls_opens_only_regular_files_and_escapes_names(tmp_path, files):
    os.mkfifo(tmp_path / "pipe.cb")            # no writer: an open without O_NONBLOCK hangs
    os.symlink(files[0], tmp_path / "link.cb")  # a breaker, but through a link: not followed
    odd = create(tmp_path / "red\x1b[31mis\nh.cb", ["--name=back\\slash"])
    out = cbctl("ls", tmp_path, check=0).stdout
    assert "\x1b" not in out and out.count("\n") == 4
    assert [line.split()[:2] for line in out.splitlines()[1:]] == [
        ["db.cb", "db"], ["red\\x1b[31mis\\x0ah.cb", "back\\\\slash"], ["redis.cb", "redis"]]
    show = cbctl("show", odd, check=0).stdout
    assert show.startswith("back\\\\slash  " + str(tmp_path) + "/red\\x1b[31mis\\x0ah.cb\n")
    p = cbctl("show", tmp_path / "gone\x07.cb", check=1)
    assert "/gone\\x07.cb: No such file or directory" in p.stderr and "\x07" not in p.stderr


def test_metrics_json_has_every_stats_field_and_the_file(files):
    redis, db = files
    drive(redis, REDIS, "s=2", "f=1")
    text = cbctl("metrics", "--json", redis, db, check=0).stdout
    assert re.search(r'"state_since_ns":\d+,', text)     # integers as written, not as doubles
    out = json.loads(text)
    assert [o["name"] for o in out] == ["redis", "db"]
    assert out[0]["file"] == str(redis)
    for field in ["state", "generation", "admitted", "rejected", "successes", "failures",
                  "ignored", "slow", "stale", "opens", "consecutive_failures", "window_calls",
                  "window_failures", "window_slow", "in_flight", "state_since_ns",
                  "last_failure_ns", "open_until_ns", "retry_after_ms"]:
        assert field in out[0], field
    assert (out[0]["admitted"], out[0]["successes"], out[0]["failures"]) == (3, 2, 1)


def test_metrics_prometheus_passes_promtool(files):
    redis, db = files
    drive(redis, REDIS, "s=5", "f=5")
    text = cbctl("metrics", "--prometheus", redis, db, check=0).stdout
    assert 'cb_state{name="redis",state="open"} 1' in text
    assert 'cb_admitted_total{name="redis"} 10' in text
    promtool_ok(text)


def test_watch_refreshes_count_times_and_stops_on_interrupt(files):
    redis, _ = files
    out = cbctl("watch", "--count=3", "--interval-ms=10", redis, check=0).stdout
    assert out.count("cbctl watch: every 10 ms") == 3 and out.count("redis  ") == 3
    assert "\033[" not in out    # not a terminal: frames follow each other
    p = subprocess.Popen([CBCTL, "watch", "--interval-ms=50", str(redis)], stdout=subprocess.PIPE,
                         text=True)
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=TIMEOUT)
    assert p.returncode == 0 and out.count("cbctl watch") >= 2


# ---- serve --------------------------------------------------------------------------

class Server:
    def __init__(self, *args):
        self.proc = subprocess.Popen([CBCTL, "serve", "--listen", "127.0.0.1:0", *map(str, args)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"on http://127\.0\.0\.1:(\d+) ", line)
        if not m:
            self.proc.kill()
            raise AssertionError(f"serve did not start: {line}{self.proc.stderr.read()}")
        self.base = f"http://127.0.0.1:{m.group(1)}"

    def get(self, path, method="GET"):
        req = urllib.request.Request(self.base + path, method=method)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.headers, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode()

    def health(self):
        code, _, body = self.get("/health")
        doc = json.loads(body)
        return code, doc["status"], {b["name"]: b["health"] for b in doc["breakers"]}

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=TIMEOUT)
        finally:
            if self.proc.poll() is None:    # never left running behind a failed test
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()
            self.proc.stderr.close()
        return self.proc.returncode


@pytest.fixture
def server(files):
    s = Server("--critical=db", "--warn-failure-rate=0.3", *files)
    yield s
    if s.proc.poll() is None:
        assert s.stop() == 0


def test_metrics_endpoint_serves_the_exposition_and_it_passes_promtool(server, files):
    drive(files[0], REDIS, "s=7", "f=3")
    code, headers, text = server.get("/metrics")
    assert code == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert 'cb_successes_total{name="redis"} 7' in text and 'cb_state{name="db",' in text
    promtool_ok(text)


def test_health_rollup_follows_the_breakers(server, files):
    redis, db = files
    assert server.health() == (200, "HEALTHY", {"redis": "HEALTHY", "db": "HEALTHY"})
    drive(redis, REDIS, "s=7", "f=3")          # 30%: at the warning level, below the trip
    assert server.health() == (200, "DEGRADED", {"redis": "DEGRADED", "db": "HEALTHY"})
    drive(redis, REDIS, "f=4")                 # 7 of 14 failed: open
    assert server.health() == (200, "UNHEALTHY", {"redis": "UNHEALTHY", "db": "HEALTHY"})
    cbctl("set", redis, "half-open", check=0)
    assert server.health() == (200, "DEGRADED", {"redis": "DEGRADED", "db": "HEALTHY"})
    drive(db, DB, "f=3")                       # the critical one opens: 503
    assert server.health() == (503, "CRITICAL", {"redis": "DEGRADED", "db": "CRITICAL"})
    cbctl("set", db, "half-open", check=0)     # critical but half-open is only degraded
    assert server.health()[:2] == (200, "DEGRADED")
    cbctl("set", db, "forced-open", check=0)
    assert server.health()[:2] == (503, "CRITICAL")
    cbctl("reset", db, check=0)
    cbctl("reset", redis, check=0)
    assert server.health() == (200, "HEALTHY", {"redis": "HEALTHY", "db": "HEALTHY"})


def test_health_document_describes_each_breaker(server, files):
    drive(files[0], REDIS, "s=9", "f=1")
    code, headers, body = server.get("/health")
    assert headers["Content-Type"] == "application/json"
    doc = json.loads(body)
    assert doc["warn_failure_rate"] == 0.3
    redis, db = doc["breakers"]
    assert redis == {"name": "redis", "file": str(files[0]), "state": "closed", "health": "HEALTHY",
                     "critical": False, "failure_rate": 0.1, "window_calls": 10,
                     "retry_after_ms": 0, "degraded": False}
    assert db["critical"] is True and db["failure_rate"] is None   # no window: no rate


def test_other_paths_and_methods(server):
    assert server.get("/")[0] == 404
    code, headers, _ = server.get("/metrics", method="POST")
    assert code == 405 and headers["Allow"] == "GET, HEAD"
    code, _, body = server.get("/health", method="HEAD")
    assert code == 200 and body == ""


def test_a_killed_probe_holder_degrades_health_until_the_probe_timeout_then_it_recovers(server,
                                                                                        files):
    redis, _ = files
    drive(redis, REDIS, "f=10")
    assert server.health()[1] == "UNHEALTHY"
    time.sleep(0.35)                           # open_ms = 300: the next call probes
    holder = subprocess.Popen([DRIVE, str(redis), *REDIS, "hold"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    killed = time.monotonic()
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=TIMEOUT)
    holder.stdout.close()
    assert server.health()[1] == "DEGRADED"    # half-open, its only permit held by the dead
    assert drive(redis, REDIS, "s=1") == "admitted 0 rejected 1\n"
    deadline = killed + 5
    while state_of(redis)["state"] != "closed" and time.monotonic() < deadline:
        drive(redis, REDIS, "s=1")             # rejected until the probe timeout, then probes
        time.sleep(0.01)
    recovered = time.monotonic() - killed
    assert state_of(redis)["state"] == "closed"
    assert recovered < 0.3 + 0.3 + 0.5         # probe_timeout_ms + open_ms, process starts aside
    assert server.health()[1] == "HEALTHY"


def test_scrapes_stay_valid_and_monotonic_while_workers_hammer_and_die(server, files):
    redis, _ = files
    workers = [subprocess.Popen([DRIVE, str(redis), *REDIS, "s=500000", "f=50000", "s=500000"],
                                stdout=subprocess.DEVNULL) for _ in range(3)]
    last = 0
    for i in range(20):
        code, _, text = server.get("/metrics")
        assert code == 200
        admitted = int(re.search(r'^cb_admitted_total\{name="redis"\} (\d+)$', text, re.M).group(1))
        rejected = sum(int(n) for n in re.findall(   # one sample per reason
            r'^cb_rejected_total\{name="redis",reason="[a-z_]+"\} (\d+)$', text, re.M))
        assert admitted + rejected >= last
        last = admitted + rejected
        if i == 5:
            workers[0].kill()                  # SIGKILL in the middle of its calls
        if i % 5 == 0:
            promtool_ok(text)
        time.sleep(0.02)
    for w in workers:
        w.wait(timeout=TIMEOUT)
    assert server.health()[0] in (200, 503)


@pytest.mark.parametrize("args, status, message", [
    (["--critical=nosuch"], 2, "--critical=nosuch: no breaker or group of that name"),
    (["--listen=127.0.0.1:{busy}"], 1, "cannot listen on 127.0.0.1:"),
])
def test_serve_startup_errors(server, files, args, status, message):
    busy = server.base.rsplit(":", 1)[1]
    argv = [a.format(busy=busy) for a in args]
    listen = [] if any(a.startswith("--listen") for a in argv) else ["--listen", "127.0.0.1:0"]
    p = cbctl("serve", *listen, *argv, *files, check=status)
    assert message in p.stderr


def test_serve_stops_cleanly_on_sigint(files):
    s = Server(*files)
    s.proc.send_signal(signal.SIGINT)
    assert s.proc.wait(timeout=TIMEOUT) == 0
    s.proc.stdout.close()
    s.proc.stderr.close()


def test_serve_on_a_missing_file_is_exit_1(tmp_path):
    p = cbctl("serve", "--listen", "127.0.0.1:0", tmp_path / "gone.cb", check=1)
    assert "gone.cb: No such file or directory" in p.stderr


def test_a_critical_breaker_is_critical_only_while_its_open_period_runs(tmp_path):
    # Once the period is over the next call probes; a 503 then would keep a load balancer
    # from sending that call, and the instance would stay out for good.
    api_flags = ["--name=api", "--consecutive-failures=1", "--open-ms=1000"]
    cache_flags = ["--name=cache", "--consecutive-failures=1", "--open-ms=1000"]
    api = create(tmp_path / "api.cb", api_flags)
    cache = create(tmp_path / "cache.cb", cache_flags)
    s = Server("--critical=api", api, cache)
    try:
        drive(api, api_flags, "f=1")
        drive(cache, cache_flags, "f=1")
        opened = time.monotonic()
        assert s.health() == (503, "CRITICAL", {"api": "CRITICAL", "cache": "UNHEALTHY"})
        time.sleep(max(0.0, opened + 1.1 - time.monotonic()))
        code, _, body = s.get("/health")
        doc = json.loads(body)
        assert (code, doc["status"]) == (200, "DEGRADED")
        assert [(b["state"], b["health"], b["retry_after_ms"]) for b in doc["breakers"]] == \
            [("open", "DEGRADED", 0), ("open", "DEGRADED", 0)]
        assert state_of(api)["admitted"] == 1          # no call came in between
        cbctl("set", api, "forced-open", check=0)       # forced open: no probe will come
        assert s.health()[:2] == (503, "CRITICAL")
    finally:
        assert s.stop() == 0


def replace(path, flags, *steps):
    """A new breaker file made beside path, then renamed over it (an atomic replace)."""
    new = path.parent / ("new-" + path.name)
    create(new, flags)
    for step in steps:
        cbctl("set", new, step, check=0)
    os.rename(new, path)


def until(fn, seconds=3.0):
    """fn() once it is truthy, polling for up to seconds; the last value otherwise."""
    deadline = time.monotonic() + seconds
    while not (got := fn()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return got


def test_serve_follows_a_breaker_file_replaced_at_its_path(server, files, tmp_path):
    redis, db = files
    drive(redis, REDIS, "s=9", "f=1")
    assert server.health()[2]["redis"] == "HEALTHY"
    replace(redis, REDIS, "forced-open")
    assert until(lambda: 'cb_state{name="redis",state="forced_open"} 1' in server.get("/metrics")[2])
    code, _, text = server.get("/metrics")
    assert 'cb_admitted_total{name="redis"} 0' in text      # the new file's counters
    promtool_ok(text)
    assert server.health()[2]["redis"] == "UNHEALTHY"

    (tmp_path / "junk").write_text("not a breaker\n")
    os.rename(tmp_path / "junk", redis)
    doc = until(lambda: (d := json.loads(server.get("/health")[2]))["breakers"][0]["state"] ==
                "unknown" and d)
    assert doc["status"] == "UNHEALTHY"
    assert {k: doc["breakers"][0][k] for k in ("name", "file", "state", "health")} == \
        {"name": "redis", "file": str(redis), "state": "unknown", "health": "UNHEALTHY"}
    assert "not a breaker file" in doc["breakers"][0]["error"]
    code, _, text = server.get("/metrics")      # nothing stale for it, the others still there
    assert code == 200 and 'name="redis"' not in text and 'cb_state{name="db",' in text
    promtool_ok(text)

    replace(redis, ["--name=cache", "--consecutive-failures=2"])
    doc = until(lambda: "cache" in (d := json.loads(server.get("/health")[2]))["breakers"][0]
                .get("error", "") and d)
    assert "holds breaker 'cache', not 'redis'" in doc["breakers"][0]["error"]

    os.unlink(redis)
    assert until(lambda: "No such file" in json.loads(server.get("/health")[2])["breakers"][0]
                 .get("error", ""))
    replace(redis, REDIS)
    assert until(lambda: server.health() == (200, "HEALTHY", {"redis": "HEALTHY", "db": "HEALTHY"}))
    assert server.proc.poll() is None


def test_watch_follows_a_replaced_file(files):
    redis, _ = files
    p = subprocess.Popen([CBCTL, "watch", "--interval-ms=50", str(redis)], stdout=subprocess.PIPE,
                         text=True)
    try:
        assert "state     closed" in "".join(p.stdout.readline() for _ in range(4))
        replace(redis, REDIS, "forced-open")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and "state     forced_open" not in p.stdout.readline():
            pass
        assert time.monotonic() < deadline, "watch did not follow the new file"
    finally:
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=TIMEOUT)
    assert p.returncode == 0


SLOW_CLIENTS = 1500


def open_files_at_least(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= n:
        return
    if hard != resource.RLIM_INFINITY and hard < n:
        pytest.skip(f"needs {n} open files, RLIMIT_NOFILE hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


def closed_by_server(sock):
    """Whether the server closed sock (non-blocking); nothing is read from it."""
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


def slow_client(port, request=b""):
    c = socket.create_connection(("127.0.0.1", port), timeout=2)
    c.sendall(request)
    c.setblocking(False)
    return c


def test_health_stays_answered_while_1500_clients_dribble_their_headers(files):
    # More connections than select() can watch (FD_SETSIZE 1024), each sending a header
    # line every 2 s: often enough that an inactivity timeout never fires.
    open_files_at_least(SLOW_CLIENTS + 256)
    s = Server("--header-timeout-ms=5000", *files)
    port = int(s.base.rsplit(":", 1)[1])
    slow, stop = [], threading.Event()

    def dribble():
        while not stop.wait(2):
            for c in slow:
                try:
                    c.send(b"X-Slow: 1\r\n")
                except OSError:
                    pass

    dribbler = threading.Thread(target=dribble)
    began = time.monotonic()      # no connection's deadline comes before began + 5 s
    try:
        for _ in range(SLOW_CLIENTS):
            slow.append(slow_client(port, b"GET /health HTTP/1.1\r\nHost: x\r\n"))
        dribbler.start()
        answered = []
        for _ in range(10):
            start = time.monotonic()
            try:
                with urllib.request.urlopen(s.base + "/health", timeout=2) as r:
                    ok = r.status == 200 and json.loads(r.read())["status"] == "HEALTHY"
            except (OSError, ValueError):
                ok = False
            answered.append(ok and time.monotonic() - start < 2)
            time.sleep(0.25)
        assert sum(answered) >= 9, answered
        if time.monotonic() < began + 4.8:
            assert not any(map(closed_by_server, slow)), "all of them are held meanwhile"
        # Still dribbling, yet every one is cut at its header deadline.
        sel = selectors.DefaultSelector()
        for c in slow:
            sel.register(c, selectors.EVENT_READ)
        left = len(slow)
        while left and time.monotonic() < began + 15:
            for key, _ in sel.select(timeout=0.5):
                assert time.monotonic() > began + 4.9, "cut before its header deadline"
                sel.unregister(key.fileobj)
                left -= 1
        sel.close()
        assert left == 0, f"{left} slow clients outlived the header deadline"
    finally:
        stop.set()
        if dribbler.is_alive():
            dribbler.join()
        for c in slow:
            c.close()
        assert s.stop() == 0


def test_connections_beyond_max_connections_wait_for_a_free_place(files):
    s = Server("--max-connections=4", "--header-timeout-ms=600", *files)
    port = int(s.base.rsplit(":", 1)[1])
    idle = [slow_client(port) for _ in range(4)]
    try:
        time.sleep(0.2)
        start = time.monotonic()
        assert s.health()[0] == 200
        waited = time.monotonic() - start
        assert 0.2 < waited < 3, f"answered after {waited:.2f} s"   # once the idle were cut
        assert all(map(closed_by_server, idle))
    finally:
        for c in idle:
            c.close()
        assert s.stop() == 0


def test_serve_uses_a_breakers_own_warning_unless_the_flag_overrides_it(tmp_path):
    flags = ["--name=api", "--window-calls=10", "--minimum-calls=10", "--failure-rate=0.9",
             "--warn-failure-rate=0.3", "--open-ms=60000"]
    api = create(tmp_path / "api.cb", flags)
    drive(api, flags, "s=7", "f=3")          # 30%: its own warning, below the flag's 0.5
    out = cbctl("show", api, check=0).stdout
    assert "warning   DEGRADED (warn_failure_rate 0.3)" in out
    for args, want in ([], "DEGRADED"), (["--warn-failure-rate=0.5"], "HEALTHY"):
        s = Server(*args, api)
        try:
            code, _, body = s.get("/health")
            entry = json.loads(body)["breakers"][0]
            assert (code, entry["health"], entry["degraded"]) == (200, want, True), args
        finally:
            assert s.stop() == 0
    drive(api, flags, "s=10")                # the failures left the window
    assert "warning   none" in cbctl("show", api, check=0).stdout
