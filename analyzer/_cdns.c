/*
 * analyzer._cdns: parse_dns of analyzer/decode/dns.py in C.
 *
 * decode/dns.py is the reference and the documentation (RFC 1035/3596/6891/4343, name
 * compression rules, anomalies); this file mirrors _parse, _Parser and _read_name statement
 * by statement and builds the same frozen dataclass objects (DnsMessage, DnsQuestion, DnsRR,
 * SoaData, Edns), setting their fields as object.__setattr__ does. tests/dns/test_cdns.py
 * checks that both give equal results (or the same DecodeError reason) on real and mutated
 * messages. Every read is bounds-checked: the message is hostile input.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define HEADER_LEN 12
#define FLAG_QR 0x8000
#define FLAG_Z 0x0040
#define MAX_POINTER_JUMPS 127
#define MAX_NAME_WIRE_LEN 255
#define T_A 1
#define T_NS 2
#define T_CNAME 5
#define T_SOA 6
#define T_PTR 12
#define T_MX 15
#define T_AAAA 28
#define T_OPT 41
#define NAME_TEXT_MAX (4 * 256 + 8)

/* outcome of reading an item */
enum { OK = 0, TRUNCATED = 1, BADNAME = 2, PYERR = 3 };

static PyObject *MessageType, *QuestionType, *RRType, *SoaType, *EdnsType, *DecodeErrorType;
static PyObject *empty_tuple;
static PyObject *S[40];
enum {
    A_txid, A_flags, A_rcode, A_qdcount, A_ancount, A_nscount, A_arcount, A_questions, A_answers,
    A_authority, A_additional, A_edns, A_anomalies, A_name, A_raw_name, A_qtype, A_qclass,
    A_rtype, A_rclass, A_ttl, A_rdata, A_address, A_target, A_preference, A_soa, A_mname,
    A_rname, A_serial, A_refresh, A_retry, A_expire, A_minimum, A_udp_size, A_ext_rcode,
    A_version, A_do, A_options, A_COUNT
};
static const char *ANAMES[] = {
    "txid", "flags", "rcode", "qdcount", "ancount", "nscount", "arcount", "questions", "answers",
    "authority", "additional", "edns", "anomalies", "name", "raw_name", "qtype", "qclass",
    "rtype", "rclass", "ttl", "rdata", "address", "target", "preference", "soa", "mname",
    "rname", "serial", "refresh", "retry", "expire", "minimum", "udp_size", "ext_rcode",
    "version", "do", "options"};

static inline uint32_t be16(const uint8_t *p) { return ((uint32_t)p[0] << 8) | p[1]; }
static inline uint32_t be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* an instance of a frozen dataclass; steals values, given in the order of its fields. A class
 * compiled by mypyc (its own tp_new) is called with them: its native __init__ is the only way
 * to set up its layout. A plain one gets its fields set as object.__setattr__ does (no
 * interpreted __init__ to run). */
static PyObject *make(PyObject *type, int n, const int *names, PyObject **values) {
    PyObject *o = NULL;
    for (int i = 0; i < n; i++) if (!values[i]) goto fail;
    if (((PyTypeObject *)type)->tp_new != PyBaseObject_Type.tp_new) {
        o = PyObject_Vectorcall(type, values, (size_t)n, NULL);
        for (int i = 0; i < n; i++) Py_DECREF(values[i]);
        return o;
    }
    o = PyBaseObject_Type.tp_new((PyTypeObject *)type, empty_tuple, NULL);
    if (!o) goto fail;
    for (int i = 0; i < n; i++) {
        if (PyObject_GenericSetAttr(o, S[names[i]], values[i]) < 0) goto fail;
    }
    for (int i = 0; i < n; i++) Py_DECREF(values[i]);
    return o;
fail:
    for (int i = 0; i < n; i++) Py_XDECREF(values[i]);
    Py_XDECREF(o);
    return NULL;
}

static PyObject *none(void) { Py_INCREF(Py_None); return Py_None; }

/* _read_name + _name_text: the text form of the name at off in data[0:n] (lowercased copy in
 * low), *after = offset just after the name in its original position. */
static int read_name(const uint8_t *d, Py_ssize_t n, Py_ssize_t off, char *raw, Py_ssize_t *rawlen,
                     Py_ssize_t *after_out) {
    Py_ssize_t pos = off, run_start = off, after = -1, t = 0;
    int jumps = 0, wire_len = 1, labels = 0;
    for (;;) {
        if (pos >= n) return TRUNCATED;
        uint8_t b = d[pos];
        int kind = b & 0xC0;
        if (kind == 0xC0) {
            if (pos + 2 > n) return TRUNCATED;
            Py_ssize_t ptr = (Py_ssize_t)(be16(d + pos) & 0x3FFF);
            if (after < 0) after = pos + 2;
            jumps++;
            if (ptr >= run_start || ptr < HEADER_LEN || jumps > MAX_POINTER_JUMPS) return BADNAME;
            pos = run_start = ptr;
            continue;
        }
        if (kind != 0) return BADNAME;
        if (b == 0) {
            *after_out = after >= 0 ? after : pos + 1;
            break;
        }
        Py_ssize_t end = pos + 1 + b;
        if (end > n) return TRUNCATED;
        wire_len += 1 + b;
        if (wire_len > MAX_NAME_WIRE_LEN) return BADNAME;
        if (t + 1 + 4 * (Py_ssize_t)b >= NAME_TEXT_MAX) return BADNAME; /* cannot happen: 255 */
        if (labels++) raw[t++] = '.';
        for (Py_ssize_t i = pos + 1; i < end; i++) {
            uint8_t c = d[i];
            if (c == '.' || c == '\\') {
                raw[t++] = '\\';
                raw[t++] = (char)c;
            } else if (c >= 0x21 && c <= 0x7E) {
                raw[t++] = (char)c;
            } else {
                raw[t++] = '\\';
                raw[t++] = (char)('0' + c / 100);
                raw[t++] = (char)('0' + (c / 10) % 10);
                raw[t++] = (char)('0' + c % 10);
            }
        }
        pos = end;
    }
    if (!labels) raw[t++] = '.';
    *rawlen = t;
    return OK;
}

/* (name lowercased, raw name) as str objects */
static int name_objects(const uint8_t *d, Py_ssize_t n, Py_ssize_t off, PyObject **low,
                        PyObject **rawo, Py_ssize_t *after) {
    char raw[NAME_TEXT_MAX], lw[NAME_TEXT_MAX];
    Py_ssize_t len = 0;
    int rc = read_name(d, n, off, raw, &len, after);
    if (rc != OK) return rc;
    for (Py_ssize_t i = 0; i < len; i++) {
        char c = raw[i];
        lw[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    *rawo = PyUnicode_DecodeASCII(raw, len, NULL);
    if (!*rawo) return PYERR;
    if (memcmp(raw, lw, (size_t)len) == 0) {
        Py_INCREF(*rawo);
        *low = *rawo;
    } else {
        *low = PyUnicode_DecodeASCII(lw, len, NULL);
        if (!*low) { Py_CLEAR(*rawo); return PYERR; }
    }
    return OK;
}

typedef struct {
    const uint8_t *d;
    Py_ssize_t n;
    PyObject *anomalies; /* list of str */
    PyObject *edns;      /* Edns or NULL */
    int opt_seen;
} Parser;

static int flag(Parser *ps, const char *what) {
    PyObject *s = PyUnicode_InternFromString(what);
    if (!s) return -1;
    int has = PySequence_Contains(ps->anomalies, s);
    int rc = has < 0 ? -1 : (has ? 0 : PyList_Append(ps->anomalies, s));
    Py_DECREF(s);
    return rc;
}

static PyObject *rr_object(PyObject *name, PyObject *raw, uint32_t rtype, uint32_t rclass,
                           uint32_t ttl, PyObject *rdata, PyObject *address, PyObject *target,
                           PyObject *pref, PyObject *soa) {
    static const int f[] = {A_name, A_raw_name, A_rtype, A_rclass, A_ttl, A_rdata, A_address,
                            A_target, A_preference, A_soa};
    Py_INCREF(name);
    Py_INCREF(raw);
    Py_INCREF(rdata);
    PyObject *v[] = {name, raw, PyLong_FromUnsignedLong(rtype), PyLong_FromUnsignedLong(rclass),
                     PyLong_FromUnsignedLong(ttl), rdata, address ? address : none(),
                     target ? target : none(), pref ? pref : none(), soa ? soa : none()};
    return make(RRType, 10, f, v);
}

/* _rdata_name: a name inside RDATA (reading limited to data[:end]) that must end at `end` */
static int rdata_name(Parser *ps, Py_ssize_t start, Py_ssize_t end, PyObject **low) {
    PyObject *raw = NULL;
    Py_ssize_t p = 0;
    int rc = name_objects(ps->d, end, start, low, &raw, &p);
    if (rc != OK) return rc;
    Py_DECREF(raw);
    if (p != end) { Py_CLEAR(*low); return BADNAME; }
    return OK;
}

/* _typed: the record with its typed fields; TRUNCATED/BADNAME: the caller keeps it untyped */
static int typed(Parser *ps, PyObject *name, PyObject *raw, uint32_t rtype, uint32_t rclass,
                 uint32_t ttl, PyObject *rdata, Py_ssize_t start, Py_ssize_t end, PyObject **out) {
    Py_ssize_t len = end - start;
    if (rtype == T_A || rtype == T_AAAA) {
        if (len != (rtype == T_A ? 4 : 16)) return BADNAME;
        Py_INCREF(rdata);
        *out = rr_object(name, raw, rtype, rclass, ttl, rdata, rdata, NULL, NULL, NULL);
        return *out ? OK : PYERR;
    }
    if (rtype == T_CNAME || rtype == T_NS || rtype == T_PTR) {
        PyObject *target = NULL;
        int rc = rdata_name(ps, start, end, &target);
        if (rc != OK) return rc;
        *out = rr_object(name, raw, rtype, rclass, ttl, rdata, NULL, target, NULL, NULL);
        return *out ? OK : PYERR;
    }
    if (rtype == T_MX) {
        if (start + 2 > end) return BADNAME;
        uint32_t pref = be16(ps->d + start);
        PyObject *target = NULL;
        int rc = rdata_name(ps, start + 2, end, &target);
        if (rc != OK) return rc;
        *out = rr_object(name, raw, rtype, rclass, ttl, rdata, NULL, target,
                         PyLong_FromUnsignedLong(pref), NULL);
        return *out ? OK : PYERR;
    }
    if (rtype == T_SOA) {
        PyObject *mname = NULL, *mraw = NULL, *rname = NULL, *rraw = NULL;
        Py_ssize_t p = 0;
        int rc = name_objects(ps->d, end, start, &mname, &mraw, &p);
        if (rc != OK) return rc;
        Py_DECREF(mraw);
        rc = name_objects(ps->d, end, p, &rname, &rraw, &p);
        if (rc != OK) { Py_DECREF(mname); return rc; }
        Py_DECREF(rraw);
        if (p + 20 != end) { Py_DECREF(mname); Py_DECREF(rname); return BADNAME; }
        const uint8_t *q = ps->d + p;
        static const int f[] = {A_mname, A_rname, A_serial, A_refresh, A_retry, A_expire, A_minimum};
        Py_INCREF(mname);
        PyObject *v[] = {mname, rname, PyLong_FromUnsignedLong(be32(q)),
                         PyLong_FromUnsignedLong(be32(q + 4)), PyLong_FromUnsignedLong(be32(q + 8)),
                         PyLong_FromUnsignedLong(be32(q + 12)), PyLong_FromUnsignedLong(be32(q + 16))};
        PyObject *soa = make(SoaType, 7, f, v);
        if (!soa) { Py_DECREF(mname); return PYERR; }
        *out = rr_object(name, raw, rtype, rclass, ttl, rdata, NULL, mname, NULL, soa);
        return *out ? OK : PYERR;
    }
    *out = rr_object(name, raw, rtype, rclass, ttl, rdata, NULL, NULL, NULL, NULL);
    return *out ? OK : PYERR;
}

/* _Parser.rr: one record at *off (advanced past it); `probe`: anomalies are not recorded */
static int read_rr(Parser *ps, Py_ssize_t *off, PyObject **out, uint32_t *rtype_out,
                   uint32_t *rclass_out, uint32_t *ttl_out, int probe) {
    PyObject *name = NULL, *raw = NULL, *rdata = NULL;
    Py_ssize_t p = 0;
    int rc = name_objects(ps->d, ps->n, *off, &name, &raw, &p);
    if (rc != OK) return rc;
    if (p + 10 > ps->n) { rc = TRUNCATED; goto done; }
    const uint8_t *q = ps->d + p;
    uint32_t rtype = be16(q), rclass = be16(q + 2), ttl = be32(q + 4), rdlen = be16(q + 8);
    Py_ssize_t start = p + 10, end = start + rdlen;
    if (end > ps->n) { rc = TRUNCATED; goto done; }
    rdata = PyBytes_FromStringAndSize((const char *)ps->d + start, end - start);
    if (!rdata) { rc = PYERR; goto done; }
    rc = typed(ps, name, raw, rtype, rclass, ttl, rdata, start, end, out);
    if (rc == TRUNCATED || rc == BADNAME) {
        if (!probe && flag(ps, "bad_rdata") < 0) { rc = PYERR; goto done; }
        *out = rr_object(name, raw, rtype, rclass, ttl, rdata, NULL, NULL, NULL, NULL);
        rc = *out ? OK : PYERR;
    }
    if (rc == OK) {
        *off = end;
        *rtype_out = rtype;
        *rclass_out = rclass;
        *ttl_out = ttl;
    }
done:
    Py_XDECREF(name);
    Py_XDECREF(raw);
    Py_XDECREF(rdata);
    return rc;
}

/* _only_records: the bytes from off to the end are whole records */
static int only_records(Parser *ps, Py_ssize_t off) {
    while (off < ps->n) {
        PyObject *rr = NULL;
        uint32_t a, b, c;
        int rc = read_rr(ps, &off, &rr, &a, &b, &c, 1);
        if (rc == PYERR) return -1;
        if (rc != OK) return 0;
        Py_DECREF(rr);
    }
    return 1;
}

/* _Parser.opt */
static int opt(Parser *ps, PyObject *rr, uint32_t rclass, uint32_t ttl, int in_additional) {
    ps->opt_seen++;
    if (ps->opt_seen > 1) return flag(ps, "multiple_opt");
    PyObject *name = PyObject_GetAttr(rr, S[A_name]);
    if (!name) return -1;
    int root = PyUnicode_CompareWithASCIIString(name, ".") == 0;
    Py_DECREF(name);
    if ((!in_additional || !root) && flag(ps, "opt_misplaced") < 0) return -1;
    PyObject *rdata = PyObject_GetAttr(rr, S[A_rdata]);
    if (!rdata) return -1;
    static const int f[] = {A_udp_size, A_ext_rcode, A_version, A_do, A_options};
    PyObject *v[] = {PyLong_FromUnsignedLong(rclass), PyLong_FromUnsignedLong((ttl >> 24) & 0xFF),
                     PyLong_FromUnsignedLong((ttl >> 16) & 0xFF), PyBool_FromLong((ttl & 0x8000) != 0),
                     rdata};
    ps->edns = make(EdnsType, 5, f, v);
    return ps->edns ? 0 : -1;
}

static PyObject *decode_error(const char *reason) {
    PyObject *e = PyObject_CallFunction(DecodeErrorType, "s", reason);
    if (e) {
        PyErr_SetObject(DecodeErrorType, e);
        Py_DECREF(e);
    }
    return NULL;
}

static PyObject *parse(PyObject *self, PyObject *arg) {
    if (!MessageType) {
        PyErr_SetString(PyExc_RuntimeError, "analyzer._cdns.configure() was not called");
        return NULL;
    }
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "parse() takes bytes");
        return NULL;
    }
    Parser ps = {(const uint8_t *)PyBytes_AS_STRING(arg), PyBytes_GET_SIZE(arg), NULL, NULL, 0};
    if (ps.n < HEADER_LEN) return decode_error("dns_truncated");
    const uint8_t *d = ps.d;
    uint32_t txid = be16(d), flags = be16(d + 2), qd = be16(d + 4), an = be16(d + 6),
             ns = be16(d + 8), ar = be16(d + 10);
    PyObject *questions = NULL, *sections[3] = {NULL, NULL, NULL}, *result = NULL;
    ps.anomalies = PyList_New(0);
    questions = PyList_New(0);
    for (int i = 0; i < 3; i++) sections[i] = PyList_New(0);
    if (!ps.anomalies || !questions || !sections[0] || !sections[1] || !sections[2]) goto done;
    if ((flags & FLAG_Z) && flag(&ps, "z_bit_set") < 0) goto done;
    Py_ssize_t off = HEADER_LEN;
    int stopped = 0;
    for (uint32_t i = 0; i < qd; i++) {
        if (off >= ps.n) {
            if (flag(&ps, "count_mismatch") < 0) goto done;
            stopped = 1;
            break;
        }
        PyObject *name = NULL, *raw = NULL;
        Py_ssize_t p = 0;
        int rc = name_objects(d, ps.n, off, &name, &raw, &p);
        if (rc == OK && p + 4 > ps.n) {
            Py_DECREF(name);
            Py_DECREF(raw);
            rc = TRUNCATED;
        }
        if (rc == PYERR) goto done;
        if (rc != OK) {
            if (i == 0) {
                decode_error(rc == TRUNCATED ? "dns_truncated" : "dns_malformed");
                goto done;
            }
            if (flag(&ps, "bad_question") < 0) goto done;
            stopped = 1;
            break;
        }
        static const int f[] = {A_name, A_raw_name, A_qtype, A_qclass};
        PyObject *v[] = {name, raw, PyLong_FromUnsignedLong(be16(d + p)),
                         PyLong_FromUnsignedLong(be16(d + p + 2))};
        PyObject *q = make(QuestionType, 4, f, v);
        if (!q) goto done;
        int arc = PyList_Append(questions, q);
        Py_DECREF(q);
        if (arc < 0) goto done;
        off = p + 4;
    }
    if (!stopped) {
        uint32_t counts[3] = {an, ns, ar};
        for (int si = 0; si < 3 && !stopped; si++) {
            for (uint32_t k = 0; k < counts[si]; k++) {
                if (off >= ps.n) {
                    if (flag(&ps, "count_mismatch") < 0) goto done;
                    stopped = 1;
                    break;
                }
                PyObject *rr = NULL;
                uint32_t rtype = 0, rclass = 0, ttl = 0;
                int rc = read_rr(&ps, &off, &rr, &rtype, &rclass, &ttl, 0);
                if (rc == PYERR) goto done;
                if (rc != OK) {
                    if (flag(&ps, rc == TRUNCATED ? "truncated_rr" : "bad_name") < 0) goto done;
                    stopped = 1;
                    break;
                }
                if (rtype == T_OPT) {
                    if (opt(&ps, rr, rclass, ttl, si == 2) < 0) { Py_DECREF(rr); goto done; }
                    if (si == 2) { Py_DECREF(rr); continue; }
                }
                int arc = PyList_Append(sections[si], rr);
                Py_DECREF(rr);
                if (arc < 0) goto done;
            }
        }
    }
    if (!stopped && off < ps.n) {
        int only = only_records(&ps, off);
        if (only < 0) goto done;
        if (flag(&ps, only ? "count_mismatch" : "trailing_bytes") < 0) goto done;
    }
    uint32_t rcode = flags & 0x000F;
    if (ps.edns) {
        PyObject *ext = PyObject_GetAttr(ps.edns, S[A_ext_rcode]);
        if (!ext) goto done;
        long e = PyLong_AsLong(ext);
        Py_DECREF(ext);
        if (e == -1 && PyErr_Occurred()) goto done;
        rcode |= (uint32_t)e << 4;
    }
    if (!(flags & FLAG_QR) && PyList_GET_SIZE(sections[0]) && flag(&ps, "query_with_answers") < 0)
        goto done;
    {
        static const int f[] = {A_txid, A_flags, A_rcode, A_qdcount, A_ancount, A_nscount,
                                A_arcount, A_questions, A_answers, A_authority, A_additional,
                                A_edns, A_anomalies};
        PyObject *edns = ps.edns ? ps.edns : none();
        ps.edns = NULL;
        PyObject *v[] = {PyLong_FromUnsignedLong(txid), PyLong_FromUnsignedLong(flags),
                         PyLong_FromUnsignedLong(rcode), PyLong_FromUnsignedLong(qd),
                         PyLong_FromUnsignedLong(an), PyLong_FromUnsignedLong(ns),
                         PyLong_FromUnsignedLong(ar), PyList_AsTuple(questions),
                         PyList_AsTuple(sections[0]), PyList_AsTuple(sections[1]),
                         PyList_AsTuple(sections[2]), edns, PyList_AsTuple(ps.anomalies)};
        result = make(MessageType, 13, f, v);
    }
done:
    Py_XDECREF(ps.anomalies);
    Py_XDECREF(ps.edns);
    Py_XDECREF(questions);
    for (int i = 0; i < 3; i++) Py_XDECREF(sections[i]);
    return result;
}

static PyObject *configure(PyObject *self, PyObject *args) {
    PyObject *m, *q, *r, *s, *e, *err;
    if (!PyArg_ParseTuple(args, "OOOOOO", &m, &q, &r, &s, &e, &err)) return NULL;
    /* make() instantiates these (object.__new__ or a call) and decode_error() raises err:
     * anything else would crash there */
    if (!PyType_Check(m) || !PyType_Check(q) || !PyType_Check(r) || !PyType_Check(s)
        || !PyType_Check(e) || !PyExceptionClass_Check(err)) {
        PyErr_SetString(PyExc_TypeError, "configure() takes five classes and an exception class");
        return NULL;
    }
    Py_XSETREF(MessageType, Py_NewRef(m));
    Py_XSETREF(QuestionType, Py_NewRef(q));
    Py_XSETREF(RRType, Py_NewRef(r));
    Py_XSETREF(SoaType, Py_NewRef(s));
    Py_XSETREF(EdnsType, Py_NewRef(e));
    Py_XSETREF(DecodeErrorType, Py_NewRef(err));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"parse", parse, METH_O, "parse_dns(data) of analyzer/decode/dns.py."},
    {"configure", configure, METH_VARARGS,
     "configure(DnsMessage, DnsQuestion, DnsRR, SoaData, Edns, DecodeError)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cdns",
                                    "DNS message parsing in C (see analyzer/decode/dns.py).", -1,
                                    methods};

PyMODINIT_FUNC PyInit__cdns(void) {
    empty_tuple = PyTuple_New(0);
    if (!empty_tuple) return NULL;
    for (int i = 0; i < A_COUNT; i++) {
        S[i] = PyUnicode_InternFromString(ANAMES[i]);
        if (!S[i]) return NULL;
    }
    return PyModule_Create(&module);
}
