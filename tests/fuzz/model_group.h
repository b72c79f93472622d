/* model_group.h - a plain sequential reference of a keyed group (cb_group in cb.h).

   A table of `capacity` slots, each holding at most one key with its own reference
   breaker (model.c) made from the template on first use; an overflow breaker (a model
   breaker too) for keys that are not valid or find no place; eviction of idle keys in the
   order cb.h takes them (free slots first, slot 0 first, then a scan from the hand); the
   max_open_share cap on automatic trips and the dominant_share check.

   Slots are modelled because they are observable: the order of cb_group_each, and the
   generations, which continue from a slot's last key to its next. Single-threaded; the
   clock is injected (mg_set_now before each call). fuzz_group.c runs it beside cb.h. */
#ifndef MODEL_GROUP_H_INCLUDED
#define MODEL_GROUP_H_INCLUDED

#include "model.h"

#define MG_CAPACITY_MAX 16      /* the model's own limits (cb.h's are far larger) */
#define MG_KEY_BYTES 64
#define MG_HISTORY 256          /* as cb.h's group ring */
#define MG_OP_EVENTS 32

typedef struct mg_ticket {
    uint64_t occupant;          /* the key that admitted it (0: the overflow breaker) */
    uint32_t slot;              /* its slot */
    model_ticket t;
} mg_ticket;

typedef struct mg_slot {
    bool held;
    uint64_t occupant;          /* numbers every key made, from 1 (kept when it leaves) */
    char key[MG_KEY_BYTES];
    size_t len;
    model m;                    /* the key's breaker, in absolute generations */
    uint32_t last_gen;          /* the generation the slot's word is in while free */
    uint64_t last_ms;           /* last allow, record or set_state (group clock, ms) */
    uint64_t dom;               /* last dominant-share trip: k << 48 | ms */
    uint32_t rounds[10];        /* admitted count at each round of the dominant check */
} mg_slot;

typedef struct mg_event {       /* one transition; ev.key is NULL, the key is here */
    cb_event ev;
    bool keyed;                 /* a key's (else the overflow breaker's) */
    char key[MG_KEY_BYTES];
} mg_event;

typedef struct model_group {
    cb_config tmpl;             /* resolved */
    char name[64];
    uint32_t capacity, key_max, idle_ms, dominant_min_calls, dominant_window_ms;
    double max_open_share, dominant_share;
    uint64_t now_ns;
    /* as cb.h does it now, where it differs from docs/groups.md (set by the driver):
       - a held trip is tried again only when a record changes the count window's
         figures (or by the failure run);
       - a record of a ticket whose key was evicted, its slot still free, counts stale
         with an outcome outside the enum too, and does not spend the ticket then */

    mg_slot slot[MG_CAPACITY_MAX];
    uint32_t free_stack[MG_CAPACITY_MAX], free_n;   /* popped from the top */
    uint64_t hand, scan_failed_ms, dom_next_ms, dom_round, occupants;
    model overflow;
    uint64_t created, evicted, overflowed, trips_held, stale;

    mg_event hist[MG_HISTORY];  /* the keys' transitions, as the group ring has them */
    uint64_t nhist;
    mg_event op[MG_OP_EVENTS];  /* every transition since mg_op_begin, keys' and overflow's */
    size_t nop;
} model_group;

/* Validity and defaults of a group config (the template's by model_resolve). */
cb_err mg_resolve(const cb_group_config *in, cb_group_config *out);

cb_err mg_init(model_group *g, const cb_group_config *cfg, uint64_t now_ns);
void mg_free(model_group *g);
void mg_set_now(model_group *g, uint64_t now_ns);
void mg_op_begin(model_group *g);

bool mg_allow(model_group *g, const char *key, size_t len, mg_ticket *t);
bool mg_record(model_group *g, mg_ticket *t, cb_outcome o);      /* spends t */
cb_state mg_get_state(const model_group *g, const char *key, size_t len);
cb_err mg_set_state(model_group *g, const char *key, size_t len, cb_state s);
bool mg_key_stats(const model_group *g, const char *key, size_t len, cb_stats *s);
void mg_slot_stats(const mg_slot *sl, cb_stats *s);   /* a held key's, as cb_group_key_stats */
size_t mg_prune(model_group *g);
void mg_stats(const model_group *g, cb_group_stats *s);

/* The slot holding the key, or -1. */
int mg_find(const model_group *g, const char *key, size_t len);

#endif
