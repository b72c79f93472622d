#!/usr/bin/python3
"""Shows that each check of tests/stress/stress_invariants.c bites: every mutant below is cb.h
with one small bug put in by text replacement; the stress test (8 threads, fake clock,
yield injection) must report a VIOLATION for each. The unmutated cb.h must pass the same
runs first, or a kill would prove nothing.

Usage: tests/stress/stress_mutants.py BUILD_DIR [CC]
A mutant whose text is no longer in cb.h fails the run: update the list with cb.h."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import planted  # noqa: E402  (the same text replacement as the planted bugs)

# name, scenario, what should catch it, [(text in cb.h, replacement)]
MUTANTS = [
    ("stale-counted", "consecutive", "stale ticket counted",
     [("        if (cb__w_gen(w) != t->cb__gen || tries == CB__TRIES ||",
       "        if ((cb__w_gen(w) != t->cb__gen && 0) || tries == CB__TRIES ||")]),
    ("stale-moves-run", "consecutive", "stale record changes the consecutive run",
     [("s != CB_HALF_OPEN && s != CB_DISABLED)) {\n",
       "s != CB_HALF_OPEN && s != CB_DISABLED)) {\n"
       "            cb__consec_update(b->cb__lv, cb__w_gen(w), o == CB_FAILURE);\n")]),
    ("ignored-probe-uncounted", "consecutive", "accounts",
     [("        cb__count_outcome(b, o, slow, &now, &have_now);\n        if (s != CB_HALF_OPEN",
       "        if (s != CB_HALF_OPEN || o != CB_IGNORED)\n"
       "            cb__count_outcome(b, o, slow, &now, &have_now);\n        if (s != CB_HALF_OPEN")]),
    ("bulkhead-off-by-one", "bulkhead", "calls in flight above max_concurrent",
     [("        if (before < b->cb__config->max_concurrent)",
       "        if (before <= b->cb__config->max_concurrent)")]),
    ("permit-off-by-one", "consecutive", "probes in flight above half_open_calls",
     [("if (cb__w_taken(*w) >= c->half_open_calls || !cb__bulkhead_take(b))",
       "if (cb__w_taken(*w) > c->half_open_calls || !cb__bulkhead_take(b))")]),
    ("forced-open-admits", "consecutive", "admitted in FORCED_OPEN",
     [("        default:              v = CB__REJECT;",
       "        default:              v = cb__admit(b, t, cb__w_gen(w), 0) ? CB__ADMIT : CB__REJECT;")]),
    ("history-wrong-field", "consecutive", "history entry differs from on_event",
     [("<< 16, memory_order_release);\n    atomic_store_explicit(&h->at_ns, ev->at_ns, memory_order_release);",
       "<< 16, memory_order_release);\n    atomic_store_explicit(&h->at_ns, ev->at_ns + 1, memory_order_release);")]),
    ("history-published-early", "consecutive", "torn history entry",
     [("&h->seq, &cur, (uint64_t)gen << 2 | 1,", "&h->seq, &cur, (uint64_t)gen << 2 | 2,"),
      ("<< 16, memory_order_release);\n    atomic_store_explicit(&h->at_ns, ev->at_ns, memory_order_release);",
       "<< 16, memory_order_release);\n    CB_YIELD_POINT();\n    atomic_store_explicit(&h->at_ns, ev->at_ns, memory_order_release);")]),
    ("history-dropped", "consecutive", "quiescent history lacks a transition",
     [("    cb__hist *h = &b->cb__hist[gen % CB_HISTORY];",
       "    if (gen % 7 == 0)\n        return;\n    cb__hist *h = &b->cb__hist[gen % CB_HISTORY];")]),
    ("generation-skips", "consecutive", "generation entered without an event",
     [("cb__w_next(w, s, s == CB_CLOSED ? 0 : cb__w_k(w)),",
       "cb__w_make(s, s == CB_CLOSED ? 0 : cb__w_k(w), 0, 0, cb__w_gen(w) + 2),")]),
    ("open-ends-early", "consecutive", "OPEN left before its period",
     [("if (now / CB__MS < ms || !cb__bulkhead_take(b))",
       "if (now / CB__MS + 1 < ms || !cb__bulkhead_take(b))")]),
    ("probe-timeout-too-long", "consecutive", "HALF_OPEN not moved after probe_timeout_ms",
     [("        return cb__ceil_ms(cb__add_sat(now, (uint64_t)c->probe_timeout_ms * CB__MS));",
       "        return cb__ceil_ms(cb__add_sat(now, (uint64_t)c->probe_timeout_ms * 1000 * CB__MS));")]),
    ("opens-uncounted", "consecutive", "opens differs from transitions into OPEN",
     [("        atomic_fetch_add_explicit(&lv->opens, 1, memory_order_relaxed);",
       "        (void)0;")]),
    ("in-flight-misses-disabled", "consecutive", "in_flight differs from calls held",
     [("s->ignored + s->stale + n[CB__N_UNCOUNTED];", "s->ignored + s->stale;")]),
    ("time-window-off-by-one", "time", "window refill not exact",
     [("            f->calls += (uint32_t)c;", "            f->calls += (uint32_t)c + 1;")]),
    ("ring-skip-ignores-failures", "count", "window refill not exact",
     [("    return atomic_load_explicit(&b->cb__win_count[3], memory_order_relaxed) == (uint64_t)gen << 32;",
       "    return true;")]),
    ("ring-failure-kept", "count", "window refill not exact",
     [("(int32_t)fail - (counted ? (int32_t)(old & 1u) : 0)", "(int32_t)fail")]),
]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build(cc, out, include):
    flags = ["-std=c11", "-O2", "-g", "-DSTRESS_YIELD", "-I" + include, "-I" + ROOT]
    subprocess.run([cc] + flags + ["-o", out, os.path.join(ROOT, "tests/stress/stress_invariants.c"),
                                   "-lpthread", "-lm"], check=True)


def run(prog, scenario):
    p = subprocess.run(["timeout", "120", prog, scenario, "8", "1000000", "fake"],
                       capture_output=True, text=True)
    lines = [l for l in p.stderr.splitlines() if l.startswith("VIOLATION")]
    return p.returncode, lines[0] if lines else (p.stdout + p.stderr).strip()[-200:]


def main():
    build_dir = sys.argv[1]
    cc = sys.argv[2] if len(sys.argv) > 2 else "cc"
    with open(os.path.join(ROOT, "cb.h")) as f:
        original = f.read()
    os.makedirs(build_dir, exist_ok=True)
    base = os.path.join(build_dir, "unmutated")
    build(cc, base, ROOT)
    broken = {}
    for scenario in sorted({m[1] for m in MUTANTS}):
        rc, out = run(base, scenario)
        if rc != 0:
            broken[scenario] = out
            print("unmutated cb.h fails %s: its mutants would prove nothing: %s" % (scenario, out))
    survived = 0
    for name, scenario, catcher, edits in MUTANTS:
        if scenario in broken:
            survived += 1
            print("%-26s not run" % name)
            continue
        text = planted.apply(original, edits, name)
        d = os.path.join(build_dir, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "cb.h"), "w") as f:
            f.write(text)
        build(cc, os.path.join(d, "stress_invariants"), d)
        rc, out = run(os.path.join(d, "stress_invariants"), scenario)
        killed = rc == 1 and out.startswith("VIOLATION")
        survived += not killed
        print("%-26s %-8s (%s): %s" % (name, "killed" if killed else "SURVIVED", catcher, out),
              flush=True)
    print("%d of %d mutants killed" % (len(MUTANTS) - survived, len(MUTANTS)))
    sys.exit(1 if survived else 0)


if __name__ == "__main__":
    main()
