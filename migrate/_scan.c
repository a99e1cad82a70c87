/* mqbench.migrate._scan: scan.hop and scan.summarize in C, one call per source window.
 *
 * migrate/scan.py is the reference and the contract: hop(buf, length, src_dl) and
 * summarize(buf, length, base, src_dl, v4, committed) here return exactly what the Python
 * functions return for every input (summarize: the three lists of a Summary, rows as tuples of
 * scan.ROW), and tests/migrate/test_scan_native.py feeds both the same windows (valid v4/v5 plain
 * and DLedger records, both property-string forms, batches, corrupt bytes, truncated windows).
 * scan.py uses these when mqbench.native loads this module (MQBENCH_NATIVE=0: never).
 *
 * The input is untrusted (a damaged store): every read is bounds-checked against the window
 * (length <= the buffer's size, else ValueError); an item that fails a check becomes a row with
 * ok = 0, never an error. The constants below are RocketMQ's and mqbench's (record.py, dledger.py,
 * properties.py, topics.py, compression.py); CONSTANTS exposes them so a test checks they agree.
 *
 * Split by concern into headers included here only (one translation unit, so the same code is
 * generated): _scan_topics.h, a window's topics (fast or not, index-key hash prefix, ids in
 * first-seen order); _scan_sinks.h, where rows and index keys go (lists or packed int64).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "mq_bytes.h"
#include <stdint.h>
#include <string.h>

#include "mq_crc32.h"

#define MIN_RECORD_BYTES 91
#define ENTRY_BYTES 48            /* dledger.ENTRY_HEADER_BYTES */
#define DLEDGER_BLANK_BYTES 8
#define BLANK_MIN_BYTES 8
#define DLEDGER_MAGIC 1
#define MAGIC_V1 ((int32_t)-626843481)   /* 0xDAA320A7 */
#define MAGIC_V2 ((int32_t)-626843477)   /* 0xDAA320AB */
#define SYSFLAG_COMPRESSED 0x1
#define SYSFLAG_TX_MASK 0xC
#define SYSFLAG_BORNHOST_V6 0x10
#define SYSFLAG_STOREHOST_V6 0x20
#define SYSFLAG_NEED_UNWRAP 0x40
#define SYSFLAG_INNER_BATCH 0x80
#define SYSFLAG_COMPRESSION_MASK 0x700
#define SYSFLAG_COMPRESSION_SHIFT 8
#define TYPE_ID_ZLIB 3
#define NOT_FAST_SYSFLAG (SYSFLAG_TX_MASK | SYSFLAG_INNER_BATCH | SYSFLAG_NEED_UNWRAP)
#define V6_HOSTS (SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6)
#define IPV4_BODY_AT 88

static const char CRC_TAIL[] = "__CRC32#\x01";          /* PROPERTY_CRC32 + \x01 */

#include "_scan_topics.h"
#include "_scan_sinks.h"

/* index_file.key_hash_ascii_after: abs of the signed hash, Integer.MIN_VALUE clamped to 0 */
static inline long key_hash_after(uint32_t prefix, const unsigned char *p, Py_ssize_t n) {
    uint32_t h = jhash(prefix, p, n);
    if (h & 0x80000000u)
        h = 0u - h;
    return h > 0x7FFFFFFFu ? 0 : (long)h;
}

/* record_check.property_value for TAGS, UNIQ_KEY and KEYS in one pass over the segments: the last
 * segment NAME\x01value (split on \x02) with a non-empty value; at = -1 when there is none. */
typedef struct {
    Py_ssize_t at, len;
} span;

static void find_values(const unsigned char *p, Py_ssize_t n, span *tags, span *uniq, span *keys) {
    tags->at = uniq->at = keys->at = -1;
    tags->len = uniq->len = keys->len = 0;
    Py_ssize_t s = 0;
    while (s <= n) {
        const unsigned char *sep = memchr(p + s, 2, (size_t)(n - s));
        Py_ssize_t e = sep ? sep - p : n;
        Py_ssize_t len = e - s;
        const unsigned char *q = p + s;
        if (len > 5 && q[4] == 1 && memcmp(q, "TAGS", 4) == 0) {
            tags->at = s + 5;
            tags->len = len - 5;
        } else if (len > 5 && q[4] == 1 && memcmp(q, "KEYS", 4) == 0) {
            keys->at = s + 5;
            keys->len = len - 5;
        } else if (len > 9 && q[8] == 1 && memcmp(q, "UNIQ_KEY", 8) == 0) {
            uniq->at = s + 9;
            uniq->len = len - 9;
        }
        s = e + 1;
    }
}

/* ---- the functions ---- */

static int window(Py_buffer *view, Py_ssize_t length) {
    if (length > view->len) {
        PyErr_Format(PyExc_ValueError, "length %zd is past the buffer's %zd bytes", length, view->len);
        return -1;
    }
    return 0;
}

static PyObject *scan_hop(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t length;
    int src_dl;
    if (!PyArg_ParseTuple(args, "y*np:hop", &view, &length, &src_dl))
        return NULL;
    if (window(&view, length) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    const unsigned char *buf = view.buf;
    Py_ssize_t at = 0, size_at = src_dl ? 4 : 0;
    int64_t least = src_dl ? DLEDGER_BLANK_BYTES : BLANK_MIN_BYTES;
    int stopped = -1;
    while (at + 8 <= length) {
        int64_t size = mq_i32(buf + at + size_at);
        if (size < least) {
            stopped = 1;
            break;
        }
        if (at + size > length) {
            stopped = at == 0;
            break;
        }
        at += (Py_ssize_t)size;
    }
    if (stopped < 0)
        stopped = at == 0;
    PyBuffer_Release(&view);
    return Py_BuildValue("(nO)", at, stopped ? Py_True : Py_False);
}

static PyObject *scan_summarize(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t length;
    long long base;
    int src_dl, v4;
    PyObject *committed_obj;
    int packed = 0, relaxed = 0;
    if (!PyArg_ParseTuple(args, "y*nLppO|pp:summarize", &view, &length, &base, &src_dl, &v4, &committed_obj, &packed,
                          &relaxed))
        return NULL;
    if (window(&view, length) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    int has_committed = committed_obj != Py_None;
    long long committed = 0;
    if (has_committed) {
        committed = PyLong_AsLongLong(committed_obj);
        if (committed == -1 && PyErr_Occurred()) {
            PyBuffer_Release(&view);
            return NULL;
        }
    }
    const unsigned char *buf = view.buf;
    PyObject *result = NULL;
    sink rows_sink, keys_sink;
    sink *rows = &rows_sink, *keys = &keys_sink;
    topic_table topics = {NULL, 0, 0, NULL};
    int ready = sink_init(rows, packed) == 0;
    ready = (sink_init(keys, packed) == 0) && ready;
    if (!ready || table_init(&topics) < 0)
        goto done;

    Py_ssize_t at = 0;
    int64_t eindex = -1, eterm = -1;
    while (at + 8 <= length) {
        int64_t pos = base + at, nxt, total, rat, address;
        int32_t rmagic, bcrc, queue_id, sysflag, body_len;
        int64_t queue_offset, phys, store_ms;
        const unsigned char *r;
        /* -- the source item: a record, or a DLedger entry holding one -- */
        if (src_dl) {
            int64_t esize = mq_i32(buf + at + 4);
            if (esize < DLEDGER_BLANK_BYTES || at + esize > length)
                break;
            nxt = at + esize;
            if (esize < ENTRY_BYTES + MIN_RECORD_BYTES) {
                if (append_bad(rows, pos, base + nxt) < 0)
                    goto done;
                at = nxt;
                continue;
            }
            const unsigned char *e = buf + at;
            int32_t magic = mq_i32(e), ebody_crc = mq_i32(e + 40), ebody_len = mq_i32(e + 44);
            eindex = mq_i64(e + 8);
            eterm = mq_i64(e + 16);
            int64_t epos = mq_i64(e + 24);
            rat = at + ENTRY_BYTES;
            total = mq_i32(e + ENTRY_BYTES);
            int bad = magic != DLEDGER_MAGIC || (int64_t)ebody_len + ENTRY_BYTES != esize || epos != pos ||
                      eindex < 0 || eterm < 0 || (has_committed && eindex > committed) || total != ebody_len;
            if (!bad && ebody_crc) {
                uint32_t c = mq_body_crc(buf + rat, (size_t)(nxt - rat));
                bad = (int64_t)ebody_crc != (int64_t)c;
            }
            if (bad) {
                if (append_bad(rows, pos, base + nxt) < 0)
                    goto done;
                at = nxt;
                continue;
            }
            address = pos + ENTRY_BYTES;
        } else {
            total = mq_i32(buf + at);
            if (total < BLANK_MIN_BYTES || at + total > length)
                break;
            nxt = at + total;
            if (total < MIN_RECORD_BYTES) {
                if (append_bad(rows, pos, base + nxt) < 0)
                    goto done;
                at = nxt;
                continue;
            }
            rat = at;
            address = pos;
        }
        r = buf + rat;
        rmagic = mq_i32(r + 4);
        bcrc = mq_i32(r + 8);
        queue_id = mq_i32(r + 12);
        queue_offset = mq_i64(r + 20);
        phys = mq_i64(r + 28);
        sysflag = mq_i32(r + 36);
        store_ms = mq_i64(r + 56);
        body_len = mq_i32(r + 84);
        at = nxt;
        /* -- the record's framing -- */
        Py_ssize_t rend = nxt, tl, body_at;
        if (phys != address || (!relaxed && (sysflag & NOT_FAST_SYSFLAG))) {
            if (append_bad(rows, pos, base + nxt) < 0)
                goto done;
            continue;
        }
        if (rmagic == MAGIC_V1)
            tl = 1;
        else if (rmagic == MAGIC_V2 && !v4)
            tl = 2;
        else {
            if (append_bad(rows, pos, base + nxt) < 0)
                goto done;
            continue;
        }
        if (sysflag & V6_HOSTS) {
            Py_ssize_t h = rat + 48 + ((sysflag & SYSFLAG_BORNHOST_V6) ? 20 : 8);
            store_ms = mq_i64(buf + h);
            h += 8 + ((sysflag & SYSFLAG_STOREHOST_V6) ? 20 : 8);
            if (h + 16 > rend) {
                if (append_bad(rows, pos, base + nxt) < 0)
                    goto done;
                continue;
            }
            body_len = mq_i32(buf + h + 12);
            body_at = h + 16;
        } else {
            body_at = rat + IPV4_BODY_AT;
        }
        int64_t tat = (int64_t)body_at + body_len, pat = 0, topic_len = 0, props_len = 0;
        int ok = body_len >= 0 && tat + tl <= rend;
        if (ok) {
            topic_len = tl == 1 ? buf[tat] : mq_i16(buf + tat);
            pat = tat + tl + topic_len + 2;
            ok = 0 < topic_len && (tl == 2 || topic_len <= 127) && pat <= rend;
        }
        if (ok) {
            props_len = mq_i16(buf + pat - 2);
            ok = props_len >= 0 && pat + props_len == rend;
        }
        if (!ok) {
            if (append_bad(rows, pos, base + nxt) < 0)
                goto done;
            continue;
        }
        topic_slot *ts = table_get(&topics, buf, (Py_ssize_t)(tat + tl), (Py_ssize_t)topic_len);
        if (!ts)
            goto done;
        Py_ssize_t tid = ts->tid;
        uint32_t prefix = ts->prefix;
        const unsigned char *props = buf + pat;
        int bad = relaxed ? !ts->chars : !ts->fast;
        if (!bad && props_len) {
            if (props[props_len - 1] == 0)
                bad = 1;
            for (int64_t k = 0; k < props_len && !bad; k++)
                if (props[k] & 0x80)
                    bad = 1;
        }
        if (!bad && !relaxed && props_len >= 20 && memcmp(props + props_len - 20, CRC_TAIL, sizeof CRC_TAIL - 1) == 0)
            bad = 1;
        if (!bad && v4 && (sysflag & SYSFLAG_COMPRESSED)) {
            int kind = (sysflag & SYSFLAG_COMPRESSION_MASK) >> SYSFLAG_COMPRESSION_SHIFT;
            if (kind != 0 && kind != TYPE_ID_ZLIB)
                bad = 1;
        }
        if (!bad) {
            uint32_t c = mq_body_crc(buf + body_at, (size_t)(tat - body_at));
            bad = (int64_t)c != (int64_t)bcrc;
        }
        if (bad) {
            if (append_bad(rows, pos, base + nxt) < 0)
                goto done;
            continue;
        }
        /* -- what the copy needs -- */
        int64_t wsize = (v4 && props_len && props[props_len - 1] == 2) ? total - 1 : total;
        span tags, uniq, words;
        find_values(props, (Py_ssize_t)props_len, &tags, &uniq, &words);
        int64_t tags_code = 0;
        if (tags.at >= 0)
            tags_code = (int32_t)jhash(0, props + tags.at, tags.len);
        Py_ssize_t key_at = keys->n;
        if (uniq.at >= 0 && append_key(keys, key_hash_after(prefix, props + uniq.at, uniq.len)) < 0)
            goto done;
        if (words.at >= 0) {
            const unsigned char *w = props + words.at;
            Py_ssize_t i = 0;
            while (i < words.len) {
                const unsigned char *sp = memchr(w + i, ' ', (size_t)(words.len - i));
                Py_ssize_t j = sp ? sp - w : words.len;
                if (j > i && append_key(keys, key_hash_after(prefix, w + i, j - i)) < 0)
                    goto done;
                i = j + 1;
            }
        }
        int64_t v[ROW_FIELDS] = {pos, base + nxt, 1, rat, total, wsize, pat - 2 - rat, props_len, tid, queue_id,
                                 queue_offset, store_ms, eindex, eterm, tags_code, key_at,
                                 keys->n - key_at};
        if (append_row(rows, v) < 0)
            goto done;
    }
    {
        PyObject *r = sink_take(rows), *k = r ? sink_take(keys) : NULL;
        if (r && k)
            result = PyTuple_Pack(3, r, topics.list, k);
        Py_XDECREF(r);
        Py_XDECREF(k);
    }
done:
    sink_free(rows);
    sink_free(keys);
    table_free(&topics);
    PyBuffer_Release(&view);
    return result;
}

static PyObject *scan_crc32(PyObject *self, PyObject *args) {
    Py_buffer view;
    unsigned int crc = 0;
    if (!PyArg_ParseTuple(args, "y*|I:crc32", &view, &crc))
        return NULL;
    uint32_t c = mq_crc32(crc, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(c);
}

static PyMethodDef methods[] = {
    {"crc32", scan_crc32, METH_VARARGS,
     "crc32(data, crc=0): mq_crc32.h as this module was built (zlib.crc32's value; for tests)."},
    {"hop", scan_hop, METH_VARARGS, "hop(buf, length, src_dl) -> (end, stopped): scan.hop in C."},
    {"summarize", scan_summarize, METH_VARARGS,
     "summarize(buf, length, base, src_dl, v4, committed, packed=False, relaxed=False) -> (rows, topics, keys): "
     "scan.summarize in C; packed: rows and keys as bytes of native int64 (scan.ROW_FIELDS a row)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_scan", "scan.hop and scan.summarize in C (scan.py).", -1,
                                    methods};

PyMODINIT_FUNC PyInit__scan(void) {
    mq_crc32_init();
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    PyObject *c = Py_BuildValue(
        "{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:y,s:(sss)}", "MIN_RECORD_BYTES", MIN_RECORD_BYTES,
        "ENTRY_HEADER_BYTES", ENTRY_BYTES, "DLEDGER_BLANK_BYTES", DLEDGER_BLANK_BYTES, "BLANK_MIN_BYTES",
        BLANK_MIN_BYTES, "DLEDGER_MAGIC", DLEDGER_MAGIC, "MAGIC_V1", (int)MAGIC_V1, "MAGIC_V2", (int)MAGIC_V2,
        "SYSFLAG_COMPRESSED", SYSFLAG_COMPRESSED, "SYSFLAG_TX_MASK", SYSFLAG_TX_MASK, "SYSFLAG_BORNHOST_V6",
        SYSFLAG_BORNHOST_V6, "SYSFLAG_STOREHOST_V6", SYSFLAG_STOREHOST_V6, "SYSFLAG_NEED_UNWRAP", SYSFLAG_NEED_UNWRAP,
        "SYSFLAG_INNER_BATCH", SYSFLAG_INNER_BATCH, "TYPE_ID_ZLIB", TYPE_ID_ZLIB, "CRC_TAIL", CRC_TAIL,
        "SPECIAL_TOPICS", SPECIAL_TOPICS[0], SPECIAL_TOPICS[1], SPECIAL_TOPICS[2]);
    if (!c || PyModule_AddObject(m, "CONSTANTS", c) < 0) {
        Py_XDECREF(c);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
