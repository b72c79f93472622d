#!/bin/sh
# Usage: tests/stress/stress_figures.sh TRIALS BUILD_DIR
# How fast the stress test catches each planted bug: TRIALS runs of 8 threads x 10^6
# calls per build (with and without yield injection) and clock, then per row the runs
# that caught it and the median and worst calls (all threads) and milliseconds until the
# first violation. The unplanted rows are the control: they must catch nothing.
trials=$1
bin=$2/stress
printf '%-10s %-6s %-5s %-12s %7s %12s %12s %9s %9s\n' bug yield clock scenario caught \
    'med calls' 'max calls' 'med ms' 'max ms'
for row in 1:consecutive 2:count 3:consecutive 0:consecutive 0:count; do
    bug=${row%%:*}
    scenario=${row#*:}
    for yield in yes no; do
        if [ $bug = 0 ]; then flavour=plain; else flavour=bug$bug; fi
        [ $yield = yes ] && flavour=$([ $bug = 0 ] && echo yield || echo bug$bug-yield)
        for clock in fake real; do
            i=0
            while [ $i -lt "$trials" ]; do
                timeout 300 "$bin/$flavour/stress_invariants" $scenario 8 1000000 $clock 2>&1 |
                    sed -n 's/.*detected after \([0-9]*\) calls, \([0-9.]*\) ms.*/\1 \2/p'
                echo end
                i=$((i + 1))
            done | awk -v row="$( [ $bug = 0 ] && echo none || echo $bug ) $yield $clock $scenario" '
                /^end$/ { n++; next }
                { c[++k] = $1; m[k] = $2 }
                function med(a, k,   i, j, t) {
                    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++)
                        if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
                    return k ? a[int((k + 1) / 2)] : "-"
                }
                END {
                    split(row, r, " ")
                    mc = med(c, k); mm = med(m, k)
                    printf "%-10s %-6s %-5s %-12s %3d/%-3d %12s %12s %9s %9s\n", r[1], r[2], r[3],
                        r[4], k, n, mc, k ? c[k] : "-", mm, k ? m[k] : "-"
                }'
        done
    done
done
