/* The record decoder of the read path, compiled: framing.decode_into without the interpreter's per-record cost.
 *
 * framing.py keeps the reference implementation in Python and uses this module when it was built (setup.py builds
 * it where a C compiler is present; SHARDLINE_PURE_PYTHON=1 turns it off). Both must return the same objects for
 * the same input: tests/storage/test_speedups.py compares them on random frames. Whatever this code cannot represent
 * in 64-bit integers (offsets or arrival times near 2**63, a buffer that is not bytes) it hands to the Python
 * implementation, so the two never differ in what they accept.
 *
 * Record layout (big-endian), see framing.py: offset delta u32, arrival delta u32, pk len u16, ehk len u8,
 * data len u32, then partition key, explicit hash key, data.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* framing.py defines the frame layout; the module exports these and tests/storage/test_layout.py checks them. */
#define HEADER_SIZE 37
#define REC_SIZE 15
#define SEQ_DIGITS 64 /* a sequence number has 41 digits; room for any id_base a caller may pass */

static PyTypeObject *record_type = NULL;        /* models.Record */
static PyTypeObject *stored_record_type = NULL; /* framing.StoredRecord */
static PyObject *py_decode_into = NULL;         /* framing._py_decode_into, for what 64 bits cannot hold */

static inline uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline uint16_t be16(const unsigned char *p) { return (uint16_t)(((uint16_t)p[0] << 8) | (uint16_t)p[1]); }

/* A tuple subclass of n items with no instance fields (a NamedTuple): what tuple.__new__(cls, items) makes. */
static int check_namedtuple(PyObject *cls, Py_ssize_t fields, const char *what) {
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type)) {
        PyErr_Format(PyExc_TypeError, "%s must be a tuple subclass", what);
        return -1;
    }
    PyTypeObject *t = (PyTypeObject *)cls;
    if (t->tp_basicsize != PyTuple_Type.tp_basicsize || t->tp_itemsize != PyTuple_Type.tp_itemsize) {
        PyErr_Format(PyExc_TypeError, "%s must have no fields beyond its items (a NamedTuple)", what);
        return -1;
    }
    PyObject *names = PyObject_GetAttrString(cls, "_fields");
    if (names == NULL) {
        return -1;
    }
    Py_ssize_t n = PyTuple_Check(names) ? PyTuple_GET_SIZE(names) : -1;
    Py_DECREF(names);
    if (n != fields) {
        PyErr_Format(PyExc_TypeError, "%s must have %zd fields", what, fields);
        return -1;
    }
    return 0;
}

static PyObject *configure(PyObject *module, PyObject *args) {
    PyObject *rec, *stored, *fallback;
    if (!PyArg_ParseTuple(args, "OOO:configure", &rec, &stored, &fallback)) {
        return NULL;
    }
    if (check_namedtuple(rec, 5, "Record") < 0 || check_namedtuple(stored, 5, "StoredRecord") < 0) {
        return NULL;
    }
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "the fallback decoder must be callable");
        return NULL;
    }
    Py_INCREF(rec);
    Py_INCREF(stored);
    Py_INCREF(fallback);
    Py_XSETREF(record_type, (PyTypeObject *)rec);
    Py_XSETREF(stored_record_type, (PyTypeObject *)stored);
    Py_XSETREF(py_decode_into, fallback);
    Py_RETURN_NONE;
}

/* Sequence numbers of consecutive offsets differ in their last digits only: keep the decimal digits of the last
 * one and count up in place, instead of converting a 136-bit integer to decimal for every record. */
typedef struct {
    PyObject *id_base;
    char digits[SEQ_DIGITS];
    Py_ssize_t len; /* 0: nothing cached */
    long long offset;
} SeqCache;

static PyObject *seq_string(SeqCache *c, long long offset) {
    if (c->len > 0 && offset == c->offset + 1) {
        Py_ssize_t i = c->len - 1;
        while (i >= 0 && c->digits[i] == '9') {
            c->digits[i] = '0';
            i--;
        }
        if (i >= 0) {
            c->digits[i]++;
            c->offset = offset;
            PyObject *s = PyUnicode_New(c->len, 127);
            if (s != NULL) {
                memcpy(PyUnicode_1BYTE_DATA(s), c->digits, (size_t)c->len);
            }
            return s;
        }
        c->len = 0; /* one more digit: convert afresh */
    }
    PyObject *off = PyLong_FromLongLong(offset);
    if (off == NULL) {
        return NULL;
    }
    PyObject *sum = PyNumber_Add(c->id_base, off);
    Py_DECREF(off);
    if (sum == NULL) {
        return NULL;
    }
    PyObject *s = PyObject_Str(sum);
    Py_DECREF(sum);
    if (s == NULL) {
        return NULL;
    }
    c->len = 0;
    if (PyUnicode_IS_ASCII(s) && PyUnicode_GET_LENGTH(s) < SEQ_DIGITS) {
        const char *d = (const char *)PyUnicode_1BYTE_DATA(s);
        Py_ssize_t n = PyUnicode_GET_LENGTH(s);
        int digits_only = n > 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            digits_only &= d[i] >= '0' && d[i] <= '9';
        }
        if (digits_only) { /* (a negative id_base is converted afresh every time) */
            memcpy(c->digits, d, (size_t)n);
            c->len = n;
            c->offset = offset;
        }
    }
    return s;
}

static int as_ll(PyObject *v, long long *out) {
    if (!PyLong_Check(v)) {
        return 0;
    }
    int overflow = 0;
    *out = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || (*out == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* Whether the frame header at pos and all count records after it lie inside the buffer (checked before anything is
 * decoded, so a frame that does not is left whole to the Python code). */
static int records_fit(const unsigned char *data, Py_ssize_t size, long long pos, long long count) {
    if (pos < 0 || pos > (long long)size - HEADER_SIZE) {
        return 0;
    }
    Py_ssize_t p = (Py_ssize_t)pos + HEADER_SIZE;
    for (long long i = 0; i < count; i++) {
        if (p > size - REC_SIZE) {
            return 0;
        }
        const unsigned char *r = data + p;
        Py_ssize_t body = (Py_ssize_t)be16(r + 8) + (Py_ssize_t)r[10] + (Py_ssize_t)be32(r + 11);
        p += REC_SIZE;
        if (body > size - p) {
            return 0;
        }
        p += body;
    }
    return 1;
}

static PyObject *fallback(PyObject *const *args, Py_ssize_t nargs) {
    if (py_decode_into == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_speedups.configure was not called");
        return NULL;
    }
    return PyObject_Vectorcall(py_decode_into, args, (size_t)nargs, NULL);
}

/* decode_into(out, buf, pos, header, start, stop, max_records, max_bytes, id_base, encryption)
 * -> (bytes of key + data added, offset after the last record added, whether a limit was reached) */
static PyObject *decode_into(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 10) {
        PyErr_Format(PyExc_TypeError, "decode_into takes 10 arguments, got %zd", nargs);
        return NULL;
    }
    if (record_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_speedups.configure was not called");
        return NULL;
    }
    PyObject *out = args[0], *buf = args[1], *header = args[3], *id_base = args[8], *encryption = args[9];
    long long pos, start, stop, max_records, max_bytes, base, count, arrival;
    if (!PyList_CheckExact(out) || !PyBytes_CheckExact(buf) || !PyTuple_Check(header) ||
        PyTuple_GET_SIZE(header) < 4 || !as_ll(args[2], &pos) || !as_ll(args[4], &start) ||
        !as_ll(args[5], &stop) || !as_ll(args[6], &max_records) || !as_ll(args[7], &max_bytes) ||
        !as_ll(PyTuple_GET_ITEM(header, 0), &base) || !as_ll(PyTuple_GET_ITEM(header, 2), &count) ||
        !as_ll(PyTuple_GET_ITEM(header, 3), &arrival) || base < 0 || count < 0 ||
        base > LLONG_MAX - count - ((long long)UINT32_MAX + 1) || arrival < 0 ||
        arrival > LLONG_MAX - (long long)UINT32_MAX || (id_base != Py_None && !PyLong_Check(id_base))) {
        return fallback(args, nargs); /* anything outside 64 bits, or an unusual type: the reference code */
    }
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(buf);
    Py_ssize_t size = PyBytes_GET_SIZE(buf);
    if (!records_fit(data, size, pos, count)) {
        return fallback(args, nargs); /* (not a frame a CRC passed: the reference code says what goes wrong) */
    }
    PyTypeObject *type = id_base == Py_None ? stored_record_type : record_type;
    SeqCache seq = {id_base, {0}, 0, 0};
    Py_ssize_t p = (Py_ssize_t)pos + HEADER_SIZE;
    long long used = 0, nxt = start;
    int full = 0;
    PyObject *f[5] = {NULL, NULL, NULL, NULL, NULL};
    /* When every field is a str, int, bytes or None, a record can never be part of a reference cycle: leave it out
     * of the cyclic GC, as CPython does for plain tuples of such values (a NamedTuple is not a plain tuple, so it
     * would stay tracked, and every collection would walk every record a caller still holds). */
    int untrack = type == stored_record_type || encryption == Py_None || PyUnicode_CheckExact(encryption);
    for (long long i = 0; i < count; i++) {
        const unsigned char *r = data + p;
        long long offset = base + (long long)be32(r);
        long long arrival_ms = arrival + (long long)be32(r + 4);
        Py_ssize_t pk_len = be16(r + 8), ehk_len = r[10], data_len = (Py_ssize_t)be32(r + 11);
        p += REC_SIZE;
        if (offset < start) {
            p += pk_len + ehk_len + data_len;
            continue;
        }
        if (offset >= stop) {
            break;
        }
        long long rec_size = (long long)pk_len + (long long)data_len;
        Py_ssize_t have = PyList_GET_SIZE(out);
        if (have > 0 && (used + rec_size > max_bytes || have >= max_records)) {
            nxt = offset;
            full = 1;
            break;
        }
        const char *pk_ptr = (const char *)data + p;
        const char *ehk_ptr = pk_ptr + pk_len;
        const char *data_ptr = ehk_ptr + ehk_len;
        /* The record's fields in tuple order, made one at a time; on a failure the ones made so far are freed. */
        f[0] = f[1] = f[2] = f[3] = f[4] = NULL;
        if (type == record_type) { /* (sequence number, arrival, data, partition key, encryption) */
            if (!(f[0] = seq_string(&seq, offset)) || !(f[1] = PyLong_FromLongLong(arrival_ms)) ||
                !(f[2] = PyBytes_FromStringAndSize(data_ptr, data_len)) ||
                !(f[3] = PyUnicode_DecodeUTF8(pk_ptr, pk_len, NULL))) {
                goto fail;
            }
            f[4] = Py_NewRef(encryption);
        } else { /* (offset, arrival, partition key, explicit hash key or None, data) */
            if (!(f[0] = PyLong_FromLongLong(offset)) || !(f[1] = PyLong_FromLongLong(arrival_ms)) ||
                !(f[2] = PyUnicode_DecodeUTF8(pk_ptr, pk_len, NULL)) ||
                !(f[3] = ehk_len ? PyUnicode_DecodeUTF8(ehk_ptr, ehk_len, NULL) : Py_NewRef(Py_None)) ||
                !(f[4] = PyBytes_FromStringAndSize(data_ptr, data_len))) {
                goto fail;
            }
        }
        PyObject *rec = type->tp_alloc(type, 5);
        if (rec == NULL) {
            goto fail;
        }
        for (int k = 0; k < 5; k++) {
            PyTuple_SET_ITEM(rec, k, f[k]);
        }
        if (untrack) {
            PyObject_GC_UnTrack(rec);
        }
        int err = PyList_Append(out, rec);
        Py_DECREF(rec);
        if (err < 0) {
            return NULL;
        }
        used += rec_size;
        nxt = offset + 1;
        p += pk_len + ehk_len + data_len;
        if (PyList_GET_SIZE(out) >= max_records) {
            full = 1;
            break;
        }
    }
    return Py_BuildValue("(LLO)", used, nxt, full ? Py_True : Py_False);
fail:
    for (int k = 0; k < 5; k++) {
        Py_XDECREF(f[k]);
    }
    return NULL;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(Record, StoredRecord, fallback): the record types to build and the Python decoder to defer to."},
    {"decode_into", (PyCFunction)(void (*)(void))decode_into, METH_FASTCALL,
     "decode_into(out, buf, pos, header, start, stop, max_records, max_bytes, id_base, encryption): "
     "framing.decode_into, compiled."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_speedups",
    .m_doc = "The read path's record decoder, compiled.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__speedups(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "HEADER_SIZE", HEADER_SIZE) < 0 ||
        PyModule_AddIntConstant(m, "REC_SIZE", REC_SIZE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
