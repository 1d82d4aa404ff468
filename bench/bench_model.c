/* bench_model.c — `ufb bench model`: end-to-end sequences/s and latency of whole models.
 *
 *   ufb bench model --model DIR [--model DIR2 ...] [--seq 16,128] [--batch 1,32]
 *                   [--threads 2] [--runs 5] [--min-time 1] [--kernel K] [--json]
 *
 * Uses only the public engine API (engine.h): each model is loaded once; for every thread
 * count one pinned ufb_pool is shared by one ufb_ctx per model. For each grid point
 * (threads, seq, batch) every model runs in turn on the same batch of `batch` random token
 * sequences of `seq` ids (no padding, no tokenizer): one warm-up forward call, then timed calls
 * until at least --runs calls and --min-time seconds. Reported per model and point: the median
 * latency of one forward call (p50_ms, the whole batch), sequences/s = batch / p50, and p90.
 * Models are interleaved per point so that the ratios between them come from the same minutes
 * of this (noisy) machine. OpenBLAS, which runs the attention products, is set to one thread:
 * the pool is the parallelism (as in the server). `bench/e2e_peers.py` writes the same JSON
 * shape for ONNX Runtime and PyTorch.
 */
#include "bench.h"
#include "engine.h"

#include <jansson.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern void openblas_set_num_threads(int n);
extern char *openblas_get_corename(void);
extern char *openblas_get_config(void);

#define MAX_MODELS 4
#define MAX_LIST   8
#define MAX_RUNS   1000

typedef struct opts {
    const char *models[MAX_MODELS];
    int n_models;
    int seqs[MAX_LIST], n_seqs;
    int batches[MAX_LIST], n_batches;
    int threads[MAX_LIST], n_threads;
    int runs;
    double min_time;
    enum ufb_kernel kernel;
    int json;
} opts;

typedef struct point {
    double p50_ms, p90_ms, min_ms;
    int runs;
    double phase_us[UFB_N_PHASES]; /* mean µs per token and layer in each phase of the engine */
} point;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---- Arguments ---- */

static int parse_list(const char *s, int *out, int cap, int max) {
    int n = 0;
    while (*s && n < cap) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > max) return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
    }
    return *s ? -1 : n;
}

static int parse_args(opts *o, int argc, char **argv) {
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    *o = (opts){.runs = 5, .min_time = 1.0, .kernel = UFB_KERNEL_AUTO};
    o->n_seqs = parse_list("16,128", o->seqs, MAX_LIST, 1 << 16);
    o->n_batches = parse_list("1,32", o->batches, MAX_LIST, 1 << 16);
    o->threads[0] = ncpu > 0 ? (int)ncpu : 1, o->n_threads = 1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) {
            o->json = 1;
            continue;
        }
        if (!v) return -1;
        i++;
        if (!strcmp(a, "--model") && o->n_models < MAX_MODELS)
            o->models[o->n_models++] = v;
        else if (!strcmp(a, "--seq"))
            o->n_seqs = parse_list(v, o->seqs, MAX_LIST, 1 << 16);
        else if (!strcmp(a, "--batch"))
            o->n_batches = parse_list(v, o->batches, MAX_LIST, 1 << 16);
        else if (!strcmp(a, "--threads"))
            o->n_threads = parse_list(v, o->threads, MAX_LIST, 1024);
        else if (!strcmp(a, "--runs"))
            o->runs = atoi(v);
        else if (!strcmp(a, "--min-time"))
            o->min_time = atof(v);
        else if (!strcmp(a, "--kernel")) {
            if (ufb_kernel_parse(v, &o->kernel)) return -1;
        } else
            return -1;
    }
    return o->n_models > 0 && o->n_seqs > 0 && o->n_batches > 0 && o->n_threads > 0 &&
                   o->runs >= 1 && o->runs <= MAX_RUNS && o->min_time >= 0 && o->min_time <= 600
               ? 0
               : -1;
}

/* ---- Timing ---- */

/* The first n CPUs of this process's affinity mask, for pinning; @return 0, or -1 when there
 * are fewer (the pool then runs unpinned). */
static int first_cpus(int *cpus, int n) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
    for (int c = 0, k = 0; c < CPU_SETSIZE && k < n; c++)
        if (CPU_ISSET(c, &set)) {
            cpus[k++] = c;
            if (k == n) return 0;
        }
    return -1;
}

/* Random ids in [0, vocab): batch sequences of seq tokens each, stored back to back. */
static void fill_ids(int32_t *ids, size_t n, int vocab, uint64_t seed) {
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        ids[i] = (int32_t)((s >> 33) % (uint64_t)vocab);
    }
}

/* @return 0, or the ufb_forward status. */
static int time_point(ufb_ctx *ctx, int n_layers, float *logits, const ufb_seq *seqs, int batch,
                      const opts *o, point *pt) {
    static double t[MAX_RUNS];
    int rc = ufb_forward(ctx, logits, NULL, seqs, batch); /* warm-up */
    int n = 0;
    ufb_ctx_reset_phase_times(ctx);
    double start = now();
    while (!rc && n < MAX_RUNS && (n < o->runs || now() - start < o->min_time)) {
        double t0 = now();
        rc = ufb_forward(ctx, logits, NULL, seqs, batch);
        t[n++] = (now() - t0) * 1e3;
    }
    if (rc) return rc;
    qsort(t, (size_t)n, sizeof(double), cmp_double);
    *pt = (point){.p50_ms = t[n / 2], .p90_ms = t[(n * 9) / 10], .min_ms = t[0], .runs = n};
    double ph[UFB_N_PHASES];
    ufb_ctx_phase_times(ctx, ph);
    double token_layers = 0;
    for (int b = 0; b < batch; b++)
        token_layers += (double)seqs[b].n * n * n_layers;
    for (int i = 0; i < UFB_N_PHASES; i++)
        pt->phase_us[i] = ph[i] * 1e6 / token_layers;
    return 0;
}

/* ---- Output ---- */

static const char *engine_name(const ufb_model *m) {
    return ufb_model_info_get(m)->ff_kind == UFB_FF_FFF ? "ufb_fff" : "ufb_dense";
}

static json_t *model_json(const ufb_model *m, const char *dir) {
    const ufb_model_info *in = ufb_model_info_get(m);
    json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:I}", "engine", engine_name(m),
                          "dir", dir, "ff", in->ff_kind == UFB_FF_FFF ? "fff" : "dense", "layers",
                          in->n_layers, "hidden", in->hidden, "heads", in->n_heads, "intermediate",
                          in->intermediate, "params", (json_int_t)in->n_params);
    if (j && in->ff_kind == UFB_FF_FFF) {
        json_object_set_new(j, "fff_depth", json_integer(in->fff_depth));
        json_object_set_new(j, "fff_trees", json_integer(in->fff_trees));
    }
    return j;
}

static json_t *int_array(const int *v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_integer(v[i]));
    return a;
}

static json_t *header_json(const opts *o, ufb_model *const *models, const char *kernel) {
    const char *ct = getenv("OPENBLAS_CORETYPE");
    json_t *root = json_object(), *ms = json_array();
    json_object_set_new(root, "bench", json_string("model"));
    json_object_set_new(root, "config",
                        json_pack("{s:o, s:o, s:o, s:i, s:f}", "seq", int_array(o->seqs, o->n_seqs),
                                  "batch", int_array(o->batches, o->n_batches), "threads",
                                  int_array(o->threads, o->n_threads), "runs", o->runs,
                                  "min_time_s", o->min_time));
    json_object_set_new(root, "openblas",
                        json_pack("{s:s, s:s, s:s?, s:i}", "core", openblas_get_corename(),
                                  "config", openblas_get_config(), "coretype_env", ct, "threads",
                                  1));
    json_object_set_new(root, "kernel", json_string(kernel));
    for (int i = 0; i < o->n_models; i++)
        json_array_append_new(ms, model_json(models[i], o->models[i]));
    json_object_set_new(root, "models", ms);
    json_object_set_new(root, "results", json_array());
    return root;
}

static json_t *point_json(const char *engine, int threads, int seq, int batch, const point *p) {
    json_t *ph = json_object();
    for (int i = 0; i < UFB_N_PHASES; i++)
        json_object_set_new(ph, ufb_phase_name((enum ufb_phase)i), json_real(p->phase_us[i]));
    json_t *j =
        json_pack("{s:s, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:i}", "engine", engine, "threads",
                  threads, "seq", seq, "batch", batch, "seqs_per_s", batch * 1e3 / p->p50_ms,
                  "tokens_per_s", (double)batch * seq * 1e3 / p->p50_ms, "p50_ms", p->p50_ms,
                  "p90_ms", p->p90_ms, "min_ms", p->min_ms, "runs", p->runs);
    json_object_set_new(j, "phase_us_per_token_layer", ph);
    return j;
}

/* base_p50 > 0: also print how many times faster the first model ran this point */
static void print_point(const char *engine, int threads, int seq, int batch, const point *p,
                        double base_p50) {
    printf("  %-10s %7d %5d %5d %12.1f %10.2f %10.2f %5d", engine, threads, seq, batch,
           batch * 1e3 / p->p50_ms, p->p50_ms, p->p90_ms, p->runs);
    if (base_p50 > 0) printf("   %5.2fx", p->p50_ms / base_p50);
    printf("\n  %10s us per token-layer:", "");
    for (int i = 0; i < UFB_N_PHASES; i++)
        printf(" %s %.2f", ufb_phase_name((enum ufb_phase)i), p->phase_us[i]);
    printf("\n");
}

/* ---- Main ---- */

typedef struct run_state {
    ufb_model *models[MAX_MODELS];
    ufb_ctx *ctx[MAX_MODELS];
    ufb_pool *pool;
    int32_t *ids;
    ufb_seq *seqs;
    float *logits;
    json_t *root;
} run_state;

static void usage(void) {
    fprintf(stderr, "usage: ufb bench model --model DIR [--model DIR2 ...] [--seq 16,128] "
                    "[--batch 1,32] [--threads N[,M]] [--runs 5] [--min-time 1] "
                    "[--kernel auto|scalar|avx2|avx512] [--json]\n");
}

/* One thread count: a pool, a ctx per model, then every (seq, batch) point for every model.
 * @return 0, or an exit code. */
static int run_threads(run_state *st, const opts *o, int threads, int max_tokens) {
    int cpus[1024];
    st->pool =
        threads > 1 ? ufb_pool_create(threads, first_cpus(cpus, threads) ? NULL : cpus) : NULL;
    if (threads > 1 && !st->pool) {
        fprintf(stderr, "ufb bench model: cannot create a pool of %d threads\n", threads);
        return 1;
    }
    for (int m = 0; m < o->n_models; m++) {
        ufb_ctx_params cp = {.max_tokens = max_tokens, .kernel = o->kernel, .pool = st->pool};
        if (!(st->ctx[m] = ufb_ctx_create(st->models[m], &cp))) {
            fprintf(stderr, "ufb bench model: out of memory or kernel unsupported\n");
            return 1;
        }
    }
    for (int si = 0; si < o->n_seqs; si++)
        for (int bi = 0; bi < o->n_batches; bi++) {
            int seq = o->seqs[si], batch = o->batches[bi];
            double base = 0;
            for (int m = 0; m < o->n_models; m++) {
                int vocab = ufb_model_info_get(st->models[m])->vocab_size;
                fill_ids(st->ids, (size_t)seq * batch, vocab, (uint64_t)seq * 1000 + batch);
                for (int b = 0; b < batch; b++)
                    st->seqs[b] = (ufb_seq){.ids = st->ids + (size_t)b * seq, .n = seq};
                point p;
                int rc = time_point(st->ctx[m], ufb_model_info_get(st->models[m])->n_layers,
                                    st->logits, st->seqs, batch, o, &p);
                if (rc) {
                    fprintf(stderr, "ufb bench model: %s: forward failed: %s\n", o->models[m],
                            ufb_status_str(rc));
                    return 3;
                }
                const char *e = engine_name(st->models[m]);
                json_array_append_new(json_object_get(st->root, "results"),
                                      point_json(e, threads, seq, batch, &p));
                if (!o->json) print_point(e, threads, seq, batch, &p, base);
                if (m == 0) base = p.p50_ms;
                fflush(stdout);
            }
        }
    for (int m = 0; m < o->n_models; m++)
        ufb_ctx_free(st->ctx[m]), st->ctx[m] = NULL;
    ufb_pool_free(st->pool), st->pool = NULL;
    return 0;
}

int ufb_bench_model_main(int argc, char **argv) {
    opts o;
    if (parse_args(&o, argc, argv)) {
        usage();
        return 2;
    }
    openblas_set_num_threads(1); /* the pool is the parallelism (as in the server) */
    run_state st = {0};
    int rc = 1, max_seq = 0, max_batch = 0, max_outputs = 1;
    char err[512];
    for (int m = 0; m < o.n_models; m++) {
        if (!(st.models[m] = ufb_model_load(o.models[m], NULL, err, sizeof err))) {
            fprintf(stderr, "ufb bench model: cannot load model '%s': %s\n", o.models[m], err);
            goto fail;
        }
        const ufb_model_info *in = ufb_model_info_get(st.models[m]);
        max_outputs = in->n_outputs > max_outputs ? in->n_outputs : max_outputs;
        if (in->head_kind == UFB_HEAD_MLM) max_outputs *= in->max_positions;
    }
    for (int i = 0; i < o.n_seqs; i++)
        max_seq = o.seqs[i] > max_seq ? o.seqs[i] : max_seq;
    for (int i = 0; i < o.n_batches; i++)
        max_batch = o.batches[i] > max_batch ? o.batches[i] : max_batch;
    st.ids = malloc(sizeof(int32_t) * (size_t)max_seq * max_batch);
    st.seqs = calloc((size_t)max_batch, sizeof *st.seqs);
    st.logits = malloc(sizeof(float) * (size_t)max_outputs * max_batch);
    enum ufb_kernel k = o.kernel == UFB_KERNEL_AUTO ? ufb_kernel_best() : o.kernel;
    st.root = header_json(&o, st.models, ufb_kernel_name(k));
    if (!st.ids || !st.seqs || !st.logits || !st.root) {
        fprintf(stderr, "ufb bench model: out of memory\n");
        goto fail;
    }
    if (!o.json) {
        const char *ct = getenv("OPENBLAS_CORETYPE");
        printf("end to end, %d model(s); CMM kernel %s; OpenBLAS core %s (OPENBLAS_CORETYPE %s), "
               "1 BLAS thread; median of >= %d runs and >= %.1f s per point\n",
               o.n_models, ufb_kernel_name(k), openblas_get_corename(), ct ? ct : "unset", o.runs,
               o.min_time);
        printf("  %-10s %7s %5s %5s %12s %10s %10s %5s   %s\n", "engine", "threads", "seq", "batch",
               "seqs/s", "p50_ms", "p90_ms", "runs", "first's speedup");
    }
    for (int ti = 0; ti < o.n_threads; ti++)
        if ((rc = run_threads(&st, &o, o.threads[ti], max_seq * max_batch))) goto fail;
    if (o.json) {
        json_dumpf(st.root, stdout, JSON_COMPACT | JSON_REAL_PRECISION(6));
        printf("\n");
    }
    rc = 0;
fail:
    for (int m = 0; m < MAX_MODELS; m++)
        ufb_ctx_free(st.ctx[m]), ufb_model_free(st.models[m]);
    ufb_pool_free(st.pool);
    free(st.ids), free(st.seqs), free(st.logits);
    json_decref(st.root);
    return rc;
}
