#!/usr/bin/python3
"""Check benchmark output against Google Benchmark 1.7's JSON shape.

usage: check_json.py [--fixed-names] FILE...

Checks shape only (keys, types, and the naming and index rules that tie entries
together), never speed. --fixed-names also requires every fixed benchmark name of
bench/ops.c in /threads:1 and, on a machine with two or more CPUs, /threads:2.
"""
import json
import re
import sys

# Names outside tools read: a contract, so they are listed here and not read from ops.c.
FIXED_NAMES = [
    "BM_direct",
    "BM_cb_closed_success_consecutive",
    "BM_cb_closed_success_count_window",
    "BM_cb_closed_success_time_window",
    "BM_cb_closed_success_slow_call",
    "BM_cb_closed_failure",
    "BM_cb_open_reject",
    "BM_cb_half_open_reject",
    "BM_cb_call_wrapper",
    "BM_mutex_closed_success",
    "BM_mutex_open_reject",
    "BM_naive_closed_success",
    "BM_direct_keyed",
    "BM_group_held_key",
    "BM_group_churn",
]

CONTEXT = {
    "date": str, "host_name": str, "executable": str, "num_cpus": int,
    "mhz_per_cpu": (int, float), "cpu_scaling_enabled": bool, "caches": list,
    "load_avg": list, "library_build_type": str,
}
CACHE = {"type": str, "level": int, "size": int, "num_sharing": int}
COMMON = {
    "name": str, "family_index": int, "per_family_instance_index": int, "run_name": str,
    "run_type": str, "repetitions": int, "threads": int, "iterations": int,
    "real_time": (int, float), "cpu_time": (int, float), "time_unit": str,
}
# Counters follow time_unit when a benchmark sets them; items_per_second is the only one used.
COUNTERS = {"items_per_second": (int, float)}
ITERATION = dict(COMMON, repetition_index=int)
AGGREGATE = dict(COMMON, aggregate_name=str, aggregate_unit=str)
AGGREGATE_UNITS = {"mean": "time", "median": "time", "stddev": "time", "cv": "percentage"}


def check_keys(obj, spec, where, errors, optional=None):
    if not isinstance(obj, dict):
        errors.append(f"{where}: not an object")
        return False
    optional = optional or {}
    for key, kind in dict(spec, **optional).items():
        if key not in obj:
            if key not in optional:
                errors.append(f"{where}: missing {key!r}")
        elif isinstance(obj[key], bool) and kind is not bool or not isinstance(obj[key], kind):
            errors.append(f"{where}: {key!r} has type {type(obj[key]).__name__}")
    for key in obj:
        if key not in spec and key not in optional:
            errors.append(f"{where}: unexpected key {key!r}")
    return True


def check_context(ctx, errors):
    if not check_keys(ctx, CONTEXT, "context", errors):
        return
    for i, cache in enumerate(ctx.get("caches", [])):
        check_keys(cache, CACHE, f"context.caches[{i}]", errors)
    load = ctx.get("load_avg")
    if isinstance(load, list) and not all(isinstance(x, (int, float)) for x in load):
        errors.append("context.load_avg: not a list of numbers")
    if ctx.get("library_build_type") not in ("release", "debug"):
        errors.append("context.library_build_type: not 'release' or 'debug'")


def check_entry(e, where, errors):
    before = len(errors)
    kind = e.get("run_type") if isinstance(e, dict) else None
    if kind not in ("iteration", "aggregate"):
        errors.append(f"{where}: run_type is {kind!r}")
        return
    if not check_keys(e, AGGREGATE if kind == "aggregate" else ITERATION, where, errors, COUNTERS):
        return
    if len(errors) > before:
        return
    where = f"{where} ({e['name']})"
    m = re.fullmatch(r"(.+)/threads:(\d+)", e["run_name"])
    if not m or int(m.group(2)) != e["threads"]:
        errors.append(f"{where}: run_name does not end in /threads:{e['threads']}")
    if kind == "iteration":
        if e["name"] != e["run_name"]:
            errors.append(f"{where}: name differs from run_name")
        if not 0 <= e["repetition_index"] < e["repetitions"]:
            errors.append(f"{where}: repetition_index out of range")
    else:
        agg = e["aggregate_name"]
        if AGGREGATE_UNITS.get(agg) != e["aggregate_unit"]:
            errors.append(f"{where}: aggregate {agg!r} with unit {e['aggregate_unit']!r}")
        if e["name"] != f"{e['run_name']}_{agg}":
            errors.append(f"{where}: name is not run_name + '_{agg}'")
    if e["time_unit"] not in ("ns", "us", "ms", "s"):
        errors.append(f"{where}: time_unit {e['time_unit']!r}")
    if e["iterations"] < 1 or e["repetitions"] < 1 or e["threads"] < 1:
        errors.append(f"{where}: iterations, repetitions and threads must be >= 1")
    if e["real_time"] < 0 or e["cpu_time"] < 0:
        errors.append(f"{where}: negative time")
    if e.get("items_per_second", 0) < 0:
        errors.append(f"{where}: negative items_per_second")


def check_indices(entries, errors):
    """family_index counts the families run, in order, from 0; per_family_instance_index
    counts the instances run within a family, from 0."""
    families, instances = {}, {}
    for e in entries:
        family = e["run_name"].rsplit("/threads:", 1)[0]
        if families.setdefault(family, e["family_index"]) != e["family_index"]:
            errors.append(f"{e['name']}: family_index differs within family {family}")
        seen = instances.setdefault(family, {})
        index = e["per_family_instance_index"]
        if seen.setdefault(e["run_name"], index) != index:
            errors.append(f"{e['name']}: per_family_instance_index differs within one instance")
    if sorted(families.values()) != list(range(len(families))):
        errors.append(f"family_index values {sorted(families.values())} "
                      f"are not 0..{len(families) - 1}")
    for family, seen in instances.items():
        if sorted(seen.values()) != list(range(len(seen))):
            errors.append(f"{family}: per_family_instance_index values are not 0..{len(seen) - 1}")


def check(doc, fixed_names=False):
    """Return a list of what is wrong with doc, a parsed output; empty when it conforms."""
    errors = []
    if not isinstance(doc, dict) or set(doc) != {"context", "benchmarks"}:
        return ["top level: must be an object with exactly 'context' and 'benchmarks'"]
    check_context(doc["context"], errors)
    entries = doc["benchmarks"]
    if not isinstance(entries, list) or not entries:
        return errors + ["benchmarks: not a non-empty array"]
    for i, e in enumerate(entries):
        check_entry(e, f"benchmarks[{i}]", errors)
    if errors:
        return errors
    check_indices(entries, errors)
    if fixed_names:
        threads = [1, 2] if doc["context"]["num_cpus"] >= 2 else [1]
        names = {e["run_name"] for e in entries}
        errors += [f"missing {n}/threads:{t}" for n in FIXED_NAMES for t in threads
                   if f"{n}/threads:{t}" not in names]
    return errors


def main(argv):
    fixed = "--fixed-names" in argv
    files = [a for a in argv if a != "--fixed-names"]
    if not files:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    failed = False
    for path in files:
        try:
            with open(path) as f:
                errors = check(json.load(f), fixed)
        except (OSError, ValueError) as e:
            errors = [str(e)]
        for err in errors:
            print(f"{path}: {err}", file=sys.stderr)
        failed |= bool(errors)
        if not errors:
            print(f"{path}: Google Benchmark 1.7 JSON shape ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
