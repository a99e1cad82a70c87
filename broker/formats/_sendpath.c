/* mqbench.broker.formats._sendpath: the per-message steps of the broker's send path in C.
 *
 * Each function is the fast half of a Python function that stays the reference (and the
 * fallback, MQBENCH_NATIVE=0):
 *
 *   decode_frames(buffer, pos, frame_bytes_max, out, cmd_type) -> new pos
 *       frame.FrameDecoder.feed's loop: appends to ``out`` the RemotingCommand of every whole
 *       frame from ``pos`` on whose header is JSON in the usual shape (command._decode_json_header's
 *       fast path: 32-bit integers, a language name, no remark, string ext fields), and stops at
 *       the first frame it does not take: a partial one, a malformed one, a binary header, a JSON
 *       header of any other shape. The Python loop decodes (or refuses) that frame, so every
 *       error and every unusual header keeps the Python code's answer. Never raises for input.
 *   send_header_v2(ext, cls, default_topic[, names]) -> SendMessageHeader or None
 *       headers.send_header_v2 (or SendMessageHeader.from_ext with ``names``, the 14 long wire
 *       names in field order) for ext fields of plain strings whose numbers are plain decimals;
 *       None: the Python function decides (errors included).
 *   send_success_frame(opaque, version, msg_id, queue_id, queue_offset, transaction_id) -> bytes or None
 *       command.send_success_frame when the ids need no JSON escaping; None otherwise.
 *   encode_fields(topic, queue_id, flag, sysflag, born_ts, born_host, store_ts, store_host,
 *                 reconsume_times, body, properties, version, hosts) -> bytes or None
 *       record.encode_fields when both hosts are in ``hosts`` (record._HOSTS: host -> (packed, v6))
 *       and every field is in range; None: the Python function decides (errors included).
 *   put_results(bodies, first, prefix, cls) -> [PutResult] or None
 *       server.proposals.Proposals._results' loop over stored single-send records.
 *   decode_properties(text) -> dict or None
 *       record.decode_properties of a str (its rules, every string); None for bytes.
 *
 * Input is untrusted (a peer's frame): every read is bounds-checked against the buffer. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "mq_bytes.h"
#include <stdint.h>
#include <string.h>

#include "mq_crc32.h"

static PyObject *EMPTY_TUPLE;
static PyObject *S_CODE, *S_OPAQUE, *S_FLAG, *S_LANGUAGE, *S_VERSION, *S_REMARK, *S_EXT_FIELDS, *S_BODY,
    *S_SERIALIZE_TYPE;
static PyObject *S_PRODUCER_GROUP, *S_TOPIC, *S_DEFAULT_TOPIC, *S_DEFAULT_TOPIC_QUEUE_NUMS, *S_QUEUE_ID,
    *S_SYS_FLAG, *S_BORN_TIMESTAMP_MS, *S_PROPERTIES, *S_RECONSUME_TIMES, *S_UNIT_MODE,
    *S_MAX_RECONSUME_TIMES, *S_BATCH, *S_BROKER_NAME;
static PyObject *K_V2[14]; /* "a".."n" */
static PyObject *ZERO, *FOUR, *LANG_OTHER;

/* --- a JSON subset reader: what the usual header holds; anything else is "not taken" (0) ---- */

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
} Cursor;

static void skip_ws(Cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

/* A JSON integer that fits int32 (no fraction or exponent): 1 taken, 0 not. */
static int read_int32(Cursor *c, long *out) {
    const unsigned char *p = c->p;
    int negative = 0;
    if (p < c->end && *p == '-') {
        negative = 1;
        p++;
    }
    const unsigned char *digits = p;
    long long value = 0;
    while (p < c->end && *p >= '0' && *p <= '9') {
        if (p - digits >= 11)
            return 0;
        value = value * 10 + (*p - '0');
        p++;
    }
    Py_ssize_t n = p - digits;
    if (n == 0 || (n > 1 && digits[0] == '0'))
        return 0;
    if (p < c->end && (*p == '.' || *p == 'e' || *p == 'E'))
        return 0;
    if (negative)
        value = -value;
    if (value < INT32_MIN || value > INT32_MAX)
        return 0;
    *out = (long)value;
    c->p = p;
    return 1;
}

static int hex4(const unsigned char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char ch = p[i];
        v <<= 4;
        if (ch >= '0' && ch <= '9')
            v |= ch - '0';
        else if (ch >= 'a' && ch <= 'f')
            v |= ch - 'a' + 10;
        else if (ch >= 'A' && ch <= 'F')
            v |= ch - 'A' + 10;
        else
            return 0;
    }
    *out = v;
    return 1;
}

/* A JSON string at c->p (on its opening quote) as a str: 1 with *out set (new reference), 0 not
 * taken (malformed, a lone surrogate escape, not UTF-8), -1 a Python error (memory). With
 * want == 0 the string is checked (as the Python reader would) and dropped. */
static int read_string(Cursor *c, PyObject **out, int want) {
    const unsigned char *p = c->p;
    if (p >= c->end || *p != '"')
        return 0;
    p++;
    const unsigned char *start = p;
    int escaped = 0;
    while (p < c->end && *p != '"') {
        if (*p < 0x20)
            return 0;
        if (*p == '\\') {
            escaped = 1;
            if (p + 1 >= c->end)
                return 0;
            p += 2;
            continue;
        }
        p++;
    }
    if (p >= c->end)
        return 0;
    const unsigned char *stop = p; /* the closing quote */
    PyObject *s;
    if (!escaped) {
        s = PyUnicode_DecodeUTF8((const char *)start, stop - start, NULL);
    } else {
        /* unescaped is never longer than escaped (\uXXXX: 6 bytes -> at most 3; a pair 12 -> 4) */
        Py_ssize_t cap = stop - start;
        unsigned char small[512];
        small[0] = 0; /* (gcc cannot see that an escape always writes a byte) */
        unsigned char *buf = cap <= (Py_ssize_t)sizeof(small) ? small : PyMem_Malloc(cap);
        if (buf == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        unsigned char *w = buf;
        const unsigned char *q = start;
        int ok = 1;
        while (q < stop) {
            if (*q != '\\') {
                *w++ = *q++;
                continue;
            }
            unsigned char e = q[1]; /* q + 1 < stop: the scan above skipped escape pairs */
            q += 2;
            switch (e) {
            case '"': *w++ = '"'; break;
            case '\\': *w++ = '\\'; break;
            case '/': *w++ = '/'; break;
            case 'b': *w++ = '\b'; break;
            case 'f': *w++ = '\f'; break;
            case 'n': *w++ = '\n'; break;
            case 'r': *w++ = '\r'; break;
            case 't': *w++ = '\t'; break;
            case 'u': {
                unsigned cp;
                if (stop - q < 4 || !hex4(q, &cp)) {
                    ok = 0;
                    break;
                }
                q += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    unsigned lo;
                    if (stop - q < 6 || q[0] != '\\' || q[1] != 'u' || !hex4(q + 2, &lo) || lo < 0xDC00 ||
                        lo > 0xDFFF) {
                        ok = 0; /* a lone surrogate: the Python reader decides */
                        break;
                    }
                    q += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    ok = 0;
                    break;
                }
                if (cp < 0x80) {
                    *w++ = (unsigned char)cp;
                } else if (cp < 0x800) {
                    *w++ = (unsigned char)(0xC0 | (cp >> 6));
                    *w++ = (unsigned char)(0x80 | (cp & 0x3F));
                } else if (cp < 0x10000) {
                    *w++ = (unsigned char)(0xE0 | (cp >> 12));
                    *w++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
                    *w++ = (unsigned char)(0x80 | (cp & 0x3F));
                } else {
                    *w++ = (unsigned char)(0xF0 | (cp >> 18));
                    *w++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
                    *w++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
                    *w++ = (unsigned char)(0x80 | (cp & 0x3F));
                }
                break;
            }
            default:
                ok = 0;
            }
            if (!ok)
                break;
        }
        s = ok ? PyUnicode_DecodeUTF8((const char *)buf, w - buf, NULL) : NULL;
        if (buf != small)
            PyMem_Free(buf);
        if (!ok)
            return 0;
    }
    if (s == NULL) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear();
            return 0;
        }
        return -1;
    }
    c->p = stop + 1;
    if (want)
        *out = s;
    else
        Py_DECREF(s);
    return 1;
}

/* A key without escapes, as raw bytes (the header's own keys): 1 taken, 0 not. */
static int read_plain_key(Cursor *c, const unsigned char **key, Py_ssize_t *len) {
    const unsigned char *p = c->p;
    if (p >= c->end || *p != '"')
        return 0;
    p++;
    const unsigned char *start = p;
    while (p < c->end && *p != '"') {
        if (*p == '\\' || *p < 0x20)
            return 0;
        p++;
    }
    if (p >= c->end)
        return 0;
    *key = start;
    *len = p - start;
    c->p = p + 1;
    return 1;
}

static int key_is(const unsigned char *key, Py_ssize_t len, const char *name) {
    size_t n = strlen(name);
    return (size_t)len == n && memcmp(key, name, n) == 0;
}

/* The extFields object: string keys to string values, no duplicates. 1 taken (*out a new dict),
 * 0 not, -1 error. */
static int read_ext(Cursor *c, PyObject **out) {
    if (c->p >= c->end || *c->p != '{')
        return 0;
    c->p++;
    PyObject *ext = PyDict_New();
    if (ext == NULL)
        return -1;
    Py_ssize_t pairs = 0;
    skip_ws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        *out = ext;
        return 1;
    }
    for (;;) {
        PyObject *key = NULL, *value = NULL;
        skip_ws(c);
        int r = read_string(c, &key, 1);
        if (r <= 0) {
            Py_DECREF(ext);
            return r;
        }
        skip_ws(c);
        if (c->p >= c->end || *c->p != ':') {
            Py_DECREF(key);
            Py_DECREF(ext);
            return 0;
        }
        c->p++;
        skip_ws(c);
        r = read_string(c, &value, 1);
        if (r <= 0) {
            Py_DECREF(key);
            Py_DECREF(ext);
            return r;
        }
        r = PyDict_SetItem(ext, key, value);
        Py_DECREF(key);
        Py_DECREF(value);
        if (r < 0) {
            Py_DECREF(ext);
            return -1;
        }
        pairs++;
        skip_ws(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            continue;
        }
        if (c->p < c->end && *c->p == '}') {
            c->p++;
            break;
        }
        Py_DECREF(ext);
        return 0;
    }
    if (PyDict_GET_SIZE(ext) != pairs) { /* a repeated name: the Python reader decides */
        Py_DECREF(ext);
        return 0;
    }
    *out = ext;
    return 1;
}

enum { F_CODE = 1, F_LANGUAGE = 2, F_VERSION = 4, F_OPAQUE = 8, F_FLAG = 16, F_EXT = 32, F_STYPE = 64 };

/* One frame's content (after the length field): 1 with *out a RemotingCommand, 0 not taken,
 * -1 error. */
static int decode_one(const unsigned char *frame, Py_ssize_t size, PyObject *cls, PyObject **out) {
    if (size < 4)
        return 0;
    uint32_t word = mq_u32(frame);
    Py_ssize_t header_len = word & 0xFFFFFF;
    if ((word >> 24) != 0 || header_len > size - 4)
        return 0; /* a binary header, or a malformed frame: the Python decoder */
    Cursor c = {frame + 4, frame + 4 + header_len};
    long code = 0, version = 0, opaque = 0, flag = 0;
    PyObject *language = NULL, *ext = NULL;
    unsigned seen = 0;
    int result = 0;
    skip_ws(&c);
    if (c.p >= c.end || *c.p != '{')
        return 0;
    c.p++;
    for (;;) {
        const unsigned char *key;
        Py_ssize_t key_len;
        skip_ws(&c);
        if (!read_plain_key(&c, &key, &key_len))
            goto done;
        skip_ws(&c);
        if (c.p >= c.end || *c.p != ':')
            goto done;
        c.p++;
        skip_ws(&c);
        unsigned field;
        int r = 1;
        if (key_is(key, key_len, "code")) {
            field = F_CODE;
            r = read_int32(&c, &code);
        } else if (key_is(key, key_len, "language")) {
            field = F_LANGUAGE;
            if (seen & F_LANGUAGE)
                goto done;
            r = read_string(&c, &language, 1);
        } else if (key_is(key, key_len, "version")) {
            field = F_VERSION;
            r = read_int32(&c, &version);
        } else if (key_is(key, key_len, "opaque")) {
            field = F_OPAQUE;
            r = read_int32(&c, &opaque);
        } else if (key_is(key, key_len, "flag")) {
            field = F_FLAG;
            r = read_int32(&c, &flag);
        } else if (key_is(key, key_len, "extFields")) {
            field = F_EXT;
            if (seen & F_EXT)
                goto done;
            r = read_ext(&c, &ext);
        } else if (key_is(key, key_len, "serializeTypeCurrentRPC")) {
            field = F_STYPE;
            r = read_string(&c, NULL, 0);
        } else {
            goto done; /* remark, or a name the usual header does not have */
        }
        if (r < 0) {
            result = -1;
            goto done;
        }
        if (r == 0 || (seen & field))
            goto done;
        seen |= field;
        skip_ws(&c);
        if (c.p < c.end && *c.p == ',') {
            c.p++;
            continue;
        }
        if (c.p < c.end && *c.p == '}') {
            c.p++;
            break;
        }
        goto done;
    }
    skip_ws(&c);
    if (c.p != c.end || !(seen & F_CODE) || !(seen & F_EXT))
        goto done;
    PyObject *cmd = PyBaseObject_Type.tp_new((PyTypeObject *)cls, EMPTY_TUPLE, NULL);
    if (cmd == NULL) {
        result = -1;
        goto done;
    }
    PyObject *body = PyBytes_FromStringAndSize((const char *)frame + 4 + header_len, size - 4 - header_len);
    PyObject *values[5] = {PyLong_FromLong(code), PyLong_FromLong(opaque), PyLong_FromLong(flag),
                           PyLong_FromLong(version), body};
    int failed = 0;
    for (int i = 0; i < 5; i++)
        failed |= values[i] == NULL;
    if (!failed)
        failed = PyObject_SetAttr(cmd, S_CODE, values[0]) < 0 || PyObject_SetAttr(cmd, S_OPAQUE, values[1]) < 0 ||
                 PyObject_SetAttr(cmd, S_FLAG, values[2]) < 0 ||
                 PyObject_SetAttr(cmd, S_LANGUAGE, language != NULL ? language : LANG_OTHER) < 0 ||
                 PyObject_SetAttr(cmd, S_VERSION, values[3]) < 0 || PyObject_SetAttr(cmd, S_REMARK, Py_None) < 0 ||
                 PyObject_SetAttr(cmd, S_EXT_FIELDS, ext) < 0 || PyObject_SetAttr(cmd, S_BODY, values[4]) < 0 ||
                 PyObject_SetAttr(cmd, S_SERIALIZE_TYPE, ZERO) < 0;
    for (int i = 0; i < 5; i++)
        Py_XDECREF(values[i]);
    if (failed) {
        Py_DECREF(cmd);
        result = -1;
        goto done;
    }
    *out = cmd;
    result = 1;
done:
    Py_XDECREF(language);
    Py_XDECREF(ext);
    return result;
}

static PyObject *decode_frames(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t pos, frame_bytes_max;
    PyObject *out, *cls;
    if (!PyArg_ParseTuple(args, "y*nnO!O!", &view, &pos, &frame_bytes_max, &PyList_Type, &out, &PyType_Type, &cls))
        return NULL;
    const unsigned char *b = view.buf;
    Py_ssize_t n = view.len;
    if (pos < 0 || pos > n) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "pos outside the buffer");
        return NULL;
    }
    while (n - pos >= 4) {
        int32_t length = (int32_t)mq_u32(b + pos);
        if (length < 4 || (long long)length + 4 > (long long)frame_bytes_max || n - pos - 4 < length)
            break; /* refused or partial: the Python loop says which */
        PyObject *cmd = NULL;
        int r = decode_one(b + pos + 4, length, cls, &cmd);
        if (r < 0) {
            PyBuffer_Release(&view);
            return NULL;
        }
        if (r == 0)
            break;
        r = PyList_Append(out, cmd);
        Py_DECREF(cmd);
        if (r < 0) {
            PyBuffer_Release(&view);
            return NULL;
        }
        pos += 4 + (Py_ssize_t)length;
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(pos);
}

/* --- the send header ------------------------------------------------------------------------ */

/* headers._long_or for a value of plain decimal digits (an optional minus, 1 to 18 digits): 1 with
 * *out (new reference), 0 not taken, -1 error. ``raw`` NULL: the default. */
static int long_or(PyObject *raw, PyObject *dflt, PyObject **out) {
    if (raw == NULL) {
        Py_INCREF(dflt);
        *out = dflt;
        return 1;
    }
    if (!PyUnicode_CheckExact(raw) || !PyUnicode_IS_ASCII(raw))
        return 0;
    Py_ssize_t n = PyUnicode_GET_LENGTH(raw);
    const unsigned char *s = PyUnicode_1BYTE_DATA(raw);
    Py_ssize_t i = 0;
    int negative = 0;
    if (n > 0 && s[0] == '-') {
        negative = 1;
        i = 1;
    }
    if (n - i < 1 || n - i > 18)
        return 0;
    long long value = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        value = value * 10 + (s[i] - '0');
    }
    *out = PyLong_FromLongLong(negative ? -value : value);
    return *out == NULL ? -1 : 1;
}

/* Boolean.parseBoolean of an ASCII string: 1 with *out, 0 not taken. ``raw`` NULL: None. */
static int bool_or_none(PyObject *raw, PyObject **out) {
    if (raw == NULL) {
        *out = Py_NewRef(Py_None);
        return 1;
    }
    if (!PyUnicode_CheckExact(raw) || !PyUnicode_IS_ASCII(raw))
        return 0;
    const char *s = (const char *)PyUnicode_1BYTE_DATA(raw);
    int truth = PyUnicode_GET_LENGTH(raw) == 4 && (s[0] | 0x20) == 't' && (s[1] | 0x20) == 'r' &&
                (s[2] | 0x20) == 'u' && (s[3] | 0x20) == 'e';
    *out = Py_NewRef(truth ? Py_True : Py_False);
    return 1;
}

static PyObject *send_header_v2(PyObject *self, PyObject *args) {
    PyObject *ext, *cls, *default_topic, *names = NULL;
    if (!PyArg_ParseTuple(args, "O!O!O|O!", &PyDict_Type, &ext, &PyType_Type, &cls, &default_topic, &PyTuple_Type,
                          &names))
        return NULL;
    if (names != NULL && PyTuple_GET_SIZE(names) != 14) {
        PyErr_SetString(PyExc_ValueError, "the wire names of the 14 send header fields, in field order");
        return NULL;
    }
    PyObject *raw[14];
    for (int i = 0; i < 14; i++) {
        raw[i] = PyDict_GetItemWithError(ext, names != NULL ? PyTuple_GET_ITEM(names, i) : K_V2[i]); /* borrowed */
        if (raw[i] == NULL && PyErr_Occurred())
            return NULL;
        if (raw[i] != NULL && !PyUnicode_CheckExact(raw[i]))
            Py_RETURN_NONE; /* not a string map: the Python function */
    }
    if (raw[0] == NULL || raw[1] == NULL)
        Py_RETURN_NONE; /* a missing required field: the table's walk names it */
    /* a..n: group topic defaultTopic d e f g h properties j k l m brokerName */
    PyObject *values[14] = {NULL};
    int r = 1;
    values[0] = Py_NewRef(raw[0]);
    values[1] = Py_NewRef(raw[1]);
    values[2] = Py_NewRef(raw[2] != NULL ? raw[2] : default_topic);
    if (r > 0) r = long_or(raw[3], FOUR, &values[3]);
    if (r > 0) r = long_or(raw[4], ZERO, &values[4]);
    if (r > 0) r = long_or(raw[5], ZERO, &values[5]);
    if (r > 0) r = long_or(raw[6], ZERO, &values[6]);
    if (r > 0) r = long_or(raw[7], ZERO, &values[7]);
    if (r > 0) values[8] = Py_NewRef(raw[8] != NULL ? raw[8] : Py_None);
    if (r > 0) r = long_or(raw[9], Py_None, &values[9]);
    if (r > 0) r = bool_or_none(raw[10], &values[10]);
    if (r > 0) r = long_or(raw[11], Py_None, &values[11]);
    if (r > 0) r = bool_or_none(raw[12], &values[12]);
    if (r > 0) values[13] = Py_NewRef(raw[13] != NULL ? raw[13] : Py_None);
    PyObject *header = NULL;
    if (r > 0) {
        header = PyBaseObject_Type.tp_new((PyTypeObject *)cls, EMPTY_TUPLE, NULL);
        PyObject *names[14] = {S_PRODUCER_GROUP, S_TOPIC, S_DEFAULT_TOPIC, S_DEFAULT_TOPIC_QUEUE_NUMS, S_QUEUE_ID,
                               S_SYS_FLAG, S_BORN_TIMESTAMP_MS, S_FLAG, S_PROPERTIES, S_RECONSUME_TIMES,
                               S_UNIT_MODE, S_MAX_RECONSUME_TIMES, S_BATCH, S_BROKER_NAME};
        for (int i = 0; header != NULL && i < 14; i++) {
            if (PyObject_SetAttr(header, names[i], values[i]) < 0)
                Py_CLEAR(header);
        }
        if (header == NULL)
            r = -1;
    }
    for (int i = 0; i < 14; i++)
        Py_XDECREF(values[i]);
    if (r < 0)
        return NULL;
    if (r == 0)
        Py_RETURN_NONE;
    return header;
}

/* --- the send answer ------------------------------------------------------------------------ */

/* 1: an ASCII str made of [A-Za-z0-9] only (written bare), 2: ASCII with nothing JSON escapes
 * (written between quotes as it is), 0: anything else. */
static int plain_kind(PyObject *s) {
    if (!PyUnicode_CheckExact(s) || !PyUnicode_IS_ASCII(s))
        return 0;
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    const unsigned char *p = PyUnicode_1BYTE_DATA(s);
    int alnum = n > 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char ch = p[i];
        if (ch < 0x20 || ch == '"' || ch == '\\')
            return 0;
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')))
            alnum = 0;
    }
    return alnum ? 1 : 2;
}

static int as_ll(PyObject *o, long long *out) {
    if (!PyLong_CheckExact(o))
        return 0;
    int overflow;
    *out = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow || (*out == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

static PyObject *send_success_frame(PyObject *self, PyObject *args) {
    PyObject *o_opaque, *o_version, *msg_id, *o_queue_id, *o_queue_offset, *tid;
    if (!PyArg_ParseTuple(args, "OOOOOO", &o_opaque, &o_version, &msg_id, &o_queue_id, &o_queue_offset, &tid))
        return NULL;
    long long opaque, version, queue_id, queue_offset;
    if (!as_ll(o_opaque, &opaque) || !as_ll(o_version, &version) || !as_ll(o_queue_id, &queue_id) ||
        !as_ll(o_queue_offset, &queue_offset))
        Py_RETURN_NONE;
    if (plain_kind(msg_id) != 1)
        Py_RETURN_NONE; /* quoted by the JSON encoder: the Python function */
    if (tid != Py_None && plain_kind(tid) == 0)
        Py_RETURN_NONE;
    Py_ssize_t id_len = PyUnicode_GET_LENGTH(msg_id);
    Py_ssize_t tid_len = tid == Py_None ? 0 : PyUnicode_GET_LENGTH(tid);
    Py_ssize_t cap = 400 + id_len + tid_len; /* the fixed text is under 260 bytes, sprintf's NUL included */
    PyObject *frame = PyBytes_FromStringAndSize(NULL, cap);
    if (frame == NULL)
        return NULL;
    char *buf = PyBytes_AS_STRING(frame);
    char *w = buf + 8;
    w += sprintf(w, "{\"code\":0,\"language\":\"JAVA\",\"version\":%lld,\"opaque\":%lld,\"flag\":1,"
                    "\"extFields\":{\"msgId\":\"", version, opaque);
    memcpy(w, PyUnicode_1BYTE_DATA(msg_id), id_len);
    w += id_len;
    w += sprintf(w, "\",\"queueId\":\"%lld\",\"queueOffset\":\"%lld\"", queue_id, queue_offset);
    if (tid != Py_None) {
        memcpy(w, ",\"transactionId\":\"", 18);
        w += 18;
        memcpy(w, PyUnicode_1BYTE_DATA(tid), tid_len);
        w += tid_len;
        *w++ = '"';
    }
    static const char tail[] = "},\"serializeTypeCurrentRPC\":\"JSON\"}";
    memcpy(w, tail, sizeof(tail) - 1);
    w += sizeof(tail) - 1;
    Py_ssize_t header_len = w - buf - 8;
    mq_put32((unsigned char *)buf, (uint32_t)(4 + header_len));
    mq_put32((unsigned char *)buf + 4, (uint32_t)header_len);
    if (_PyBytes_Resize(&frame, w - buf) < 0)
        return NULL;
    return frame;
}

/* --- the record of a single send ------------------------------------------------------------ */

#define MAGIC_V1 0xDAA320A7u
#define MAGIC_V2 0xDAA320ABu
#define SYSFLAG_BORNHOST_V6 0x10
#define SYSFLAG_STOREHOST_V6 0x20

/* record._HOSTS's (packed address bytes + port, v6) for ``host``, borrowed: 1 found, 0 not, -1 error. */
static int known_host(PyObject *hosts, PyObject *host, const char **bytes, Py_ssize_t *len, int *v6) {
    if (!PyTuple_CheckExact(host))
        return 0;
    PyObject *known = PyDict_GetItemWithError(hosts, host);
    if (known == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyTuple_CheckExact(known) || PyTuple_GET_SIZE(known) != 2 || !PyBytes_CheckExact(PyTuple_GET_ITEM(known, 0)))
        return 0;
    PyObject *packed = PyTuple_GET_ITEM(known, 0);
    *bytes = PyBytes_AS_STRING(packed);
    *len = PyBytes_GET_SIZE(packed);
    *v6 = PyTuple_GET_ITEM(known, 1) == Py_True;
    return (*len == (*v6 ? 20 : 8)) ? 1 : 0;
}

static int in_range(long long v, long long lo, long long hi) { return v >= lo && v <= hi; }

static PyObject *encode_fields(PyObject *self, PyObject *args) {
    PyObject *topic, *o_queue_id, *o_flag, *o_sysflag, *o_born_ts, *born_host, *o_store_ts, *store_host,
        *o_reconsume, *o_version, *hosts;
    Py_buffer body, props;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOy*y*OO!", &topic, &o_queue_id, &o_flag, &o_sysflag, &o_born_ts, &born_host,
                          &o_store_ts, &store_host, &o_reconsume, &body, &props, &o_version, &PyDict_Type, &hosts))
        return NULL;
    PyObject *result = NULL;
    long long queue_id, flag, sysflag, born_ts, store_ts, reconsume, version;
    const char *born, *store;
    Py_ssize_t born_len, store_len, topic_len;
    int born_v6, store_v6, r;
    if (!PyUnicode_CheckExact(topic) || !as_ll(o_queue_id, &queue_id) || !as_ll(o_flag, &flag) ||
        !as_ll(o_sysflag, &sysflag) || !as_ll(o_born_ts, &born_ts) || !as_ll(o_store_ts, &store_ts) ||
        !as_ll(o_reconsume, &reconsume) || !as_ll(o_version, &version))
        goto fallback;
    if (!in_range(queue_id, INT32_MIN, INT32_MAX) || !in_range(flag, INT32_MIN, INT32_MAX) ||
        !in_range(reconsume, INT32_MIN, INT32_MAX))
        goto fallback;
    const char *topic_bytes = PyUnicode_AsUTF8AndSize(topic, &topic_len);
    if (topic_bytes == NULL) { /* a lone surrogate: the Python encoder raises */
        PyErr_Clear();
        goto fallback;
    }
    if (version == 0)
        version = topic_len > 127 ? 2 : 1;
    if ((version != 1 && version != 2) || topic_len == 0 || topic_len > (version == 1 ? 127 : 32767) ||
        props.len > 32767)
        goto fallback;
    if ((r = known_host(hosts, born_host, &born, &born_len, &born_v6)) <= 0 ||
        (r = known_host(hosts, store_host, &store, &store_len, &store_v6)) <= 0) {
        if (r < 0)
            goto done;
        goto fallback;
    }
    sysflag = (sysflag & ~(long long)(SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6)) |
              (born_v6 ? SYSFLAG_BORNHOST_V6 : 0) | (store_v6 ? SYSFLAG_STOREHOST_V6 : 0);
    if (!in_range(sysflag, INT32_MIN, INT32_MAX))
        goto fallback;
    long long total = 91 + (long long)body.len + topic_len + props.len + (version - 1) + 12 * born_v6 + 12 * store_v6;
    if (total > 0x7FFFFFFF)
        goto fallback;
    result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (result == NULL)
        goto done;
    unsigned char *w = (unsigned char *)PyBytes_AS_STRING(result);
    uint32_t crc = mq_crc32(0, body.buf, (size_t)body.len) & 0x7FFFFFFFu;
    mq_put32(w, (uint32_t)total);
    mq_put32(w + 4, version == 1 ? MAGIC_V1 : MAGIC_V2);
    mq_put32(w + 8, crc);
    mq_put32(w + 12, (uint32_t)queue_id);
    mq_put32(w + 16, (uint32_t)flag);
    mq_put64(w + 20, 0); /* QUEUEOFFSET */
    mq_put64(w + 28, 0); /* PHYSICALOFFSET */
    mq_put32(w + 36, (uint32_t)sysflag);
    mq_put64(w + 40, (uint64_t)born_ts);
    w += 48;
    memcpy(w, born, born_len);
    w += born_len;
    mq_put64(w, (uint64_t)store_ts);
    w += 8;
    memcpy(w, store, store_len);
    w += store_len;
    mq_put32(w, (uint32_t)reconsume);
    mq_put64(w + 4, 0); /* PREPAREDTRANSACTIONOFFSET */
    mq_put32(w + 12, (uint32_t)body.len);
    w += 16;
    memcpy(w, body.buf, body.len);
    w += body.len;
    if (version == 1) {
        *w++ = (unsigned char)topic_len;
    } else {
        mq_put16(w, (uint32_t)topic_len);
        w += 2;
    }
    memcpy(w, topic_bytes, topic_len);
    w += topic_len;
    mq_put16(w, (uint32_t)props.len);
    w += 2;
    memcpy(w, props.buf, props.len);
    goto done;
fallback:
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&body);
    PyBuffer_Release(&props);
    return result;
}

/* --- the property string ------------------------------------------------------------------- */

/* record.decode_properties of a str, by its rules (segments split on \x02; a segment of at least
 * 3 characters whose first \x01 is neither its first nor its last character is name\x01value;
 * the last duplicate wins); None for anything but a str (the Python function decodes bytes). */
static PyObject *decode_properties(PyObject *self, PyObject *text) {
    if (!PyUnicode_CheckExact(text))
        Py_RETURN_NONE;
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    PyObject *result = PyDict_New();
    if (result == NULL)
        return NULL;
    Py_ssize_t start = 0;
    while (start <= n) {
        Py_ssize_t end = start;
        while (end < n && PyUnicode_READ(kind, data, end) != 2)
            end++;
        Py_ssize_t length = end - start;
        if (length >= 3) {
            Py_ssize_t sep = start;
            while (sep < end && PyUnicode_READ(kind, data, sep) != 1)
                sep++;
            if (sep > start && sep < end - 1) {
                PyObject *key = PyUnicode_Substring(text, start, sep);
                PyObject *value = key != NULL ? PyUnicode_Substring(text, sep + 1, end) : NULL;
                int r = value != NULL ? PyDict_SetItem(result, key, value) : -1;
                Py_XDECREF(key);
                Py_XDECREF(value);
                if (r < 0) {
                    Py_DECREF(result);
                    return NULL;
                }
            }
        }
        start = end + 1;
    }
    return result;
}

/* --- the results of a proposal of single sends ---------------------------------------------- */

static PyObject *S_MSG_ID, *S_PHYSICAL_OFFSET, *S_QUEUE_OFFSET, *S_COUNT, *S_MSG_IDS, *S_INDEX, *ONE;

/* proposals.Proposals._results' loop: one PutResult (``cls``) per stored record of ``bodies``
 * (Raft indexes from ``first``): QUEUEID, QUEUEOFFSET and PHYSICALOFFSET read from the record,
 * msgId = ``prefix`` + PHYSICALOFFSET in 16 upper-case hex digits. None (the Python loop decides)
 * for a record shorter than its fixed head (48 bytes, as peek_fields reads), a negative offset, or a prefix that is not ASCII. */
static PyObject *put_results(PyObject *self, PyObject *args) {
    PyObject *bodies, *prefix, *cls;
    Py_ssize_t first;
    if (!PyArg_ParseTuple(args, "O!nUO!", &PyList_Type, &bodies, &first, &prefix, &PyType_Type, &cls))
        return NULL;
    if (!PyUnicode_IS_ASCII(prefix) || PyUnicode_GET_LENGTH(prefix) > 64)
        Py_RETURN_NONE;
    Py_ssize_t n = PyList_GET_SIZE(bodies), prefix_len = PyUnicode_GET_LENGTH(prefix);
    /* every record checked first: a None answer must not follow a half-built list */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *body = PyList_GET_ITEM(bodies, i);
        if (!PyBytes_CheckExact(body) || PyBytes_GET_SIZE(body) < 48 ||
            (((const unsigned char *)PyBytes_AS_STRING(body))[28] & 0x80))
            Py_RETURN_NONE;
    }
    PyObject *results = PyList_New(n);
    if (results == NULL)
        return NULL;
    char text[64 + 17];
    memcpy(text, PyUnicode_1BYTE_DATA(prefix), prefix_len);
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(PyList_GET_ITEM(bodies, i));
        int32_t queue_id = (int32_t)mq_u32(b + 12);
        int64_t queue_offset = (int64_t)(((uint64_t)mq_u32(b + 20) << 32) | mq_u32(b + 24));
        uint64_t physical = ((uint64_t)mq_u32(b + 28) << 32) | mq_u32(b + 32);
        snprintf(text + prefix_len, 17, "%016llX", (unsigned long long)physical);
        PyObject *msg_id = PyUnicode_FromStringAndSize(text, prefix_len + 16);
        PyObject *ids = msg_id != NULL ? PyList_New(1) : NULL;
        PyObject *values[4] = {PyLong_FromLong(queue_id), PyLong_FromLongLong(queue_offset),
                               PyLong_FromUnsignedLongLong(physical), PyLong_FromSsize_t(first + i)};
        PyObject *result = NULL;
        if (ids != NULL && values[0] != NULL && values[1] != NULL && values[2] != NULL && values[3] != NULL) {
            PyList_SET_ITEM(ids, 0, Py_NewRef(msg_id));
            result = PyBaseObject_Type.tp_new((PyTypeObject *)cls, EMPTY_TUPLE, NULL);
            if (result != NULL &&
                (PyObject_SetAttr(result, S_MSG_ID, msg_id) < 0 || PyObject_SetAttr(result, S_QUEUE_ID, values[0]) < 0 ||
                 PyObject_SetAttr(result, S_QUEUE_OFFSET, values[1]) < 0 ||
                 PyObject_SetAttr(result, S_PHYSICAL_OFFSET, values[2]) < 0 ||
                 PyObject_SetAttr(result, S_COUNT, ONE) < 0 || PyObject_SetAttr(result, S_MSG_IDS, ids) < 0 ||
                 PyObject_SetAttr(result, S_INDEX, values[3]) < 0))
                Py_CLEAR(result);
        }
        Py_XDECREF(msg_id);
        Py_XDECREF(ids);
        for (int k = 0; k < 4; k++)
            Py_XDECREF(values[k]);
        if (result == NULL) {
            Py_DECREF(results);
            return NULL;
        }
        PyList_SET_ITEM(results, i, result);
    }
    return results;
}

static PyMethodDef METHODS[] = {
    {"decode_frames", decode_frames, METH_VARARGS, "FrameDecoder.feed's loop over whole usual frames"},
    {"send_header_v2", send_header_v2, METH_VARARGS, "headers.send_header_v2, or None"},
    {"send_success_frame", send_success_frame, METH_VARARGS, "command.send_success_frame, or None"},
    {"encode_fields", encode_fields, METH_VARARGS, "record.encode_fields, or None"},
    {"decode_properties", decode_properties, METH_O, "record.decode_properties of a str, or None"},
    {"put_results", put_results, METH_VARARGS, "Proposals._results' loop, or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_sendpath", NULL, -1, METHODS};

#define INTERN(var, text)                                                                                      \
    if ((var = PyUnicode_InternFromString(text)) == NULL)                                                      \
        return NULL;

PyMODINIT_FUNC PyInit__sendpath(void) {
    mq_crc32_init();
    if ((EMPTY_TUPLE = PyTuple_New(0)) == NULL)
        return NULL;
    INTERN(S_CODE, "code");
    INTERN(S_OPAQUE, "opaque");
    INTERN(S_FLAG, "flag");
    INTERN(S_LANGUAGE, "language");
    INTERN(S_VERSION, "version");
    INTERN(S_REMARK, "remark");
    INTERN(S_EXT_FIELDS, "ext_fields");
    INTERN(S_BODY, "body");
    INTERN(S_SERIALIZE_TYPE, "serialize_type");
    INTERN(S_PRODUCER_GROUP, "producer_group");
    INTERN(S_TOPIC, "topic");
    INTERN(S_DEFAULT_TOPIC, "default_topic");
    INTERN(S_DEFAULT_TOPIC_QUEUE_NUMS, "default_topic_queue_nums");
    INTERN(S_QUEUE_ID, "queue_id");
    INTERN(S_SYS_FLAG, "sys_flag");
    INTERN(S_BORN_TIMESTAMP_MS, "born_timestamp_ms");
    INTERN(S_PROPERTIES, "properties");
    INTERN(S_RECONSUME_TIMES, "reconsume_times");
    INTERN(S_UNIT_MODE, "unit_mode");
    INTERN(S_MAX_RECONSUME_TIMES, "max_reconsume_times");
    INTERN(S_BATCH, "batch");
    INTERN(S_BROKER_NAME, "broker_name");
    INTERN(LANG_OTHER, "OTHER");
    INTERN(S_MSG_ID, "msg_id");
    INTERN(S_PHYSICAL_OFFSET, "physical_offset");
    INTERN(S_QUEUE_OFFSET, "queue_offset");
    INTERN(S_COUNT, "count");
    INTERN(S_MSG_IDS, "msg_ids");
    INTERN(S_INDEX, "index");
    for (int i = 0; i < 14; i++) {
        char name[2] = {(char)('a' + i), 0};
        INTERN(K_V2[i], name);
    }
    if ((ZERO = PyLong_FromLong(0)) == NULL || (FOUR = PyLong_FromLong(4)) == NULL || (ONE = PyLong_FromLong(1)) == NULL)
        return NULL;
    return PyModule_Create(&MODULE);
}
