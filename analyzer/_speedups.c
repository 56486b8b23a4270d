/* Optional C versions of the two vectorised stages of the offline hot path.
 *
 * pcap_scan: follows the record lengths of a classic pcap chunk and gathers the record
 *            headers (analyzer.sources.files.PcapReader.batches).
 * extract:   link/IP/TCP/UDP header fields of a chunk of frames
 *            (analyzer.decode.fast.extract).
 *
 * The numpy code stays the reference: every value here is computed exactly as it computes
 * it, including the fields of frames that are not keyable (positions are clipped to the
 * buffer like its gathers). Captures are hostile input: every read is bounds-checked.
 *
 * No numpy build dependency: results are returned as one bytearray of columns that the
 * Python side wraps with numpy.frombuffer (writable, no per-packet objects).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#define PCAP_RECORD_HEADER_LEN 16

#define LINKTYPE_NULL 0
#define LINKTYPE_EN10MB 1
#define LINKTYPE_RAW 101
#define LINKTYPE_RAW_OLD_A 12
#define LINKTYPE_RAW_OLD_B 14
#define LINKTYPE_LOOP 108
#define LINKTYPE_LINUX_SLL 113
#define LINKTYPE_IPV4 228
#define LINKTYPE_IPV6 229
#define LINKTYPE_LINUX_SLL2 276

#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_IPV6 0x86DD
#define IPV6_HEADER_LEN 40
#define FAST_VLAN_TAGS 2
#define AF_INET_VALUE 2
#define TCP_FLAGS_ALWAYS_DEEP 0x07
#define DNS_PORT 53
#define IPV4_MF 0x2000
#define IPV4_DF 0x4000
#define IPV4_OFFSET_MASK 0x1FFF
#define PROTO_TCP 6
#define PROTO_UDP 17

/* extract: int64/uint64 columns, then bool columns (numpy.bool_ is one byte, 0 or 1) */
#define EXTRACT_WORD_COLUMNS 17
#define EXTRACT_BOOL_COLUMNS 4

/* Offsets and captured lengths outside +-2**40 are not from a reader; the caller falls back
 * to numpy for them, so that no position arithmetic below can overflow. */
#define SANE_LIMIT ((int64_t)1 << 40)

/* ---------------------------------------------------------------------------------------- */
/* pcap_scan                                                                                  */

static inline uint32_t
rd32(const uint8_t *p, int big_endian)
{
    if (big_endian)
        return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    return ((uint32_t)p[3] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[1] << 8) | p[0];
}

PyDoc_STRVAR(pcap_scan_doc,
"pcap_scan(buf, big_endian, nanosecond, max_record_len) -> (count, end, corrupt, columns)\n\n"
"Follow the classic pcap records of buf from offset 0. Stops at the first record that is\n"
"not complete in buf (end = its offset) or whose captured length exceeds max_record_len\n"
"(corrupt = True, end = its offset). columns holds 4 * count native 8-byte values: data\n"
"offsets (record offset + 16), captured lengths, wire lengths (int64) and timestamps\n"
"(float64, sec + frac * 1e-6 or 1e-9).");

static PyObject *
pcap_scan(PyObject *self, PyObject *args)
{
    Py_buffer view;
    int big_endian, nanosecond;
    unsigned long long max_record_len;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*ppK", &view, &big_endian, &nanosecond, &max_record_len))
        return NULL;
    const uint8_t *b = (const uint8_t *)view.buf;
    const size_t n = (size_t)view.len;
    const size_t hdr = PCAP_RECORD_HEADER_LEN;

    /* pass 1: how many complete records, where the walk stops and why */
    size_t off = 0, count = 0;
    int corrupt = 0;
    while (n >= hdr && off <= n - hdr) {
        uint32_t incl = rd32(b + off + 8, big_endian);
        if ((unsigned long long)incl > max_record_len) {
            corrupt = 1;
            break;
        }
        if ((size_t)incl > n - off - hdr)
            break;
        off += hdr + incl;
        count++;
    }
    const size_t end = off;

    if (count > (size_t)PY_SSIZE_T_MAX / 32) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    PyObject *cols = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(count * 32));
    if (cols == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    char *out = PyByteArray_AS_STRING(cols);
    /* pass 2: the record headers (the same walk, still bounds-checked) */
    const double scale = nanosecond ? 1e-9 : 1e-6;
    off = 0;
    for (size_t i = 0; i < count && off + hdr <= end; i++) {
        const uint8_t *r = b + off;
        uint32_t incl = rd32(r + 8, big_endian);
        int64_t data_off = (int64_t)(off + hdr);
        int64_t caplen = (int64_t)incl;
        int64_t wirelen = (int64_t)rd32(r + 12, big_endian);
        /* numpy: sec + (frac * scale), each rounded to double (no fused multiply-add) */
        volatile double frac = (double)rd32(r + 4, big_endian) * scale;
        double ts = (double)rd32(r, big_endian) + frac;
        memcpy(out + 8 * i, &data_off, 8);
        memcpy(out + 8 * (count + i), &caplen, 8);
        memcpy(out + 8 * (2 * count + i), &wirelen, 8);
        memcpy(out + 8 * (3 * count + i), &ts, 8);
        off += hdr + incl;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(nnON)", (Py_ssize_t)count, (Py_ssize_t)end,
                         corrupt ? Py_True : Py_False, cols);
}

/* ---------------------------------------------------------------------------------------- */
/* extract                                                                                    */

typedef struct {
    const uint8_t *b;
    int64_t last; /* index of the last byte; positions are clipped to [0, last] */
} Buf;

static inline int64_t
u8(const Buf *s, int64_t p)
{
    if (p < 0)
        p = 0;
    else if (p > s->last)
        p = s->last;
    return s->b[p];
}

static inline int64_t
u16(const Buf *s, int64_t p)
{
    if (p >= 0 && p + 1 <= s->last)
        return ((int64_t)s->b[p] << 8) | s->b[p + 1];
    return (u8(s, p) << 8) | u8(s, p + 1);
}

static inline int64_t
u32(const Buf *s, int64_t p)
{
    if (p >= 0 && p + 3 <= s->last) {
        const uint8_t *q = s->b + p;
        return ((int64_t)q[0] << 24) | ((int64_t)q[1] << 16) | ((int64_t)q[2] << 8) | q[3];
    }
    return (u16(s, p) << 16) | u16(s, p + 2);
}

static inline uint64_t
u64(const Buf *s, int64_t p)
{
    return ((uint64_t)u32(s, p) << 32) | (uint64_t)u32(s, p + 4);
}

static inline int64_t
min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static inline int
is_vlan_tpid(int64_t et)
{
    return et == 0x8100 || et == 0x88A8 || et == 0x9100;
}

static inline int
is_af_inet6(int64_t fam)
{
    return fam == 10 || fam == 24 || fam == 28 || fam == 30;
}

static int
get_int64_column(PyObject *obj, Py_buffer *view, const char *name)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@')
        f++;
    if (view->itemsize != 8 || !(strcmp(f, "q") == 0 || strcmp(f, "l") == 0)) {
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous int64 array", name);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(extract_doc,
"extract(buf, offsets, caplens, linktypes) -> columns or None\n\n"
"Header fields of every frame (offsets, caplens, linktypes: contiguous int64 arrays of one\n"
"length). columns is one bytearray: 17 columns of n native 8-byte values (proto, src_hi,\n"
"src_lo, dst_hi, dst_lo, srcw, dstw, sport, dport, ttl, ipid, ip_len, plen, flags, seq,\n"
"ack, win), then 4 columns of n bytes (keyable, candidate, v6, df). None when buf is empty\n"
"or an offset or length is absurd (the caller then uses its numpy version).");

static PyObject *
extract(PyObject *self, PyObject *args)
{
    PyObject *o_off, *o_cap, *o_lt;
    Py_buffer vb, voff, vcap, vlt;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*OOO", &vb, &o_off, &o_cap, &o_lt))
        return NULL;
    if (get_int64_column(o_off, &voff, "offsets") < 0)
        goto fail_b;
    if (get_int64_column(o_cap, &vcap, "caplens") < 0)
        goto fail_off;
    if (get_int64_column(o_lt, &vlt, "linktypes") < 0)
        goto fail_cap;
    if (voff.len != vcap.len || voff.len != vlt.len) {
        PyErr_SetString(PyExc_ValueError, "offsets, caplens and linktypes differ in length");
        goto fail_lt;
    }

    const Py_ssize_t n = voff.len / 8;
    const int64_t *offs = (const int64_t *)voff.buf;
    const int64_t *caps = (const int64_t *)vcap.buf;
    const int64_t *lts = (const int64_t *)vlt.buf;
    PyObject *result = NULL;
    int sane = vb.len > 0;
    for (Py_ssize_t i = 0; sane && i < n; i++) {
        if (offs[i] <= -SANE_LIMIT || offs[i] >= SANE_LIMIT || caps[i] <= -SANE_LIMIT
            || caps[i] >= SANE_LIMIT)
            sane = 0;
    }
    if (!sane || (Py_ssize_t)vb.len >= (Py_ssize_t)SANE_LIMIT) {
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }
    const Py_ssize_t row = EXTRACT_WORD_COLUMNS * 8 + EXTRACT_BOOL_COLUMNS;
    if (n > PY_SSIZE_T_MAX / row) {
        PyErr_NoMemory();
        goto fail_lt;
    }
    result = PyByteArray_FromStringAndSize(NULL, n * row);
    if (result == NULL)
        goto fail_lt;
    {
        char *base = PyByteArray_AS_STRING(result);
        char *w = base; /* written with memcpy: no alignment assumption */
        char *bl = base + (size_t)n * 8 * EXTRACT_WORD_COLUMNS;
        const Buf s = {(const uint8_t *)vb.buf, (int64_t)vb.len - 1};

#define PUT_WORD(col, i, v)                                                   \
    do {                                                                      \
        int64_t v_ = (int64_t)(v);                                            \
        memcpy(w + 8 * ((size_t)(col) * (size_t)n + (size_t)(i)), &v_, 8);   \
    } while (0)
#define PUT_BOOL(col, i, v) (bl[(size_t)(col) * (size_t)n + (size_t)(i)] = (char)((v) ? 1 : 0))

        for (Py_ssize_t i = 0; i < n; i++) {
            const int64_t off = offs[i];
            const int64_t cap_end = off + caps[i];
            const int64_t lt = lts[i];
            int64_t l3 = -1;
            int64_t ver_link = 0;
            /* link layer: offset of the IP header and the version the link says it is */
            if (lt == LINKTYPE_EN10MB) {
                int64_t et = u16(&s, off + 12);
                int64_t pos = off + 14;
                for (int t = 0; t < FAST_VLAN_TAGS; t++) {
                    if (is_vlan_tpid(et)) {
                        et = u16(&s, pos + 2);
                        pos += 4;
                    }
                }
                if (pos <= cap_end) {
                    l3 = pos;
                    ver_link = et == ETHERTYPE_IPV4 ? 4 : et == ETHERTYPE_IPV6 ? 6 : 0;
                }
            } else if (lt == LINKTYPE_LINUX_SLL) {
                int64_t et = u16(&s, off + 14);
                if (off + 16 <= cap_end) {
                    l3 = off + 16;
                    ver_link = et == ETHERTYPE_IPV4 ? 4 : et == ETHERTYPE_IPV6 ? 6 : 0;
                }
            } else if (lt == LINKTYPE_LINUX_SLL2) {
                int64_t et = u16(&s, off);
                if (off + 20 <= cap_end) {
                    l3 = off + 20;
                    ver_link = et == ETHERTYPE_IPV4 ? 4 : et == ETHERTYPE_IPV6 ? 6 : 0;
                }
            } else if (lt == LINKTYPE_RAW || lt == LINKTYPE_RAW_OLD_A || lt == LINKTYPE_RAW_OLD_B) {
                l3 = off;
                ver_link = u8(&s, off) >> 4;
            } else if (lt == LINKTYPE_IPV4) {
                l3 = off;
                ver_link = 4;
            } else if (lt == LINKTYPE_IPV6) {
                l3 = off;
                ver_link = 6;
            } else if (lt == LINKTYPE_NULL || lt == LINKTYPE_LOOP) {
                int64_t le = u8(&s, off) | (u8(&s, off + 1) << 8) | (u8(&s, off + 2) << 16)
                             | (u8(&s, off + 3) << 24);
                int64_t be = u32(&s, off);
                /* DLT_NULL: host byte order (a value above 0xFFFF was written big-endian) */
                int64_t fam = lt == LINKTYPE_LOOP ? be : (le > 0xFFFF ? be : le);
                if (off + 4 <= cap_end) {
                    l3 = off + 4;
                    ver_link = fam == AF_INET_VALUE ? 4 : is_af_inet6(fam) ? 6 : 0;
                }
            }

            const int64_t first = u8(&s, l3);
            const int64_t ver = first >> 4;
            const int in_cap = l3 >= 0 && l3 < cap_end;
            const int is4 = in_cap && ver_link == 4 && ver == 4;
            const int is6 = in_cap && ver_link == 6 && ver == 6;
            /* IPv4 */
            const int64_t ihl = (first & 0x0F) * 4;
            const int64_t total = u16(&s, l3 + 2);
            const int64_t frag = u16(&s, l3 + 6);
            const int ok4 = is4 && ihl >= 20 && total >= ihl && l3 + ihl <= cap_end
                            && (frag & IPV4_OFFSET_MASK) == 0;
            /* IPv6 without extension headers, not a jumbogram */
            const int64_t plen6 = u16(&s, l3 + 4);
            const int64_t nh6 = u8(&s, l3 + 6);
            const int ok6 = is6 && l3 + IPV6_HEADER_LEN <= cap_end && plen6 > 0
                            && (nh6 == PROTO_TCP || nh6 == PROTO_UDP);
            const int64_t proto = ok6 ? nh6 : u8(&s, l3 + 9);
            const int ok = ok4 || ok6;
            const int64_t ip_end = ok6 ? min64(cap_end, l3 + IPV6_HEADER_LEN + plen6)
                                       : min64(cap_end, l3 + total);
            const int64_t l4 = ok6 ? l3 + IPV6_HEADER_LEN : l3 + ihl;
            const int64_t sport = u16(&s, l4);
            const int64_t dport = u16(&s, l4 + 2);
            const int64_t doff = u8(&s, l4 + 12);
            const int64_t hlen = (doff >> 4) * 4;
            const int is_tcp = proto == PROTO_TCP;
            const int is_udp = proto == PROTO_UDP;
            const int tcp_hdr = ok && is_tcp && l4 + 20 <= ip_end && hlen >= 20 && l4 + hlen <= ip_end;
            const int udp_hdr = ok && is_udp && l4 + 8 <= ip_end;
            const int keyable = tcp_hdr || udp_hdr;
            const int64_t flags = u8(&s, l4 + 13) | ((doff & 1) << 8);
            const int64_t ulen = u16(&s, l4 + 4);
            const int64_t udp_stop = ulen < 8 ? ip_end : min64(ip_end, l4 + ulen);
            int64_t plen = is_tcp ? ip_end - (l4 + hlen) : udp_stop - (l4 + 8);
            const int dns = sport == DNS_PORT || dport == DNS_PORT;
            const int unfragmented = ok6 || (frag & IPV4_MF) == 0;
            const int candidate = keyable && unfragmented && !dns
                                  && (is_tcp ? (flags & TCP_FLAGS_ALWAYS_DEEP) == 0 : 1);
            uint64_t s_hi, s_lo, d_hi, d_lo;
            if (ok6) {
                s_hi = u64(&s, l3 + 8);
                s_lo = u64(&s, l3 + 16);
                d_hi = u64(&s, l3 + 24);
                d_lo = u64(&s, l3 + 32);
            } else {
                s_hi = 0;
                s_lo = (uint64_t)u32(&s, l3 + 12);
                d_hi = 0;
                d_lo = (uint64_t)u32(&s, l3 + 16);
            }
            const uint64_t m32 = 0xFFFFFFFFu;
            const uint64_t srcw = (s_hi >> 32) ^ (s_hi & m32) ^ (s_lo >> 32) ^ (s_lo & m32);
            const uint64_t dstw = (d_hi >> 32) ^ (d_hi & m32) ^ (d_lo >> 32) ^ (d_lo & m32);
            if (plen < 0)
                plen = 0;

            PUT_WORD(0, i, proto);
            PUT_WORD(1, i, s_hi);
            PUT_WORD(2, i, s_lo);
            PUT_WORD(3, i, d_hi);
            PUT_WORD(4, i, d_lo);
            PUT_WORD(5, i, srcw);
            PUT_WORD(6, i, dstw);
            PUT_WORD(7, i, sport);
            PUT_WORD(8, i, dport);
            PUT_WORD(9, i, ok6 ? u8(&s, l3 + 7) : u8(&s, l3 + 8));
            PUT_WORD(10, i, ok6 ? -1 : u16(&s, l3 + 4));
            PUT_WORD(11, i, ok6 ? IPV6_HEADER_LEN + plen6 : total);
            PUT_WORD(12, i, plen);
            PUT_WORD(13, i, flags);
            PUT_WORD(14, i, u32(&s, l4 + 4));
            PUT_WORD(15, i, u32(&s, l4 + 8));
            PUT_WORD(16, i, u16(&s, l4 + 14));
            PUT_BOOL(0, i, keyable);
            PUT_BOOL(1, i, candidate);
            PUT_BOOL(2, i, ok6);
            PUT_BOOL(3, i, !ok6 && (frag & IPV4_DF) != 0);
        }
#undef PUT_WORD
#undef PUT_BOOL
    }
done:
    PyBuffer_Release(&vlt);
    PyBuffer_Release(&vcap);
    PyBuffer_Release(&voff);
    PyBuffer_Release(&vb);
    return result;
fail_lt:
    PyBuffer_Release(&vlt);
fail_cap:
    PyBuffer_Release(&vcap);
fail_off:
    PyBuffer_Release(&voff);
fail_b:
    PyBuffer_Release(&vb);
    return NULL;
}


/* ---------------------------------------------------------------------------------------- */
/* pcapng_scan                                                                                */

#define PCAPNG_SHB 0x0A0D0D0AU
#define PCAPNG_IDB 0x00000001U
#define PCAPNG_PB 0x00000002U
#define PCAPNG_SPB 0x00000003U
#define PCAPNG_EPB 0x00000006U
#define PCAPNG_OPT_ENDOFOPT 0
#define PCAPNG_OPT_IF_TSRESOL 9
#define PCAPNG_OPT_IF_TSOFFSET 14
#define PCAPNG_BLOCK_MIN 12
#define PCAPNG_BLOCK_SLACK 64 /* MAX_RECORD_LEN + this: the largest believable block */
#define PCAPNG_PACKET_FIXED 20 /* EPB and PB: interface .. original length */

/* skip reasons, in the order of the names returned */
enum { SK_SECTION, SK_BLOCK_LEN, SK_IFACE, SK_PACKET, SK_UNKNOWN_IF, SK_COUNT };
static const char *SKIP_NAMES[SK_COUNT] = {
    "corrupt_section_header", "corrupt_block_length", "corrupt_interface_block",
    "corrupt_packet_block", "unknown_interface"};

typedef struct {
    int64_t linktype;
    double resolution, tsoffset;
    int64_t snaplen;
} Iface;

static inline uint32_t
rd16(const uint8_t *p, int big_endian)
{
    return big_endian ? (((uint32_t)p[0] << 8) | p[1]) : (((uint32_t)p[1] << 8) | p[0]);
}

static inline uint64_t
rd64(const uint8_t *p, int big_endian)
{
    uint64_t a = rd32(p, big_endian), b = rd32(p + 4, big_endian);
    return big_endian ? (a << 32) | b : (b << 32) | a;
}

static int
iface_push(Iface **ifs, Py_ssize_t *n, Py_ssize_t *cap, const Iface *f)
{
    if (*n == *cap) {
        Py_ssize_t c = *cap ? *cap * 2 : 4;
        Iface *t = PyMem_Realloc(*ifs, (size_t)c * sizeof(Iface));
        if (!t) {
            PyErr_NoMemory();
            return -1;
        }
        *ifs = t;
        *cap = c;
    }
    (*ifs)[(*n)++] = *f;
    return 0;
}

PyDoc_STRVAR(pcapng_scan_doc,
"pcapng_scan(buf, big_endian, interfaces, max_record_len)\n"
"    -> (end, stop, big_endian, interfaces, idb_linktypes, skips, count, columns)\n\n"
"The block walk of PcapngReader.batches over one buffer, from offset 0, with the state it\n"
"carries between buffers (byte order, interfaces as (linktype, resolution, tsoffset,\n"
"snaplen) tuples). end: where the walk stopped (an incomplete block, or len(buf) after\n"
"damage); stop: damage that ends the file; idb_linktypes: the link types of the interface\n"
"blocks read, in order; skips: reason -> count; columns: 5 * count native 8-byte values per\n"
"packet block (data offset, captured length, wire length as int64, timestamp as float64,\n"
"link type as int64; -1 and zeros for a block that could not be used).");

static PyObject *
pcapng_scan(PyObject *self, PyObject *args)
{
    Py_buffer vb;
    int big;
    PyObject *ifaces_in;
    long long max_record_len;
    if (!PyArg_ParseTuple(args, "y*pOL", &vb, &big, &ifaces_in, &max_record_len))
        return NULL;
    const uint8_t *b = vb.buf;
    Py_ssize_t n = vb.len;
    PyObject *result = NULL, *idb_lts = NULL, *ifaces_out = NULL, *skips = NULL;
    Iface *ifs = NULL;
    Py_ssize_t nifs = 0, cap_ifs = 0;
    int64_t *cols = NULL;
    Py_ssize_t count = 0, cap = 0;
    Py_ssize_t skip[SK_COUNT] = {0};
    int stop = 0;

    if (!PyList_Check(ifaces_in)) {
        PyErr_SetString(PyExc_TypeError, "interfaces must be a list");
        goto fail;
    }
    idb_lts = PyList_New(0);
    if (!idb_lts)
        goto fail;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(ifaces_in); i++) {
        Iface f;
        long long lt, snap;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(ifaces_in, i), "LddL", &lt, &f.resolution,
                              &f.tsoffset, &snap))
            goto fail;
        f.linktype = lt;
        f.snaplen = snap;
        if (iface_push(&ifs, &nifs, &cap_ifs, &f) < 0)
            goto fail;
    }

    Py_ssize_t off = 0;
    while (off + PCAPNG_BLOCK_MIN <= n) {
        uint32_t btype = rd32(b + off, big);
        if (btype == PCAPNG_SHB) {
            const uint8_t *bom = b + off + 8;
            if (bom[0] == 0x4d && bom[1] == 0x3c && bom[2] == 0x2b && bom[3] == 0x1a) {
                big = 0;
            } else if (bom[0] == 0x1a && bom[1] == 0x2b && bom[2] == 0x3c && bom[3] == 0x4d) {
                big = 1;
            } else {
                skip[SK_SECTION]++;
                off = n;
                stop = 1;
                break;
            }
            nifs = 0; /* a new section: new interfaces */
        }
        uint32_t blen = rd32(b + off + 4, big);
        if (blen < PCAPNG_BLOCK_MIN || blen % 4 || (long long)blen > max_record_len + PCAPNG_BLOCK_SLACK) {
            skip[SK_BLOCK_LEN]++;
            off = n;
            stop = 1;
            break;
        }
        if ((Py_ssize_t)blen > n - off)
            break;
        Py_ssize_t start = off + 8, end = off + (Py_ssize_t)blen - 4;
        if (btype == PCAPNG_IDB) {
            Iface f = {-1, 1e-6, 0.0, 0};
            if (start + 8 > end) {
                skip[SK_IFACE]++;
            } else {
                f.linktype = rd16(b + start, big);
                f.snaplen = rd32(b + start + 4, big);
                Py_ssize_t o = start + 8;
                while (o + 4 <= end) {
                    uint32_t code = rd16(b + o, big), length = rd16(b + o + 2, big);
                    o += 4;
                    if (code == PCAPNG_OPT_ENDOFOPT || o + (Py_ssize_t)length > end)
                        break;
                    if (code == PCAPNG_OPT_IF_TSRESOL && length >= 1) {
                        uint8_t v = b[o];
                        f.resolution = (v & 0x80) ? pow(2.0, -(double)(v & 0x7F)) : pow(10.0, -(double)v);
                    } else if (code == PCAPNG_OPT_IF_TSOFFSET && length >= 8) {
                        f.tsoffset = (double)(int64_t)rd64(b + o, big);
                    }
                    o += (length + 3) & ~3U;
                }
                PyObject *lt = PyLong_FromLongLong(f.linktype);
                if (!lt || PyList_Append(idb_lts, lt) < 0) { Py_XDECREF(lt); goto fail; }
                Py_DECREF(lt);
            }
            if (iface_push(&ifs, &nifs, &cap_ifs, &f) < 0)
                goto fail;
        } else if (btype == PCAPNG_EPB || btype == PCAPNG_PB || btype == PCAPNG_SPB) {
            /* data offset, caplen, wirelen, ts, linktype; the placeholder keeps frame numbers */
            int64_t r_off = start, r_cap = 0, r_wire = 0, r_lt = -1;
            double r_ts = 0.0;
            if (btype == PCAPNG_SPB) {
                if (start + 4 > end || nifs == 0) {
                    skip[SK_PACKET]++;
                } else {
                    int64_t wire = rd32(b + start, big), room = end - start - 4;
                    int64_t caplen = wire < room ? wire : room;
                    if (ifs[0].snaplen && ifs[0].snaplen < caplen)
                        caplen = ifs[0].snaplen;
                    r_off = start + 4; r_cap = caplen; r_wire = wire; r_lt = ifs[0].linktype;
                }
            } else if (start + PCAPNG_PACKET_FIXED > end) {
                skip[SK_PACKET]++;
            } else {
                uint32_t ifid, hi, lo, caplen, wire;
                if (btype == PCAPNG_EPB) {
                    ifid = rd32(b + start, big);
                    hi = rd32(b + start + 4, big);
                    lo = rd32(b + start + 8, big);
                } else {
                    ifid = rd16(b + start, big);
                    hi = rd32(b + start + 4, big);
                    lo = rd32(b + start + 8, big);
                }
                caplen = rd32(b + start + 12, big);
                wire = rd32(b + start + 16, big);
                Py_ssize_t data = start + PCAPNG_PACKET_FIXED;
                if ((Py_ssize_t)ifid >= nifs) {
                    skip[SK_UNKNOWN_IF]++;
                } else if ((Py_ssize_t)caplen > end - data) {
                    skip[SK_PACKET]++;
                } else {
                    const Iface *f = &ifs[ifid];
                    /* Python: ((hi << 32) | lo) * res + tso, each step rounded */
                    volatile double prod = (double)(((uint64_t)hi << 32) | lo) * f->resolution;
                    r_off = data; r_cap = caplen; r_wire = wire; r_lt = f->linktype;
                    r_ts = prod + f->tsoffset;
                }
            }
            if (count == cap) {
                cap = cap ? cap * 2 : 4096;
                int64_t *t = PyMem_Realloc(cols, (size_t)cap * 5 * sizeof(int64_t));
                if (!t) { PyErr_NoMemory(); goto fail; }
                cols = t;
            }
            int64_t *row = cols + count * 5;
            row[0] = r_off; row[1] = r_cap; row[2] = r_wire;
            memcpy(&row[3], &r_ts, sizeof(double));
            row[4] = r_lt;
            count++;
        }
        off += (Py_ssize_t)blen;
    }

    ifaces_out = PyList_New(nifs);
    if (!ifaces_out)
        goto fail;
    for (Py_ssize_t i = 0; i < nifs; i++) {
        PyObject *t = Py_BuildValue("(LddL)", (long long)ifs[i].linktype, ifs[i].resolution,
                                    ifs[i].tsoffset, (long long)ifs[i].snaplen);
        if (!t)
            goto fail;
        PyList_SET_ITEM(ifaces_out, i, t);
    }
    skips = PyDict_New();
    if (!skips)
        goto fail;
    for (int k = 0; k < SK_COUNT; k++) {
        if (!skip[k])
            continue;
        PyObject *v = PyLong_FromSsize_t(skip[k]);
        if (!v || PyDict_SetItemString(skips, SKIP_NAMES[k], v) < 0) { Py_XDECREF(v); goto fail; }
        Py_DECREF(v);
    }
    /* columns: offsets, caplens, wirelens, ts, linktypes, each count values */
    PyObject *data = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(count * 5 * 8));
    if (!data)
        goto fail;
    int64_t *out = (int64_t *)PyByteArray_AS_STRING(data);
    for (Py_ssize_t i = 0; i < count; i++)
        for (int c = 0; c < 5; c++)
            out[c * count + i] = cols[i * 5 + c];
    result = Py_BuildValue("(nOOOOOnN)", off, stop ? Py_True : Py_False, big ? Py_True : Py_False,
                           ifaces_out, idb_lts, skips, count, data);
fail:
    Py_XDECREF(ifaces_out);
    Py_XDECREF(idb_lts);
    Py_XDECREF(skips);
    PyMem_Free(ifs);
    PyMem_Free(cols);
    PyBuffer_Release(&vb);
    return result;
}

static PyMethodDef methods[] = {
    {"pcap_scan", pcap_scan, METH_VARARGS, pcap_scan_doc},
    {"extract", extract, METH_VARARGS, extract_doc},
    {"pcapng_scan", pcapng_scan, METH_VARARGS, pcapng_scan_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "analyzer._speedups",
    "C versions of the pcap record walk and the fast-path header gather (optional).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
