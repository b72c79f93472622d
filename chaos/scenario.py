"""Scenario files: TOML, checked key by key; every error names the file and the key.

    description = "..."
    program = "redis_client"            # or "model_loader", "log_shipper"
    [breaker]                           # cb_config fields, as the programs' flags (cbflags.h)
    consecutive-failures = 5
    [group]                             # keyed-group fields (capacity, dominant-share, ...)
    dominant-share = 0.5
    [workload]                          # the program's own flags (see PROGRAM --help)
    threads = 2
    [redis]                             # redis_client only
    appendonly = false                  # true: acknowledged writes survive kill -9
    shards = 4                          # N servers, each behind its own proxy; a group key
                                        # per shard ("shard-0" ...); default 0: one server
    [model]                             # model_loader only
    size-mib = 32
    budget-mib = 256                    # the budget outside faults
    [faults.NAME]                       # one table per fault, run in at-ms order
    action = "proxy"                    # see ACTIONS
    at-ms = 2000                        # from the start of the workload
    duration-ms = 5000
    mode = { mode = "hang" }            # proxy only: a faultproxy mode
    budget-mib = 8                      # budget only
    level = "debug"                     # log-level only: the log_shipper's level
    shard = 2                           # with [redis] shards: the shard it hits (default 0)
    key = "shard-2"                     # group scenarios: the key that must open, alone
                                        # (default "shard-SHARD", or "self" for log_shipper)
    backoff = true                      # each open of that key lasts longer than the last
    trip = true                         # must the breaker open? (default true)
    max-calls-to-trip = 6               # admitted calls from fault start to the open
    reason = "consecutive_failures"     # the reason the breaker must give
    [expect]
    max-rejected-p99-us = 1000          # rejected calls' p99 latency
    min-opens = 1                       # default: the number of faults that trip
    recover-slack-ms = 150              # scheduling slack on top of the recovery bound
    min-rate-ratio = 0.8                # group scenarios: the other keys' ok rate during a
                                        # fault over their rate before it
    [fast.workload]                     # [fast.*]: overrides used by make test (deep merged)
    duration-ms = 8000

The programs check their own flags: the loader runs `PROGRAM --dry-run FLAGS` and reports
the program's message against the key it came from, and takes the resolved values
(defaults filled in) from its answer.
"""

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path

from components import faultproxy

PROGRAMS = ("redis_client", "model_loader", "log_shipper")
ACTIONS = {  # action: programs it applies to
    "proxy": ("redis_client",),         # the fault proxy's mode (hang, reset, latency, ...)
    "sigstop": ("redis_client",),       # SIGSTOP redis-server, SIGCONT at the end
    "kill": ("redis_client",),          # kill -9 redis-server, restart it at the end
    "client-pause": ("redis_client",),  # CLIENT PAUSE <duration> ALL
    "oom": ("redis_client",),           # maxmemory 1 with noeviction: writes get OOM errors
    "budget": ("model_loader",),        # the loader's memory budget drops to budget-mib
    "log-level": ("log_shipper",),      # the shipper logs at level (debug: a line per line)
}
REASONS = ("consecutive_failures", "failure_rate", "failure_count", "slow_call_rate",
           "open_elapsed", "probe_failed", "probe_timeout", "probes_succeeded", "manual",
           "dominant_share")
# Flags the harness sets itself.
HARNESS_FLAGS = {"host", "port", "log", "dead-letter", "status-ms", "model", "control", "witness",
                 "dry-run", "help", "shards", "shard-ports", "dir", "sink"}


class ScenarioError(Exception):
    pass


def bin_dir():
    return Path(os.environ.get("CHAOS_BIN", Path(__file__).resolve().parent.parent / "build" / "chaos"))


class _Checker:
    def __init__(self, path):
        self.path = path

    def fail(self, key, msg):
        raise ScenarioError(f"{self.path}: {key}: {msg}")

    def table(self, d, key, known, required=(), where=None):
        """d[key] as a dict whose keys are all in known and include required; where is
        its full name in the file (default key)."""
        where = where or key
        t = d.get(key, {})
        if not isinstance(t, dict):
            self.fail(where, f"want a table, got {t!r}")
        for k in t:
            if known is not None and k not in known:
                self.fail(f"{where}.{k}".lstrip("."), f"unknown key (known: {', '.join(sorted(known))})")
        for k in required:
            if k not in t:
                self.fail(f"{where}.{k}", "required")
        return t

    def value(self, d, where, key, kind, default=None, minimum=None, choices=None):
        v = d.get(key, default)
        name = f"{where}.{key}" if where else key
        if v is None:
            return None
        ok = {"int": lambda x: isinstance(x, int) and not isinstance(x, bool),
              "number": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool),
              "bool": lambda x: isinstance(x, bool),
              "str": lambda x: isinstance(x, str)}[kind](v)
        if not ok:
            self.fail(name, f"want {'an' if kind == 'int' else 'a'} {kind}, got {v!r}")
        if minimum is not None and v < minimum:
            self.fail(name, f"want >= {minimum}, got {v!r}")
        if choices is not None and v not in choices:
            self.fail(name, f"want one of {', '.join(choices)}, got {v!r}")
        return v


def _merge(base, over):
    """over deep-merged into base (tables merge, everything else replaces)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _flag_values(c, section, t):
    """A [breaker] or [workload] table as --key=value flags."""
    flags = []
    for k, v in t.items():
        if k in HARNESS_FLAGS:
            c.fail(f"{section}.{k}", "set by the harness, not by a scenario")
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            c.fail(f"{section}.{k}", f"want a number or a string, got {v!r}")
        flags.append(f"--{k}={v!r}" if isinstance(v, float) else f"--{k}={v}")
    return flags


def _dry_run(c, program, breaker, workload, group=()):
    exe = bin_dir() / program
    if not os.access(exe, os.X_OK):
        raise ScenarioError(f"{c.path}: {exe} is not built (run make)")
    args = [str(exe), "--dry-run"] + (["--model=/nonexistent"] if program == "model_loader" else [])
    r = subprocess.run(args + breaker + workload + list(group), capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        msg = r.stderr.strip()
        # Name the key the bad flag came from, e.g. "--open-ms: ..." -> breaker.open-ms.
        for section, flags in (("breaker", breaker), ("workload", workload), ("group", group)):
            for f in flags:
                key = f.split("=", 1)[0]
                field = r"\b" + key[2:].replace("-", "_") + r"\b"  # as cb_config_check names it
                if any(p in msg for p in (key + ":", key + " ", f"'{f}'")) or re.search(field, msg):
                    c.fail(f"{section}.{key[2:]}", msg)
        c.fail("breaker", msg)
    return json.loads(r.stdout)


def load(path, settings="fast"):
    """The scenario in path with the given settings ("fast" or "full"), as a dict."""
    path = Path(path)
    c = _Checker(path)
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(f"{path}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{path}: not valid TOML: {e}") from None
    top = {"description", "program", "breaker", "group", "workload", "redis", "model", "faults", "expect",
           "fast"}
    c.table({"": doc}, "", top)
    fast = c.table(doc, "fast", top - {"fast", "program", "description"})
    doc = _merge({k: v for k, v in doc.items() if k != "fast"}, fast if settings == "fast" else {})

    sc = {"name": path.stem, "path": str(path), "settings": settings}
    sc["description"] = c.value(doc, "", "description", "str", default="")
    sc["program"] = c.value(doc, "", "program", "str", default="redis_client", choices=PROGRAMS)
    redis_prog = sc["program"] == "redis_client"
    breaker = _flag_values(c, "breaker", c.table(doc, "breaker", None))
    workload = _flag_values(c, "workload", c.table(doc, "workload", None))
    group = _flag_values(c, "group", c.table(doc, "group", None))

    r = c.table(doc, "redis", {"appendonly", "shards"})
    if r and not redis_prog:
        c.fail("redis", "only for program redis_client")
    sc["appendonly"] = c.value(r, "redis", "appendonly", "bool", default=False)
    sc["shards"] = c.value(r, "redis", "shards", "int", default=0, minimum=0)
    # A keyed group: one breaker per shard, or per log source.
    sc["group"] = sc["shards"] > 0 or sc["program"] == "log_shipper"
    if group and not sc["group"]:
        c.fail("group", "only for a keyed group (redis.shards, or program log_shipper)")
    group += [f"--shards={sc['shards']}"] if sc["shards"] else []
    m = c.table(doc, "model", {"size-mib", "budget-mib"})
    if m and redis_prog:
        c.fail("model", "only for program model_loader")
    sc["model_mib"] = c.value(m, "model", "size-mib", "int", default=16, minimum=1)
    sc["budget_mib"] = c.value(m, "model", "budget-mib", "int", default=1024, minimum=1)

    resolved = _dry_run(c, sc["program"], breaker, workload, group)
    sc["flags"], sc["options"], sc["breaker"] = breaker + workload + group, resolved["options"], resolved["breaker"]
    duration = sc["options"]["duration-ms"]

    faults = c.table(doc, "faults", None)
    if not faults:
        c.fail("faults", "a scenario needs at least one fault")
    sc["faults"] = []
    for name in faults:
        where = f"faults.{name}"
        f = c.table(faults, name, {"action", "at-ms", "duration-ms", "mode", "budget-mib", "trip",
                                   "max-calls-to-trip", "reason", "level", "shard", "key", "backoff"},
                    required=("action", "at-ms", "duration-ms"), where=where)
        fault = {"name": name,
                 "action": c.value(f, where, "action", "str", choices=tuple(ACTIONS)),
                 "at_ms": c.value(f, where, "at-ms", "int", minimum=0),
                 "duration_ms": c.value(f, where, "duration-ms", "int", minimum=1),
                 "trip": c.value(f, where, "trip", "bool", default=True),
                 "max_calls_to_trip": c.value(f, where, "max-calls-to-trip", "int", minimum=1),
                 "reason": c.value(f, where, "reason", "str", choices=REASONS)}
        if sc["program"] not in ACTIONS[fault["action"]]:
            c.fail(f"{where}.action", f"{fault['action']!r} does not apply to {sc['program']}")
        if (fault["action"] == "proxy") != ("mode" in f):
            c.fail(f"{where}.mode", "required for action 'proxy', and only there")
        if (fault["action"] == "budget") != ("budget-mib" in f):
            c.fail(f"{where}.budget-mib", "required for action 'budget', and only there")
        if "mode" in f:
            try:
                fault["mode"] = faultproxy.validate_mode(f["mode"], f"{where}.mode")
            except ValueError as e:
                raise ScenarioError(f"{path}: {e}") from None
        if "budget-mib" in f:
            fault["budget_mib"] = c.value(f, where, "budget-mib", "int", minimum=0)
        if (fault["action"] == "log-level") != ("level" in f):
            c.fail(f"{where}.level", "required for action 'log-level', and only there")
        fault["level"] = c.value(f, where, "level", "str", choices=("debug", "info"))
        if "shard" in f and not sc["shards"]:
            c.fail(f"{where}.shard", "only with redis.shards")
        fault["shard"] = c.value(f, where, "shard", "int", default=0, minimum=0)
        if sc["shards"] and fault["shard"] >= sc["shards"]:
            c.fail(f"{where}.shard", f"want < redis.shards ({sc['shards']}), got {fault['shard']}")
        if ("key" in f or "backoff" in f) and not sc["group"]:
            c.fail(f"{where}.{'key' if 'key' in f else 'backoff'}", "only for a keyed group")
        default_key = (f"shard-{fault['shard']}" if sc["shards"] else "self") if sc["group"] else None
        fault["key"] = c.value(f, where, "key", "str", default=default_key)
        fault["backoff"] = c.value(f, where, "backoff", "bool", default=False)
        if fault["at_ms"] + fault["duration_ms"] > duration:
            c.fail(f"{where}.duration-ms", f"the fault ends after the workload (workload.duration-ms = {duration})")
        sc["faults"].append(fault)
    sc["faults"].sort(key=lambda f: f["at_ms"])
    for a, b in zip(sc["faults"], sc["faults"][1:]):
        if b["at_ms"] < a["at_ms"] + a["duration_ms"]:
            c.fail(f"faults.{b['name']}.at-ms", f"overlaps fault {a['name']!r}")

    e = c.table(doc, "expect", {"max-rejected-p99-us", "min-opens", "recover-slack-ms", "min-rate-ratio"})
    sc["max_rejected_p99_us"] = c.value(e, "expect", "max-rejected-p99-us", "number", default=1000, minimum=0)
    sc["min_opens"] = c.value(e, "expect", "min-opens", "int", minimum=0,
                              default=sum(f["trip"] for f in sc["faults"]))
    sc["recover_slack_ms"] = c.value(e, "expect", "recover-slack-ms", "int", default=150, minimum=0)
    sc["min_rate_ratio"] = c.value(e, "expect", "min-rate-ratio", "number", default=0.8, minimum=0)
    return sc
