/* mqbench.broker.formats._record_check: broker/formats/record_check.py's place_fields in C.
 *
 * A follower checks and indexes every record entry the leader sends it with place_fields (sizes,
 * magic, BODYCRC, UTF-8 topic and properties, the consume-queue tags code) before it writes it. The
 * Python function is the reference and its docstring the contract: this returns the same tuple, or
 * None, for every input (the bytes are a peer's: every read is bounds-checked). The tags code is
 * computed here in every common case: Java's String.hashCode of the last non-empty TAGS (UTF-16
 * units, so non-ASCII tags too) or, on SCHEDULE_TOPIC_XXXX, the due time of the DELAY level (store
 * time + the level's delay, the levels given by set_fallback: tags._DEFAULT_LEVELS_MS). The rare
 * cases are passed to the Python function itself (set_fallback), so they stay one implementation:
 * a DELAY that is not an optional sign and up to 18 ASCII digits (int() reads spaces, underscores
 * and other digits too), and a due time past int64. tests/formats compare the two. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "mq_bytes.h"
#include <stdint.h>
#include <string.h>

#include "mq_crc32.h"

#define MAGIC_V1 ((int32_t)0xDAA320A7)
#define MAGIC_V2 ((int32_t)0xDAA320AB)
#define BORNHOST_V6 0x10
#define STOREHOST_V6 0x20
#define V4_FIXED 88 /* the fixed fields of a record with IPv4 hosts; the body follows */

static PyObject *fallback; /* record_check.place_fields (Python) */
#define LEVELS_MAX 1024
static long long levels_ms[LEVELS_MAX]; /* tags._DEFAULT_LEVELS_MS, given with the fallback */
static Py_ssize_t n_levels;
static const char SCHEDULE_TOPIC[] = "SCHEDULE_TOPIC_XXXX";
static PyObject *last_topic; /* the str of the last topic seen (records of one topic repeat) */

static const unsigned char *find(const unsigned char *hay, Py_ssize_t n, const char *needle, Py_ssize_t m) {
    if (m > n)
        return NULL;
    for (Py_ssize_t i = 0; i + m <= n; i++) {
        const unsigned char *hit = memchr(hay + i, needle[0], (size_t)(n - m - i + 1));
        if (hit == NULL)
            return NULL;
        if (memcmp(hit, needle, (size_t)m) == 0)
            return hit;
        i = hit - hay;
    }
    return NULL;
}

static int is_ascii(const unsigned char *p, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (p[i] & 0x80)
            return 0;
    return 1;
}

/* The last non-empty TAGS and DELAY values of a property string, by decode_properties' rules
 * (record.py): segments split on \x02; a segment counts when its first \x01 is neither its first
 * nor its last byte; key = the bytes before that \x01, value = the rest; the last one wins. NULL
 * (length 0) for a key that no segment holds. */
struct last_values {
    const unsigned char *tags;
    Py_ssize_t tags_len;
    const unsigned char *delay;
    Py_ssize_t delay_len;
};

static void last_values(const unsigned char *p, Py_ssize_t n, struct last_values *out) {
    Py_ssize_t start = 0;
    while (start < n) {
        const unsigned char *stop = memchr(p + start, 2, (size_t)(n - start));
        Py_ssize_t end = stop != NULL ? stop - p : n;
        const unsigned char *sep = memchr(p + start, 1, (size_t)(end - start));
        if (sep != NULL) {
            Py_ssize_t key_len = sep - (p + start), value_at = sep - p + 1;
            if (key_len > 0 && value_at < end) {
                if (key_len == 4 && memcmp(p + start, "TAGS", 4) == 0) {
                    out->tags = p + value_at;
                    out->tags_len = end - value_at;
                } else if (key_len == 5 && memcmp(p + start, "DELAY", 5) == 0) {
                    out->delay = p + value_at;
                    out->delay_len = end - value_at;
                }
            }
        }
        start = end + 1;
    }
}

/* int(text) for the text Python reads the same way in every case: an optional sign and 1..18 ASCII
 * digits (no overflow); 0 for anything else (spaces, underscores, other digits, not a number),
 * which the caller leaves to the Python code. */
static int parse_level(const unsigned char *p, Py_ssize_t n, long long *level) {
    int negative = 0;
    if (n > 0 && (p[0] == '+' || p[0] == '-')) {
        negative = p[0] == '-';
        p++;
        n--;
    }
    if (n < 1 || n > 18)
        return 0;
    long long v = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        v = v * 10 + (p[i] - '0');
    }
    *level = negative ? -v : v;
    return 1;
}

/* tags.java_hash: Java's String.hashCode (31*h + c over UTF-16 code units) of UTF-8 text the caller
 * has checked; -1 with an error set only when Python cannot decode it (out of memory). */
static int java_hash(const unsigned char *p, Py_ssize_t n, int32_t *out) {
    uint32_t h = 0;
    if (is_ascii(p, n)) {
        for (Py_ssize_t i = 0; i < n; i++)
            h = 31u * h + p[i];
        *out = (int32_t)h;
        return 0;
    }
    PyObject *text = PyUnicode_DecodeUTF8((const char *)p, n, "strict");
    if (text == NULL)
        return -1;
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    for (Py_ssize_t i = 0; i < length; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c >= 0x10000) { /* a surrogate pair in UTF-16 */
            c -= 0x10000;
            h = 31u * h + (uint32_t)(0xD800 + (c >> 10));
            c = 0xDC00 + (c & 0x3FF);
        }
        h = 31u * h + (uint32_t)c;
    }
    Py_DECREF(text);
    *out = (int32_t)h;
    return 0;
}

static PyObject *call_fallback(PyObject *buf) {
    if (fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_record_check.set_fallback was not called");
        return NULL;
    }
    return PyObject_CallOneArg(fallback, buf);
}

static PyObject *place_fields(PyObject *self, PyObject *buf) {
    (void)self;
    if (!PyBytes_Check(buf)) {
        if (PyObject_Size(buf) < 0) /* len(buf) raises first in Python */
            return NULL;
        Py_RETURN_NONE;
    }
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(buf);
    Py_ssize_t size = PyBytes_GET_SIZE(buf);
    if (size < V4_FIXED)
        Py_RETURN_NONE;
    int32_t sysflag = mq_i32(b + 36);
    Py_ssize_t born = (sysflag & BORNHOST_V6) ? 20 : 8, store = (sysflag & STOREHOST_V6) ? 20 : 8;
    Py_ssize_t store_ts_at = 48 + born, body_len_at = store_ts_at + 8 + store + 12, body_at = body_len_at + 4;
    if (size < body_at)
        Py_RETURN_NONE;
    int32_t total = mq_i32(b), magic = mq_i32(b + 4), crc = mq_i32(b + 8), queue_id = mq_i32(b + 12);
    int64_t queue_offset = mq_i64(b + 20), store_ts = mq_i64(b + store_ts_at);
    int32_t body_len = mq_i32(b + body_len_at);
    if (total != size || body_len < 0)
        Py_RETURN_NONE;
    Py_ssize_t body_end = body_at + body_len, topic_at, topic_len;
    if (magic == MAGIC_V1) {
        if (body_end + 1 > size)
            Py_RETURN_NONE;
        topic_len = b[body_end];
        if (topic_len > 127)
            Py_RETURN_NONE;
        topic_at = body_end + 1;
    } else if (magic == MAGIC_V2) {
        if (body_end + 2 > size)
            Py_RETURN_NONE;
        topic_len = mq_i16(b + body_end);
        topic_at = body_end + 2;
    } else {
        Py_RETURN_NONE;
    }
    Py_ssize_t props_at = topic_at + topic_len + 2;
    if (topic_len <= 0 || props_at > size || props_at + mq_i16(b + props_at - 2) != size)
        Py_RETURN_NONE;
    if ((int64_t)mq_body_crc(b + body_at, (size_t)body_len) != (int64_t)crc)
        Py_RETURN_NONE;
    const unsigned char *props = b + props_at;
    Py_ssize_t props_len = size - props_at;
    PyObject *topic;
    if (last_topic != NULL && PyUnicode_IS_ASCII(last_topic) && PyUnicode_GET_LENGTH(last_topic) == topic_len &&
        memcmp(PyUnicode_DATA(last_topic), b + topic_at, (size_t)topic_len) == 0) {
        topic = last_topic;
        Py_INCREF(topic);
    } else {
        topic = PyUnicode_DecodeUTF8((const char *)b + topic_at, topic_len, "strict");
        if (topic == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
                return NULL;
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        Py_XSETREF(last_topic, topic);
        Py_INCREF(topic);
    }
    if (!is_ascii(props, props_len)) {
        PyObject *text = PyUnicode_DecodeUTF8((const char *)props, props_len, "strict");
        if (text == NULL) {
            Py_DECREF(topic);
            if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
                return NULL;
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        Py_DECREF(text);
    }
    int schedule = topic_len == (Py_ssize_t)sizeof(SCHEDULE_TOPIC) - 1 &&
                   memcmp(b + topic_at, SCHEDULE_TOPIC, sizeof(SCHEDULE_TOPIC) - 1) == 0;
    struct last_values found = {NULL, 0, NULL, 0};
    if (schedule || find(props, props_len, "TAGS\x01", 5) != NULL)
        last_values(props, props_len, &found);
    long long code = 0;
    if (schedule && found.delay != NULL && n_levels == 0) {
        Py_DECREF(topic);
        return call_fallback(buf); /* set_fallback was not called: it raises */
    }
    if (schedule && found.delay != NULL) {
        /* the delay level's due time (tags.tags_code): store time + the level's delay, the level
         * capped at the last one; +1000 ms for a level <= 0 */
        long long level;
        if (!parse_level(found.delay, found.delay_len, &level)) {
            Py_DECREF(topic);
            return call_fallback(buf); /* what int() makes of other text: the Python code decides */
        }
        if (level > n_levels)
            level = n_levels;
        long long delay_ms = level > 0 ? levels_ms[level - 1] : 1000;
        if (__builtin_add_overflow((long long)store_ts, delay_ms, &code)) {
            Py_DECREF(topic);
            return call_fallback(buf); /* past int64: Python's int has no such limit */
        }
    } else if (found.tags != NULL) {
        int32_t hash;
        if (java_hash(found.tags, found.tags_len, &hash) < 0) {
            Py_DECREF(topic);
            return NULL;
        }
        code = hash;
    }
    return Py_BuildValue("(NiLiLLn)", topic, queue_id, (long long)queue_offset, sysflag, code, (long long)store_ts,
                         size);
}

/* record_check.place_fields_run: the longest run of items[start:] ((term, body, magic) entries)
 * that are records of one term, each with its fields: built[id(body)][1] (popped) when ``built``
 * (a dict or None) holds that very body, else what place_fields takes; as ([(body, fields)], term,
 * next index), ([], None, start) when items[start] is not one. Stops (taking nothing more) at
 * anything else: an entry that is not a tuple of three, a magic other than the int 1, a body that
 * is not bytes or has no record magic, another term, a record place_fields does not take. */
static PyObject *place_fields_run(PyObject *self, PyObject *args) {
    PyObject *items, *built = Py_None;
    Py_ssize_t start;
    if (!PyArg_ParseTuple(args, "O!n|O:place_fields_run", &PyList_Type, &items, &start, &built))
        return NULL;
    if (built != Py_None && !PyDict_CheckExact(built))
        return PyErr_Format(PyExc_TypeError, "built must be a dict or None, not %.100s", Py_TYPE(built)->tp_name);
    if (start < 0)
        start = 0;
    PyObject *run = PyList_New(0);
    if (run == NULL)
        return NULL;
    PyObject *term = Py_None;
    Py_INCREF(term);
    Py_ssize_t i = start;
    for (; i < PyList_GET_SIZE(items); i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 3)
            break;
        PyObject *entry_term = PyTuple_GET_ITEM(item, 0), *body = PyTuple_GET_ITEM(item, 1),
                 *magic = PyTuple_GET_ITEM(item, 2);
        if (!PyLong_CheckExact(magic) || !PyLong_CheckExact(entry_term) || !PyBytes_CheckExact(body))
            break;
        int overflow;
        if (PyLong_AsLongLongAndOverflow(magic, &overflow) != 1 || overflow)
            break;
        if (term != Py_None) {
            int same = PyObject_RichCompareBool(entry_term, term, Py_EQ);
            if (same < 0)
                goto error;
            if (!same)
                break;
        }
        if (PyBytes_GET_SIZE(body) < 8)
            break;
        int32_t record_magic = mq_i32((const unsigned char *)PyBytes_AS_STRING(body) + 4);
        if (record_magic != MAGIC_V1 && record_magic != MAGIC_V2)
            break;
        Py_INCREF(item); /* held while place_fields may run Python code (its fallback) */
        PyObject *fields = NULL;
        if (built != Py_None && PyDict_GET_SIZE(built) > 0) {
            PyObject *key = PyLong_FromVoidPtr(body); /* id(body) */
            if (key == NULL) {
                Py_DECREF(item);
                goto error;
            }
            PyObject *entry = PyDict_GetItemWithError(built, key); /* borrowed */
            if (entry == NULL && PyErr_Occurred()) {
                Py_DECREF(key);
                Py_DECREF(item);
                goto error;
            }
            if (entry != NULL) {
                Py_INCREF(entry);
                if (PyDict_DelItem(built, key) < 0) {
                    Py_DECREF(entry);
                    Py_DECREF(key);
                    Py_DECREF(item);
                    goto error;
                }
                if (PyTuple_CheckExact(entry) && PyTuple_GET_SIZE(entry) == 2 && PyTuple_GET_ITEM(entry, 0) == body) {
                    fields = PyTuple_GET_ITEM(entry, 1);
                    Py_INCREF(fields);
                }
                Py_DECREF(entry);
            }
            Py_DECREF(key);
        }
        if (fields == NULL)
            fields = place_fields(self, body);
        if (fields == NULL) {
            Py_DECREF(item);
            goto error;
        }
        if (fields == Py_None) {
            Py_DECREF(fields);
            Py_DECREF(item);
            break;
        }
        PyObject *pair = PyTuple_Pack(2, body, fields);
        Py_DECREF(fields);
        if (pair == NULL) {
            Py_DECREF(item);
            goto error;
        }
        int failed = PyList_Append(run, pair);
        Py_DECREF(pair);
        if (failed) {
            Py_DECREF(item);
            goto error;
        }
        if (term == Py_None) {
            Py_INCREF(entry_term);
            Py_SETREF(term, entry_term);
        }
        Py_DECREF(item);
    }
    return Py_BuildValue("(NNn)", run, term, i);
error:
    Py_DECREF(run);
    Py_DECREF(term);
    return NULL;
}

static PyObject *set_fallback(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *fn, *levels;
    if (!PyArg_ParseTuple(args, "OO:set_fallback", &fn, &levels))
        return NULL;
    PyObject *seq = PySequence_Fast(levels, "delay levels must be a sequence of ints");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n < 1 || n > LEVELS_MAX) {
        Py_DECREF(seq);
        return PyErr_Format(PyExc_ValueError, "between 1 and %d delay levels, not %zd", LEVELS_MAX, n);
    }
    long long parsed[LEVELS_MAX];
    for (Py_ssize_t i = 0; i < n; i++) {
        parsed[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, i));
        if (parsed[i] == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return NULL;
        }
    }
    Py_DECREF(seq);
    memcpy(levels_ms, parsed, (size_t)n * sizeof parsed[0]);
    n_levels = n;
    Py_INCREF(fn);
    Py_XSETREF(fallback, fn);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"place_fields", place_fields, METH_O, "place_fields(buf): record_check.place_fields in C (same contract)."},
    {"place_fields_run", place_fields_run, METH_VARARGS,
     "place_fields_run(items, start, built=None): record_check.place_fields_run in C (same contract)."},
    {"set_fallback", set_fallback, METH_VARARGS,
     "set_fallback(fn, levels_ms): the Python place_fields, for the rare cases, and the delay levels (ms)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_record_check", NULL, -1, methods};

PyMODINIT_FUNC PyInit__record_check(void) {
    mq_crc32_init();
    return PyModule_Create(&module);
}
