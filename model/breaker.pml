/* breaker.pml - the state-word protocol of cb.h, checked exhaustively by spin.

   What is modelled, step for step as cb.h does it (one Promela step per atomic load, store
   or CAS; a CAS loop that only moves a tagged word forward, cb__publish_time and
   cb__consec_update, takes effect at one point and is one step): cb__allow_slow (CLOSED admit, OPEN deadline and the move to HALF_OPEN,
   HALF_OPEN probe timeout and permits), cb__record_slow (stale test, the consecutive-
   failure run and the trip, probe success/failure/ignored), cb__transition (CAS, then the
   deadline word published by the winner or by any reader that finds it missing),
   cb_set_state. The clock is a shared counter any caller may advance; deadlines are
   abstract ticks (open period P, probe timeout PT). Not modelled: counters (stripes),
   windows other than the consecutive run, k and backoff, history, generation wrap.

   Callers may die: abandon an admitted call (never record it) or stop between winning a
   transition and publishing its deadline. Then a last caller, with the clock far ahead,
   must get a call admitted within three tries: nothing can wedge the breaker.

   Assertions (ghost variables, set inside the atomic step they describe):
   - at most H probes hold a permit in a round; a round closes with exactly H successes;
   - each generation is entered by exactly one transition;
   - a record whose ticket is stale changes neither the state word nor the visible run;
   - OPEN is never left before its period: the move to HALF_OPEN happens at or after the
     deadline of the generation it leaves;
   - nothing wedges the breaker: the last caller is admitted within three calls;
   - spin's own: no invalid end state (deadlock), no assertion violated.

   BUG=n plants a known bug (make test-model shows each is caught):
     1 permit taken by load + store instead of CAS
     2 transition by load + store instead of CAS
     3 record without the generation test
     4 OPEN reader trusts a deadline without checking its generation tag
     5 HALF_OPEN rounds never time out (with DIE=1: an abandoned probe wedges the breaker)
     6 OPEN reader does not publish a missing deadline (with DIE=2: wedged) */

#ifndef NPROC
#define NPROC 2         /* callers, besides the operator and the last caller */
#endif
#ifndef CALLS
#define CALLS 2         /* calls per caller */
#endif
#ifndef BUG
#define BUG 0
#endif
#ifndef DIE
#define DIE 0           /* 1: a caller never records an admitted call; 2: a caller dies
                           between winning a transition and publishing its deadline */
#endif
#ifndef H
#define H 2             /* half_open_calls */
#endif
#ifndef CF
#define CF 2            /* consecutive_failures */
#endif
#define P 1             /* open period, in ticks */
#define PT 1            /* probe timeout, in ticks */
#define TMAX 2          /* callers move the clock up to here */
#define MAXGEN 16

#define CLOSED 0
#define OPEN 1
#define HALF 2

/* state word: state:2 | taken:3 | succeeded:3 | generation */
#define ST(w)    ((w) & 3)
#define TAKEN(w) (((w) >> 2) & 7)
#define SUCC(w)  (((w) >> 5) & 7)
#define GEN(w)   ((w) >> 8)
#define W(s, t, c, g) ((s) | (t) << 2 | (c) << 5 | (g) << 8)
#define T1 4            /* one permit */
#define S1 32           /* one success */

/* tagged words (deadline, consecutive run): generation << 8 | value */
#define TAG(v) ((v) >> 8)
#define VAL(v) ((v) & 255)
#define TV(g, x) ((g) << 8 | (x))

#ifdef START_HALF              /* start in a round of probes, entered manually at time 0 */
int word = W(HALF, 0, 0, 1);
int deadline = TV(1, PT);
#else
int word = W(CLOSED, 0, 0, 0);
int deadline = TV(0, 0);
#endif
int consec = TV(0, 0);
byte now;
byte deaths;            /* at most one caller dies: keeps the state space small */

/* ghosts */
byte entered[MAXGEN];   /* transitions into each generation */
byte held[MAXGEN];      /* probes holding a permit of the round of each generation */
byte succeeded[MAXGEN]; /* successful probes of each round */
byte opened_at[MAXGEN]; /* clock reading of the transition into OPEN, per generation */

#define VISIBLE_RUN(c) (TAG(c) == GEN(word) && ST(word) == CLOSED -> VAL(c) : 0)

/* cb__publish_time: a CAS loop that only moves the tag forward, so it takes effect at one
   point (its successful CAS, or the load that saw a newer tag): one step here. */
inline publish(g, x)
{
    atomic { if :: TAG(deadline) < g -> deadline = TV(g, x) :: else fi }
}

/* The ghosts of a new generation, set with the step that makes it. */
#define NEW_GEN(to, t) entered[GEN(to)]++; held[GEN(to)] = TAKEN(to); opened_at[GEN(to)] = t

/* cb__transition: CAS from w to `to`; the winner then publishes the time of the new
   state (with DIE == 2 it may die in between). On failure w is the fresh word. `to` is
   an expression of w (inline arguments are text): it is evaluated once, into nw. */
inline transition(to)
{
#if BUG == 2
    nw = to;
    if
    :: word == w -> word = nw; won = true; NEW_GEN(nw, t)
    :: else -> w = word; won = false
    fi;
#else
    atomic {
        nw = to;
        if
        :: word == w -> word = nw; won = true; NEW_GEN(nw, t)
        :: else -> w = word; won = false
        fi
    };
#endif
    if
    :: won ->
        assert(GEN(nw) < MAXGEN && entered[GEN(nw)] == 1);
        w = nw;
#if DIE == 2
        if :: deaths == 0 -> deaths++; goto dead :: true fi;
#endif
        publish(GEN(nw), t + (ST(nw) == OPEN -> P : (ST(nw) == HALF -> PT : 0)))
    :: else
    fi
}

/* cb__allow_slow: sets ok and tgen. */
inline allow()
{
    ok = false;
    w = word;
    do
    :: ST(w) == CLOSED -> ok = true; tgen = GEN(w); break
    :: ST(w) == OPEN ->
        t = now;
        d = deadline;
#if BUG == 4
        if :: true ->
#else
        if
        :: TAG(d) != GEN(w) ->                                      /* reject */
            if :: BUG != 6 -> publish(GEN(w), t + P) :: else fi;
            break
        :: else ->
#endif
            if
            :: t < VAL(d) -> break                                   /* reject */
            :: else ->
                assert(t >= opened_at[GEN(w)] + P);
                transition(W(HALF, 1, 0, GEN(w) + 1));
                if
                :: won -> ok = true; tgen = GEN(w); break
                :: else
                fi
            fi
        fi
    :: ST(w) == HALF ->
        t = now;
        d = deadline;
        if
        :: TAG(d) != GEN(w) -> publish(GEN(w), t + PT)
        :: BUG != 5 && TAG(d) == GEN(w) && t >= VAL(d) ->
            transition(W(OPEN, 0, 0, GEN(w) + 1));
            goto again
        :: else
        fi;
        if
        :: TAKEN(w) >= H -> break                                    /* reject */
        :: else ->
#if BUG == 1
            word = w + T1; won = true; held[GEN(w)]++;
#else
            atomic { if :: word == w -> word = w + T1; won = true; held[GEN(w)]++
                        :: else -> w = word; won = false fi };
#endif
            if
            :: won -> assert(held[GEN(w)] <= H); ok = true; tgen = GEN(w); break
            :: else
            fi
        fi;
again:  skip
    od
}

/* cb__record_slow with outcome o: 0 success, 1 failure, 2 ignored. */
inline record(o)
{
    w = word;
    do
    :: BUG != 3 && GEN(w) != tgen -> break                          /* stale */
    :: else -> if
    :: ST(w) == CLOSED && o == 2 -> break                           /* counted, no more */
    :: ST(w) == CLOSED && o != 2 ->
        atomic {                  /* cb__consec_update: a CAS loop, one step here */
            if
            :: TAG(consec) > tgen -> rn = 0                         /* a newer period */
            :: else ->
                rn = (TAG(consec) == tgen -> VAL(consec) : 0);
                if
                :: o == 1 -> rn++
                :: o == 0 -> rn = 0
                fi;
                assert(GEN(word) == tgen || VISIBLE_RUN(consec) == VISIBLE_RUN(TV(tgen, rn)));
                consec = TV(tgen, rn)
            fi
        };
        if
        :: rn >= CF -> t = now; transition(W(OPEN, 0, 0, tgen + 1))
        :: else
        fi;
        break
    :: ST(w) == HALF ->
        if
        :: o == 2 ->
            atomic {
                if
                :: word == w -> assert(GEN(w) == tgen && TAKEN(w) > 0); word = w - T1; won = true;
                                held[tgen]--
                :: else -> w = word; won = false
                fi
            }
        :: o == 1 -> t = now; transition(W(OPEN, 0, 0, GEN(w) + 1))
        :: o == 0 && SUCC(w) + 1 >= H ->
            t = now;
            transition(W(CLOSED, 0, 0, GEN(w) + 1));
            if :: won -> assert(succeeded[tgen] + 1 == H) :: else fi
        :: o == 0 && SUCC(w) + 1 < H ->
            atomic {
                if
                :: word == w -> assert(GEN(w) == tgen); word = w + S1; won = true;
                                succeeded[tgen]++
                :: else -> w = word; won = false
                fi
            }
        fi;
        if :: won -> break :: else fi
    :: ST(w) == OPEN -> break                                       /* admits nothing */
    fi
    od
}

/* Locals are dead between calls: zero them so that states differing only there merge. */
#define FORGET atomic { w = 0; nw = 0; d = 0; t = 0; tgen = 0; rn = 0; ok = false; won = false }

proctype caller()
{
    int w, nw, d;
    byte t, tgen, rn, i;
    bool ok, won;
    for (i : 1 .. CALLS) {
        if :: now < TMAX -> now++ :: true fi;
        allow();
        if
        :: ok -> if
                 :: record(0)
                 :: record(1)
                 :: record(2)
#if DIE == 1
                 :: deaths == 0 -> deaths++; goto dead              /* never records */
#endif
                 fi
        :: else
        fi;
        FORGET
    }
dead:
    FORGET
}

#ifdef MANUAL
/* cb_set_state: one manual transition to any automatic state. */
proctype operator()
{
    int w, nw;
    byte t, s;
    bool won;
    if :: s = CLOSED :: s = OPEN :: s = HALF fi;
    t = now;
    w = word;
    do
    :: transition(W(s, 0, 0, GEN(w) + 1)); if :: won -> break :: else fi
    od;
dead:
    skip
}
#endif

init
{
    int w, nw, d;
    byte t, tgen, i;
    bool ok, won;
    atomic {
#ifdef START_HALF
        entered[1] = 1;
#endif
        for (i : 1 .. NPROC) { run caller() }
#ifdef MANUAL
        run operator()
#endif
    }
    _nr_pr == 1;                     /* everyone else has finished or died */
    deaths = 1;                      /* the last caller does not die */
    for (i : 1 .. 3) {
        now = now + 8;               /* past any deadline published so far */
        allow();
        if :: ok -> break :: else fi
    }
    assert(ok);
    /* every generation up to the current one was entered exactly once */
    for (i : 1 .. GEN(word)) { assert(entered[i] == 1) }
dead:
    skip
}
