"""The history of shared breakers and groups as cbctl gives it: `cbctl watch --log` (the
incidents log: every transition once, in order, across rotations and restarts; gaps;
keys; the log file's own safety; its options), `cbctl show --history=N` and the
"history" of `cbctl metrics --json`.

Run by `make test-cbctl`, which sets CBCTL and SHM_DRIVE to the built programs."""
import json
import os
import re
import signal
import stat
import subprocess
import time

import pytest

from test_shm_cbctl import CBCTL, DRIVE, TIMEOUT, cbctl, create, drive, until

DB = ["--name=db", "--consecutive-failures=3", "--open-ms=60000"]
SHARDS = ["--capacity=8", "--name=shards", "--consecutive-failures=3", "--open-ms=60000"]

# A key of bytes a terminal would act on, quotes, a backslash, a newline, '%', NUL, 0xff.
HOSTILE = b'\x1b[31mred\x1b[0m"q"\\b\n%\x00\xff'
HOSTILE_TEXT = '%1B[31mred%1B[0m\\"q\\"\\\\b%0A%25%00%FF'   # as cbctl prints it, --key's form
HOSTILE_JSON = '%1B[31mred%1B[0m"q"\\b%0A%25%00%FF'         # as a JSON string holds it
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def log_files(log, keep):
    """LOG.K ... LOG.1, LOG: those that exist, oldest first."""
    paths = [f"{log}.{k}" for k in range(keep, 0, -1)] + [str(log)]
    return [p for p in paths if os.path.exists(p)]


def log_lines(log, keep=5, strict=True):
    """Every line of the log and its rotations, oldest first, parsed. strict: each file
    ends with a whole line; otherwise a line being written is left out."""
    lines = []
    for path in log_files(log, keep):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:   # rotated away since it was listed
            if strict:
                raise
            continue
        if strict:
            assert not data or data.endswith(b"\n"), f"{path} ends in a cut line"
        lines += [json.loads(raw) for raw in data.split(b"\n")[:-1]]
    return lines


def transitions(lines, path=None):
    return [ln for ln in lines if "generation" in ln and (path is None or ln["file"] == str(path))]


class Watch:
    """cbctl watch --log=LOG running in the background until stop()."""

    def __init__(self, log, *args, interval=10):
        self.p = subprocess.Popen([CBCTL, "watch", f"--log={log}", f"--interval-ms={interval}",
                                   *map(str, args)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        assert until(lambda: os.path.exists(log) or self.p.poll() is not None), "no log made"
        assert self.p.poll() is None, self.p.communicate()

    def stop(self, sig=signal.SIGTERM):
        self.p.send_signal(sig)
        out, err = self.p.communicate(timeout=TIMEOUT)
        assert self.p.returncode == 0, err
        return out, err

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.communicate(timeout=TIMEOUT)


@pytest.fixture
def watches():
    started = []

    def start(*args, **kw):
        started.append(Watch(*args, **kw))
        return started[-1]
    yield start
    for w in started:
        w.kill()


def wait_lines(log, n, keep=5, path=None, seconds=5.0):
    got = until(lambda: len(transitions(log_lines(log, keep, strict=False), path)) >= n, seconds)
    assert got, f"fewer than {n} transitions logged: {transitions(log_lines(log, keep, False), path)}"


def set_by_turns(path, n, key=None):
    """n manual transitions with cbctl set, open and closed by turns."""
    for i in range(n):
        cbctl("set", path, "open" if i % 2 == 0 else "closed",
              *([f"--key={key}"] if key else []), check=0)


# ---- the log ------------------------------------------------------------------------

def test_every_transition_is_logged_once_in_order_across_rotations(tmp_path, watches):
    db, log = create(tmp_path / "db.cb", DB), tmp_path / "incidents.jsonl"
    w = watches(log, "--log-max-bytes=4096", "--log-keep=10", db)
    set_by_turns(db, 60)
    wait_lines(log, 60, keep=10)
    w.stop()
    lines = log_lines(log, keep=10)
    assert [ln["generation"] for ln in lines] == list(range(1, 61))
    for i, ln in enumerate(lines):
        opened = i % 2 == 0
        assert (ln["name"], ln["file"], ln["reason"]) == ("db", str(db), "manual")
        assert (ln["from"], ln["to"]) == (("closed", "open") if opened else ("open", "closed"))
        assert (ln["open_ms"] == 60000) if opened else ln["open_ms"] == 0
        assert TIME.fullmatch(ln["time"]) and "key" not in ln
    assert [ln["at_ns"] for ln in lines] == sorted(ln["at_ns"] for ln in lines)
    files = log_files(log, 10)
    assert len(files) > 3 and not os.path.exists(f"{log}.11")
    assert all(os.path.getsize(f) <= 4096 for f in files)
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600


def test_rotation_keeps_k_files_each_within_the_size(tmp_path, watches):
    db, log = create(tmp_path / "db.cb", DB), tmp_path / "incidents.jsonl"
    w = watches(log, "--log-max-bytes=4096", "--log-keep=2", db)
    for burst in range(1, 7):   # 20 at a time: fewer than the 32 a breaker's history holds
        drive(db, DB, "t=20")
        assert until(lambda: (t := transitions(log_lines(log, strict=False))) and
                     t[-1]["generation"] == 20 * burst)
    w.stop()
    files = log_files(log, 1000)
    assert files == [f"{log}.2", f"{log}.1", str(log)]
    sizes = [os.path.getsize(f) for f in files]
    assert all(s <= 4096 for s in sizes) and sizes[0] > 4096 - 300, sizes   # cut where it filled
    gens = [ln["generation"] for ln in log_lines(log, keep=2)]
    assert gens == list(range(gens[0], 121)) and gens[0] > 1   # the newest kept, whole lines


def test_a_restarted_watch_writes_no_line_twice_and_goes_on(tmp_path, watches):
    db, log = create(tmp_path / "db.cb", DB), tmp_path / "incidents.jsonl"
    group = create(tmp_path / "shards.cb", SHARDS)
    w = watches(log, db, group)
    set_by_turns(db, 5)
    set_by_turns(group, 4, key="shard-1")
    wait_lines(log, 9)
    w.stop(signal.SIGINT)
    set_by_turns(db, 3)                  # while no watch runs
    set_by_turns(group, 2, key="shard-2")
    w = watches(log, db, group)
    wait_lines(log, 14)
    set_by_turns(group, 1, key="shard-1")
    wait_lines(log, 15)
    w.stop()

    def per_history(lines):
        seen = {}
        for ln in transitions(lines):
            seen.setdefault((ln["file"], ln.get("key")), []).append(ln["generation"])
        return seen
    seen = per_history(log_lines(log))
    assert seen[(str(db), None)] == list(range(1, 9))
    assert len(seen[(str(group), "shard-1")]) == 5 and len(seen[(str(group), "shard-2")]) == 2
    for gens in seen.values():
        assert gens == sorted(set(gens))

    # nothing new: a start writes nothing; and one just after a rotation reads LOG.1
    before = open(log, "rb").read()
    w = watches(log, db, group)
    time.sleep(0.2)
    w.stop()
    assert open(log, "rb").read() == before
    os.rename(log, f"{log}.1")
    open(log, "w").close()
    w = watches(log, db, group)
    time.sleep(0.2)
    cbctl("set", db, "forced-open", check=0)
    wait_lines(log, 1)
    w.stop()
    assert [(ln["generation"], ln["to"]) for ln in log_lines(log, keep=0)] == [(9, "forced_open")]


def test_a_group_transition_carries_its_key_printed_escaped(tmp_path, watches):
    group, log = create(tmp_path / "shards.cb", SHARDS), tmp_path / "incidents.jsonl"
    w = watches(log, group)
    drive(group, SHARDS, "k=shard-0", "f=3")
    wait_lines(log, 1)
    cbctl("set", group, "forced-open", f"--key={HOSTILE_TEXT}", check=0)
    wait_lines(log, 2)
    w.stop()
    raw = open(log, "rb").read()
    assert not any(b in raw for b in (b"\x1b", b"\x00", b"\xff"))
    shard, hostile = log_lines(log)
    assert (shard["key"], shard["to"], shard["reason"]) == ("shard-0", "open", "consecutive_failures")
    assert shard["name"] == "shards" and shard["open_ms"] == 60000
    assert hostile["key"] == HOSTILE_JSON and hostile["to"] == "forced_open"
    # the key as logged is the key cbctl and the exports use
    keys = {k["key"] for k in json.loads(cbctl("metrics", "--json", group, check=0).stdout)[0]["keys_held"]}
    assert {hostile["key"], shard["key"]} <= keys
    # and a restart finds where it left off by it
    cbctl("set", group, "closed", f"--key={HOSTILE_TEXT}", check=0)
    w = watches(log, group)
    wait_lines(log, 3)
    w.stop()
    assert [(ln["key"], ln["to"]) for ln in log_lines(log)] == [
        ("shard-0", "open"), (HOSTILE_JSON, "forced_open"), (HOSTILE_JSON, "closed")]


def test_transitions_lost_between_two_reads_are_a_gap_line(tmp_path, watches):
    db, log = create(tmp_path / "db.cb", DB), tmp_path / "incidents.jsonl"
    group = create(tmp_path / "shards.cb", SHARDS)
    cbctl("set", db, "open", check=0)
    cbctl("set", group, "open", "--key=a", check=0)
    w = watches(log, db, group, interval=1500)
    wait_lines(log, 2)                 # the first read is done; the next is 1.5 s away
    drive(db, DB, "t=40")              # generations 2..41: the history keeps the last 32
    drive(group, SHARDS, "k=a", "t=300")   # more than the group's 256
    assert until(lambda: sum("gap" in ln for ln in log_lines(log, strict=False)) == 2, 4)
    wait_lines(log, 2 + 32 + 256)
    w.stop()
    lines = log_lines(log)
    by_file = {p: [ln for ln in lines if ln["file"] == str(p)] for p in (db, group)}
    first, gap, *rest = by_file[db]
    assert first["generation"] == 1
    assert gap == {**gap, "gap": True, "after_generation": 1, "name": "db",
                   "missed": "8 transitions (generations 2 to 9)"}
    assert [ln["generation"] for ln in rest] == list(range(10, 42))
    first, gap, *rest = by_file[group]
    assert gap["gap"] and gap["after_key"] == "a" and gap["after_generation"] == first["generation"]
    assert "unknown number" in gap["missed"] and len(rest) == 256
    assert [ln["generation"] for ln in rest] == list(range(first["generation"] + 45,
                                                           first["generation"] + 301))


WARNED = ["--name=api", "--window-calls=10", "--minimum-calls=10", "--failure-rate=0.9",
          "--warn-failure-rate=0.3", "--open-ms=60000"]


def warnings(log):
    return [(ln.get("key"), ln["degraded"]) for ln in log_lines(log) if ln.get("warning")]


def test_a_warning_change_is_logged_once_each_way_and_not_again_after_a_restart(tmp_path,
                                                                               watches):
    api = create(tmp_path / "api.cb", WARNED)
    group = create(tmp_path / "g.cb", ["--capacity=4", *WARNED[:1], "--name=keys", *WARNED[1:]])
    log = tmp_path / "incidents.log"
    w = watches(log, api, group)
    drive(api, WARNED, "s=7", "f=3")                   # 30% of 10: degraded
    drive(group, ["--capacity=4", "--name=keys", *WARNED[1:]], "k=k1", "s=6", "f=4")
    assert until(lambda: len(warnings(log)) == 2)
    assert sorted(warnings(log), key=str) == sorted([(None, True), ("k1", True)], key=str)
    line = [ln for ln in log_lines(log) if ln.get("warning") and "key" not in ln][0]
    assert (line["state"], line["window_calls"], line["window_failures"]) == ("closed", 10, 3)
    assert "generation" not in line and TIME.fullmatch(line["time"])
    assert cbctl("metrics", "--json", api, check=0).stdout.count('"degraded":1') == 1
    w.stop()
    w = watches(log, api, group)                       # restarted: nothing new to say
    time.sleep(0.3)
    assert len(warnings(log)) == 2
    drive(api, WARNED, "s=10")                         # 0 of the last 10 failed: recovered
    assert until(lambda: len(warnings(log)) == 3)
    assert warnings(log)[-1] == (None, False)
    assert transitions(log_lines(log)) == []           # a warning is no transition
    w.stop()


def test_a_warning_logged_before_a_rotation_is_not_repeated(tmp_path):
    api = create(tmp_path / "api.cb", WARNED)
    log = tmp_path / "incidents.log"
    cbctl("set", api, "open", check=0)
    cbctl("set", api, "closed", check=0)
    drive(api, WARNED, "s=7", "f=3")                   # degraded, after two transitions
    cbctl("watch", f"--log={log}", "--count=1", api, check=0)
    lines = log.read_text().splitlines()
    assert len(lines) == 3 and '"warning":true' in lines[2]
    # as if the warning line had gone to LOG.1 and the transitions stayed in LOG
    (tmp_path / "incidents.log.1").write_text(lines[2] + "\n")
    log.write_text(lines[0] + "\n" + lines[1] + "\n")
    cbctl("watch", f"--log={log}", "--count=1", api, check=0)
    assert log.read_text().splitlines() == lines[:2]   # nothing repeated


def test_a_file_that_becomes_unusable_and_then_usable_is_logged(tmp_path, watches):
    db, log = create(tmp_path / "db.cb", DB), tmp_path / "incidents.jsonl"
    w = watches(log, db)
    cbctl("set", db, "open", check=0)
    wait_lines(log, 1)
    new = create(tmp_path / "new.cb", DB)   # made first, so that it cannot reuse db's inode
    cbctl("set", new, "forced-open", check=0)
    (tmp_path / "junk").write_text("not a breaker\n")
    os.rename(tmp_path / "junk", db)
    assert until(lambda: any(ln.get("usable") is False for ln in log_lines(log, strict=False)))
    os.rename(new, db)                 # a new file of the same breaker: its history is new
    wait_lines(log, 2)
    w.stop()
    opened, gone, back, forced = log_lines(log)
    assert opened["to"] == "open"
    assert gone["usable"] is False and "not a breaker file" in gone["error"]
    assert back["usable"] is True and back["replaced"] is True
    assert (forced["generation"], forced["to"]) == (1, "forced_open")


def test_a_log_that_is_a_link_or_not_a_regular_file_is_refused(tmp_path):
    db = create(tmp_path / "db.cb", DB)
    target = tmp_path / "target"
    target.write_text("keep\n")
    os.symlink(target, tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    for name, message in [("link", "a symbolic link: refused"), ("fifo", "not a regular file"),
                          (".", "not a regular file")]:
        p = cbctl("watch", f"--log={tmp_path / name}", "--count=1", db, check=1)
        assert message in p.stderr and p.stdout == ""
    assert target.read_text() == "keep\n"
    p = cbctl("watch", f"--log={tmp_path / 'no' / 'log'}", "--count=1", db, check=1)
    assert "No such file or directory" in p.stderr


def test_two_watches_do_not_write_one_log(tmp_path, watches):
    db, log = create(tmp_path / "db.cb", DB), tmp_path / "incidents.jsonl"
    watches(log, db)
    p = cbctl("watch", f"--log={log}", "--count=1", db, check=1)
    assert "another cbctl watch --log is writing it" in p.stderr


def test_group_shared_makes_the_log_0640(tmp_path):
    db, log = create(tmp_path / "db.cb", DB), tmp_path / "incidents.jsonl"
    subprocess.run([CBCTL, "--group-shared", "watch", f"--log={log}", "--count=1", str(db)],
                   check=True, capture_output=True, timeout=TIMEOUT)
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o640


@pytest.mark.parametrize("args, message", [
    (["--count=1", "--log"], "--log needs a value"),
    (["--log=L", "--log-max-bytes=4095"], "--log-max-bytes: bad value '4095' (want an integer 4096..1099511627776)"),
    (["--log=L", "--log-max-bytes=1099511627777"], "--log-max-bytes: bad value"),
    (["--log=L", "--log-max-bytes=10M"], "--log-max-bytes: bad value '10M'"),
    (["--log=L", "--log-keep=0"], "--log-keep: bad value '0' (want an integer 1..1000)"),
    (["--log=L", "--log-keep=1001"], "--log-keep: bad value '1001'"),
    (["--log="], "--log: empty"),
    (["--log-max-bytes=8192"], "--log-max-bytes and --log-keep need --log=FILE"),
    (["--log-keep=3"], "--log-max-bytes and --log-keep need --log=FILE"),
    (["--log=L", "--keys=3"], "--keys and --history shape the frames"),
    (["--log=L", "--history=3"], "--keys and --history shape the frames"),
    (["--log=L"], "name at least one FILE"),
])
def test_bad_log_options_are_exit_2_and_make_nothing(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    operands = [create(tmp_path / "db.cb", DB)] if args[-1] not in ("--log=L", "--log") else []
    p = cbctl("watch", *args, *operands, check=2)
    assert message in p.stderr and "--help" in p.stderr
    assert sorted(os.listdir(tmp_path)) == (["db.cb"] if operands else [])


# ---- show --history and the history in metrics --json -------------------------------

def history_rows(out):
    return re.findall(r"^    gen (\d+) ", out, re.M)


def test_show_history_shows_the_last_n_transitions(tmp_path):
    db = create(tmp_path / "db.cb", DB)
    drive(db, DB, "t=40")
    assert history_rows(cbctl("show", db, check=0).stdout) == [str(g) for g in range(31, 41)]
    assert history_rows(cbctl("show", "--history=3", db, check=0).stdout) == ["38", "39", "40"]
    assert len(history_rows(cbctl("show", "--history=256", db, check=0).stdout)) == 32   # all kept
    out = cbctl("show", "--history=0", db, check=0).stdout
    assert history_rows(out) == [] and "history   not shown (--history=0)" in out
    assert "--history: bad value '257' (want an integer 0..256)" in \
        cbctl("show", "--history=257", db, check=2).stderr
    group = create(tmp_path / "shards.cb", SHARDS)
    drive(group, SHARDS, "k=a", "t=300")
    assert len(history_rows(cbctl("show", "--history=256", group, check=0).stdout)) == 256
    assert len(history_rows(cbctl("watch", "--count=1", "--history=20", group, check=0).stdout)) == 20


def test_metrics_json_holds_the_history_oldest_first(tmp_path):
    db = create(tmp_path / "db.cb", DB)
    drive(db, DB, "f=3")
    cbctl("set", db, "closed", check=0)
    doc = json.loads(cbctl("metrics", "--json", db, check=0).stdout)[0]
    opened, closed = doc["history"]
    assert opened == {**opened, "from": "closed", "to": "open", "reason": "consecutive_failures",
                      "generation": 1, "open_ms": 60000}
    assert closed == {"from": "open", "to": "closed", "reason": "manual", "generation": 2,
                      "at_ns": doc["state_since_ns"], "open_ms": 0}
    assert opened["at_ns"] < closed["at_ns"] and doc["file"] == str(db)
    drive(db, DB, "t=50")
    assert [e["generation"] for e in json.loads(cbctl("metrics", "--json", db, check=0).stdout)[0]
            ["history"]] == list(range(21, 53))

    group = create(tmp_path / "shards.cb", SHARDS)
    cbctl("set", group, "forced-open", f"--key={HOSTILE_TEXT}", check=0)
    drive(group, SHARDS, "k=shard-0", "f=3")
    doc = json.loads(cbctl("metrics", "--json", group, check=0).stdout)[0]
    assert [(e["key"], e["to"]) for e in doc["history"]] == [(HOSTILE_JSON, "forced_open"),
                                                             ("shard-0", "open")]
    assert "history" not in doc["overflow_breaker"] and doc["keys_held"]
