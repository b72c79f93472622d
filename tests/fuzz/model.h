/* model.h - a plain sequential reference of the breaker semantics (docs/semantics.md).

   No atomics, no stripes, no cleverness: one struct, one function per API call, windows
   kept as the list of calls they hold. The differential fuzzer (tests/fuzz/fuzz_diff.c)
   runs it beside cb.h and compares everything observable after every operation.

   The clock is injected: the driver sets `now_ns` before each call. Only cb.h's types
   are used (section 1 of cb.h); nothing of its implementation. */
#ifndef MODEL_H_INCLUDED
#define MODEL_H_INCLUDED

#include "cb.h"

#define MODEL_HISTORY 16            /* events the model keeps, newest last */

typedef struct model_ticket {
    bool admitted, disabled;        /* disabled: admitted in DISABLED, records nothing */
    cb_reject why;                  /* a refused call: why */
    uint32_t gen;
    uint64_t start_ns;
} model_ticket;

typedef struct model_call {         /* one SUCCESS/FAILURE in the window */
    uint64_t epoch;                 /* time window: the bucket epoch it was counted in */
    bool failed, slow;
} model_call;

typedef struct model {
    cb_config cfg;                  /* resolved: every default filled in */
    char name[64];
    uint64_t now_ns;                /* the injected clock */

    cb_state state;
    uint32_t gen, k, taken, succeeded;
    uint64_t open_until_ms, round_until_ms;
    uint64_t state_since_ns, last_failure_ns;

    uint64_t admitted, rejected, successes, failures, ignored, slow, stale, opens;
    uint64_t rejected_by[CB_REJECT_BULKHEAD + 1];
    bool warned;                    /* the warning as last told (per CLOSED period) */
    uint32_t warned_gen;
    uint64_t nwarn;                 /* warning changes told */
    cb_reason last_warn;
    uint32_t run;                   /* consecutive failures */
    uint32_t in_flight;             /* admitted, not yet recorded (DISABLED calls too) */

    model_call *win;                /* the window's calls, oldest first */
    size_t nwin, capwin;
    uint64_t newest_epoch;          /* time window: the newest bucket epoch recorded */

    cb_event events[MODEL_HISTORY]; /* ring of the last transitions */
    uint64_t nevents;               /* transitions ever made */
} model;

/* Validity and defaults of a config, as docs/semantics.md states them. */
cb_err model_resolve(const cb_config *in, cb_config *out);

cb_err model_init(model *m, const cb_config *cfg, uint64_t now_ns);
void model_free(model *m);

bool model_allow(model *m, model_ticket *t);
bool model_record(model *m, model_ticket *t, cb_outcome o);  /* spends t */
void model_set_state(model *m, cb_state s);
void model_reset(model *m);
uint64_t model_retry_after_ms(const model *m);
void model_stats(const model *m, cb_stats *s);
const cb_event *model_last_event(const model *m);   /* NULL before the first transition */

/* The open period of the k-th open entering generation gen, in ms (jitter applied). */
uint64_t model_period_ms(const cb_config *cfg, uint32_t k, uint32_t gen);

#endif
