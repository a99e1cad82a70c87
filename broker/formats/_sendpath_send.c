/* send_frame: a load generator's send request, the property template's fill and the frame in one
 * step (mqbench.client.pipeline.SendFrameTemplate.frame_filled is the Python reference).
 *
 *   send_frame(head, wire, values, opaque, born_ms, body) -> bytes or None
 *       SendFrameTemplate.frame(opaque, born_ms, PropertyTemplate.fill_wire(texts), body), where
 *       ``head`` is the frame template's four header parts (bytes: before the opaque, before the
 *       born timestamp, before the properties, after them), ``wire`` the property template's n + 1
 *       parts as JSON-string content (bytes) and ``values`` its n slot values, each an int (its
 *       decimal text) or an ASCII str of letters and digits (as it is); ``texts`` are their str.
 *       None (the Python code decides, errors included) for anything else: other types or
 *       lengths, a str value that would need JSON escaping, a frame over the 32-bit length. Never
 *       raises for input (only MemoryError). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "mq_bytes.h"
#include <stdint.h>
#include <string.h>

#include "_sendpath.h"

#define SEND_SLOTS_MAX 8
#define DEC_MAX 20 /* digits of a long long's magnitude, sign included */

/* ``v`` in decimal at ``out`` (DEC_MAX bytes of room); returns the length. */
static Py_ssize_t put_dec(char *out, long long v) {
    char tmp[DEC_MAX + 1];
    unsigned long long m = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    Py_ssize_t n = 0;
    do {
        tmp[n++] = (char)('0' + (int)(m % 10));
        m /= 10;
    } while (m);
    Py_ssize_t len = 0;
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = tmp[--n];
    return len;
}

/* An ASCII str of letters and digits only (str.isascii() and, when not empty, str.isalnum()):
 * its bytes, unescaped in JSON; 0 for anything else. */
static int plain_ascii(PyObject *s, const char **data, Py_ssize_t *len) {
    if (!PyUnicode_CheckExact(s) || !PyUnicode_IS_ASCII(s))
        return 0;
    const unsigned char *p = PyUnicode_1BYTE_DATA(s);
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
            return 0;
    }
    *data = (const char *)p;
    *len = n;
    return 1;
}

PyObject *send_frame(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 6)
        Py_RETURN_NONE;
    PyObject *head = args[0], *wire = args[1], *values = args[2], *body = args[5];
    long long opaque, born_ms;
    if (!PyTuple_CheckExact(head) || PyTuple_GET_SIZE(head) != 4 || !PyTuple_CheckExact(wire) ||
        !PyTuple_CheckExact(values) || !PyBytes_CheckExact(body) || !as_ll(args[3], &opaque) ||
        !as_ll(args[4], &born_ms))
        Py_RETURN_NONE;
    Py_ssize_t slots = PyTuple_GET_SIZE(values);
    if (slots > SEND_SLOTS_MAX || PyTuple_GET_SIZE(wire) != slots + 1)
        Py_RETURN_NONE;
    for (Py_ssize_t i = 0; i < 4; i++)
        if (!PyBytes_CheckExact(PyTuple_GET_ITEM(head, i)))
            Py_RETURN_NONE;
    for (Py_ssize_t i = 0; i <= slots; i++)
        if (!PyBytes_CheckExact(PyTuple_GET_ITEM(wire, i)))
            Py_RETURN_NONE;
    /* each value's text: an int's digits in ``digits``, a str's own bytes */
    char digits[SEND_SLOTS_MAX][DEC_MAX];
    const char *text[SEND_SLOTS_MAX];
    Py_ssize_t text_len[SEND_SLOTS_MAX];
    for (Py_ssize_t i = 0; i < slots; i++) {
        PyObject *v = PyTuple_GET_ITEM(values, i);
        long long n;
        if (as_ll(v, &n)) {
            text_len[i] = put_dec(digits[i], n);
            text[i] = digits[i];
        } else if (!plain_ascii(v, &text[i], &text_len[i])) {
            Py_RETURN_NONE;
        }
    }
    char opaque_text[DEC_MAX], born_text[DEC_MAX];
    Py_ssize_t opaque_len = put_dec(opaque_text, opaque), born_len = put_dec(born_text, born_ms);
    /* sizes: every part is a Python bytes (at most PY_SSIZE_T_MAX), summed in 64 bits and capped */
    uint64_t header_len = (uint64_t)opaque_len + (uint64_t)born_len;
    for (Py_ssize_t i = 0; i < 4; i++)
        header_len += (uint64_t)PyBytes_GET_SIZE(PyTuple_GET_ITEM(head, i));
    for (Py_ssize_t i = 0; i <= slots; i++)
        header_len += (uint64_t)PyBytes_GET_SIZE(PyTuple_GET_ITEM(wire, i));
    for (Py_ssize_t i = 0; i < slots; i++)
        header_len += (uint64_t)text_len[i];
    uint64_t body_len = (uint64_t)PyBytes_GET_SIZE(body);
    if (header_len > INT32_MAX || 4 + header_len + body_len > INT32_MAX)
        Py_RETURN_NONE; /* LENGTH.pack refuses it: the Python code raises */
    PyObject *frame = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(8 + header_len + body_len));
    if (frame == NULL)
        return NULL;
    unsigned char *w = (unsigned char *)PyBytes_AS_STRING(frame);
    mq_put32(w, (uint32_t)(4 + header_len + body_len));
    mq_put32(w + 4, (uint32_t)header_len);
    w += 8;
#define PUT(src, n)                                                                                            \
    do {                                                                                                       \
        memcpy(w, (src), (size_t)(n));                                                                         \
        w += (n);                                                                                              \
    } while (0)
#define PUT_BYTES(obj) PUT(PyBytes_AS_STRING(obj), PyBytes_GET_SIZE(obj))
    PUT_BYTES(PyTuple_GET_ITEM(head, 0));
    PUT(opaque_text, opaque_len);
    PUT_BYTES(PyTuple_GET_ITEM(head, 1));
    PUT(born_text, born_len);
    PUT_BYTES(PyTuple_GET_ITEM(head, 2));
    PUT_BYTES(PyTuple_GET_ITEM(wire, 0));
    for (Py_ssize_t i = 0; i < slots; i++) {
        PUT(text[i], text_len[i]);
        PUT_BYTES(PyTuple_GET_ITEM(wire, i + 1));
    }
    PUT_BYTES(PyTuple_GET_ITEM(head, 3));
    PUT_BYTES(body);
#undef PUT_BYTES
#undef PUT
    return frame;
}
