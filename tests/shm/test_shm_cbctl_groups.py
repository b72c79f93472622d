"""cbctl against real shared group files: every command on a group, keys with bytes a
terminal would interpret (printed escaped, and given back to --key in that form), the
exposition with hostile keys through promtool, the bounds on key labels, group health in
`cbctl serve`, and group files that cannot be used.

Run by `make test-cbctl`, which sets CBCTL and SHM_DRIVE to the built programs."""
import json
import os
import re
import subprocess
import time

import pytest

from test_shm_cbctl import (CBCTL, DRIVE, TIMEOUT, Server, cbctl, create, drive, promtool_ok,
                            public_dir, until)

assert public_dir   # a fixture, used by name below

# Four shards: a window so keys have a failure rate (opens at 50% of >= 4 calls), and a
# long period so an open key stays refusing for the whole test.
SHARDS = ["--capacity=8", "--name=shards", "--window-calls=10", "--failure-rate=0.5",
          "--minimum-calls=4", "--open-ms=60000"]
DB = ["--name=db", "--consecutive-failures=3", "--open-ms=60000"]

# Bytes a terminal would act on, quotes and escapes the formats use, a NUL byte and '%'.
HOSTILE = b'\x1b[31mred\x1b[0m"q"\\b\n%\x00\xff'
HOSTILE_TEXT = '%1B[31mred%1B[0m\\"q\\"\\\\b%0A%25%00%FF'   # as cbctl and the exports print it
HOSTILE_ARG = "".join(f"%{c:02X}" for c in HOSTILE)        # a drive step's spelling of it


def key_arg(raw):
    return "".join(f"%{c:02X}" for c in raw)


@pytest.fixture
def group(tmp_path):
    """A group file with shard-0 healthy, shard-1 flaky (closed), shard-2 open, and the
    hostile key closed."""
    path = create(tmp_path / "shards.cb", SHARDS)
    drive(path, SHARDS, "k=shard-0", "s=8", "k=shard-1", "s=3", "f=2",
          "k=shard-2", "f=4", "s=2", f"k={HOSTILE_ARG}", "s=1")
    return path


def keys_json(path):
    doc = json.loads(cbctl("metrics", "--json", path, check=0).stdout)[0]
    return {k["key"]: k for k in doc["keys_held"]}


def test_create_makes_a_group_file_and_checks_an_existing_one(tmp_path):
    path = tmp_path / "g.cb"
    out = cbctl("create", path, *SHARDS, check=0).stdout
    assert out.startswith(f"{path}: group --capacity=8 ")
    assert "--name=shards" in out and "--idle-ms=600000" in out   # defaults filled in
    assert path.stat().st_mode & 0o7777 == 0o600
    cbctl("create", path, *SHARDS, check=0)                        # the same config: fine
    p = cbctl("create", path, *SHARDS[1:], "--capacity=16", check=1)
    assert "the file holds: --capacity=8 " in p.stderr
    assert "asked for:      --capacity=16 " in p.stderr
    p = cbctl("create", tmp_path / "x.cb", "--capacity=0", "--max-open-share=2", check=2)
    assert "max_open_share" in p.stderr and not (tmp_path / "x.cb").exists()


def test_a_breaker_file_is_not_a_group_file_nor_the_other_way(tmp_path, group):
    db = create(tmp_path / "db.cb", DB)
    p = cbctl("create", db, "--group", *DB, check=1)
    assert "a breaker file, not a group file" in p.stderr
    p = cbctl("create", group, *DB, check=1)
    assert "a group file, not a breaker file" in p.stderr
    p = cbctl("set", db, "open", "--key=a", check=2)
    assert "holds a breaker, not a group: --key is for group files" in p.stderr
    p = cbctl("set", group, "open", check=2)
    assert "holds a group: name the key with --key=KEY" in p.stderr
    p = cbctl("reset", group, check=2)
    assert "--key=KEY" in p.stderr


def test_show_lists_the_keys_worst_first_with_state_rate_and_last_use(group):
    out = cbctl("show", group, check=0).stdout
    assert out.startswith(f"shards  {group}  (group)\n")
    assert "  group     4 keys held of 8, 1 open; 4 created, 0 evicted" in out
    assert "--capacity=8 " in out and "--name=shards" in out
    rows = re.findall(r"^    (\S+) +(\S+) +(\S+(?: \(\d+/\d+\))?) +(\d+) +(.*)$", out, re.M)
    keys = [r[0] for r in rows if r[0] != "KEY"]
    assert keys == ["shard-2", "shard-1", HOSTILE_TEXT, "shard-0"], out
    by_key = {r[0]: r for r in rows}
    assert by_key["shard-2"][1] == "open" and "retry after" in by_key["shard-2"][4]
    assert by_key["shard-1"][2] == "40.0% (2/5)"
    assert by_key["shard-0"][2] == "0.0% (0/8)"
    assert re.match(r"\d+ ms ago", by_key["shard-0"][4])
    assert "shard-2  closed -> open (failure_rate), open 60000 ms" in out


def test_show_keys_bounds_the_list_and_zero_shows_every_key(group):
    out = cbctl("show", "--keys=1", group, check=0).stdout
    assert "    shard-2 " in out and "shard-0" not in out.split("history")[0]
    assert "... and 3 more (--keys=0 shows every key)" in out
    out = cbctl("show", "--keys=0", group, check=0).stdout
    assert "more (--keys=0" not in out and "    shard-0 " in out
    assert "--keys: bad value 'x'" in cbctl("show", "--keys=x", group, check=2).stderr


def test_hostile_keys_are_printed_escaped_everywhere(group, tmp_path):
    cbctl("set", group, "forced-open", f"--key={HOSTILE_TEXT}", check=0)
    outputs = [cbctl("show", "--keys=0", group, check=0).stdout,
               cbctl("watch", "--count=1", group, check=0).stdout,
               cbctl("ls", tmp_path, check=0).stdout,
               cbctl("metrics", "--prometheus", group, check=0).stdout,
               cbctl("metrics", "--json", group, check=0).stdout]
    for out in outputs:
        assert "\x1b" not in out and "\x00" not in out and "\xff" not in out
    assert HOSTILE_TEXT in outputs[0]
    assert f"{HOSTILE_TEXT}  closed -> forced_open (manual)" in outputs[0]   # history too
    # the JSON export decodes to the %HH form, quotes and backslashes as they are
    assert keys_json(group)['%1B[31mred%1B[0m"q"\\b%0A%25%00%FF']["state"] == "forced_open"


def test_set_and_reset_take_the_key_as_it_is_printed(group):
    out = cbctl("set", group, "forced-open", f"--key={HOSTILE_TEXT}", check=0).stdout
    assert re.fullmatch(rf"shards\[{re.escape(HOSTILE_TEXT)}\]: closed -> forced_open \(generation \d+\)\n", out)
    assert cbctl("show", group, check=0).stdout.count("forced_open") >= 2
    # the processes using the group see it: the key refuses
    assert drive(group, SHARDS, f"k={HOSTILE_ARG}", "s=3") == "admitted 0 rejected 3\n"
    out = cbctl("reset", group, f"--key={HOSTILE_TEXT}", check=0).stdout
    assert out.startswith(f"shards[{HOSTILE_TEXT}]: forced_open -> closed (generation ")
    assert drive(group, SHARDS, f"k={HOSTILE_ARG}", "s=3") == "admitted 3 rejected 0\n"
    cbctl("reset", group, "--key=shard-2", check=0)
    assert keys_json(group)["shard-2"]["state"] == "closed"
    # a key not held is made by set (a key to hold open before any call uses it)
    out = cbctl("set", group, "open", "--key=shard-9", check=0).stdout
    assert out.startswith("shards[shard-9]: closed -> open")
    assert keys_json(group)["shard-9"]["state"] == "open"


@pytest.mark.parametrize("key, message", [
    ("50%", "'%' must start %HH"),
    ("%zz", "'%' must start %HH"),
    ("a\\b", "'\\' must start \\\" or \\\\"),
    ("", "--key: empty"),
    ("x" * 65, "longer than the group's key_max (64)"),
])
def test_a_bad_key_is_exit_2_and_changes_nothing(group, key, message):
    before = keys_json(group)
    p = cbctl("set", group, "open", f"--key={key}", check=2)
    assert message in p.stderr, p.stderr
    assert keys_json(group).keys() == before.keys()


def test_set_without_a_place_for_the_key_says_so(tmp_path):
    flags = ["--capacity=2", "--name=tiny", "--consecutive-failures=1"]
    path = create(tmp_path / "tiny.cb", flags)
    cbctl("set", path, "forced-open", "--key=a", check=0)
    cbctl("set", path, "disabled", "--key=b", check=0)   # manual states are never evicted
    p = cbctl("set", path, "open", "--key=c", check=1)
    assert "no place for key 'c'" in p.stderr and "2 places" in p.stderr


def test_the_exposition_with_hostile_keys_passes_promtool(group, tmp_path):
    text = cbctl("metrics", "--prometheus", group, check=0).stdout
    promtool_ok(text)
    assert f'cb_successes_total{{name="shards",key="{HOSTILE_TEXT}"}} 1\n' in text
    assert 'cb_state{name="shards",key="shard-2",state="open"} 1\n' in text
    assert 'cb_state{name="shards",overflow="true",state="closed"} 1\n' in text
    for family, value in [("keys", 4), ("open_keys", 1), ("created_total", 4),
                          ("evicted_total", 0), ("overflow_total", 0), ("trips_held_total", 0)]:
        assert f'cb_group_{family}{{name="shards"}} {value}\n' in text
    # breakers and groups in one exposition: every family once
    db = create(tmp_path / "db.cb", DB)
    text = cbctl("metrics", "--prometheus", db, group, check=0).stdout
    promtool_ok(text)
    assert text.count("# HELP cb_state ") == 1 and 'cb_state{name="db",state="closed"} 1' in text


def test_max_keys_and_not_closed_bound_the_key_labels(group):
    text = cbctl("metrics", "--prometheus", "--max-keys=1", group, check=0).stdout
    promtool_ok(text)
    assert set(re.findall(r'key="([^"]*)"', text)) == {"shard-2"}
    assert 'cb_group_keys{name="shards"} 4' in text          # the group still tells all
    text = cbctl("metrics", "--prometheus", "--max-keys=2", group, check=0).stdout
    assert set(re.findall(r'key="([^"]*)"', text)) == {"shard-2", "shard-1"}
    text = cbctl("metrics", "--prometheus", "--not-closed", group, check=0).stdout
    promtool_ok(text)
    assert set(re.findall(r'key="([^"]*)"', text)) == {"shard-2"}
    assert 'overflow="true"' in text
    p = cbctl("metrics", "--prometheus", "--max-keys=-1", group, check=2)
    assert "--max-keys: bad value '-1'" in p.stderr


def test_metrics_json_has_the_group_every_key_and_the_file(group):
    doc = json.loads(cbctl("metrics", "--json", group, check=0).stdout)
    assert len(doc) == 1 and doc[0]["file"] == str(group) and doc[0]["group"] is True
    g = doc[0]
    assert (g["name"], g["capacity"], g["keys"], g["open_keys"]) == ("shards", 8, 4, 1)
    assert g["overflow_breaker"]["state"] == "closed"
    keys = {k["key"]: k for k in g["keys_held"]}
    assert keys["shard-0"]["successes"] == 8 and keys["shard-2"]["failures"] == 4


def test_ls_lists_group_files_with_keys_held_and_open(tmp_path, group):
    create(tmp_path / "db.cb", DB)
    out = cbctl("ls", tmp_path, check=0).stdout.splitlines()
    row = [line for line in out if line.startswith("shards.cb ")]
    assert row and re.search(r"shards +GROUP +- +4 keys, 1 open$", row[0]), out
    assert any(line.startswith("db.cb ") and " closed " in line for line in out)


def damaged_group(tmp_path, name, edit):
    good = create(tmp_path / f"good-{name}", SHARDS)
    data = bytearray(good.read_bytes())
    edit(data)
    bad = tmp_path / name
    bad.write_bytes(bytes(data))
    old = time.time() - 60     # not a file being created right now
    os.utime(bad, (old, old))
    return bad


def flip(at):
    def edit(data):
        data[at] ^= 0x5a
    return edit


@pytest.mark.parametrize("make, message", [
    (lambda t: damaged_group(t, "short.cb", lambda d: d.__delitem__(slice(200, None))), "truncated"),
    (lambda t: damaged_group(t, "cut.cb", lambda d: d.__delitem__(slice(len(d) // 2, None))),
     "truncated"),
    (lambda t: damaged_group(t, "flipped.cb", flip(40)), "damaged"),
])
@pytest.mark.parametrize("command", [["show", "{f}"], ["metrics", "--prometheus", "{f}"],
                                     ["set", "{f}", "open", "--key=a"], ["reset", "{f}", "--key=a"],
                                     ["watch", "--count=1", "{f}"]])
def test_a_damaged_group_file_is_exit_1_naming_file_and_reason(tmp_path, make, message, command):
    path = str(make(tmp_path))
    before = open(path, "rb").read()
    p = cbctl(*[a.format(f=path) for a in command], check=1)
    assert f"{path}: " in p.stderr and message in p.stderr, p.stderr
    assert open(path, "rb").read() == before, "a damaged file is left as it is"


def test_ls_reports_a_damaged_group_file(tmp_path):
    damaged_group(tmp_path, "flipped.cb", flip(40))
    p = cbctl("ls", tmp_path, check=1)
    assert re.search(r"^flipped\.cb +\? +error: .*damaged", p.stdout, re.M), p.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to play a second user (uid 65534)")
def test_a_group_file_of_another_user_is_refused_naming_its_owner(public_dir):
    path = public_dir / "planted.cb"

    def as_nobody():
        os.setgroups([])
        os.setgid(0)
        os.setuid(65534)
    subprocess.run([CBCTL, "--group-shared", "create", str(path), *SHARDS], check=True,
                   capture_output=True, timeout=TIMEOUT, preexec_fn=as_nobody)
    assert path.stat().st_uid == 65534
    for command in (["show", path], ["reset", path, "--key=a"], ["metrics", "--json", path],
                    ["set", path, "open", "--key=a"]):
        p = cbctl(*command, check=1)
        assert "owned by uid 65534" in p.stderr and "sudo -u" in p.stderr, p.stderr
    assert "keys held of 8" in cbctl("--group-shared", "show", path, check=0).stdout


# ---- serve ----------------------------------------------------------------------------

def test_serve_exports_every_key_and_the_bounds_apply(group, tmp_path):
    db = create(tmp_path / "db.cb", DB)
    s = Server(group, db)
    try:
        code, _, text = s.get("/metrics")
        assert code == 200
        promtool_ok(text)
        assert f'key="{HOSTILE_TEXT}"' in text and 'cb_group_keys{name="shards"} 4' in text
    finally:
        assert s.stop() == 0
    s = Server("--max-keys=1", group, db)
    try:
        text = s.get("/metrics")[2]
        promtool_ok(text)
        assert set(re.findall(r'key="([^"]*)"', text)) == {"shard-2"}
    finally:
        assert s.stop() == 0


def group_doc(s):
    code, _, body = s.get("/health")
    doc = json.loads(body)
    return code, doc["status"], next(b for b in doc["breakers"] if b["name"] == "shards")


def test_group_health_one_bad_key_degrades_every_key_refusing_is_unhealthy(group, tmp_path):
    s = Server("--critical=shards", group)
    try:
        code, status, g = group_doc(s)
        assert (code, status, g["health"]) == (200, "DEGRADED", "DEGRADED")   # shard-2 open
        assert (g["keys"], g["open_keys"], g["refusing_keys"]) == (4, 1, 1)
        assert g["worst_keys"][0]["key"] == "shard-2" and g["worst_keys"][0]["state"] == "open"
        assert g["worst_keys"][0]["retry_after_ms"] > 0
        assert any(k["key"] == '%1B[31mred%1B[0m"q"\\b%0A%25%00%FF' for k in g["worst_keys"])
        for key in ("shard-0", "shard-1", HOSTILE_TEXT):
            cbctl("set", group, "forced-open", f"--key={key}", check=0)
        code, status, g = group_doc(s)   # nothing gets through: critical, 503
        assert (code, status, g["health"], g["refusing_keys"]) == (503, "CRITICAL", "CRITICAL", 4)
        for key in ("shard-0", "shard-1", "shard-2", HOSTILE_TEXT):
            cbctl("reset", group, f"--key={key}", check=0)
        code, status, g = group_doc(s)
        assert (code, status, g["health"]) == (200, "HEALTHY", "HEALTHY")
    finally:
        assert s.stop() == 0


def test_a_full_group_whose_overflow_refuses_is_unhealthy(tmp_path):
    flags = ["--capacity=1", "--name=tiny", "--consecutive-failures=1", "--open-ms=60000"]
    path = create(tmp_path / "tiny.cb", flags)
    cbctl("set", path, "disabled", "--key=pinned", check=0)   # the one place, never evicted
    drive(path, flags, "k=other", "f=1")                      # through the overflow breaker
    s = Server(path)
    try:
        code, status, g = group_doc_named(s, "tiny")
        assert (code, status, g["health"]) == (200, "UNHEALTHY", "UNHEALTHY")
        assert g["overflow"]["state"] == "open" and g["overflow"]["health"] == "UNHEALTHY"
    finally:
        assert s.stop() == 0


def group_doc_named(s, name):
    code, _, body = s.get("/health")
    doc = json.loads(body)
    return code, doc["status"], next(b for b in doc["breakers"] if b["name"] == name)


def test_serve_follows_a_group_file_replaced_at_its_path(group, tmp_path):
    s = Server(group)
    try:
        assert group_doc(s)[2]["keys"] == 4
        new = create(tmp_path / "new.cb", SHARDS)
        drive(new, SHARDS, "k=fresh", "s=1")
        os.rename(new, group)
        assert until(lambda: group_doc(s)[2]["keys"] == 1)
        assert 'key="fresh"' in s.get("/metrics")[2]
        # a breaker renamed over it is not the group: no series, and the reason
        db = create(tmp_path / "db.cb", ["--name=shards", "--consecutive-failures=3"])
        os.rename(db, group)
        doc = until(lambda: (d := json.loads(s.get("/health")[2]))["breakers"][0].get("error") and d)
        assert "holds breaker 'shards'" in doc["breakers"][0]["error"]
        assert doc["status"] == "UNHEALTHY"
    finally:
        assert s.stop() == 0


def test_the_drive_helper_reaches_the_same_keys_cbctl_shows(group):
    # the k= spelling of the tests (bytes as %HH) and cbctl's printed form name one key
    assert drive(group, SHARDS, f"k={key_arg(b'shard-0')}", "s=2") == "admitted 2 rejected 0\n"
    assert keys_json(group)["shard-0"]["successes"] == 10
    assert DRIVE
