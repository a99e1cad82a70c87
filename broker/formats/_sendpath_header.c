/* _sendpath's send header (send_header_v2; the module's contract: _sendpath.c): the ext fields of
 * SEND_MESSAGE_V2 (short names) or SEND_MESSAGE (the 14 long names) as a SendMessageHeader, when
 * they are plain strings and plain decimals; None leaves every other header to headers.py. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "mq_bytes.h"
#include <stdint.h>
#include <string.h>

#include "_sendpath.h"

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

PyObject *send_header_v2(PyObject *self, PyObject *args) {
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
