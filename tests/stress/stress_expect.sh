#!/bin/sh
# Usage: tests/stress/stress_expect.sh must|may PROGRAM ARGS...
# Runs a stress test built with a planted bug, which should report a VIOLATION (exit 1).
# must: failing to catch it fails this script; may: only reported (plain builds catch
# some planted bugs by chance only). A crash or any other exit status always fails.
want=$1
shift
out=$("$@" 2>&1)
rc=$?
caught=$(printf '%s\n' "$out" | grep -A1 '^VIOLATION' | tr -s ' \n' ' ')
if [ $rc -eq 1 ] && [ -n "$caught" ]; then
    echo "caught: $caught"
elif [ $rc -eq 0 ] && [ "$want" = may ]; then
    echo "not caught (allowed without yield injection): $(printf '%s\n' "$out" | tail -1 | cut -c1-100)"
else
    printf '%s\n' "$out" | tail -5
    echo "stress_expect.sh: $*: exit status $rc, planted bug not caught" >&2
    exit 1
fi
