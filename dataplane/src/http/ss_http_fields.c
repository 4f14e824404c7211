/*
 * ss_http_fields.c - the field values an object cache acts on: Range and
 * Content-Range (RFC 9110 §14), HTTP-dates (§5.6.7), entity-tag lists for
 * If-Match / If-None-Match (§8.8.3, §13.1), and Cache-Control (RFC 9111
 * §5.2). Each takes one field value as the head parser left it (OWS
 * trimmed) and never fails loudly: a value it cannot read is reported so
 * that the caller can do what the RFC says for that field.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ss_http_internal.h"

/* ---- Range ---------------------------------------------------------------------------- */

int ss_http_range_parse(const char *value, size_t len, uint64_t size, uint64_t *first,
                        uint64_t *last)
{
    /* ranges-specifier = range-unit "=" range-set; the unit is case-
     * insensitive. A server may ignore Range (RFC 9110 §14.2), so anything
     * it does not serve -- other units, several ranges -- reads as IGNORE. */
    const char *eq = memchr(value, '=', len);
    if (eq == NULL || !ss_http_eq_nocase(value, (size_t)(eq - value), "bytes"))
        return SS_HTTP_RANGE_IGNORE;
    const char *s = eq + 1;
    size_t n = len - (size_t)(s - value);
    if (memchr(s, ',', n))
        return SS_HTTP_RANGE_IGNORE;
    const char *dash = memchr(s, '-', n);
    if (dash == NULL)
        return SS_HTTP_RANGE_IGNORE;
    size_t a = (size_t)(dash - s), b = n - a - 1;
    uint64_t fp, lp;

    /* Digits saturate: a position past 2^64 is past any representation,
     * which is what the comparisons below then conclude. */
    if (a == 0) {
        /* suffix-range "-n": the last n bytes. RFC 9110 §14.1.3 makes
         * "-0" unsatisfiable; on an empty representation there is no
         * byte to name, so any suffix is too. */
        if (!ss_http_parse_digits(dash + 1, b, UINT64_MAX, &lp))
            return SS_HTTP_RANGE_IGNORE;
        if (lp == 0 || size == 0)
            return SS_HTTP_RANGE_UNSATISFIABLE;
        *first = lp >= size ? 0 : size - lp;
        *last = size - 1;
        return SS_HTTP_RANGE_OK;
    }
    if (!ss_http_parse_digits(s, a, UINT64_MAX, &fp))
        return SS_HTTP_RANGE_IGNORE;
    if (b == 0)
        lp = UINT64_MAX;
    else if (!ss_http_parse_digits(dash + 1, b, UINT64_MAX, &lp) || lp < fp)
        return SS_HTTP_RANGE_IGNORE;  /* last < first is invalid (§14.1.1) */
    if (fp >= size)
        return SS_HTTP_RANGE_UNSATISFIABLE;
    *first = fp;
    *last = lp >= size ? size - 1 : lp;
    return SS_HTTP_RANGE_OK;
}

static int fits(int n, size_t cap)
{
    return n >= 0 && (size_t)n < cap ? n : -ENOSPC;
}

int ss_http_content_range(char *out, size_t cap, uint64_t first, uint64_t last, uint64_t size)
{
    return fits(snprintf(out, cap, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, first, last, size),
                cap);
}

int ss_http_content_range_unsatisfied(char *out, size_t cap, uint64_t size)
{
    return fits(snprintf(out, cap, "bytes */%" PRIu64, size), cap);
}

/* ---- HTTP-date -------------------------------------------------------------------------- */

static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const long_days[7] = {"Sunday", "Monday", "Tuesday", "Wednesday",
                                         "Thursday", "Friday", "Saturday"};

/* The first and last second an IMF-fixdate can spell (years 0000-9999). */
#define SS_HTTP_DATE_MIN INT64_C(-62167219200)
#define SS_HTTP_DATE_MAX INT64_C(253402300799)

/* a / b rounded down, without the overflow of (a - (b - 1)) / b near INT64_MIN. */
static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b < 0) ? q - 1 : q;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar,
 * counted in 400-year eras that start on March 1st so the leap day falls
 * at the end of each year. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* The inverse of days_from_civil. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static bool digits_at(const char *s, size_t n, unsigned *v)
{
    unsigned acc = 0;
    for (size_t i = 0; i < n; i++) {
        if (!ss_http_is((unsigned char)s[i], SS_HTTP_C_DIGIT))
            return false;
        acc = acc * 10 + (unsigned)(s[i] - '0');
    }
    *v = acc;
    return true;
}

static int month_at(const char *s)
{
    /* HTTP-date is case-sensitive (RFC 9110 §5.6.7). */
    for (int i = 0; i < 12; i++)
        if (memcmp(s, months[i], 3) == 0)
            return i + 1;
    return 0;
}

static bool day_name_at(const char *s, size_t n, bool long_form)
{
    for (int i = 0; i < 7; i++) {
        const char *name = long_form ? long_days[i] : days[i];
        if (strlen(name) == n && memcmp(s, name, n) == 0)
            return true;
    }
    return false;
}

/* "HH:MM:SS" */
static bool time_at(const char *s, unsigned *hh, unsigned *mm, unsigned *ss)
{
    return s[2] == ':' && s[5] == ':' && digits_at(s, 2, hh) && digits_at(s + 3, 2, mm) &&
           digits_at(s + 6, 2, ss) && *hh <= 23 && *mm <= 59 && *ss <= 60;
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int to_time(int64_t y, unsigned mon, unsigned d, unsigned hh, unsigned mm, unsigned ss,
                   int64_t *t)
{
    static const unsigned mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mon == 0 || d == 0 || d > mdays[mon - 1] + (mon == 2 && is_leap(y)))
        return -EINVAL;
    *t = days_from_civil(y, mon, d) * 86400 + hh * 3600 + mm * 60 + ss;
    return 0;
}

/* RFC 9110 §5.6.7: a two-digit year more than 50 years in the future is
 * the most recent past year with those digits. */
static int64_t full_year(unsigned yy, int64_t now)
{
    int64_t ny;
    unsigned nm, nd;
    /* A clock outside years 0-9999 is wrong; clamping keeps the sums small. */
    if (now < SS_HTTP_DATE_MIN)
        now = SS_HTTP_DATE_MIN;
    if (now > SS_HTTP_DATE_MAX)
        now = SS_HTTP_DATE_MAX;
    civil_from_days(floor_div(now, 86400), &ny, &nm, &nd);
    int64_t y = ny - ny % 100 + yy;
    if (y > ny + 50)
        y -= 100;
    return y;
}

int ss_http_date_parse(const char *s, size_t n, int64_t now, int64_t *t)
{
    unsigned d, y, hh, mm, ss;
    int mon;
    if (n == 29 && s[3] == ',') {
        /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
        if (!day_name_at(s, 3, false) || memcmp(s + 3, ", ", 2) != 0 || s[7] != ' ' ||
            s[11] != ' ' || s[16] != ' ' || memcmp(s + 25, " GMT", 4) != 0 ||
            !digits_at(s + 5, 2, &d) || !(mon = month_at(s + 8)) ||
            !digits_at(s + 12, 4, &y) || !time_at(s + 17, &hh, &mm, &ss))
            return -EINVAL;
        return to_time(y, (unsigned)mon, d, hh, mm, ss, t);
    }
    if (n == 24 && s[3] == ' ') {
        /* asctime: "Sun Nov  6 08:49:37 1994" */
        const char *day = s + 8;
        if (!day_name_at(s, 3, false) || !(mon = month_at(s + 4)) || s[7] != ' ' ||
            s[10] != ' ' || s[19] != ' ' || !time_at(s + 11, &hh, &mm, &ss) ||
            !digits_at(s + 20, 4, &y))
            return -EINVAL;
        if (day[0] == ' ' ? !digits_at(day + 1, 1, &d) : !digits_at(day, 2, &d))
            return -EINVAL;
        return to_time(y, (unsigned)mon, d, hh, mm, ss, t);
    }
    /* rfc850-date: "Sunday, 06-Nov-94 08:49:37 GMT" */
    const char *comma = memchr(s, ',', n < 10 ? n : 10);
    if (comma == NULL || n - (size_t)(comma - s) != 24)
        return -EINVAL;
    const char *p = comma + 2;
    if (!day_name_at(s, (size_t)(comma - s), true) || comma[1] != ' ' ||
        !digits_at(p, 2, &d) || p[2] != '-' || !(mon = month_at(p + 3)) || p[6] != '-' ||
        !digits_at(p + 7, 2, &y) || p[9] != ' ' || !time_at(p + 10, &hh, &mm, &ss) ||
        memcmp(p + 18, " GMT", 4) != 0)
        return -EINVAL;
    return to_time(full_year(y, now), (unsigned)mon, d, hh, mm, ss, t);
}

int ss_http_date_format(int64_t t, char *out, size_t cap)
{
    if (t < SS_HTTP_DATE_MIN || t > SS_HTTP_DATE_MAX)
        return -EINVAL;
    int64_t days_since = floor_div(t, 86400);
    int64_t secs = t - days_since * 86400;
    int64_t y;
    unsigned m, d;
    civil_from_days(days_since, &y, &m, &d);
    if (cap < SS_HTTP_DATE_LEN + 1)
        return -ENOSPC;
    /* 1970-01-01 was a Thursday. */
    int wday = (int)(((days_since % 7) + 11) % 7);
    snprintf(out, cap, "%s, %02u %s %04d %02d:%02d:%02d GMT", days[wday], d, months[m - 1],
             (int)y, (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60));
    return SS_HTTP_DATE_LEN;
}

/* ---- entity-tags -------------------------------------------------------------------------- */

/* entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE, etagc = %x21 / %x23-7E /
 * obs-text (RFC 9110 §8.8.3). Gives the opaque-tag with its quotes. */
static bool entity_tag(const char *s, size_t n, bool *weak, const char **opaque,
                       size_t *opaque_len)
{
    *weak = n >= 2 && s[0] == 'W' && s[1] == '/';
    if (*weak) {
        s += 2;
        n -= 2;
    }
    if (n < 2 || s[0] != '"' || s[n - 1] != '"')
        return false;
    for (size_t i = 1; i + 1 < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || !ss_http_is(ch, SS_HTTP_C_VCHAR | SS_HTTP_C_OBS))
            return false;
    }
    *opaque = s;
    *opaque_len = n;
    return true;
}

/* 1 when some tag of the list matches etag (strong or weak comparison,
 * RFC 9110 §8.8.3.2), 0 when none does, -EINVAL for a malformed list or
 * etag. The whole list is checked before the answer is given. */
static int etag_list_match(const char *list, size_t len, const char *etag, size_t etag_len,
                           bool strong)
{
    bool cur_weak = false;
    const char *cur = NULL;
    size_t cur_len = 0;
    if (etag && !entity_tag(etag, etag_len, &cur_weak, &cur, &cur_len))
        return -EINVAL;
    while (len > 0 && ss_http_is((unsigned char)list[0], SS_HTTP_C_WS)) {
        list++;
        len--;
    }
    while (len > 0 && ss_http_is((unsigned char)list[len - 1], SS_HTTP_C_WS))
        len--;
    if (len == 1 && list[0] == '*')
        return etag != NULL;

    struct ss_http_list l;
    const char *e;
    size_t n;
    int elements = 0, match = 0;
    ss_http_list_init(&l, list, len);
    while (ss_http_list_next(&l, false, &e, &n)) {
        bool weak;
        const char *op;
        size_t op_len;
        if (!entity_tag(e, n, &weak, &op, &op_len))
            return -EINVAL;
        elements++;
        if (etag && op_len == cur_len && memcmp(op, cur, op_len) == 0 &&
            (!strong || (!weak && !cur_weak)))
            match = 1;
    }
    return elements ? match : -EINVAL;
}

int ss_http_if_match(const char *list, size_t len, const char *etag, size_t etag_len)
{
    return etag_list_match(list, len, etag, etag_len, true);
}

int ss_http_if_none_match(const char *list, size_t len, const char *etag, size_t etag_len)
{
    return etag_list_match(list, len, etag, etag_len, false);
}

/* ---- Cache-Control ------------------------------------------------------------------------ */

void ss_http_cache_control_init(struct ss_http_cache_control *cc)
{
    memset(cc, 0, sizeof(*cc));
    cc->max_age = cc->s_maxage = cc->stale_while_revalidate = cc->stale_if_error = -1;
}

/* RFC 9111 §1.2.2: a delta-seconds too large to hold reads as 2^31. */
#define SS_HTTP_DELTA_SECONDS_CAP (UINT64_C(1) << 31)

static void set_seconds(int64_t *slot, const char *arg, size_t n)
{
    uint64_t v;
    if (*slot < 0 && ss_http_parse_digits(arg, n, SS_HTTP_DELTA_SECONDS_CAP, &v))
        *slot = (int64_t)v;
}

int ss_http_cache_control_parse(const char *value, size_t len, struct ss_http_cache_control *cc)
{
    struct ss_http_list l;
    const char *e;
    size_t n;
    int known = 0;
    ss_http_list_init(&l, value, len);
    while (ss_http_list_next(&l, false, &e, &n)) {
        /* cache-directive = token [ "=" ( token / quoted-string ) ] */
        size_t name_len = ss_http_token_len(e, n);
        const char *arg = e + name_len;
        size_t arg_len = n - name_len;
        if (name_len == 0 || (arg_len > 0 && arg[0] != '='))
            continue;
        if (arg_len > 0) {
            arg++;
            arg_len--;
            /* §5.2: the quoted form is to be accepted where a token is
             * expected, so max-age="60" is 60. */
            if (arg_len >= 2 && arg[0] == '"' && ss_http_quoted_len(arg, arg_len) == arg_len) {
                arg++;
                arg_len -= 2;
            }
        }
        struct {
            const char *name;
            int *flag;
            int64_t *seconds;
        } const table[] = {
            {"no-store", &cc->no_store, NULL},
            {"no-cache", &cc->no_cache, NULL},
            {"private", &cc->private, NULL},
            {"public", &cc->public, NULL},
            {"must-revalidate", &cc->must_revalidate, NULL},
            {"proxy-revalidate", &cc->proxy_revalidate, NULL},
            {"max-age", NULL, &cc->max_age},
            {"s-maxage", NULL, &cc->s_maxage},
            {"stale-while-revalidate", NULL, &cc->stale_while_revalidate},
            {"stale-if-error", NULL, &cc->stale_if_error},
        };
        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
            if (!ss_http_eq_nocase(e, name_len, table[i].name))
                continue;
            known++;
            if (table[i].flag)
                *table[i].flag = 1;  /* no-cache="f" and private="f" as unqualified */
            else
                set_seconds(table[i].seconds, arg, arg_len);
            break;
        }
    }
    return known;
}
