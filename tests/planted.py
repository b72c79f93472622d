#!/usr/bin/python3
"""Planted bugs: cb.h with one known bug put in by text replacement, so that the tests
can show they catch it (make test-planted: the stress test; make test-fuzz: the
differential fuzzer). The product header holds no test switch: each bug is applied to a
copy, written as OUT_DIR/cb.h, and the planted build puts OUT_DIR first on its include
path.

Usage: tests/planted.py NUMBER OUT_DIR
A bug whose text is no longer in cb.h exactly once fails: update the list with cb.h."""
import os
import sys

# number: (name, what it breaks, [(text in cb.h, replacement)])
BUGS = {
    "1": ("permit-store", "a half-open permit taken by load + store instead of CAS",
          [("    if (cb__word_cas(b, w, cb__w_take_permit(*w), true)) {",
            "    if ((atomic_store_explicit(b->cb__word, cb__w_take_permit(*w), memory_order_release), true)) {")]),
    "2": ("ring-store", "a count-window entry replaced by load + store instead of CAS",
          [("        if (!atomic_compare_exchange_weak_explicit(slot, &old, entry, memory_order_relaxed,\n"
            "                                                   memory_order_relaxed))\n"
            "            continue;",
            "        atomic_store_explicit(slot, entry, memory_order_relaxed);")]),
    "3": ("transition-store", "a transition made by load + store instead of CAS",
          [("    bool moved = cb__word_cas(b, w, to, false);",
            "    bool moved = atomic_load_explicit(b->cb__word, memory_order_acquire) == from;\n"
            "    if (!moved)\n"
            "        *w = atomic_load_explicit(b->cb__word, memory_order_acquire);\n"
            "    CB_YIELD_POINT();\n"
            "    if (moved)\n"
            "        atomic_store_explicit(b->cb__word, to, memory_order_release);")]),
    "4": ("ignored-keeps-permit", "an IGNORED probe keeps its half-open permit",
          [("        if (cb__w_taken(*w) == 0)\n            return true;",
            "        if (cb__w_taken(*w) == 0 || o == CB_IGNORED)\n            return true;")]),
    "5": ("deadline-late", "the probe deadline is one ms late",
          [("    } else if (now / CB__MS >= ms) {",
            "    } else if (now / CB__MS >= ms + 1) {")]),
}


def apply(text, edits, name):
    """text with every (old, new) of edits replaced; each old must be there exactly once."""
    for old, new in edits:
        if text.count(old) != 1:
            sys.exit("planted: %s: %r is not in cb.h exactly once" % (name, old))
        text = text.replace(old, new)
    return text


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in BUGS:
        sys.exit("usage: tests/planted.py {%s} OUT_DIR" % ",".join(sorted(BUGS)))
    name, _, edits = BUGS[sys.argv[1]]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "cb.h")) as f:
        text = apply(f.read(), edits, name)
    os.makedirs(sys.argv[2], exist_ok=True)
    with open(os.path.join(sys.argv[2], "cb.h"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
