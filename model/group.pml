/* group.pml - the slot lifecycle of a keyed group (cb_group: one breaker per key, made
   on first use in a fixed pool of slots, evicted when idle), checked exhaustively by spin.

   What is modelled, one Promela step per atomic load, store, CAS or fence (spin is
   sequentially consistent: the acquire/release/seq_cst orders are what make cb.h behave
   so). A slot has its occupant word seq (even: held, occupant seq/2; odd: free or being
   changed), its key (written only while seq is odd), its state word (state and a
   generation that keeps growing across occupants) and two counters, admitted and outcomes
   (successes, failures, ignored and stale), each a (tag, count) word whose tag is the
   occupant that owns it. A tagged CAS loop takes effect at its one successful CAS: one
   step. The index maps a key to a slot; it and seq are written only under the group lock.
   - lookup (no lock): index, seq (odd: miss), key, fence, seq again: a hit only if both
     seq loads agree;
   - allow on a hit: load the word; OPEN: move it on (abstracts OPEN -> HALF_OPEN ->
     CLOSED: a probe is admitted) by a caller CAS; count admitted by tagged CAS (a lost
     CAS: back to the lookup); the ticket is (slot, occupant, generation);
   - record: seq is not the ticket's occupant: group stale. Else load the word: its
     generation is the ticket's: count the outcome, and a failure may trip (caller CAS);
     else count stale on the slot. Both by tagged CAS: a lost one is group stale;
   - a caller CAS on the word: load the word, load seq again (not the occupant: give up),
     CAS;
   - creation (a caller that missed, under the lock): look up again; take a free slot or
     evict one; key, counters reset to (new occupant, 0), word CLOSED with generation + 1,
     seq = 2 * new occupant, index;
   - eviction (under the lock, by a creator, or by a sweeper with SWEEP): seq odd, fence,
     load the word; only a CLOSED word is judged idle here (a tripped breaker is not
     evicted); CAS it to FREE with generation + 1; if the word is not CLOSED or the CAS
     fails, seq back and give up; else clear the index.
   Not modelled: the breaker inside the word (breaker.pml), the index as a hash table (a
   word per key here), lock waiting (a blocked CAS here), wraparound of seq or generation.

   NPROC callers make CALLS calls each, caller i with key i % 2 (all with key 0 with
   ONEKEY); NSLOT slots; SWEEP evictions by a sweeper. Assertions (on ghosts set in the
   step they describe):
   1 an outcome is counted only on the counters of an occupant of the ticket's key;
   2 at the end, for every occupant: the counters it ended with are exactly its tickets
     (admitted) and the records of its tickets counted on it (outcomes); each of its
     tickets is counted once, on it or in the group stale count (which is their sum); an
     occupant still holding its slot has none of its tickets in the group stale count
     (else the in-flight figure, admitted - outcomes, never comes back to 0);
   3 a key is held by at most one slot (checked when an occupant is published);
   4 a lookup hit is the slot holding the key at the second seq load;
   5 a caller CAS that succeeds changes the word of the caller's own occupant;
   6 an eviction replaces exactly the word it judged idle (no trip is lost to it);
   and spin's own: no invalid end state.

   BUG=n plants a known bug (make test-model shows each is caught):
     1 counters not tagged: plain increments, no tag check
     2 lookup without the second seq load
     3 caller CAS on the word without the seq re-check
     4 creation without the look-up again under the lock
     5 generation reset to 0 when a slot is reused
     6 eviction by a plain store of FREE instead of CAS
     7 key written after seq is published (not while seq is odd)

   FIX: the record's seq test. FIX=0: group stale when seq != 2 * occupant, as the
   protocol was first written: spin finds a record that reads seq while an eviction has
   made it odd, counts in the group stale count, and the eviction then gives up (the word
   moved, or is not CLOSED): the occupant lives on with admitted - outcomes = 1 for good
   (assertion 2). FIX=1 (the default): group stale only when seq / 2 != occupant, so a
   record in that window goes on to the word and the tagged CAS, which alone decide (the
   counters are reset to the next occupant before its seq is published). */

#ifndef NPROC
#define NPROC 3
#endif
#ifndef CALLS
#define CALLS 1
#endif
#ifndef NSLOT
#define NSLOT 1
#endif
#ifndef SWEEP
#define SWEEP 0
#endif
#ifndef TRIES
#define TRIES 2         /* lookups per call: a caller that keeps losing its slot gives up */
#endif
#ifndef BUG
#define BUG 0
#endif
#ifndef FIX
#define FIX 1
#endif
#define NKEY 2
/* occupants per slot, 1..MAXOCC-1 (0 is nobody): at most one creation per lookup. A tag
   has 4 bits: MAXOCC <= 16 */
#define MAXOCC (NPROC * CALLS * TRIES + 1)
#define NONE 255

#define CLOSED 0
#define OPEN 1
#define FREE 2
/* state word: state:2 | generation */
#define ST(w)    ((w) & 3)
#define GEN(w)   ((w) >> 2)
#define W(s, g)  ((s) | (g) << 2)
/* counter: occupant tag << 4 | count */
#define TAG(c)   ((c) >> 4)
#define CNT(c)   ((c) & 15)
#define TC(t, n) ((t) << 4 | (n))

byte seq[NSLOT];
byte key[NSLOT];
byte word[NSLOT];
byte adm[NSLOT];
byte out[NSLOT];
byte index[NKEY];
byte lock;
byte gstale;

/* ghosts, per occupant O(slot, occupant) */
#define O(s, o) ((s) * MAXOCC + (o))
byte okey[NSLOT * MAXOCC];      /* the key it was made for */
byte tadm[NSLOT * MAXOCC];      /* its tickets */
byte tout[NSLOT * MAXOCC];      /* records of its tickets counted on it */
byte tgst[NSLOT * MAXOCC];      /* records of its tickets counted in the group stale */
byte sadm[NSLOT * MAXOCC];      /* its admitted counter when it was reset (or at the end) */
byte sout[NSLOT * MAXOCC];
byte wowner[NSLOT];             /* occupant whose word the slot holds; 0: FREE marker */

#define HELD(i)  (seq[i] % 2 == 0)

/* 4: the slot holds key k as occupant o */
#define HIT_OK(k) assert(seq[s] == 2 * o && okey[O(s, o)] == k)

inline lookup(k)
{
    hit = false;
    s = index[k];
    if
    :: s == NONE
    :: else ->
        s1 = seq[s];
        if
        :: s1 % 2 == 1
        :: else ->
#if BUG == 2
            atomic { if :: key[s] == k -> hit = true; o = s1 / 2; HIT_OK(k) :: else fi }
#else
            kk = key[s];
            if
            :: kk == k ->              /* fence acquire, then seq again */
                atomic { if :: seq[s] == s1 -> hit = true; o = s1 / 2; HIT_OK(k) :: else fi }
            :: else
            fi
#endif
        fi
    fi;
    s1 = 0; kk = 0
}

/* Under the lock, callers change neither seq, key nor index: the lookup again is one step. */
inline relookup(k)
{
    atomic {
        s = index[k];
        if
        :: s != NONE && HELD(s) && key[s] == k -> hit = true; o = seq[s] / 2
        :: else -> hit = false
        fi
    }
}

/* Under the lock, seq[s] even. Sets ev. */
inline evict(s)
{
    sv = seq[s];
    seq[s] = sv + 1;            /* then a seq_cst fence */
    w = word[s];
    if
    :: ST(w) != CLOSED -> seq[s] = sv; ev = false           /* not idle */
    :: else ->
        /* 6: what FREE replaces is the word judged idle (true of a CAS by its test) */
#if BUG == 6
        atomic { assert(word[s] == w); word[s] = W(FREE, GEN(w) + 1); wowner[s] = 0 };
        ev = true;
#else
        atomic {
            if
            :: word[s] == w -> word[s] = W(FREE, GEN(w) + 1); wowner[s] = 0; ev = true
            :: else -> ev = false
            fi
        };
#endif
        if
        :: ev -> index[key[s]] = NONE
        :: else -> seq[s] = sv                               /* moved: give up */
        fi
    fi;
    sv = 0; w = 0
}

/* 3: after publishing an occupant of key k, no other slot holds k */
inline one_holder(k)
{
    n = 0;
    for (i : 0 .. NSLOT - 1) {
        if :: HELD(i) && okey[O(i, seq[i] / 2)] == k -> n++ :: else fi
    }
    assert(n <= 1);
    n = 0; i = 0
}

/* Under the lock, seq[s] odd: make occupant o of key k. */
inline fill(s, k)
{
    o = (seq[s] + 1) / 2;
    assert(o < MAXOCC);
    okey[O(s, o)] = k;
#if BUG != 7
    key[s] = k;
#endif
    atomic { sadm[O(s, TAG(adm[s]))] = CNT(adm[s]); adm[s] = TC(o, 0) };
    atomic { sout[O(s, TAG(out[s]))] = CNT(out[s]); out[s] = TC(o, 0) };
    /* nobody else writes a FREE word: load and store are one step */
#if BUG == 5
    atomic { word[s] = W(CLOSED, 0); wowner[s] = o };
#else
    atomic { word[s] = W(CLOSED, GEN(word[s]) + 1); wowner[s] = o };
#endif
    atomic { seq[s] = 2 * o; one_holder(k) };                /* release */
#if BUG == 7
    key[s] = k;
#endif
    index[k] = s
}

/* A caller that missed. On return: hit with (s, o), or no slot (the call is rejected). */
inline create(k)
{
    atomic { lock == 0 -> lock = me };
#if BUG == 4
    hit = false;
#else
    relookup(k);
#endif
    if
    :: hit
    :: else ->
        atomic {                               /* the first free slot */
            s = NONE;
            for (i : 0 .. NSLOT - 1) { if :: s == NONE && !HELD(i) -> s = i :: else fi }
            i = 0
        };
        if
        :: s == NONE ->
            select (s : 0 .. NSLOT - 1);       /* all held: try to evict one */
            evict(s);
            if :: !ev -> s = NONE :: else fi;
            ev = false
        :: else
        fi;
        if
        :: s != NONE -> fill(s, k); hit = true
        :: else
        fi
    fi;
    lock = 0
}

/* A caller CAS of the word of occupant o from w to nw; sets won, and gave when seq shows
   another occupant. */
inline caller_cas(nw)
{
    won = false;
#if BUG == 3
    gave = false;
#else
    gave = (seq[s] != 2 * o);
#endif
    if
    :: gave
    :: else ->
        atomic {
            if
            :: word[s] == w -> assert(wowner[s] == o); word[s] = nw; won = true    /* 5 */
            :: else
            fi
        }
    fi
}

inline count_out()
{
#if BUG == 1
    atomic { out[s]++; tout[O(s, o)]++; assert(okey[O(s, TAG(out[s]))] == k); won = true }
#else
    atomic {
        if
        :: TAG(out[s]) == o -> out[s]++; tout[O(s, o)]++;
                               assert(okey[O(s, TAG(out[s]))] == k); won = true   /* 1 */
        :: else -> gstale++; tgst[O(s, o)]++; won = false
        fi
    }
#endif
}

#define FORGET atomic { s = 0; o = 0; g = 0; w = 0; hit = false; won = false; gave = false; fail = false }

proctype caller(byte me; byte k)
{
    byte s, o, s1, kk, sv, i, n, g, c, sq, tries;
    byte w;
    bool hit, won, gave, ev, fail;
    for (c : 1 .. CALLS) {
        tries = 0;
again:
        if :: tries == TRIES -> goto next :: else -> tries++ fi;  /* rejected: bounds thrashing */
        lookup(k);
        if :: !hit -> create(k) :: else fi;
        if :: !hit -> goto next :: else fi;                  /* no slot: rejected */
reload:
        w = word[s];
        if
        :: ST(w) == FREE -> goto again                       /* evicted since */
        :: ST(w) == OPEN ->
            caller_cas(W(CLOSED, GEN(w) + 1));
            if
            :: won -> w = W(CLOSED, GEN(w) + 1)
            :: gave -> gave = false; goto again              /* not the occupant */
            :: else -> goto reload                           /* moved */
            fi
        :: ST(w) == CLOSED
        fi;
#if BUG == 1
        atomic { adm[s]++; tadm[O(s, o)]++; won = true };
#else
        atomic {
            if
            :: TAG(adm[s]) == o -> adm[s]++; tadm[O(s, o)]++; won = true
            :: else -> won = false
            fi
        };
#endif
        if :: !won -> goto again :: else fi;                 /* lost */
        g = GEN(w);
        /* the call; then its record, exactly once */
        if :: fail = true :: fail = false fi;
        sq = seq[s];
#if FIX
        if
        :: sq / 2 != o -> atomic { gstale++; tgst[O(s, o)]++ }
#else
        if
        :: sq != 2 * o -> atomic { gstale++; tgst[O(s, o)]++ }
#endif
        :: else ->
            w = word[s];
            if
            :: GEN(w) == g ->
                count_out();
                if
                :: won && fail && ST(w) == CLOSED -> caller_cas(W(OPEN, g + 1))  /* trip */
                :: else
                fi
            :: else -> count_out()                           /* stale on the slot */
            fi
        fi;
next:
        FORGET; sq = 0; tries = 0
    }
}

#if SWEEP
proctype sweeper()
{
    byte s, sv, w, j;
    bool ev;
    for (j : 1 .. SWEEP) {
        atomic { lock == 0 -> lock = 200 };
        select (s : 0 .. NSLOT - 1);
        if :: HELD(s) -> evict(s) :: else fi;
        s = 0; ev = false;
        lock = 0
    }
}
#endif

init
{
    byte i, s, o, sum;
    atomic {
        for (i : 0 .. NSLOT - 1) { seq[i] = 1; word[i] = W(FREE, 0) }
        for (i : 0 .. NKEY - 1) { index[i] = NONE }
        for (i : 0 .. NPROC - 1) {
#ifdef ONEKEY
            run caller(i + 1, 0)
#else
            run caller(i + 1, i % NKEY)
#endif
        }
#if SWEEP
        run sweeper()
#endif
    }
    _nr_pr == 1;
    /* 2: exact accounting, per occupant */
    for (s : 0 .. NSLOT - 1) {
        sadm[O(s, TAG(adm[s]))] = CNT(adm[s]);
        sout[O(s, TAG(out[s]))] = CNT(out[s])
    }
    sum = 0;
    for (s : 0 .. NSLOT - 1) {
        for (o : 1 .. MAXOCC - 1) {
            assert(sadm[O(s, o)] == tadm[O(s, o)] && sout[O(s, o)] == tout[O(s, o)]);
            assert(tadm[O(s, o)] == tout[O(s, o)] + tgst[O(s, o)]);
            sum = sum + tgst[O(s, o)]
        }
        if :: HELD(s) -> assert(tgst[O(s, seq[s] / 2)] == 0) :: else fi
    }
    assert(sum == gstale)
}
