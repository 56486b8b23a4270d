/*
 * analyzer._ctrack: the flow table of analyzer/track/flows.py in C, with the frame decoder
 * for the packets it can take whole (plain IPv4/IPv6 TCP/UDP, not fragmented, not DNS).
 *
 * flows.py (FlowTable, Flow, Direction) is the reference: this file mirrors it statement by
 * statement, and tests/core/test_fastpath.py checks that the result documents are identical
 * with and without it. Finished flows are handed back as the same Python Flow/Direction
 * objects the detectors read.
 *
 * Captures are hostile input: every read is checked against the captured length and the
 * buffer; whatever this decoder does not take (other link or network protocols, fragments,
 * IPv6 extension headers, anything malformed, DNS which also feeds the DNS tracker) goes to
 * the Python per-packet path through the `slow` callback, in packet order.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <limits.h>
#include <string.h>

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10
#define PROTO_TCP 6
#define PROTO_UDP 17
#define DNS_PORT 53

enum { K_HANDSHAKE = 0, K_PAYLOAD = 1, K_CLOSE = 2, K_AFTER_RST = 3, K_CONTEXT = 4 };
#define AFTER_RST_EVENTS 24
#define MAX_RSTS_KEPT 64 /* RSTs kept per direction as events; all are counted (flows.py) */
#define BUSY_GAP_US 1000000LL
#define MAX_ICMP_PER_FLOW 16
#define SHARD_MULT 2654435761ULL

/* header lengths and fields (analyzer/decode/packet.py names them the same) */
#define ETH_HEADER_LEN 14
#define ETH_TYPE_AT 12
#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_IPV6 0x86DD
#define ETHERTYPE_VLAN 0x8100     /* 802.1Q */
#define ETHERTYPE_QINQ 0x88A8     /* 802.1ad */
#define ETHERTYPE_QINQ_OLD 0x9100
#define VLAN_TAG_LEN 4
#define MAX_VLAN_TAGS 4
#define SLL_HEADER_LEN 16
#define SLL2_HEADER_LEN 20
#define NULL_HEADER_LEN 4
#define AF_INET_ 2 /* BSD loopback family; the IPv6 values differ per OS: 10, 24, 28, 30 */
#define IPV4_MIN_HEADER 20
#define IPV4_FLAG_DF 0x4000
#define IPV4_FLAG_MF 0x2000
#define IPV4_FRAG_OFFSET_MASK 0x1FFF
#define IPV6_HEADER_LEN 40
#define TCP_MIN_HEADER 20
#define UDP_HEADER_LEN 8

/* link types (analyzer/sources/files.py) */
#define LT_NULL 0
#define LT_EN10MB 1
#define LT_RAW 101
#define LT_RAW_OLD_A 12
#define LT_RAW_OLD_B 14
#define LT_LOOP 108
#define LT_SLL 113
#define LT_IPV4 228
#define LT_IPV6 229
#define LT_SLL2 276

typedef struct {
    int64_t frame;
    double ts;
    int64_t input;
    int64_t flags, seq, ack, ttl, ipid, win, len;
    int8_t dir, df, kind;
} Event;

typedef struct {
    int32_t ttl;
    int64_t count;
} TtlCount;

typedef struct {
    int64_t packets, bytes, payload_bytes, df_set, df_clear, kept_bytes, payload_packets;
    int64_t syn_count, synack_count, fin_frame, unanswered, busy_us;
    TtlCount *ttls;
    Py_ssize_t nttl, cap_ttl;
    int has_isn;
    int64_t isn;
    PyObject *payloads; /* list of (seq, frame, data, ts), or NULL while empty */
    Py_ssize_t npayloads;
    Event *rsts; /* the first MAX_RSTS_KEPT */
    Py_ssize_t nrsts, cap_rsts;
    int64_t rst_count;
    TtlCount *rst_ttls; /* TTL histogram of every RST, first-seen order */
    Py_ssize_t nrttl, cap_rttl;
    double first_ts, last_ts, unanswered_since;
    int has_last;
    Event last;
} Dir;

typedef struct CFlow {
    struct CFlow *hnext;       /* hash chain */
    struct CFlow *prev, *next; /* activity order (LRU), oldest first */
    uint64_t hash;
    uint8_t lo[16], hi[16];    /* canonical key: (lo, lo_port) <= (hi, hi_port) */
    int32_t lo_port, hi_port, proto, alen;
    uint8_t client[16], server[16];
    int32_t cport, sport;
    int64_t input, first_frame, packets, bytes, after_rst, seq;
    double first_ts, last_ts, ended;
    Dir dirs[2];
    Event *events;
    Py_ssize_t nev, cap_ev;
    int closed, hot, syn_seen, synack_seen, evicted;
    PyObject *icmp; /* list of (frame, ts, input, type, code, from), or NULL */
    int in_table;     /* still the table's flow for its key */
    int closing_refs; /* entries in the closing queue */
    int handed_out;   /* returned to Python (or pending in `reused`) */
} CFlow;

/* one packet's fields, from the C decoder or from a Python Packet */
typedef struct {
    const uint8_t *src, *dst;
    int32_t alen, sport, dport, proto;
    int64_t flags, seq, ack, ttl, ipid, win, ip_len, frame, input;
    int df;
    double ts;
    const uint8_t *payload;
    Py_ssize_t plen;
} Pkt;

typedef struct {
    PyObject_HEAD
    PyObject *flow_type, *dir_type;
    int64_t max_events, first_payloads, limits[2], max_flows;
    double linger, idle;
    CFlow **buckets;
    size_t nbuckets, count;
    CFlow *head, *tail;
    CFlow **closing; /* ring buffer */
    size_t cl_head, cl_len, cl_cap;
    CFlow **reused;
    size_t nreused, cap_reused;
    CFlow **drain; /* flows being flushed (begin_flush / next_flushed) */
    size_t ndrain, drain_pos;
    int64_t created, evicted;
} Table;

static PyObject *S_key, *S_proto, *S_client, *S_cport, *S_server, *S_sport, *S_input,
    *S_first_frame, *S_first_ts, *S_last_ts, *S_packets, *S_bytes, *S_dirs, *S_events,
    *S_closed, *S_hot, *S_after_rst, *S_syn_seen, *S_synack_seen, *S_ended, *S_icmp,
    *S_evicted, *S_seq, *S_payload_bytes, *S_ttls, *S_df_set, *S_df_clear, *S_isn,
    *S_payloads, *S_kept_bytes, *S_payload_packets, *S_syn_count, *S_fin_frame, *S_rsts,
    *S_rst_count, *S_rst_ttls,
    *S_last, *S_synack_count, *S_unanswered, *S_unanswered_since, *S_busy_us, *S_src, *S_dst,
    *S_dport, *S_flags, *S_ack, *S_ttl, *S_ipid, *S_win, *S_df, *S_ip_len, *S_payload,
    *S_frame, *S_ts, *S_quoted, *S_icmp_type, *S_icmp_code;

/* ------------------------------------------------------------------ helpers */

static inline uint32_t be16(const uint8_t *p) { return ((uint32_t)p[0] << 8) | p[1]; }
static inline uint32_t be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static int grow(void **arr, Py_ssize_t *cap, Py_ssize_t need, size_t item) {
    if (need <= *cap) return 0;
    Py_ssize_t n = *cap ? *cap * 2 : 8;
    while (n < need) n *= 2;
    void *p = PyMem_Realloc(*arr, (size_t)n * item);
    if (!p) { PyErr_NoMemory(); return -1; }
    *arr = p;
    *cap = n;
    return 0;
}

static int is_service(int32_t port) {
    if (port > 0 && port < 1024) return 1;
    switch (port) {
    case 1194: case 1701: case 1723: case 4500: case 5222: case 8388: case 8443: case 9001:
    case 9030: case 51820: case 8080: case 3128:
        return 1;
    }
    return 0;
}

static uint64_t hash_key(const uint8_t *lo, int32_t lo_port, const uint8_t *hi, int32_t hi_port,
                         int32_t proto, int32_t alen) {
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)alen;
    for (int i = 0; i < alen; i++) { h ^= lo[i]; h *= 1099511628211ULL; }
    for (int i = 0; i < alen; i++) { h ^= hi[i]; h *= 1099511628211ULL; }
    h ^= ((uint64_t)lo_port << 24) ^ ((uint64_t)hi_port << 8) ^ (uint64_t)proto;
    h *= 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 29);
}

/* ------------------------------------------------------------------ table structure */

static void dir_clear(Dir *d) {
    PyMem_Free(d->ttls);
    PyMem_Free(d->rsts);
    PyMem_Free(d->rst_ttls);
    Py_XDECREF(d->payloads);
}

static void flow_free(CFlow *f) {
    dir_clear(&f->dirs[0]);
    dir_clear(&f->dirs[1]);
    PyMem_Free(f->events);
    Py_XDECREF(f->icmp);
    PyMem_Free(f);
}

/* what a flow holds besides the fields the closing queue reads (ended, in_table) */
static void flow_strip(CFlow *f) {
    for (int k = 0; k < 2; k++) {
        Dir *d = &f->dirs[k];
        dir_clear(d);
        d->ttls = NULL;
        d->rsts = NULL;
        d->rst_ttls = NULL;
        d->payloads = NULL;
        d->nttl = d->cap_ttl = d->nrsts = d->cap_rsts = d->npayloads = 0;
        d->nrttl = d->cap_rttl = 0;
    }
    PyMem_Free(f->events);
    f->events = NULL;
    f->nev = f->cap_ev = 0;
    Py_CLEAR(f->icmp);
}

/* free a flow once nothing refers to it any more. Out of the table and handed out, it can
 * still wait in the closing queue for up to `linger` of capture time (and a file can put
 * any number of closed flows in that window): only its shell stays for that */
static void flow_release(CFlow *f) {
    if (f->in_table || f->handed_out) return;
    if (f->closing_refs == 0) flow_free(f);
    else flow_strip(f);
}

static int table_rehash(Table *t, size_t n) {
    CFlow **b = PyMem_Calloc(n, sizeof(CFlow *));
    if (!b) { PyErr_NoMemory(); return -1; }
    for (size_t i = 0; i < t->nbuckets; i++) {
        CFlow *f = t->buckets[i];
        while (f) {
            CFlow *nx = f->hnext;
            size_t j = (size_t)(f->hash & (n - 1));
            f->hnext = b[j];
            b[j] = f;
            f = nx;
        }
    }
    PyMem_Free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
    return 0;
}

static CFlow *table_find(Table *t, uint64_t h, const uint8_t *lo, int32_t lo_port,
                         const uint8_t *hi, int32_t hi_port, int32_t proto, int32_t alen) {
    CFlow *f = t->buckets[h & (t->nbuckets - 1)];
    for (; f; f = f->hnext) {
        if (f->hash == h && f->lo_port == lo_port && f->hi_port == hi_port && f->proto == proto
            && f->alen == alen && memcmp(f->lo, lo, (size_t)alen) == 0
            && memcmp(f->hi, hi, (size_t)alen) == 0)
            return f;
    }
    return NULL;
}

static void lru_unlink(Table *t, CFlow *f) {
    if (f->prev) f->prev->next = f->next; else t->head = f->next;
    if (f->next) f->next->prev = f->prev; else t->tail = f->prev;
    f->prev = f->next = NULL;
}

static void lru_append(Table *t, CFlow *f) {
    f->prev = t->tail;
    f->next = NULL;
    if (t->tail) t->tail->next = f; else t->head = f;
    t->tail = f;
}

/* take f out of the table (hash and LRU); it stays allocated while referenced */
static void table_remove(Table *t, CFlow *f) {
    CFlow **pp = &t->buckets[f->hash & (t->nbuckets - 1)];
    while (*pp && *pp != f) pp = &(*pp)->hnext;
    if (*pp) *pp = f->hnext;
    f->hnext = NULL;
    lru_unlink(t, f);
    f->in_table = 0;
    t->count--;
}

static int table_insert(Table *t, CFlow *f) {
    if ((t->count + 1) * 4 > t->nbuckets * 3) {
        if (table_rehash(t, t->nbuckets * 2) < 0) return -1;
    }
    size_t j = (size_t)(f->hash & (t->nbuckets - 1));
    f->hnext = t->buckets[j];
    t->buckets[j] = f;
    lru_append(t, f);
    f->in_table = 1;
    t->count++;
    return 0;
}

static int closing_push(Table *t, CFlow *f) {
    if (t->cl_len == t->cl_cap) {
        size_t n = t->cl_cap ? t->cl_cap * 2 : 64;
        CFlow **r = PyMem_Malloc(n * sizeof(CFlow *));
        if (!r) { PyErr_NoMemory(); return -1; }
        for (size_t i = 0; i < t->cl_len; i++) r[i] = t->closing[(t->cl_head + i) % t->cl_cap];
        PyMem_Free(t->closing);
        t->closing = r;
        t->cl_head = 0;
        t->cl_cap = n;
    }
    t->closing[(t->cl_head + t->cl_len) % t->cl_cap] = f;
    t->cl_len++;
    f->closing_refs++;
    return 0;
}

static CFlow *closing_pop(Table *t) {
    CFlow *f = t->closing[t->cl_head];
    t->cl_head = (t->cl_head + 1) % t->cl_cap;
    t->cl_len--;
    f->closing_refs--;
    return f;
}

static int reused_push(Table *t, CFlow *f) {
    if (t->nreused == t->cap_reused) {
        size_t n = t->cap_reused ? t->cap_reused * 2 : 16;
        CFlow **r = PyMem_Realloc(t->reused, n * sizeof(CFlow *));
        if (!r) { PyErr_NoMemory(); return -1; }
        t->reused = r;
        t->cap_reused = n;
    }
    t->reused[t->nreused++] = f;
    f->handed_out = 1;
    return 0;
}

/* ------------------------------------------------------------------ tracking (flows.py) */

static CFlow *flow_new(Table *t, const Pkt *p, uint64_t h, const uint8_t *lo, int32_t lo_port,
                       const uint8_t *hi, int32_t hi_port) {
    CFlow *f = PyMem_Calloc(1, sizeof(CFlow));
    if (!f) { PyErr_NoMemory(); return NULL; }
    f->hash = h;
    memcpy(f->lo, lo, (size_t)p->alen);
    memcpy(f->hi, hi, (size_t)p->alen);
    f->lo_port = lo_port;
    f->hi_port = hi_port;
    f->proto = p->proto;
    f->alen = p->alen;
    int64_t syn = p->proto == PROTO_TCP ? (p->flags & (TCP_SYN | TCP_ACK)) : 0;
    if (syn == (TCP_SYN | TCP_ACK)
        || (syn != TCP_SYN && is_service(p->sport) && !is_service(p->dport))) {
        memcpy(f->client, p->dst, (size_t)p->alen);
        f->cport = p->dport;
        memcpy(f->server, p->src, (size_t)p->alen);
        f->sport = p->sport;
    } else {
        memcpy(f->client, p->src, (size_t)p->alen);
        f->cport = p->sport;
        memcpy(f->server, p->dst, (size_t)p->alen);
        f->sport = p->dport;
    }
    f->input = p->input;
    f->first_frame = p->frame;
    f->first_ts = p->ts;
    f->last_ts = p->ts;
    f->seq = t->created++;
    return f;
}

/* FlowTable.lookup: the flow of p (created when new) and the packet's direction */
static CFlow *lookup(Table *t, const Pkt *p, int *dir) {
    const uint8_t *lo, *hi;
    int32_t lo_port, hi_port;
    int c = memcmp(p->src, p->dst, (size_t)p->alen);
    if (c < 0 || (c == 0 && p->sport <= p->dport)) {
        lo = p->src; lo_port = p->sport; hi = p->dst; hi_port = p->dport;
    } else {
        lo = p->dst; lo_port = p->dport; hi = p->src; hi_port = p->sport;
    }
    uint64_t h = hash_key(lo, lo_port, hi, hi_port, p->proto, p->alen);
    CFlow *f = table_find(t, h, lo, lo_port, hi, hi_port, p->proto, p->alen);
    if (f == NULL) {
        f = flow_new(t, p, h, lo, lo_port, hi, hi_port);
        if (!f || table_insert(t, f) < 0) { if (f) flow_free(f); return NULL; }
    } else if (f->closed && p->proto == PROTO_TCP && (p->flags & (TCP_SYN | TCP_ACK)) == TCP_SYN
               && (!f->dirs[0].has_isn || p->seq != f->dirs[0].isn)) {
        /* the 4-tuple is reused by a new connection: end the old flow */
        table_remove(t, f);
        if (reused_push(t, f) < 0) { flow_release(f); return NULL; }
        f = flow_new(t, p, h, lo, lo_port, hi, hi_port);
        if (!f || table_insert(t, f) < 0) { if (f) flow_free(f); return NULL; }
    } else {
        lru_unlink(t, f);
        lru_append(t, f);
    }
    *dir = (memcmp(p->src, f->client, (size_t)p->alen) == 0 && p->sport == f->cport) ? 0 : 1;
    return f;
}

static int add_event(Table *t, CFlow *f, const Event *ev) {
    if (f->nev < t->max_events || ((ev->flags & TCP_RST) && f->nev < 2 * t->max_events)) {
        if (grow((void **)&f->events, &f->cap_ev, f->nev + 1, sizeof(Event)) < 0) return -1;
        f->events[f->nev++] = *ev;
    }
    return 0;
}

/* one more packet with this TTL in a histogram kept in first-seen order (a Python dict) */
static int hist_add(TtlCount **h, Py_ssize_t *n, Py_ssize_t *cap, int32_t ttl) {
    for (Py_ssize_t i = 0; i < *n; i++) {
        if ((*h)[i].ttl == ttl) { (*h)[i].count++; return 0; }
    }
    if (grow((void **)h, cap, *n + 1, sizeof(TtlCount)) < 0) return -1;
    (*h)[*n].ttl = ttl;
    (*h)[*n].count = 1;
    (*n)++;
    return 0;
}

static int ttl_add(Dir *d, int32_t ttl) { return hist_add(&d->ttls, &d->nttl, &d->cap_ttl, ttl); }

/* the aggregates every packet updates (FlowTable._tcp / _udp, first block) */
static int aggregates(CFlow *f, Dir *ds, Dir *other, const Pkt *p) {
    double ts = p->ts;
    f->packets++;
    f->bytes += p->ip_len;
    if (ts > f->last_ts) f->last_ts = ts;
    ds->packets++;
    ds->bytes += p->ip_len;
    if (ds->packets == 1) ds->first_ts = ts;
    if (ts > ds->last_ts) ds->last_ts = ts;
    ds->unanswered++;
    if (ds->unanswered == 1) ds->unanswered_since = ts;
    other->unanswered = 0;
    if (ds->has_last) {
        /* Python: round((ts - prev) * 1e6), ties to even as nearbyint in the default mode */
        double g = nearbyint((ts - ds->last.ts) * 1e6);
        if (g > 0) ds->busy_us += g < (double)BUSY_GAP_US ? (int64_t)g : BUSY_GAP_US;
    }
    if (ttl_add(ds, (int32_t)p->ttl) < 0) return -1;
    if (p->df) ds->df_set++; else ds->df_clear++;
    return 0;
}

static int keep_payload(Table *t, Dir *ds, int d, const Pkt *p, int64_t seq) {
    Py_ssize_t room = (Py_ssize_t)(t->limits[d] - ds->kept_bytes);
    Py_ssize_t n = p->plen < room ? p->plen : room;
    if (n < 0) n = 0;
    if (ds->payloads == NULL) {
        ds->payloads = PyList_New(0);
        if (!ds->payloads) return -1;
    }
    PyObject *tup = Py_BuildValue("(LLy#d)", (long long)seq, (long long)p->frame,
                                  (const char *)p->payload, n, p->ts);
    if (!tup) return -1;
    int rc = PyList_Append(ds->payloads, tup);
    Py_DECREF(tup);
    if (rc < 0) return -1;
    ds->npayloads++;
    ds->kept_bytes += n;
    return 0;
}

static int track_tcp(Table *t, CFlow *f, int d, const Pkt *p) {
    Dir *ds = &f->dirs[d];
    int64_t flags = p->flags;
    if (aggregates(f, ds, &f->dirs[1 - d], p) < 0) return -1;
    if (p->plen) {
        ds->payload_packets++;
        ds->payload_bytes += p->plen;
    }
    Event ev = {p->frame, p->ts, p->input, flags, p->seq, p->ack, p->ttl, p->ipid, p->win,
                (int64_t)p->plen, (int8_t)d, (int8_t)(p->df ? 1 : 0), K_CONTEXT};
    int kind = -1;
    if (flags & TCP_SYN) {
        kind = K_HANDSHAKE;
        if (flags & TCP_ACK) {
            ds->synack_count++;
            f->synack_seen = 1;
        } else {
            ds->syn_count++;
            f->syn_seen = 1;
        }
        if (!ds->has_isn || ds->syn_count + ds->synack_count == 1) {
            ds->has_isn = 1;
            ds->isn = p->seq;
        }
    }
    if (p->plen && ds->npayloads < t->first_payloads && ds->kept_bytes < t->limits[d]) {
        if (keep_payload(t, ds, d, p, p->seq) < 0) return -1;
        kind = K_PAYLOAD;
    }
    if (flags & TCP_FIN) {
        kind = K_CLOSE;
        if (!ds->fin_frame) ds->fin_frame = p->frame;
    }
    if (flags & TCP_RST) {
        kind = K_CLOSE;
        ds->rst_count++;
        if (hist_add(&ds->rst_ttls, &ds->nrttl, &ds->cap_rttl, (int32_t)p->ttl) < 0) return -1;
        if (ds->nrsts < MAX_RSTS_KEPT) { /* a flood of RSTs must not grow memory */
            if (grow((void **)&ds->rsts, &ds->cap_rsts, ds->nrsts + 1, sizeof(Event)) < 0) return -1;
            ds->rsts[ds->nrsts++] = ev;
        }
        if (!f->hot) {
            f->hot = 1;
            /* context: the last packet each side sent before the first RST */
            Py_ssize_t from = f->nev > 8 ? f->nev - 8 : 0, to = f->nev;
            for (int k = 0; k < 2; k++) {
                Dir *o = &f->dirs[k];
                if (!o->has_last) continue;
                int recent = 0;
                for (Py_ssize_t i = from; i < to; i++) {
                    if (f->events[i].frame == o->last.frame) { recent = 1; break; }
                }
                if (!recent) {
                    Event last = o->last;
                    if (add_event(t, f, &last) < 0) return -1;
                }
            }
        }
    } else if (kind < 0 && f->hot && f->after_rst < AFTER_RST_EVENTS) {
        kind = K_AFTER_RST;
    }
    if (f->hot && !(flags & TCP_RST)) f->after_rst++;
    if (kind >= 0) {
        Event k = ev;
        k.kind = (int8_t)kind;
        if (add_event(t, f, &k) < 0) return -1;
    }
    ds->last = ev;
    ds->has_last = 1;
    if (!f->closed && ((flags & TCP_RST) || (f->dirs[0].fin_frame && f->dirs[1].fin_frame))) {
        f->closed = 1;
        f->ended = p->ts;
        if (closing_push(t, f) < 0) return -1;
    }
    return 0;
}

static int track_udp(Table *t, CFlow *f, int d, const Pkt *p) {
    Dir *ds = &f->dirs[d];
    if (aggregates(f, ds, &f->dirs[1 - d], p) < 0) return -1;
    ds->payload_packets++;
    ds->payload_bytes += p->plen;
    Event ev = {p->frame, p->ts, p->input, 0, 0, 0, p->ttl, p->ipid, 0, (int64_t)p->plen,
                (int8_t)d, (int8_t)(p->df ? 1 : 0), K_PAYLOAD};
    if (ds->npayloads < t->first_payloads && ds->kept_bytes < t->limits[d]) {
        if (keep_payload(t, ds, d, p, 0) < 0) return -1;
        if (add_event(t, f, &ev) < 0) return -1;
    }
    ds->last = ev;
    ds->has_last = 1;
    return 0;
}

static int observe(Table *t, const Pkt *p) {
    int d = 0;
    CFlow *f = lookup(t, p, &d);
    if (!f) return -1;
    return f->proto == PROTO_TCP ? track_tcp(t, f, d, p) : track_udp(t, f, d, p);
}

/* ------------------------------------------------------------------ to Python objects */

static PyObject *event_tuple(const Event *e) {
    PyObject *v[13] = {
        PyLong_FromLongLong(e->frame), PyFloat_FromDouble(e->ts), PyLong_FromLongLong(e->input),
        PyLong_FromLong(e->dir), PyLong_FromLongLong(e->flags), PyLong_FromLongLong(e->seq),
        PyLong_FromLongLong(e->ack), PyLong_FromLongLong(e->ttl), PyLong_FromLongLong(e->ipid),
        PyLong_FromLongLong(e->win), PyLong_FromLongLong(e->len), PyBool_FromLong(e->df),
        PyLong_FromLong(e->kind)};
    /* every item first: PyTuple_SET_ITEM steals, so a failure after some were set would
     * release those twice */
    PyObject *t = PyTuple_New(13);
    for (int i = 0; i < 13; i++) {
        if (!v[i] || !t) {
            for (int j = 0; j < 13; j++) Py_XDECREF(v[j]);
            Py_XDECREF(t);
            return NULL;
        }
    }
    for (int i = 0; i < 13; i++) PyTuple_SET_ITEM(t, i, v[i]);
    return t;
}

static PyObject *event_list(const Event *evs, Py_ssize_t n) {
    PyObject *l = PyList_New(n);
    if (!l) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *e = event_tuple(&evs[i]);
        if (!e) { Py_DECREF(l); return NULL; }
        PyList_SET_ITEM(l, i, e);
    }
    return l;
}

/* an instance without calling __init__: the type's own tp_new (object's for a plain class;
 * for a class compiled by mypyc, the one that sets up its native layout) */
static PyObject *new_instance(PyObject *type) {
    static PyObject *empty = NULL;
    if (!empty) { empty = PyTuple_New(0); if (!empty) return NULL; }
    newfunc tp_new = ((PyTypeObject *)type)->tp_new;
    if (!tp_new) { PyErr_SetString(PyExc_TypeError, "flow/direction type cannot be instantiated"); return NULL; }
    return tp_new((PyTypeObject *)type, empty, NULL);
}

static PyObject *hist_dict(const TtlCount *h, Py_ssize_t n) {
    PyObject *out = PyDict_New();
    if (!out) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = PyLong_FromLong(h[i].ttl), *v = PyLong_FromLongLong(h[i].count);
        int rc = (k && v) ? PyDict_SetItem(out, k, v) : -1;
        Py_XDECREF(k);
        Py_XDECREF(v);
        if (rc < 0) { Py_DECREF(out); return NULL; }
    }
    return out;
}

/* An instance of `type` from n values (new references, stolen; NULL if making one failed),
 * given in the order of its __init__'s parameters, which are named names[i]. A class compiled
 * by mypyc (its own tp_new) is called with them: one call instead of n attribute stores. A
 * plain class gets them set one by one on an instance made without __init__. */
static PyObject *build(PyObject *type, PyObject *const *names, PyObject **v, int n) {
    PyObject *o = NULL;
    for (int i = 0; i < n; i++) if (!v[i]) goto done;
    if (((PyTypeObject *)type)->tp_new != PyBaseObject_Type.tp_new) {
        o = PyObject_Vectorcall(type, v, (size_t)n, NULL);
    } else if ((o = new_instance(type)) != NULL) {
        for (int i = 0; i < n; i++) {
            if (PyObject_SetAttr(o, names[i], v[i]) < 0) { Py_CLEAR(o); break; }
        }
    }
done:
    for (int i = 0; i < n; i++) Py_XDECREF(v[i]);
    return o;
}

#define DIR_FIELDS 22
#define FLOW_FIELDS 23

/* Direction(...) in the parameter order of Direction.__init__ (analyzer/track/flows.py) */
static PyObject *dir_object(Table *t, Dir *d) {
    PyObject *const names[DIR_FIELDS] = {
        S_packets, S_bytes, S_payload_bytes, S_ttls, S_df_set, S_df_clear, S_isn, S_payloads,
        S_kept_bytes, S_payload_packets, S_syn_count, S_fin_frame, S_rsts, S_rst_count,
        S_rst_ttls, S_first_ts, S_last_ts, S_last, S_synack_count, S_unanswered,
        S_unanswered_since, S_busy_us};
    PyObject *v[DIR_FIELDS] = {
        PyLong_FromLongLong(d->packets),
        PyLong_FromLongLong(d->bytes),
        PyLong_FromLongLong(d->payload_bytes),
        hist_dict(d->ttls, d->nttl),
        PyLong_FromLongLong(d->df_set),
        PyLong_FromLongLong(d->df_clear),
        d->has_isn ? PyLong_FromLongLong(d->isn) : Py_NewRef(Py_None),
        d->payloads ? Py_NewRef(d->payloads) : PyList_New(0),
        PyLong_FromLongLong(d->kept_bytes),
        PyLong_FromLongLong(d->payload_packets),
        PyLong_FromLongLong(d->syn_count),
        PyLong_FromLongLong(d->fin_frame),
        event_list(d->rsts, d->nrsts),
        PyLong_FromLongLong(d->rst_count),
        hist_dict(d->rst_ttls, d->nrttl),
        PyFloat_FromDouble(d->first_ts),
        PyFloat_FromDouble(d->last_ts),
        d->has_last ? event_tuple(&d->last) : Py_NewRef(Py_None),
        PyLong_FromLongLong(d->synack_count),
        PyLong_FromLongLong(d->unanswered),
        PyFloat_FromDouble(d->unanswered_since),
        PyLong_FromLongLong(d->busy_us)};
    return build(t->dir_type, names, v, DIR_FIELDS);
}

/* Flow(...) in the parameter order of Flow.__init__ (analyzer/track/flows.py) */
static PyObject *flow_object(Table *t, CFlow *f) {
    PyObject *const names[FLOW_FIELDS] = {
        S_key, S_proto, S_client, S_cport, S_server, S_sport, S_input, S_first_frame,
        S_first_ts, S_last_ts, S_packets, S_bytes, S_dirs, S_events, S_closed, S_hot,
        S_after_rst, S_syn_seen, S_synack_seen, S_ended, S_icmp, S_evicted, S_seq};
    PyObject *d0 = dir_object(t, &f->dirs[0]);
    PyObject *d1 = d0 ? dir_object(t, &f->dirs[1]) : NULL;
    PyObject *dirs = (d0 && d1) ? PyTuple_Pack(2, d0, d1) : NULL;
    Py_XDECREF(d0);
    Py_XDECREF(d1);
    PyObject *v[FLOW_FIELDS] = {
        Py_BuildValue("(y#iy#ii)", (const char *)f->lo, (Py_ssize_t)f->alen, (int)f->lo_port,
                      (const char *)f->hi, (Py_ssize_t)f->alen, (int)f->hi_port, (int)f->proto),
        PyLong_FromLong(f->proto),
        PyBytes_FromStringAndSize((const char *)f->client, f->alen),
        PyLong_FromLong(f->cport),
        PyBytes_FromStringAndSize((const char *)f->server, f->alen),
        PyLong_FromLong(f->sport),
        PyLong_FromLongLong(f->input),
        PyLong_FromLongLong(f->first_frame),
        PyFloat_FromDouble(f->first_ts),
        PyFloat_FromDouble(f->last_ts),
        PyLong_FromLongLong(f->packets),
        PyLong_FromLongLong(f->bytes),
        dirs,
        event_list(f->events, f->nev),
        PyBool_FromLong(f->closed),
        PyBool_FromLong(f->hot),
        PyLong_FromLongLong(f->after_rst),
        PyBool_FromLong(f->syn_seen),
        PyBool_FromLong(f->synack_seen),
        PyFloat_FromDouble(f->ended),
        f->icmp ? Py_NewRef(f->icmp) : PyList_New(0),
        PyBool_FromLong(f->evicted),
        PyLong_FromLongLong(f->seq)};
    return build(t->flow_type, names, v, FLOW_FIELDS);
}

/* append the Python object of f to `out` and let go of f */
static int hand_out(Table *t, CFlow *f, PyObject *out) {
    PyObject *o = flow_object(t, f);
    int rc = o ? PyList_Append(out, o) : -1;
    Py_XDECREF(o);
    f->handed_out = 0;
    flow_release(f);
    return rc;
}

/* Table.__new__ without __init__ (or a failed re-init) leaves no buckets and no classes */
static int ready(Table *t) {
    if (t->buckets && t->flow_type && t->dir_type) return 0;
    PyErr_SetString(PyExc_RuntimeError, "Table.__init__() was not called");
    return -1;
}

/* ------------------------------------------------------------------ Python Packet input */

static int get_i64(PyObject *o, PyObject *name, int64_t *out) {
    PyObject *v = PyObject_GetAttr(o, name);
    if (!v) return -1;
    long long x = PyLong_AsLongLong(v);
    Py_DECREF(v);
    if (x == -1 && PyErr_Occurred()) return -1;
    *out = x;
    return 0;
}

/* fill p from a Packet; the returned references (src, dst, payload) keep the bytes alive */
static int pkt_from_object(PyObject *o, Pkt *p, PyObject **keep) {
    int64_t v;
    keep[0] = PyObject_GetAttr(o, S_src);
    keep[1] = PyObject_GetAttr(o, S_dst);
    keep[2] = PyObject_GetAttr(o, S_payload);
    if (!keep[0] || !keep[1] || !keep[2]) return -1;
    if (!PyBytes_Check(keep[0]) || !PyBytes_Check(keep[1]) || !PyBytes_Check(keep[2])) {
        PyErr_SetString(PyExc_TypeError, "packet src, dst and payload must be bytes");
        return -1;
    }
    Py_ssize_t a = PyBytes_GET_SIZE(keep[0]);
    if (a != PyBytes_GET_SIZE(keep[1]) || a > 16) {
        PyErr_SetString(PyExc_ValueError, "packet addresses must have the same length (at most 16)");
        return -1;
    }
    p->alen = (int32_t)a;
    p->src = (const uint8_t *)PyBytes_AS_STRING(keep[0]);
    p->dst = (const uint8_t *)PyBytes_AS_STRING(keep[1]);
    p->payload = (const uint8_t *)PyBytes_AS_STRING(keep[2]);
    p->plen = PyBytes_GET_SIZE(keep[2]);
    if (get_i64(o, S_sport, &v) < 0) return -1;
    p->sport = (int32_t)v;
    if (get_i64(o, S_dport, &v) < 0) return -1;
    p->dport = (int32_t)v;
    if (get_i64(o, S_proto, &v) < 0) return -1;
    p->proto = (int32_t)v;
    if (get_i64(o, S_flags, &p->flags) < 0 || get_i64(o, S_seq, &p->seq) < 0
        || get_i64(o, S_ack, &p->ack) < 0 || get_i64(o, S_ttl, &p->ttl) < 0
        || get_i64(o, S_ipid, &p->ipid) < 0 || get_i64(o, S_win, &p->win) < 0
        || get_i64(o, S_ip_len, &p->ip_len) < 0 || get_i64(o, S_frame, &p->frame) < 0
        || get_i64(o, S_input, &p->input) < 0)
        return -1;
    PyObject *df = PyObject_GetAttr(o, S_df);
    if (!df) return -1;
    p->df = PyObject_IsTrue(df);
    Py_DECREF(df);
    if (p->df < 0) return -1;
    PyObject *ts = PyObject_GetAttr(o, S_ts);
    if (!ts) return -1;
    p->ts = PyFloat_AsDouble(ts);
    Py_DECREF(ts);
    if (p->ts == -1.0 && PyErr_Occurred()) return -1;
    return 0;
}

static PyObject *Table_observe(Table *t, PyObject *pkt) {
    if (ready(t) < 0) return NULL;
    Pkt p;
    PyObject *keep[3] = {NULL, NULL, NULL};
    int rc = pkt_from_object(pkt, &p, keep);
    if (rc == 0) rc = observe(t, &p);
    for (int i = 0; i < 3; i++) Py_XDECREF(keep[i]);
    if (rc < 0) return NULL;
    Py_RETURN_NONE;
}

/* FlowTable.attach_icmp */
static PyObject *Table_attach_icmp(Table *t, PyObject *pkt) {
    if (ready(t) < 0) return NULL;
    PyObject *q = PyObject_GetAttr(pkt, S_quoted);
    if (!q) return NULL;
    if (q == Py_None) { Py_DECREF(q); Py_RETURN_NONE; }
    PyObject *qs = NULL, *qd = NULL, *src = NULL, *entry = NULL;
    int64_t proto, sport, dport, frame, input, itype, icode;
    double ts;
    PyObject *result = NULL;
    if (get_i64(q, S_proto, &proto) < 0) goto done;
    if (proto != PROTO_TCP && proto != PROTO_UDP) { result = Py_None; Py_INCREF(result); goto done; }
    qs = PyObject_GetAttr(q, S_src);
    qd = PyObject_GetAttr(q, S_dst);
    if (!qs || !qd || get_i64(q, S_sport, &sport) < 0 || get_i64(q, S_dport, &dport) < 0) goto done;
    if (!PyBytes_Check(qs) || !PyBytes_Check(qd) || PyBytes_GET_SIZE(qs) != PyBytes_GET_SIZE(qd)
        || PyBytes_GET_SIZE(qs) > 16) {
        result = Py_None; Py_INCREF(result); goto done;  /* no flow can have this key */
    }
    {
        int32_t alen = (int32_t)PyBytes_GET_SIZE(qs);
        const uint8_t *a = (const uint8_t *)PyBytes_AS_STRING(qs), *b = (const uint8_t *)PyBytes_AS_STRING(qd);
        const uint8_t *lo, *hi;
        int32_t lp, hp;
        int c = memcmp(a, b, (size_t)alen);
        if (c < 0 || (c == 0 && sport <= dport)) { lo = a; lp = (int32_t)sport; hi = b; hp = (int32_t)dport; }
        else { lo = b; lp = (int32_t)dport; hi = a; hp = (int32_t)sport; }
        uint64_t h = hash_key(lo, lp, hi, hp, (int32_t)proto, alen);
        CFlow *f = table_find(t, h, lo, lp, hi, hp, (int32_t)proto, alen);
        if (!f) { result = Py_None; Py_INCREF(result); goto done; }
        if (get_i64(pkt, S_frame, &frame) < 0 || get_i64(pkt, S_input, &input) < 0
            || get_i64(pkt, S_icmp_type, &itype) < 0 || get_i64(pkt, S_icmp_code, &icode) < 0)
            goto done;
        PyObject *tso = PyObject_GetAttr(pkt, S_ts);
        if (!tso) goto done;
        ts = PyFloat_AsDouble(tso);
        Py_DECREF(tso);
        if (ts == -1.0 && PyErr_Occurred()) goto done;
        if (!f->icmp) { f->icmp = PyList_New(0); if (!f->icmp) goto done; }
        if (PyList_GET_SIZE(f->icmp) < MAX_ICMP_PER_FLOW) {
            src = PyObject_GetAttr(pkt, S_src);
            if (!src) goto done;
            entry = Py_BuildValue("(LdLLLO)", (long long)frame, ts, (long long)input,
                                  (long long)itype, (long long)icode, src);
            if (!entry || PyList_Append(f->icmp, entry) < 0) goto done;
        }
        if (ts > f->last_ts) f->last_ts = ts;
        result = Py_True;
        Py_INCREF(result);
    }
done:
    Py_XDECREF(q); Py_XDECREF(qs); Py_XDECREF(qd); Py_XDECREF(src); Py_XDECREF(entry);
    return result;
}

/* ------------------------------------------------------------------ frames (decode_frame) */

/* Decode a frame into p when it is a plain, complete IPv4/IPv6 TCP or UDP packet exactly as
 * analyzer.decode.packet.decode_frame would decode it; 0 otherwise (the Python path takes it).
 * `a_word`/`b_word` get the 32-bit address words used for --jobs sharding. */
static int decode_plain(const uint8_t *buf, Py_ssize_t buflen, int64_t off, int64_t caplen,
                        int64_t lt, Pkt *p, uint32_t *a_word, uint32_t *b_word) {
    /* offsets and lengths come from the file: no sum may overflow */
    if (off < 0 || caplen < 0 || off > (int64_t)buflen || caplen > (int64_t)buflen - off) return 0;
    int64_t end = off + caplen, o;
    int version;
    switch (lt) {
    case LT_EN10MB: {
        if (off + ETH_HEADER_LEN > end) return 0;
        uint32_t et = be16(buf + off + ETH_TYPE_AT);
        o = off + ETH_HEADER_LEN;
        int tags = 0;
        while (et == ETHERTYPE_VLAN || et == ETHERTYPE_QINQ || et == ETHERTYPE_QINQ_OLD) {
            tags++;
            if (tags > MAX_VLAN_TAGS || o + VLAN_TAG_LEN > end) return 0;
            et = be16(buf + o + 2);
            o += VLAN_TAG_LEN;
        }
        version = et == ETHERTYPE_IPV4 ? 4 : (et == ETHERTYPE_IPV6 ? 6 : 0);
        break;
    }
    case LT_SLL: {
        if (off + SLL_HEADER_LEN > end) return 0;
        uint32_t et = be16(buf + off + SLL_HEADER_LEN - 2);
        version = et == ETHERTYPE_IPV4 ? 4 : (et == ETHERTYPE_IPV6 ? 6 : 0);
        o = off + SLL_HEADER_LEN;
        break;
    }
    case LT_SLL2: {
        if (off + SLL2_HEADER_LEN > end) return 0;
        uint32_t et = be16(buf + off);
        version = et == ETHERTYPE_IPV4 ? 4 : (et == ETHERTYPE_IPV6 ? 6 : 0);
        o = off + SLL2_HEADER_LEN;
        break;
    }
    case LT_RAW: case LT_RAW_OLD_A: case LT_RAW_OLD_B:
        o = off;
        version = -1;
        break;
    case LT_IPV4:
        o = off;
        version = 4;
        break;
    case LT_IPV6:
        o = off;
        version = 6;
        break;
    case LT_NULL: case LT_LOOP: {
        if (off + NULL_HEADER_LEN > end) return 0;
        const uint8_t *q = buf + off;
        uint32_t fam;
        if (lt == LT_LOOP) {
            fam = be32(q);
        } else {
            fam = (uint32_t)q[0] | ((uint32_t)q[1] << 8) | ((uint32_t)q[2] << 16) | ((uint32_t)q[3] << 24);
            if (fam > 0xFFFF) fam = be32(q);
        }
        version = fam == AF_INET_ ? 4 : ((fam == 10 || fam == 24 || fam == 28 || fam == 30) ? 6 : 0);
        o = off + NULL_HEADER_LEN;
        break;
    }
    default:
        return 0;
    }
    if (version == 0 || o >= end) return 0;
    int actual = buf[o] >> 4;
    if (version == -1) version = actual;
    if (actual != version || (version != 4 && version != 6)) return 0;
    int64_t ip_end, l4;
    if (version == 4) {
        if (o + IPV4_MIN_HEADER > end) return 0;
        int64_t ihl = (int64_t)(buf[o] & 0x0F) * 4;
        int64_t total = be16(buf + o + 2);
        if (ihl < IPV4_MIN_HEADER || total < ihl || o + ihl > end) return 0;
        uint32_t fl = be16(buf + o + 6);
        if (fl & (IPV4_FLAG_MF | IPV4_FRAG_OFFSET_MASK)) return 0; /* a fragment: the Python path reassembles */
        p->proto = buf[o + 9];
        p->ttl = buf[o + 8];
        p->ipid = be16(buf + o + 4);
        p->df = (fl & IPV4_FLAG_DF) != 0;
        p->ip_len = total;
        p->alen = 4;
        p->src = buf + o + 12;
        p->dst = buf + o + 16;
        ip_end = o + total < end ? o + total : end;
        l4 = o + ihl;
        *a_word = be32(p->src);
        *b_word = be32(p->dst);
    } else {
        if (o + IPV6_HEADER_LEN > end) return 0;
        int64_t plen = be16(buf + o + 4);
        if (plen == 0) return 0; /* jumbogram */
        p->proto = buf[o + 6];
        p->ttl = buf[o + 7];
        p->ipid = -1;
        p->df = 0;
        p->ip_len = IPV6_HEADER_LEN + plen;
        p->alen = 16;
        p->src = buf + o + 8;
        p->dst = buf + o + 24;
        ip_end = o + IPV6_HEADER_LEN + plen < end ? o + IPV6_HEADER_LEN + plen : end;
        l4 = o + IPV6_HEADER_LEN;
        *a_word = be32(p->src) ^ be32(p->src + 4) ^ be32(p->src + 8) ^ be32(p->src + 12);
        *b_word = be32(p->dst) ^ be32(p->dst + 4) ^ be32(p->dst + 8) ^ be32(p->dst + 12);
    }
    if (p->proto == PROTO_TCP) {
        if (l4 + TCP_MIN_HEADER > ip_end) return 0;
        int64_t hlen = (int64_t)(buf[l4 + 12] >> 4) * 4;
        if (hlen < TCP_MIN_HEADER || l4 + hlen > ip_end) return 0;
        p->sport = (int32_t)be16(buf + l4);
        p->dport = (int32_t)be16(buf + l4 + 2);
        p->seq = be32(buf + l4 + 4);
        p->ack = be32(buf + l4 + 8);
        p->flags = buf[l4 + 13] | ((buf[l4 + 12] & 1) << 8);
        p->win = be16(buf + l4 + 14);
        p->payload = buf + l4 + hlen;
        p->plen = (Py_ssize_t)(ip_end - (l4 + hlen));
    } else if (p->proto == PROTO_UDP) {
        if (l4 + UDP_HEADER_LEN > ip_end) return 0;
        int64_t ulen = be16(buf + l4 + 4);
        int64_t stop = ulen < UDP_HEADER_LEN ? ip_end : (l4 + ulen < ip_end ? l4 + ulen : ip_end);
        p->sport = (int32_t)be16(buf + l4);
        p->dport = (int32_t)be16(buf + l4 + 2);
        p->seq = p->ack = p->flags = p->win = 0;
        p->payload = buf + l4 + UDP_HEADER_LEN;
        p->plen = (Py_ssize_t)(stop - (l4 + UDP_HEADER_LEN));
    } else {
        return 0;
    }
    if (p->sport == DNS_PORT || p->dport == DNS_PORT) {
        /* the DNS tracker needs it too: UDP goes to the dns callback, TCP (stream
         * reassembly) to the Python path */
        return p->proto == PROTO_UDP ? 2 : 0;
    }
    return 1;
}

static int get_array(PyObject *o, Py_buffer *view, char kind, Py_ssize_t need, const char *what) {
    if (PyObject_GetBuffer(o, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    const char *fmt = view->format ? view->format : "B";
    if (*fmt == '<' || *fmt == '=' || *fmt == '@') fmt++;
    int ok = view->itemsize == 8 && fmt[0] != 0 && fmt[1] == 0
             && (kind == 'i' ? (fmt[0] == 'q' || fmt[0] == 'l') : fmt[0] == 'd');
    if (!ok || view->len / 8 < need) {
        PyErr_Format(PyExc_TypeError, "%s: expected a contiguous %s array of at least %zd items",
                     what, kind == 'i' ? "int64" : "float64", need);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* feed(buf, offsets, caplens, wirelens, ts, linktypes, start, end, frame0, input, shard,
 *      nshards, slow, dns) -> (decoded, tmin, tmax, last): the packets taken here and their
 * first/last time stamps, and the latest time stamp of any record of the range (capture
 * time for expiry, the same in every shard); for every
 * other frame i of start..end, in order: slow(buf, frame0 + i, offset, caplen, wirelen, ts, lt).
 * An unfragmented UDP datagram to or from port 53 is tracked here (when this shard owns it)
 * and then handed to dns(src, dst, sport, dport, frame, ts, ttl, ipid, df, payload, owned). */
static PyObject *Table_feed(Table *t, PyObject *args) {
    PyObject *bufo, *offo, *capo, *wlo, *tso, *lto, *slow, *dns;
    Py_ssize_t start, end;
    long long frame0, input, shard, nshards;
    if (!PyArg_ParseTuple(args, "OOOOOOnnLLLLOO", &bufo, &offo, &capo, &wlo, &tso, &lto, &start,
                          &end, &frame0, &input, &shard, &nshards, &slow, &dns))
        return NULL;
    if (ready(t) < 0) return NULL;
    if (start < 0 || end < start || nshards < 1) {
        PyErr_SetString(PyExc_ValueError, "bad range or shard count");
        return NULL;
    }
    if (frame0 > LLONG_MAX - (long long)end) { /* frame0 + i must not overflow */
        PyErr_SetString(PyExc_OverflowError, "frame numbers out of range");
        return NULL;
    }
    Py_buffer vb, vo, vc, vw, vt, vl;
    if (PyObject_GetBuffer(bufo, &vb, PyBUF_SIMPLE) < 0) return NULL;
    if (get_array(offo, &vo, 'i', end, "offsets") < 0) { PyBuffer_Release(&vb); return NULL; }
    if (get_array(capo, &vc, 'i', end, "caplens") < 0) {
        PyBuffer_Release(&vb); PyBuffer_Release(&vo); return NULL;
    }
    if (get_array(wlo, &vw, 'i', end, "wirelens") < 0) {
        PyBuffer_Release(&vb); PyBuffer_Release(&vo); PyBuffer_Release(&vc); return NULL;
    }
    if (get_array(tso, &vt, 'f', end, "ts") < 0) {
        PyBuffer_Release(&vb); PyBuffer_Release(&vo); PyBuffer_Release(&vc); PyBuffer_Release(&vw);
        return NULL;
    }
    if (get_array(lto, &vl, 'i', end, "linktypes") < 0) {
        PyBuffer_Release(&vb); PyBuffer_Release(&vo); PyBuffer_Release(&vc); PyBuffer_Release(&vw);
        PyBuffer_Release(&vt);
        return NULL;
    }
    const int64_t *offs = vo.buf, *caps = vc.buf, *wls = vw.buf, *lts = vl.buf;
    const double *tss = vt.buf;
    long long decoded = 0;
    double last = end > start ? tss[start] : 0.0;
    double tmin = 0.0, tmax = 0.0;
    int err = 0;
    for (Py_ssize_t i = start; i < end; i++) {
        if (tss[i] > last) last = tss[i];
        if (lts[i] < 0) continue; /* a block the reader could not use: counted already */
        Pkt p;
        uint32_t aw = 0, bw = 0;
        /* re-read the buffer each time: the callback cannot move `bytes`, but stay simple */
        int kind = decode_plain(vb.buf, vb.len, offs[i], caps[i], lts[i], &p, &aw, &bw);
        if (!kind) {
            PyObject *r = PyObject_CallFunction(slow, "OLLLLdL", bufo, frame0 + (long long)i,
                                                (long long)offs[i], (long long)caps[i],
                                                (long long)wls[i], tss[i], (long long)lts[i]);
            if (!r) { err = 1; break; }
            Py_DECREF(r);
            continue;
        }
        int owned = 1;
        if (nshards > 1) {
            uint64_t x = (uint64_t)(aw ^ bw) * SHARD_MULT;
            owned = (long long)((x >> 16) % (uint64_t)nshards) == shard;
            if (!owned && kind == 1) continue;
        }
        p.frame = frame0 + i;
        p.ts = tss[i];
        p.input = input;
        if (owned) {
            if (decoded == 0) {
                tmin = tmax = p.ts;
            } else {
                if (p.ts < tmin) tmin = p.ts;
                if (p.ts > tmax) tmax = p.ts;
            }
            decoded++;
            if (observe(t, &p) < 0) { err = 1; break; }
        }
        if (kind == 2) {
            PyObject *r = PyObject_CallFunction(
                dns, "y#y#iiLdLLOy#O", (const char *)p.src, (Py_ssize_t)p.alen,
                (const char *)p.dst, (Py_ssize_t)p.alen, (int)p.sport, (int)p.dport,
                (long long)p.frame, p.ts, (long long)p.ttl, (long long)p.ipid,
                p.df ? Py_True : Py_False, (const char *)p.payload, p.plen,
                owned ? Py_True : Py_False);
            if (!r) { err = 1; break; }
            Py_DECREF(r);
        }
    }
    PyBuffer_Release(&vb); PyBuffer_Release(&vo); PyBuffer_Release(&vc); PyBuffer_Release(&vw);
    PyBuffer_Release(&vt); PyBuffer_Release(&vl);
    if (err) return NULL;
    return Py_BuildValue("(Lddd)", decoded, tmin, tmax, last);
}

/* FlowTable.expire */
static PyObject *Table_expire(Table *t, PyObject *arg) {
    if (ready(t) < 0) return NULL;
    double now = PyFloat_AsDouble(arg);
    if (now == -1.0 && PyErr_Occurred()) return NULL;
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    size_t nr = t->nreused;
    t->nreused = 0;
    for (size_t i = 0; i < nr; i++) {
        if (hand_out(t, t->reused[i], out) < 0) {
            for (size_t j = i + 1; j < nr; j++) { t->reused[j]->handed_out = 0; flow_release(t->reused[j]); }
            Py_DECREF(out);
            return NULL;
        }
    }
    while (t->cl_len && t->closing[t->cl_head]->ended + t->linger <= now) {
        CFlow *f = closing_pop(t);
        if (f->in_table && f->last_ts + t->linger <= now) {
            table_remove(t, f);
            f->handed_out = 1;
            if (hand_out(t, f, out) < 0) { Py_DECREF(out); return NULL; }
        } else if (f->in_table) {
            f->ended = f->last_ts;
            if (closing_push(t, f) < 0) { Py_DECREF(out); return NULL; }
        } else {
            flow_release(f);
        }
    }
    while (t->head) {
        CFlow *f = t->head;
        if (f->last_ts + t->idle > now) break;
        table_remove(t, f);
        f->handed_out = 1;
        if (hand_out(t, f, out) < 0) { Py_DECREF(out); return NULL; }
    }
    while ((int64_t)t->count > t->max_flows) {
        CFlow *f = t->head;
        if (!f) { /* max_flows < 0: flows.py's OrderedDict.popitem() on the emptied table */
            PyErr_SetString(PyExc_KeyError, "dictionary is empty");
            Py_DECREF(out);
            return NULL;
        }
        table_remove(t, f);
        f->evicted = 1;
        t->evicted++;
        f->handed_out = 1;
        if (hand_out(t, f, out) < 0) { Py_DECREF(out); return NULL; }
    }
    return out;
}

static int by_seq(const void *a, const void *b) {
    int64_t x = (*(CFlow *const *)a)->seq, y = (*(CFlow *const *)b)->seq;
    return x < y ? -1 : x > y;
}

/* FlowTable.flush, one flow at a time so that the C and Python copies of every remaining
 * flow never exist at once: begin_flush() takes every flow out of the table (the reused ones,
 * then the rest in creation order), next_flushed() hands them out one by one (None: done). */
static void drain_clear(Table *t) {
    for (size_t i = t->drain_pos; i < t->ndrain; i++) {
        t->drain[i]->handed_out = 0;
        flow_release(t->drain[i]);
    }
    PyMem_Free(t->drain);
    t->drain = NULL;
    t->ndrain = t->drain_pos = 0;
}

static PyObject *Table_begin_flush(Table *t, PyObject *Py_UNUSED(ignored)) {
    if (ready(t) < 0) return NULL;
    drain_clear(t);
    size_t n = t->count, nr = t->nreused, k = 0;
    CFlow **all = PyMem_Malloc((n + nr ? n + nr : 1) * sizeof(CFlow *));
    if (!all) return PyErr_NoMemory();
    for (size_t i = 0; i < nr; i++) all[k++] = t->reused[i]; /* handed_out already */
    t->nreused = 0;
    for (CFlow *f = t->head; f; f = f->next) all[k++] = f;
    qsort(all + nr, n, sizeof(CFlow *), by_seq);
    for (size_t i = nr; i < k; i++) {
        table_remove(t, all[i]);
        all[i]->handed_out = 1;
    }
    while (t->cl_len) flow_release(closing_pop(t));
    t->drain = all;
    t->ndrain = k;
    t->drain_pos = 0;
    Py_RETURN_NONE;
}

static PyObject *Table_next_flushed(Table *t, PyObject *Py_UNUSED(ignored)) {
    if (t->drain_pos >= t->ndrain) {
        drain_clear(t);
        Py_RETURN_NONE;
    }
    CFlow *f = t->drain[t->drain_pos++];
    PyObject *o = flow_object(t, f);
    f->handed_out = 0;
    flow_release(f);
    return o;
}

/* every flow at once (tests; the pipeline drains one by one) */
static PyObject *Table_flush(Table *t, PyObject *Py_UNUSED(ignored)) {
    PyObject *r = Table_begin_flush(t, NULL);
    if (!r) return NULL;
    Py_DECREF(r);
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    for (;;) {
        PyObject *o = Table_next_flushed(t, NULL);
        if (!o) { Py_DECREF(out); return NULL; }
        if (o == Py_None) { Py_DECREF(o); break; }
        int rc = PyList_Append(out, o);
        Py_DECREF(o);
        if (rc < 0) { Py_DECREF(out); return NULL; }
    }
    return out;
}

/* ------------------------------------------------------------------ type */

static int Table_init(Table *t, PyObject *args, PyObject *kw) {
    static char *names[] = {"flow_type", "direction_type", "max_events", "first_payloads",
                            "limit_client", "limit_server", "linger", "idle_timeout",
                            "max_flows", NULL};
    PyObject *ft, *dt;
    long long me, fp, lc, ls, mf;
    double linger, idle;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOLLLLddL", names, &ft, &dt, &me, &fp, &lc, &ls,
                                     &linger, &idle, &mf))
        return -1;
    if (!PyType_Check(ft) || !PyType_Check(dt)) {
        PyErr_SetString(PyExc_TypeError, "flow_type and direction_type must be classes");
        return -1;
    }
    Py_XSETREF(t->flow_type, Py_NewRef(ft));
    Py_XSETREF(t->dir_type, Py_NewRef(dt));
    /* flows.py compares with max_events and 2 * max_events: below 0 nothing is kept, above
     * 2**62 the cap never binds; clamped so that 2 * max_events cannot overflow */
    t->max_events = me < 0 ? 0 : (me > LLONG_MAX / 2 ? LLONG_MAX / 2 : me);
    t->first_payloads = fp;
    t->limits[0] = lc;
    t->limits[1] = ls;
    t->linger = linger;
    t->idle = idle;
    t->max_flows = mf;
    if (!t->buckets) {
        t->nbuckets = 1024;
        t->buckets = PyMem_Calloc(t->nbuckets, sizeof(CFlow *));
        if (!t->buckets) { PyErr_NoMemory(); return -1; }
    }
    return 0;
}

static void Table_dealloc(Table *t) {
    drain_clear(t);
    /* the closing queue first (its flows may be in the table or the reused list), then the
     * reused list, then the table: each flow is freed exactly once */
    for (size_t i = 0; i < t->cl_len; i++) {
        CFlow *g = t->closing[(t->cl_head + i) % t->cl_cap];
        if (--g->closing_refs == 0 && !g->in_table && !g->handed_out) flow_free(g);
    }
    t->cl_len = 0;
    for (size_t i = 0; i < t->nreused; i++) {
        CFlow *g = t->reused[i];
        g->handed_out = 0;
        if (!g->in_table && g->closing_refs == 0) flow_free(g);
    }
    t->nreused = 0;
    CFlow *f = t->head;
    while (f) {
        CFlow *nx = f->next;
        flow_free(f);
        f = nx;
    }
    PyMem_Free(t->closing);
    PyMem_Free(t->reused);
    PyMem_Free(t->buckets);
    Py_XDECREF(t->flow_type);
    Py_XDECREF(t->dir_type);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static Py_ssize_t Table_len(Table *t) { return (Py_ssize_t)t->count; }

static PyObject *Table_get_created(Table *t, void *c) { return PyLong_FromLongLong(t->created); }
static PyObject *Table_get_evicted(Table *t, void *c) { return PyLong_FromLongLong(t->evicted); }
static PyObject *Table_get_closing(Table *t, void *c) { return PyLong_FromSize_t(t->cl_len); }

static PyMethodDef Table_methods[] = {
    {"feed", (PyCFunction)Table_feed, METH_VARARGS, "Track the plain TCP/UDP frames of a chunk."},
    {"observe", (PyCFunction)Table_observe, METH_O, "Track one decoded Packet."},
    {"attach_icmp", (PyCFunction)Table_attach_icmp, METH_O, "Attach an ICMP error to its flow."},
    {"expire", (PyCFunction)Table_expire, METH_O, "Flows that are over at capture time `now`."},
    {"flush", (PyCFunction)Table_flush, METH_NOARGS, "Every flow; the table is emptied."},
    {"begin_flush", (PyCFunction)Table_begin_flush, METH_NOARGS,
     "Take every flow out of the table, to be handed out by next_flushed()."},
    {"next_flushed", (PyCFunction)Table_next_flushed, METH_NOARGS,
     "The next flushed flow, or None when all were handed out."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Table_getset[] = {
    {"created", (getter)Table_get_created, NULL, "flows created", NULL},
    {"evicted", (getter)Table_get_evicted, NULL, "flows evicted by the max_flows cap", NULL},
    {"closing", (getter)Table_get_closing, NULL, "entries in the closing queue", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PySequenceMethods Table_as_sequence = {.sq_length = (lenfunc)Table_len};

static PyTypeObject TableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "analyzer._ctrack.Table",
    .tp_basicsize = sizeof(Table),
    .tp_dealloc = (destructor)Table_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The flow table of analyzer.track.flows.FlowTable, in C.",
    .tp_methods = Table_methods,
    .tp_getset = Table_getset,
    .tp_as_sequence = &Table_as_sequence,
    .tp_init = (initproc)Table_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ctrack",
                                    "Flow tracking in C (see analyzer/track/flows.py).", -1, NULL};

#define INTERN(var, text) do { var = PyUnicode_InternFromString(text); if (!var) return NULL; } while (0)

PyMODINIT_FUNC PyInit__ctrack(void) {
    INTERN(S_key, "key"); INTERN(S_proto, "proto"); INTERN(S_client, "client");
    INTERN(S_cport, "cport"); INTERN(S_server, "server"); INTERN(S_sport, "sport");
    INTERN(S_input, "input"); INTERN(S_first_frame, "first_frame"); INTERN(S_first_ts, "first_ts");
    INTERN(S_last_ts, "last_ts"); INTERN(S_packets, "packets"); INTERN(S_bytes, "bytes");
    INTERN(S_dirs, "dirs"); INTERN(S_events, "events"); INTERN(S_closed, "closed");
    INTERN(S_hot, "hot"); INTERN(S_after_rst, "after_rst"); INTERN(S_syn_seen, "syn_seen");
    INTERN(S_synack_seen, "synack_seen"); INTERN(S_ended, "ended"); INTERN(S_icmp, "icmp");
    INTERN(S_evicted, "evicted"); INTERN(S_seq, "seq"); INTERN(S_payload_bytes, "payload_bytes");
    INTERN(S_ttls, "ttls"); INTERN(S_df_set, "df_set"); INTERN(S_df_clear, "df_clear");
    INTERN(S_isn, "isn"); INTERN(S_payloads, "payloads"); INTERN(S_kept_bytes, "kept_bytes");
    INTERN(S_payload_packets, "payload_packets"); INTERN(S_syn_count, "syn_count");
    INTERN(S_fin_frame, "fin_frame"); INTERN(S_rsts, "rsts"); INTERN(S_rst_count, "rst_count");
    INTERN(S_rst_ttls, "rst_ttls"); INTERN(S_last, "last");
    INTERN(S_synack_count, "synack_count"); INTERN(S_unanswered, "unanswered");
    INTERN(S_unanswered_since, "unanswered_since"); INTERN(S_busy_us, "busy_us");
    INTERN(S_src, "src"); INTERN(S_dst, "dst"); INTERN(S_dport, "dport"); INTERN(S_flags, "flags");
    INTERN(S_ack, "ack"); INTERN(S_ttl, "ttl"); INTERN(S_ipid, "ipid"); INTERN(S_win, "win");
    INTERN(S_df, "df"); INTERN(S_ip_len, "ip_len"); INTERN(S_payload, "payload");
    INTERN(S_frame, "frame"); INTERN(S_ts, "ts"); INTERN(S_quoted, "quoted");
    INTERN(S_icmp_type, "icmp_type"); INTERN(S_icmp_code, "icmp_code");
    if (PyType_Ready(&TableType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&TableType);
    if (PyModule_AddObject(m, "Table", (PyObject *)&TableType) < 0) {
        Py_DECREF(&TableType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
