#!/usr/bin/env bash
# Usage: model/check.sh OUTDIR [full]
# Checks model/breaker.pml (the state word), model/ring.pml (the count window) and
# model/group.pml (the slot lifecycle of a keyed group) and model/registry.pml (a
# registry's refusal of a name held) with spin, exhaustively: every
# configuration must verify with no error, and every planted bug must be caught. "full"
# adds the largest configuration (2 callers and an operator, ~33 million states, ~1.5 GB,
# about a minute).
set -u
out=$1
full=${2:-}
cc=${CC:-cc}
mkdir -p "$out"
cp model/breaker.pml model/ring.pml model/group.pml model/registry.pml "$out/"
cd "$out" || exit 1
fail=0

# run EXPECT NAME SPIN_DEFINES [MODEL]: EXPECT is "ok" (verifies) or "caught" (an error
# is found); MODEL defaults to breaker.pml. Each run has a folder of its own and runs in
# the background, MODEL_JOBS (default 2) at a time; its verdict goes to NAME.res, printed
# in order at the end.
jobs_max=${MODEL_JOBS:-2}
names=""
check() {
    mkdir -p "$2.d" && cd "$2.d" || return 1
    spin -a $3 "../${4:-breaker.pml}" > /dev/null &&
        $cc -O2 -w -DSAFETY -DCOLLAPSE -DMEMLIM=3000 -o pan pan.c || { echo "spin: FAILED  $2 (no pan)"; return 1; }
    ./pan -m1000000 -w24 > "../$2.out" 2>&1
    cd .. && rm -rf "$2.d"
    errors=$(sed -n 's/.*errors: \([0-9]*\)$/\1/p' "$2.out")
    states=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' "$2.out")
    secs=$(sed -n 's/^pan: elapsed time \([0-9.e+]*\).*/\1/p' "$2.out")
    found=$(grep -m1 -o 'assertion violated.*(at\|invalid end state' "$2.out" | sed 's/ (at$//')
    if [ "$1" = ok ] && [ "$errors" = 0 ] && ! grep -q 'Search not completed\|too small' "$2.out"; then
        echo "spin: ok      $2: $states states, ${secs} s"
    elif [ "$1" = caught ] && [ -n "$errors" ] && [ "$errors" != 0 ]; then
        echo "spin: caught  $2: $found, after $states states"
    else
        echo "spin: FAILED  $2 (expected $1; see $out/$2.out)"
    fi
}
run() {
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n; done
    names="$names $2"
    check "$@" > "$2.res" 2>&1 &
}

run ok "2-callers" "-DNPROC=2"
run ok "2-callers-abandon" "-DNPROC=2 -DDIE=1"
run ok "2-callers-die-mid-transition" "-DNPROC=2 -DDIE=2"
run ok "1-caller-operator" "-DNPROC=1 -DMANUAL"
run ok "2-callers-1-call-operator" "-DNPROC=2 -DCALLS=1 -DMANUAL"
run ok "3-probers-half-open" "-DNPROC=3 -DCALLS=1 -DSTART_HALF"
[ "$full" = full ] && run ok "2-callers-operator" "-DNPROC=2 -DMANUAL"

run caught "bug1-permit-load-store" "-DBUG=1 -DNPROC=3 -DCALLS=1 -DSTART_HALF"
run caught "bug2-transition-load-store" "-DBUG=2 -DNPROC=2"
run caught "bug3-no-stale-test" "-DBUG=3 -DNPROC=2"
run caught "bug4-untagged-deadline" "-DBUG=4 -DNPROC=2"
run caught "bug5-no-probe-timeout" "-DBUG=5 -DNPROC=2 -DDIE=1"
run caught "bug6-no-deadline-fill-in" "-DBUG=6 -DNPROC=2 -DDIE=2"

run ok "ring-3-recorders" "-DNPROC=3" ring.pml
run ok "ring-3-recorders-full" "-DNPROC=3 -DSTART_FULL=1" ring.pml
run caught "ring-bug1-skip-ignores-failures" "-DBUG=1 -DSTART_FULL=1" ring.pml
run caught "ring-bug2-entry-load-store" "-DBUG=2" ring.pml
run caught "ring-bug3-failure-kept" "-DBUG=3" ring.pml

run ok "group-3-callers-1-slot" "-DNPROC=3" group.pml
run ok "group-2-callers-2-calls-1-slot" "-DNPROC=2 -DCALLS=2" group.pml
run ok "group-3-callers-2-slots-sweeper" "-DNPROC=3 -DNSLOT=2 -DSWEEP=1" group.pml
run ok "group-3-callers-1-key-2-slots-sweeper" "-DNPROC=3 -DONEKEY -DNSLOT=2 -DSWEEP=1" group.pml
run ok "group-2-callers-2-calls-2-slots-2-sweeps" "-DNPROC=2 -DCALLS=2 -DNSLOT=2 -DSWEEP=2" group.pml
run caught "group-bug1-untagged-counters" "-DBUG=1 -DNPROC=2" group.pml
run caught "group-bug2-one-seq-load" "-DBUG=2 -DNPROC=3" group.pml
run caught "group-bug3-no-seq-recheck" "-DBUG=3 -DNPROC=2" group.pml
run caught "group-bug4-no-relookup" "-DBUG=4 -DNPROC=2 -DONEKEY -DNSLOT=2" group.pml
run caught "group-bug5-generation-reset" "-DBUG=5 -DNPROC=2" group.pml
run caught "group-bug6-evict-by-store" "-DBUG=6 -DNPROC=2" group.pml
run caught "group-bug7-key-after-seq" "-DBUG=7 -DNPROC=2" group.pml
run caught "group-fix0-record-during-eviction" "-DFIX=0 -DNPROC=3" group.pml

run ok "registry-3-adders" "-DNPROC=3" registry.pml
run ok "registry-3-adders-remover" "-DNPROC=3 -DREMOVE" registry.pml
run caught "registry-bug1-no-look" "-DBUG=1 -DNPROC=3" registry.pml
run caught "registry-bug2-look-below-only" "-DBUG=2 -DNPROC=3" registry.pml

wait
for n in $names; do
    cat "$n.res"
    grep -q '^spin: \(ok\|caught\) ' "$n.res" || fail=1
    rm -f "$n.res"
done
exit $fail
