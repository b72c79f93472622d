/* ring.pml - the count window of cb.h (cb__ring_add and cb__window_full_plain), checked
   exhaustively by spin.

   What is modelled, step for step as cb.h does it (one Promela step per atomic load or
   RMW): a recorder with a plain success first loads calls, then not-plain, and skips the
   ring when the window reads full (calls == N) and not-plain reads 0. Otherwise it takes a
   position with fetch_add on the head, loads the entry there, stops if it already holds
   the same value, else replaces it by CAS (retrying on a lost CAS), then applies its
   deltas to calls, failures and not-plain, one word at a time. One period: generation
   tags are left out (the stress test and the unit tests cover periods). NPROC recorders
   record CALLS outcomes each, each outcome chosen by spin: SUCCESS or FAILURE. The ring
   has N places and starts empty, or full of plain successes with START_FULL.

   Assertions (ghost variables, set inside the atomic step they describe):
   - quiescent exactness: once every recorder is done, the counts equal what the ring holds
     (calls = places filled, failures = not-plain = places holding a failure);
   - a skip happens only in a full window: every place filled;
   - what a skip may leave behind: the failures in the ring at the instant of the skip are
     at most the recorders under way (that wrote an entry and have not yet counted it).
     With no recorder under way the window holds N plain successes and the skip is exact;
     a recorder that stalls between its entry and its count can hide one failure from the
     counts (another recorder's -1 for the entry it replaced lands first), and successes
     then skip past that failure until the stalled recorder counts (docs/design.md);
   - spin's own: no invalid end state, no assertion violated.

   BUG=n plants a known bug (make test-model shows each is caught):
     1 the skip ignores not-plain (skips whenever the window is full)
     2 the entry is replaced by load + store instead of CAS
     3 a replaced failure's not-plain contribution is not taken out */

#ifndef NPROC
#define NPROC 3
#endif
#ifndef CALLS
#define CALLS 2
#endif
#ifndef N
#define N 2             /* window_calls */
#endif
#ifndef BUG
#define BUG 0
#endif
#ifndef START_FULL
#define START_FULL 0
#endif

#define EMPTY 0         /* never written in this period: not counted */
#define S 1             /* a plain success */
#define F 2             /* a failure */

byte ring[N];
byte head;              /* the position fetch_add hands out (mod N when used) */
short calls, failures, notplain;

/* ghosts */
byte writer[N];         /* the recorder whose entry is in each place */
bool pending[NPROC];    /* wrote an entry and has not yet applied its deltas */
byte done;

inline check_skip() {
    /* the failures in the ring are at most the recorders under way */
    fails = 0; busy = 0;
    for (i : 0 .. N - 1) {
        assert(ring[i] != EMPTY);           /* a full window */
        if :: ring[i] == F -> fails++ :: else fi
    }
    for (i : 0 .. NPROC - 1) {
        if :: pending[i] -> busy++ :: else fi
    }
    assert(fails <= busy)
}

proctype recorder(byte me) {
    byte k, pos, old, entry, i, fails, busy;
    bool fail, skipped;
    short c;
    for (k : 1 .. CALLS) {
        if :: fail = true :: fail = false fi;
        entry = (fail -> F : S);
        skipped = false;
        /* cb__window_full_plain: calls, then not-plain */
        if
        :: !fail ->
            c = calls;
            if
            :: c == N ->
#if BUG == 1
                atomic { skipped = true; check_skip() }
#else
                atomic {
                    if
                    :: notplain == 0 -> skipped = true; check_skip()
                    :: else
                    fi
                }
#endif
            :: else
            fi
        :: else
        fi;
        if
        :: skipped
        :: else ->
            atomic { pos = head % N; head = (head + 1) % (2 * N) }   /* fetch_add */
            old = ring[pos];
            do
            :: old == entry -> break              /* same value: nothing to write */
            :: else ->
#if BUG == 2
                atomic { ring[pos] = entry; writer[pos] = me; pending[me] = true };
#else
                atomic {
                    if
                    :: ring[pos] == old ->
                        ring[pos] = entry; writer[pos] = me; pending[me] = true
                    :: else -> old = ring[pos]    /* the CAS failed: it returns the value */
                    fi
                };
                if :: pending[me] -> skip :: else -> goto retry fi;
#endif
                /* the deltas, one word at a time, as cb__tagged_add does */
                if :: old == EMPTY -> calls++ :: else fi;
                if
                :: fail && old != F -> failures++
                :: !fail && old == F -> failures--
                :: else
                fi;
                if
                :: fail && old != F -> notplain++
#if BUG == 3
                :: else
#else
                :: !fail && old == F -> notplain--
                :: else
#endif
                fi;
                pending[me] = false;
                break;
retry:          skip
            od
        fi
    }
    done++
}

init {
    byte i, fails, filled;
#if START_FULL
    for (i : 0 .. N - 1) { ring[i] = S }
    calls = N;
#endif
    atomic {
        for (i : 0 .. NPROC - 1) { run recorder(i) }
    }
    (done == NPROC);
    /* quiescent exactness */
    fails = 0; filled = 0;
    for (i : 0 .. N - 1) {
        if :: ring[i] != EMPTY -> filled++ :: else fi;
        if :: ring[i] == F -> fails++ :: else fi
    }
    assert(calls == filled && failures == fails && notplain == fails)
}
