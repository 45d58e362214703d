/* Inner products of int8 rows with 1..N int8 queries, at memory bandwidth (service/vectorstore/int8.py).
 *
 * scan(codes, row_scales, row_sums, queries, query_scales, out, n, dim, q, threads, isa)
 *   codes        int8    (n, dim)  per-row symmetric codes, C order
 *   row_scales   float32 (n,)      row i ~ row_scales[i] * codes[i]
 *   row_sums     int32   (n,)      sum of codes[i] (for the unsigned-query correction below)
 *   queries      uint8   (q, dim)  query codes shifted by +128 (qhat + 128, qhat in [-127, 127])
 *   query_scales float32 (q,)
 *   out          float32 (q, n)    out[j, i] = query_scales[j] * row_scales[i] * (qhat_j . codes_i)
 * The integer dot product is exact (int32: |qhat . xhat| <= dim * 127 * 127, dim < 2^17): with the
 * query shifted to unsigned, sum (qhat + 128) x = qhat . x + 128 sum x, so qhat . x = that - 128 row_sum.
 * quantize(rows, codes, scales, sums, errors, n, dim, threads): float32 rows (n, dim) -> int8 codes
 *   round(x / s) with s = max|x| / 127 (float32), their sums, and an upper bound on |x - s codes| per row
 *   (computed in double, exact products; rounded up to float32 with a relative margin of 1e-9).
 * Rows are split across `threads` pthreads (the caller passes its configured thread count).
 * isa: 0 = best this CPU runs (AVX-512 VNNI, else AVX2, else plain C), 1 = plain C, 2 = AVX2,
 * 3 = AVX-512 VNNI; a forced isa the CPU lacks is a ValueError. isa() names the best one.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const int8_t *codes;
    const float *row_scales;
    const int32_t *row_sums;
    const uint8_t *queries;
    const float *query_scales;
    float *out;
    Py_ssize_t n, dim, q, start, stop;
    /* quantize */
    const float *rows;
    int8_t *codes_out;
    float *scales_out, *errors_out;
    int32_t *sums_out;
} Job;

enum { ISA_AUTO = 0, ISA_C = 1, ISA_AVX2 = 2, ISA_VNNI = 3 };

static inline float finish(const Job *job, Py_ssize_t row, Py_ssize_t query, int64_t shifted) {
    int64_t dot = shifted - 128 * (int64_t)job->row_sums[row];
    return (float)dot * job->query_scales[query] * job->row_scales[row];
}

static void scan_c(const Job *job) {
    for (Py_ssize_t i = job->start; i < job->stop; i++) {
        const int8_t *x = job->codes + i * job->dim;
        for (Py_ssize_t j = 0; j < job->q; j++) {
            const uint8_t *u = job->queries + j * job->dim;
            int64_t acc = 0;
            for (Py_ssize_t d = 0; d < job->dim; d++) acc += (int32_t)u[d] * (int32_t)x[d];
            job->out[j * job->n + i] = finish(job, i, j, acc);
        }
    }
}

__attribute__((target("avx2"))) static inline int32_t hsum256(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* AVX2: widen both to int16 and multiply-add pairs into int32 (exact; maddubs would saturate). */
__attribute__((target("avx2"))) static void scan_avx2(const Job *job) {
    const Py_ssize_t dim = job->dim, body = dim - dim % 16;
    for (Py_ssize_t i = job->start; i < job->stop; i++) {
        const int8_t *x = job->codes + i * dim;
        for (Py_ssize_t j = 0; j < job->q; j++) {
            const uint8_t *u = job->queries + j * dim;
            __m256i acc = _mm256_setzero_si256();
            for (Py_ssize_t d = 0; d < body; d += 16) {
                __m256i xv = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(x + d)));
                __m256i uv = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(u + d)));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(xv, uv));
            }
            int64_t total = hsum256(acc);
            for (Py_ssize_t d = body; d < dim; d++) total += (int32_t)u[d] * (int32_t)x[d];
            job->out[j * job->n + i] = finish(job, i, j, total);
        }
    }
}

#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vnni")))

/* AVX-512 VNNI: vpdpbusd (u8 x s8, four products summed into each int32 lane), four rows at a time so
 * that each query chunk is loaded once per four rows; the rows stream from memory once per scan (the
 * next four prefetched) and are re-read from L1 for the other queries. */
VNNI_TARGET static void scan_vnni(const Job *job) {
    const Py_ssize_t dim = job->dim, body = dim - dim % 64;
    const __mmask64 tail = dim % 64 ? (~0ULL >> (64 - dim % 64)) : 0;
    const Py_ssize_t ahead = 4 * dim; /* software prefetch distance: 10% less CPU per pass, measured */
    Py_ssize_t i = job->start;
    for (; i + 4 <= job->stop; i += 4) {
        const int8_t *x0 = job->codes + i * dim, *x1 = x0 + dim, *x2 = x1 + dim, *x3 = x2 + dim;
        for (Py_ssize_t j = 0; j < job->q; j++) {
            const uint8_t *u = job->queries + j * dim;
            __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
            for (Py_ssize_t d = 0; d < body; d += 64) {
                __m512i uv = _mm512_loadu_si512(u + d);
                if (j == 0) { /* the next four rows (never faults past the end) */
                    _mm_prefetch((const char *)(x0 + ahead + d), _MM_HINT_T0);
                    _mm_prefetch((const char *)(x1 + ahead + d), _MM_HINT_T0);
                    _mm_prefetch((const char *)(x2 + ahead + d), _MM_HINT_T0);
                    _mm_prefetch((const char *)(x3 + ahead + d), _MM_HINT_T0);
                }
                a0 = _mm512_dpbusd_epi32(a0, uv, _mm512_loadu_si512(x0 + d));
                a1 = _mm512_dpbusd_epi32(a1, uv, _mm512_loadu_si512(x1 + d));
                a2 = _mm512_dpbusd_epi32(a2, uv, _mm512_loadu_si512(x2 + d));
                a3 = _mm512_dpbusd_epi32(a3, uv, _mm512_loadu_si512(x3 + d));
            }
            if (tail) {
                __m512i uv = _mm512_maskz_loadu_epi8(tail, u + body);
                a0 = _mm512_dpbusd_epi32(a0, uv, _mm512_maskz_loadu_epi8(tail, x0 + body));
                a1 = _mm512_dpbusd_epi32(a1, uv, _mm512_maskz_loadu_epi8(tail, x1 + body));
                a2 = _mm512_dpbusd_epi32(a2, uv, _mm512_maskz_loadu_epi8(tail, x2 + body));
                a3 = _mm512_dpbusd_epi32(a3, uv, _mm512_maskz_loadu_epi8(tail, x3 + body));
            }
            float *o = job->out + j * job->n + i;
            o[0] = finish(job, i, j, _mm512_reduce_add_epi32(a0));
            o[1] = finish(job, i + 1, j, _mm512_reduce_add_epi32(a1));
            o[2] = finish(job, i + 2, j, _mm512_reduce_add_epi32(a2));
            o[3] = finish(job, i + 3, j, _mm512_reduce_add_epi32(a3));
        }
    }
    for (; i < job->stop; i++) {
        const int8_t *x = job->codes + i * dim;
        for (Py_ssize_t j = 0; j < job->q; j++) {
            const uint8_t *u = job->queries + j * dim;
            __m512i a = _mm512_setzero_si512();
            for (Py_ssize_t d = 0; d < body; d += 64)
                a = _mm512_dpbusd_epi32(a, _mm512_loadu_si512(u + d), _mm512_loadu_si512(x + d));
            if (tail)
                a = _mm512_dpbusd_epi32(a, _mm512_maskz_loadu_epi8(tail, u + body),
                                        _mm512_maskz_loadu_epi8(tail, x + body));
            job->out[j * job->n + i] = finish(job, i, j, _mm512_reduce_add_epi32(a));
        }
    }
}

static void quantize_rows(const Job *job) {
    const Py_ssize_t dim = job->dim;
    for (Py_ssize_t i = job->start; i < job->stop; i++) {
        const float *x = job->rows + i * dim;
        int8_t *c = job->codes_out + i * dim;
        float amax = 0.0f;
        for (Py_ssize_t d = 0; d < dim; d++) amax = fmaxf(amax, fabsf(x[d]));
        float scale = amax / 127.0f;
        int32_t sum = 0;
        double error = 0.0;
        if (scale > 0.0f) {
            for (Py_ssize_t d = 0; d < dim; d++) {
                float v = nearbyintf(x[d] / scale);
                v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
                c[d] = (int8_t)v;
                sum += (int32_t)v;
                double e = (double)x[d] - (double)scale * (double)v; /* the product is exact in double */
                error += e * e;
            }
        } else {
            memset(c, 0, (size_t)dim);
        }
        job->scales_out[i] = scale;
        job->sums_out[i] = sum;
        /* double rounding of the squares, sum and sqrt: far below 1e-9 relative for dim < 2^17 */
        job->errors_out[i] = nextafterf((float)(sqrt(error) * (1.0 + 1e-9)), INFINITY);
    }
}

static int cpu_has(int isa) {
    __builtin_cpu_init();
    switch (isa) {
    case ISA_C: return 1;
    case ISA_AVX2: return __builtin_cpu_supports("avx2");
    case ISA_VNNI:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vnni");
    default: return 0;
    }
}

static int best_isa(void) { return cpu_has(ISA_VNNI) ? ISA_VNNI : cpu_has(ISA_AVX2) ? ISA_AVX2 : ISA_C; }

typedef void (*Kernel)(const Job *);

typedef struct {
    Kernel kernel;
    Job job;
} Task;

static void *run_task(void *arg) {
    Task *task = (Task *)arg;
    task->kernel(&task->job);
    return NULL;
}

#define MAX_THREADS 64
#define MIN_ROWS_PER_THREAD 2048 /* below this a thread costs more than it saves */

static void run(Kernel kernel, const Job *whole, int threads) {
    Py_ssize_t rows = whole->n;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads > rows / MIN_ROWS_PER_THREAD) threads = (int)(rows / MIN_ROWS_PER_THREAD);
    if (threads < 2) {
        kernel(whole);
        return;
    }
    Task tasks[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS];
    Py_ssize_t per = (rows + threads - 1) / threads;
    per = (per + 3) / 4 * 4; /* whole groups of four rows per thread */
    for (int t = 0; t < threads; t++) {
        tasks[t].kernel = kernel;
        tasks[t].job = *whole;
        tasks[t].job.start = t * per < rows ? t * per : rows;
        tasks[t].job.stop = (t + 1) * per < rows ? (t + 1) * per : rows;
    }
    /* thread 0's share runs here; a thread that cannot start runs its share here too */
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&ids[t], NULL, run_task, &tasks[t]) == 0;
    kernel(&tasks[0].job);
    for (int t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(ids[t], NULL);
        else
            kernel(&tasks[t].job);
    }
}

static int need(Py_buffer *buffer, Py_ssize_t bytes, const char *name) {
    if (buffer->len < bytes) {
        PyErr_Format(PyExc_ValueError, "%s holds %zd bytes, needs %zd", name, buffer->len, bytes);
        return 0;
    }
    return 1;
}

static PyObject *scan(PyObject *self, PyObject *args) {
    Py_buffer codes, row_scales, row_sums, queries, query_scales, out;
    Py_ssize_t n, dim, q;
    int threads, isa;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*w*nnnii", &codes, &row_scales, &row_sums, &queries,
                          &query_scales, &out, &n, &dim, &q, &threads, &isa))
        return NULL;
    PyObject *result = NULL;
    if (n < 0 || dim <= 0 || q < 0 || dim >= (1 << 17)) {
        PyErr_Format(PyExc_ValueError, "bad shape: n=%zd dim=%zd q=%zd", n, dim, q);
        goto done;
    }
    if (!need(&codes, n * dim, "codes") || !need(&row_scales, n * 4, "row_scales") ||
        !need(&row_sums, n * 4, "row_sums") || !need(&queries, q * dim, "queries") ||
        !need(&query_scales, q * 4, "query_scales") || !need(&out, q * n * 4, "out"))
        goto done;
    if (isa == ISA_AUTO) isa = best_isa();
    if (isa < ISA_C || isa > ISA_VNNI || !cpu_has(isa)) {
        PyErr_Format(PyExc_ValueError, "instruction set %d is not available on this CPU", isa);
        goto done;
    }
    Kernel kernel = isa == ISA_VNNI ? scan_vnni : isa == ISA_AVX2 ? scan_avx2 : scan_c;
    Job job = {codes.buf, row_scales.buf, row_sums.buf, queries.buf, query_scales.buf, out.buf,
               n, dim, q, 0, n};
    if (n > 0 && q > 0) {
        Py_BEGIN_ALLOW_THREADS run(kernel, &job, threads);
        Py_END_ALLOW_THREADS
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&codes);
    PyBuffer_Release(&row_scales);
    PyBuffer_Release(&row_sums);
    PyBuffer_Release(&queries);
    PyBuffer_Release(&query_scales);
    PyBuffer_Release(&out);
    return result;
}

static PyObject *quantize(PyObject *self, PyObject *args) {
    Py_buffer rows, codes, scales, sums, errors;
    Py_ssize_t n, dim;
    int threads;
    if (!PyArg_ParseTuple(args, "y*w*w*w*w*nni", &rows, &codes, &scales, &sums, &errors, &n, &dim, &threads))
        return NULL;
    PyObject *result = NULL;
    if (n < 0 || dim <= 0 || dim >= (1 << 17)) {
        PyErr_Format(PyExc_ValueError, "bad shape: n=%zd dim=%zd", n, dim);
        goto done;
    }
    if (!need(&rows, n * dim * 4, "rows") || !need(&codes, n * dim, "codes") ||
        !need(&scales, n * 4, "scales") || !need(&sums, n * 4, "sums") || !need(&errors, n * 4, "errors"))
        goto done;
    Job job = {0};
    job.n = n;
    job.dim = dim;
    job.stop = n;
    job.rows = rows.buf;
    job.codes_out = codes.buf;
    job.scales_out = scales.buf;
    job.sums_out = sums.buf;
    job.errors_out = errors.buf;
    if (n > 0) {
        Py_BEGIN_ALLOW_THREADS run(quantize_rows, &job, threads);
        Py_END_ALLOW_THREADS
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&rows);
    PyBuffer_Release(&codes);
    PyBuffer_Release(&scales);
    PyBuffer_Release(&sums);
    PyBuffer_Release(&errors);
    return result;
}

static PyObject *isa(PyObject *self, PyObject *args) {
    static const char *names[] = {"", "c", "avx2", "avx512vnni"};
    return PyUnicode_FromString(names[best_isa()]);
}

static PyObject *has(PyObject *self, PyObject *args) {
    int which;
    if (!PyArg_ParseTuple(args, "i", &which)) return NULL;
    return PyBool_FromLong(cpu_has(which));
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, "int8 rows x shifted uint8 queries -> float32 scores (see the file's header)"},
    {"quantize", quantize, METH_VARARGS, "float32 rows -> int8 codes, scales, sums, error bounds (see the header)"},
    {"isa", isa, METH_NOARGS, "the best instruction set this CPU runs: avx512vnni, avx2 or c"},
    {"has", has, METH_VARARGS, "whether this CPU runs instruction set 1 (c), 2 (avx2) or 3 (avx512vnni)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_int8scan", NULL, -1, methods};

PyMODINIT_FUNC PyInit__int8scan(void) { return PyModule_Create(&module); }
