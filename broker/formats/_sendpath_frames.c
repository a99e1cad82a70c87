/* _sendpath's frame decoding (decode_frames; the module's contract: _sendpath.c): a read's whole
 * frames whose JSON header has the usual shape, read by a JSON subset reader that takes only that
 * shape and leaves every other frame to the Python decoder.
 *
 * Input is untrusted (a peer's frame): every read is bounds-checked against the buffer. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "mq_bytes.h"
#include <stdint.h>
#include <string.h>

#include "_sendpath.h"

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
    if (!want && !escaped) { /* only checked: plain ASCII is valid UTF-8, no str needed */
        const unsigned char *q = start;
        while (q < stop && *q < 0x80)
            q++;
        if (q == stop) {
            c->p = stop + 1;
            return 1;
        }
    }
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
 * 0 not, -1 error. With build == 0 the object is only checked (out unused, nothing allocated for
 * plain ASCII strings) and a repeated name is taken too: the Python reader keeps the last value,
 * and a caller that only checks reads no value. */
static int read_ext(Cursor *c, PyObject **out, int build) {
    if (c->p >= c->end || *c->p != '{')
        return 0;
    c->p++;
    if (!build) {
        skip_ws(c);
        if (c->p < c->end && *c->p == '}') {
            c->p++;
            return 1;
        }
        for (;;) {
            int r;
            skip_ws(c);
            if ((r = read_string(c, NULL, 0)) <= 0)
                return r;
            skip_ws(c);
            if (c->p >= c->end || *c->p != ':')
                return 0;
            c->p++;
            skip_ws(c);
            if ((r = read_string(c, NULL, 0)) <= 0)
                return r;
            skip_ws(c);
            if (c->p < c->end && *c->p == ',') {
                c->p++;
                continue;
            }
            if (c->p < c->end && *c->p == '}') {
                c->p++;
                return 1;
            }
            return 0;
        }
    }
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

/* A usual JSON header's values; language and ext are built (new references) only by a building
 * parse, and are NULL otherwise or when absent. */
typedef struct {
    long code, version, opaque, flag;
    unsigned seen;
    Py_ssize_t header_len;
    PyObject *language, *ext;
} Header;

/* One frame's content (after the length field) read as a usual JSON header: 1 taken, 0 not (the
 * Python decoder decides), -1 error. With build == 0 the header is only checked: nothing is
 * allocated for plain ASCII strings, and a repeated extFields name is taken (see read_ext). On 1
 * with build the caller owns h->language and h->ext; on 0 or -1 nothing is left to release. */
static int parse_header(const unsigned char *frame, Py_ssize_t size, Header *h, int build) {
    h->code = h->version = h->opaque = h->flag = 0;
    h->seen = 0;
    h->language = h->ext = NULL;
    if (size < 4)
        return 0;
    uint32_t word = mq_u32(frame);
    Py_ssize_t header_len = word & 0xFFFFFF;
    if ((word >> 24) != 0 || header_len > size - 4)
        return 0; /* a binary header, or a malformed frame: the Python decoder */
    h->header_len = header_len;
    Cursor c = {frame + 4, frame + 4 + header_len};
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
            r = read_int32(&c, &h->code);
        } else if (key_is(key, key_len, "language")) {
            field = F_LANGUAGE;
            if (h->seen & F_LANGUAGE)
                goto done;
            r = read_string(&c, &h->language, build);
        } else if (key_is(key, key_len, "version")) {
            field = F_VERSION;
            r = read_int32(&c, &h->version);
        } else if (key_is(key, key_len, "opaque")) {
            field = F_OPAQUE;
            r = read_int32(&c, &h->opaque);
        } else if (key_is(key, key_len, "flag")) {
            field = F_FLAG;
            r = read_int32(&c, &h->flag);
        } else if (key_is(key, key_len, "extFields")) {
            field = F_EXT;
            if (h->seen & F_EXT)
                goto done;
            r = read_ext(&c, &h->ext, build);
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
        if (r == 0 || (h->seen & field))
            goto done;
        h->seen |= field;
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
    if (c.p == c.end && (h->seen & F_CODE) && (h->seen & F_EXT))
        return 1;
done:
    Py_CLEAR(h->language);
    Py_CLEAR(h->ext);
    return result;
}

/* One frame's content as a RemotingCommand: 1 with *out, 0 not taken, -1 error. */
static int decode_one(const unsigned char *frame, Py_ssize_t size, PyObject *cls, PyObject **out) {
    Header h;
    int result = parse_header(frame, size, &h, 1);
    if (result <= 0)
        return result;
    result = -1;
    Py_ssize_t header_len = h.header_len;
    PyObject *cmd = PyBaseObject_Type.tp_new((PyTypeObject *)cls, EMPTY_TUPLE, NULL);
    if (cmd == NULL)
        goto done;
    PyObject *body = PyBytes_FromStringAndSize((const char *)frame + 4 + header_len, size - 4 - header_len);
    PyObject *values[5] = {PyLong_FromLong(h.code), PyLong_FromLong(h.opaque), PyLong_FromLong(h.flag),
                           PyLong_FromLong(h.version), body};
    int failed = 0;
    for (int i = 0; i < 5; i++)
        failed |= values[i] == NULL;
    if (!failed)
        failed = PyObject_SetAttr(cmd, S_CODE, values[0]) < 0 || PyObject_SetAttr(cmd, S_OPAQUE, values[1]) < 0 ||
                 PyObject_SetAttr(cmd, S_FLAG, values[2]) < 0 ||
                 PyObject_SetAttr(cmd, S_LANGUAGE, h.language != NULL ? h.language : LANG_OTHER) < 0 ||
                 PyObject_SetAttr(cmd, S_VERSION, values[3]) < 0 || PyObject_SetAttr(cmd, S_REMARK, Py_None) < 0 ||
                 PyObject_SetAttr(cmd, S_EXT_FIELDS, h.ext) < 0 || PyObject_SetAttr(cmd, S_BODY, values[4]) < 0 ||
                 PyObject_SetAttr(cmd, S_SERIALIZE_TYPE, ZERO) < 0;
    for (int i = 0; i < 5; i++)
        Py_XDECREF(values[i]);
    if (failed) {
        Py_DECREF(cmd);
        goto done;
    }
    *out = cmd;
    result = 1;
done:
    Py_XDECREF(h.language);
    Py_XDECREF(h.ext);
    return result;
}

/* What take_answer (frame.py) does for a response frame's checked header: its receiver in
 * ``pending`` (opaque -> receiver) moved to ``taken`` when the receiver's type lists the code in
 * its QUICK_CODES and is the type of the receivers taken before. 1 taken, 0 not, -1 error.
 * ``kind``/``quick``: the last type whose QUICK_CODES was read, and what was read (NULL: none),
 * both held with references of the caller's, so a read's frames look the attribute up once. */
static int take_answer(const Header *h, PyObject *pending, PyObject *taken, PyObject **kind, PyObject **quick) {
    PyObject *key = PyLong_FromLong(h->opaque);
    if (key == NULL)
        return -1;
    int result = 0;
    PyObject *receiver = PyDict_GetItemWithError(pending, key); /* borrowed */
    if (receiver == NULL) {
        result = PyErr_Occurred() ? -1 : 0;
        goto done;
    }
    PyTypeObject *type = Py_TYPE(receiver);
    if (PyList_GET_SIZE(taken) > 0 && Py_TYPE(PyList_GET_ITEM(taken, 0)) != type)
        goto done;
    if ((PyObject *)type != *kind) {
        PyObject *codes = PyObject_GetAttr((PyObject *)type, S_QUICK_CODES);
        if (codes == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
                result = -1;
                goto done;
            }
            PyErr_Clear();
        }
        Py_INCREF(type);
        Py_XSETREF(*kind, (PyObject *)type);
        Py_XSETREF(*quick, codes);
    }
    if (*quick == NULL)
        goto done;
    PyObject *code = PyLong_FromLong(h->code);
    if (code == NULL) {
        result = -1;
        goto done;
    }
    int contains = PySequence_Contains(*quick, code);
    Py_DECREF(code);
    if (contains <= 0) {
        result = contains;
        goto done;
    }
    Py_INCREF(receiver); /* the table's reference goes with the delete */
    if (PyList_Append(taken, receiver) < 0 || PyDict_DelItem(pending, key) < 0) {
        Py_DECREF(receiver);
        result = -1;
        goto done;
    }
    Py_DECREF(receiver);
    result = 1;
done:
    Py_DECREF(key);
    return result;
}

PyObject *decode_frames(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t pos, frame_bytes_max;
    PyObject *out, *cls, *pending = NULL, *taken = NULL;
    if (!PyArg_ParseTuple(args, "y*nnO!O!|O!O!", &view, &pos, &frame_bytes_max, &PyList_Type, &out, &PyType_Type,
                          &cls, &PyDict_Type, &pending, &PyList_Type, &taken))
        return NULL;
    if (pending != NULL && taken == NULL) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_TypeError, "pending without taken");
        return NULL;
    }
    const unsigned char *b = view.buf;
    Py_ssize_t n = view.len;
    if (pos < 0 || pos > n) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "pos outside the buffer");
        return NULL;
    }
    PyObject *kind = NULL, *quick = NULL; /* take_answer's cache */
    int failed = 0;
    while (n - pos >= 4) {
        int32_t length = (int32_t)mq_u32(b + pos);
        if (length < 4 || (long long)length + 4 > (long long)frame_bytes_max || n - pos - 4 < length)
            break; /* refused or partial: the Python loop says which */
        if (pending != NULL) {
            Header h;
            int r = parse_header(b + pos + 4, length, &h, 0);
            if (r == 1 && (h.flag & 1))
                r = take_answer(&h, pending, taken, &kind, &quick);
            else if (r == 1)
                r = 0;
            if (r < 0) {
                failed = 1;
                break;
            }
            if (r == 1) {
                pos += 4 + (Py_ssize_t)length;
                continue;
            }
        }
        PyObject *cmd = NULL;
        int r = decode_one(b + pos + 4, length, cls, &cmd);
        if (r < 0) {
            failed = 1;
            break;
        }
        if (r == 0)
            break;
        r = PyList_Append(out, cmd);
        Py_DECREF(cmd);
        if (r < 0) {
            failed = 1;
            break;
        }
        pos += 4 + (Py_ssize_t)length;
    }
    PyBuffer_Release(&view);
    Py_XDECREF(kind);
    Py_XDECREF(quick);
    return failed ? NULL : PyLong_FromSsize_t(pos);
}
