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

PyObject *decode_frames(PyObject *self, PyObject *args) {
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
