/* cbflags.h - command-line flags named after the cb_config fields.

   Shared by tools/cbctl, tools/cb-replay, tests/shm_drive and the chaos workload
   programs, so that one breaker configuration reads the same everywhere:

       --consecutive-failures=5 --window-calls=20 --failure-rate=0.5 --open-ms=1000 ...

   Each flag is a cb_config field with '_' written as '-', always in the form
   --flag=value; the table and the usage text come from cb.h's list of config fields
   (CB__CONFIG_FIELDS), so a new field is a new flag without an edit here. cbflags_parse() checks only the syntax and the range of the C type; the
   meaning (e.g. failure_rate in (0,1]) is left to cb_config_check(), so the rules live in
   one place. --name keeps a pointer into arg: keep arg alive as long as the config.

   Header only; every function is static inline, so unused ones cost nothing. */
#ifndef CBFLAGS_H_INCLUDED
#define CBFLAGS_H_INCLUDED

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cb.h"

enum cbflags__type { CBFLAGS__U32, CBFLAGS__U64, CBFLAGS__DBL, CBFLAGS__STR };

typedef struct cbflags__flag {
    const char *flag;
    size_t offset;
    enum cbflags__type type;
} cbflags__flag;

#define CBFLAGS__F(type, field, flag, doc) {flag, offsetof(cb_config, field), CBFLAGS__##type},
static const cbflags__flag cbflags__table[] = {
    {"name", offsetof(cb_config, name), CBFLAGS__STR},
    CB__CONFIG_FIELDS(CBFLAGS__F)
};
#undef CBFLAGS__F

/* A keyed group's own flags, offsets in cb_group_config. */
#define CBFLAGS__G(type, field, flag, doc) {flag, offsetof(cb_group_config, field), CBFLAGS__##type},
static const cbflags__flag cbflags__group_table[] = { CB__GROUP_CONFIG_FIELDS(CBFLAGS__G) };
#undef CBFLAGS__G

/* For usage messages: the flags, one per line, with what each means. */
#define CBFLAGS__VALUE_U32 "N"
#define CBFLAGS__VALUE_U64 "N"
#define CBFLAGS__VALUE_DBL "X"
#define CBFLAGS__USAGE_LINE(type, field, flag, doc) "  --" flag "=" CBFLAGS__VALUE_##type "  " doc "\n"
#define CBFLAGS_USAGE                                                                   \
    "breaker flags (cb_config fields; 0 or absent = the default in brackets, or off):\n" \
    "  --name=S  the breaker's name (breaker)\n" CB__CONFIG_FIELDS(CBFLAGS__USAGE_LINE)

#define CBFLAGS_GROUP_USAGE                                                   \
    "group flags (cb_group_config fields; 0 or absent = the default in brackets, or off):\n" \
    CB__GROUP_CONFIG_FIELDS(CBFLAGS__USAGE_LINE)

/* Strict unsigned decimal: digits only, no sign, no overflow past max. */
static inline int cbflags__unsigned(const char *s, uint64_t max, uint64_t *out) {
    if (*s < '0' || *s > '9')
        return 0;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return 0;
    *out = v;
    return 1;
}

/* Finite decimal number with nothing after it. */
static inline int cbflags__double(const char *s, double *out) {
    if (!*s)
        return 0;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || *end || v != v || v > 1e308 || v < -1e308)
        return 0;
    *out = v;
    return 1;
}

/* 1: arg was a breaker flag and is stored in cfg; 0: not a breaker flag (cfg untouched);
   -1: a breaker flag with a bad value, err says which flag and value. */
static inline int cbflags__parse_in(const cbflags__flag *table, size_t count, const char *arg,
                                    void *cfg, char *err, size_t errlen) {
    if (strncmp(arg, "--", 2) != 0)
        return 0;
    const char *key = arg + 2, *eq = strchr(key, '=');
    size_t klen = eq ? (size_t)(eq - key) : strlen(key);
    for (size_t i = 0; i < count; i++) {
        const cbflags__flag *f = &table[i];
        if (strlen(f->flag) != klen || strncmp(f->flag, key, klen) != 0)
            continue;
        if (!eq) {
            snprintf(err, errlen, "--%s needs a value: --%s=VALUE", f->flag, f->flag);
            return -1;
        }
        const char *val = eq + 1;
        char *field = (char *)cfg + f->offset;
        uint64_t u;
        double d;
        switch (f->type) {
        case CBFLAGS__U32:
            if (!cbflags__unsigned(val, UINT32_MAX, &u))
                goto bad;
            *(uint32_t *)(void *)field = (uint32_t)u;
            return 1;
        case CBFLAGS__U64:
            if (!cbflags__unsigned(val, UINT64_MAX, &u))
                goto bad;
            *(uint64_t *)(void *)field = u;
            return 1;
        case CBFLAGS__DBL:
            if (!cbflags__double(val, &d))
                goto bad;
            *(double *)(void *)field = d;
            return 1;
        case CBFLAGS__STR:
            if (!*val)
                goto bad;
            *(const char **)(void *)field = val;
            return 1;
        }
    bad:
        snprintf(err, errlen, "--%s: bad value '%s' (want %s)", f->flag, val,
                 f->type == CBFLAGS__DBL   ? "a number"
                 : f->type == CBFLAGS__STR ? "a non-empty string"
                 : f->type == CBFLAGS__U32 ? "an integer 0..4294967295"
                                           : "an integer 0..18446744073709551615");
        return -1;
    }
    return 0;
}

static inline int cbflags_parse(const char *arg, cb_config *cfg, char *err, size_t errlen) {
    return cbflags__parse_in(cbflags__table, sizeof cbflags__table / sizeof cbflags__table[0], arg,
                             cfg, err, errlen);
}

/* As cbflags_parse, for a keyed group: its own flags, then the template's. */
static inline int cbflags_group_parse(const char *arg, cb_group_config *gc, char *err, size_t errlen) {
    int got = cbflags__parse_in(cbflags__group_table,
                                sizeof cbflags__group_table / sizeof cbflags__group_table[0], arg,
                                gc, err, errlen);
    return got ? got : cbflags_parse(arg, &gc->breaker, err, errlen);
}

/* Shortest text that reads back as v: 0.1, not 0.10000000000000001. */
static inline void cbflags__fmt_double(char *buf, size_t cap, double v) {
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

/* The value of flag f in cfg as text; "" when it is zero (or NULL). */
static inline void cbflags__text(const void *cfg, const cbflags__flag *f, char *val, size_t cap) {
    const void *field = (const char *)cfg + f->offset;
    val[0] = '\0';
    switch (f->type) {
    case CBFLAGS__U32:
        if (*(const uint32_t *)field)
            snprintf(val, cap, "%" PRIu32, *(const uint32_t *)field);
        break;
    case CBFLAGS__U64:
        if (*(const uint64_t *)field)
            snprintf(val, cap, "%" PRIu64, *(const uint64_t *)field);
        break;
    case CBFLAGS__DBL:
        if (*(const double *)field != 0)
            cbflags__fmt_double(val, cap, *(const double *)field);
        break;
    case CBFLAGS__STR:
        if (*(const char *const *)field)
            snprintf(val, cap, "%s", *(const char *const *)field);
        break;
    }
}

/* Appends to buf at *n with snprintf semantics (*n counts what did not fit, too). */
static inline void cbflags__put(char *buf, size_t cap, size_t *n, const char *s) {
    if (*n < cap)
        snprintf(buf + *n, cap - *n, "%s", s);
    *n += strlen(s);
}

#define CBFLAGS__COUNT (sizeof cbflags__table / sizeof cbflags__table[0])

/* The breaker flags of cfg that are not zero, space separated, as cbflags_parse reads
   them (for logs and reports). snprintf semantics: returns the full length. */
static inline void cbflags__format_in(const cbflags__flag *table, size_t count, const void *cfg,
                                      char *buf, size_t cap, size_t *n) {
    for (size_t i = 0; i < count; i++) {
        char val[96], one[160];
        cbflags__text(cfg, &table[i], val, sizeof val);
        if (!*val)
            continue;
        snprintf(one, sizeof one, "%s--%s=%s", *n ? " " : "", table[i].flag, val);
        cbflags__put(buf, cap, n, one);
    }
}

static inline int cbflags_format(const cb_config *cfg, char *buf, size_t cap) {
    size_t n = 0;
    if (cap)
        buf[0] = '\0';
    cbflags__format_in(cbflags__table, CBFLAGS__COUNT, cfg, buf, cap, &n);
    return (int)n;
}

/* A group's flags, then its template's. */
static inline int cbflags_group_format(const cb_group_config *gc, char *buf, size_t cap) {
    size_t n = 0;
    if (cap)
        buf[0] = '\0';
    cbflags__format_in(cbflags__group_table,
                       sizeof cbflags__group_table / sizeof cbflags__group_table[0], gc, buf, cap, &n);
    cbflags__format_in(cbflags__table, CBFLAGS__COUNT, &gc->breaker, buf, cap, &n);
    return (int)n;
}

/* Every breaker flag of cfg as one JSON object keyed by flag name, zeros included,
   e.g. {"name":"redis","consecutive-failures":5,...}. snprintf semantics. */
static inline int cbflags_json(const cb_config *cfg, char *buf, size_t cap) {
    size_t n = 0;
    if (cap)
        buf[0] = '\0';
    for (size_t i = 0; i < CBFLAGS__COUNT; i++) {
        const cbflags__flag *f = &cbflags__table[i];
        char val[96], one[256];
        cbflags__text(cfg, f, val, sizeof val);
        if (f->type != CBFLAGS__STR)
            snprintf(one, sizeof one, "%s\"%s\":%s", i ? "," : "{", f->flag, *val ? val : "0");
        else if (!*val)
            snprintf(one, sizeof one, "%s\"%s\":null", i ? "," : "{", f->flag);
        else { /* names are printable ASCII: only quotes and backslashes need escaping */
            char esc[192];
            size_t e = 0;
            for (const char *p = val; *p && e + 2 < sizeof esc; p++) {
                if (*p == '"' || *p == '\\')
                    esc[e++] = '\\';
                esc[e++] = *p;
            }
            esc[e] = '\0';
            snprintf(one, sizeof one, "%s\"%s\":\"%s\"", i ? "," : "{", f->flag, esc);
        }
        cbflags__put(buf, cap, &n, one);
    }
    cbflags__put(buf, cap, &n, "}");
    return (int)n;
}

#endif
