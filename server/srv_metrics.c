/* srv_metrics.c — Prometheus metrics (text format 0.0.4), all named ufbd_*.
 *
 * Every series exists from start (zeros before the first request: a TEI complaint). Counters
 * and histogram buckets are relaxed atomics: they are only ever added to, and a scrape may
 * see a batch half-counted, which Prometheus tolerates. Histograms of durations are in
 * seconds with fixed buckets; sums are kept in integer micro-units to stay atomic.
 */
#include "srv_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 499: the client closed its connection before its answer (nginx's code; never sent) */
static const int statuses[] = {200, 400, 401, 404, 405, 413, 415, 422, 429, 499, 500, 503, 504};
#define N_STATUS ((int)(sizeof statuses / sizeof statuses[0]))

static const char *const error_types[] = {
    "Validation",           "Tokenizer", "Overloaded",       "Unhealthy",
    "Unauthorized",         "NotFound",  "MethodNotAllowed", "PayloadTooLarge",
    "UnsupportedMediaType", "Timeout",   "Internal"};
#define N_ERR_TYPES ((int)(sizeof error_types / sizeof error_types[0]))

#define MAX_BUCKETS 16

typedef struct hist {
    const char *name, *help;
    double bounds[MAX_BUCKETS];
    int n_bounds;
    double unit;                           /* sum stored as value / unit (integer) */
    atomic_ullong counts[MAX_BUCKETS + 1]; /* last: +Inf */
    atomic_ullong sum;
} hist;

enum { H_REQUEST, H_QUEUE, H_COMPUTE, H_BATCH_SIZE, H_BATCH_TOKENS, H_INPUT_TOKENS, N_HIST };

struct srv_metrics {
    const ufb_model *m;
    atomic_ullong requests[SRV_N_ROUTES][N_STATUS];
    atomic_ullong errors[N_ERR_TYPES];
    atomic_ullong inputs, tokens, batches, accepted, disconnects;
    atomic_bool enabled; /* off during warm-up, which is not traffic */
    atomic_ullong neurons_used, neurons_total, flops, flops_dense;
    hist h[N_HIST];
    atomic_uchar *leaf_seen; /* (layers, trees, leaves per tree): ever reached */
    int leaves_per_tree;
};

const char *srv_route_name(enum srv_route r) {
    static const char *const names[] = {"classify", "predict", "tokenize", "info", "health",
                                        "metrics",  "openapi", "page",     "other"};
    return r < SRV_N_ROUTES ? names[r] : "other";
}

static void hist_init(hist *h, const char *name, const char *help, double unit, int n, ...) {
    va_list ap;
    h->name = name, h->help = help, h->unit = unit, h->n_bounds = n;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        h->bounds[i] = va_arg(ap, double);
    va_end(ap);
}

static void hist_add(hist *h, double v) {
    int i = 0;
    while (i < h->n_bounds && v > h->bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, (unsigned long long)(v / h->unit + 0.5),
                              memory_order_relaxed);
}

srv_metrics *srv_metrics_create(const ufb_model *m) {
    srv_metrics *mt = calloc(1, sizeof *mt);
    if (!mt) return NULL;
    mt->m = m;
    const ufb_model_info *in = ufb_model_info_get(m);
    if (in->ff_kind == UFB_FF_FFF) {
        mt->leaves_per_tree = 1 << in->fff_depth;
        mt->leaf_seen = calloc((size_t)in->n_layers * in->fff_trees * mt->leaves_per_tree, 1);
        if (!mt->leaf_seen) {
            free(mt);
            return NULL;
        }
    }
    hist_init(&mt->h[H_REQUEST], "ufbd_request_duration_seconds",
              "Time from request arrival to response, inference routes", 1e-6, 12, 0.001, 0.0025,
              0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0);
    hist_init(&mt->h[H_QUEUE], "ufbd_queue_duration_seconds",
              "Time an input waited in the queue before compute", 1e-6, 10, 0.0001, 0.0005, 0.001,
              0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0);
    hist_init(&mt->h[H_COMPUTE], "ufbd_compute_duration_seconds", "Engine time of one batch", 1e-6,
              10, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.0);
    hist_init(&mt->h[H_BATCH_SIZE], "ufbd_batch_size", "Inputs per batch", 1, 9, 1.0, 2.0, 4.0, 8.0,
              16.0, 32.0, 64.0, 128.0, 256.0);
    hist_init(&mt->h[H_BATCH_TOKENS], "ufbd_batch_tokens", "Tokens per batch", 1, 9, 16.0, 64.0,
              128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 16384.0);
    hist_init(&mt->h[H_INPUT_TOKENS], "ufbd_input_tokens", "Tokens per input", 1, 8, 8.0, 16.0,
              32.0, 64.0, 128.0, 256.0, 512.0, 1024.0);
    return mt;
}

void srv_metrics_free(srv_metrics *mt) {
    if (!mt) return;
    free(mt->leaf_seen);
    free(mt);
}

void srv_metrics_request(srv_metrics *mt, enum srv_route r, int status, double total_s) {
    if (!mt) return;
    for (int i = 0; i < N_STATUS; i++)
        if (statuses[i] == status)
            atomic_fetch_add_explicit(&mt->requests[r][i], 1, memory_order_relaxed);
    if (r == SRV_ROUTE_CLASSIFY || r == SRV_ROUTE_PREDICT || r == SRV_ROUTE_TOKENIZE)
        hist_add(&mt->h[H_REQUEST], total_s);
}

void srv_metrics_enable(srv_metrics *mt) {
    atomic_store(&mt->enabled, true);
}

void srv_metrics_accepted(srv_metrics *mt, int n_inputs) {
    if (mt)
        atomic_fetch_add_explicit(&mt->accepted, (unsigned long long)n_inputs,
                                  memory_order_relaxed);
}

void srv_metrics_disconnect(srv_metrics *mt) {
    if (mt) atomic_fetch_add_explicit(&mt->disconnects, 1, memory_order_relaxed);
}

void srv_metrics_error(srv_metrics *mt, const char *type) {
    if (!mt) return;
    for (int i = 0; type && i < N_ERR_TYPES; i++)
        if (!strcmp(error_types[i], type))
            atomic_fetch_add_explicit(&mt->errors[i], 1, memory_order_relaxed);
}

void srv_metrics_batch(const srv_batch_stats *st, const srv_item *const *items, int n, void *arg) {
    srv_metrics *mt = arg;
    const ufb_model_info *in = ufb_model_info_get(mt->m);
    if (!atomic_load_explicit(&mt->enabled, memory_order_relaxed)) return;
    atomic_fetch_add_explicit(&mt->batches, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&mt->inputs, (unsigned long long)n, memory_order_relaxed);
    atomic_fetch_add_explicit(&mt->tokens, (unsigned long long)st->n_tokens, memory_order_relaxed);
    hist_add(&mt->h[H_COMPUTE], st->compute_s);
    hist_add(&mt->h[H_BATCH_SIZE], st->n_seqs);
    hist_add(&mt->h[H_BATCH_TOKENS], st->n_tokens);
    for (int i = 0; i < n; i++) {
        const ufb_seq_stats *s = &items[i]->stats;
        hist_add(&mt->h[H_QUEUE], items[i]->queue_ms * 1e-3);
        hist_add(&mt->h[H_INPUT_TOKENS], s->n_tokens);
        atomic_fetch_add_explicit(&mt->neurons_used, (unsigned long long)s->neurons_used,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&mt->neurons_total, (unsigned long long)s->neurons_total,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&mt->flops, (unsigned long long)s->ff_flops,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&mt->flops_dense, (unsigned long long)s->ff_flops_dense,
                                  memory_order_relaxed);
        if (!mt->leaf_seen || !s->leaves) continue;
        const int T = in->fff_trees, first_leaf = mt->leaves_per_tree - 1;
        for (int l = 0; l < in->n_layers; l++)
            for (int t = 0; t < s->n_tokens * T; t++) {
                int leaf = s->leaves[(size_t)l * s->n_tokens * T + t] - first_leaf;
                size_t at = ((size_t)l * T + t % T) * mt->leaves_per_tree + (size_t)leaf;
                atomic_store_explicit(&mt->leaf_seen[at], 1, memory_order_relaxed);
            }
    }
}

/* ---- Rendering ---- */

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static void out(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void out(buf *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = b->p ? vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap) : -1;
        va_end(ap);
        if (n >= 0 && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? 2 * b->cap : 16384;
        char *p = realloc(b->p, cap);
        if (!p) return; /* best effort: the scrape gets a shorter page */
        b->p = p, b->cap = cap;
    }
}

static unsigned long long get(atomic_ullong *a) {
    return atomic_load_explicit(a, memory_order_relaxed);
}

static void counter(buf *b, const char *name, const char *help, unsigned long long v) {
    out(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name, v);
}

static void gauge(buf *b, const char *name, const char *help, double v) {
    out(b, "# HELP %s %s\n# TYPE %s gauge\n%s %g\n", name, help, name, name, v);
}

static void render_hist(buf *b, hist *h) {
    unsigned long long cum = 0;
    out(b, "# HELP %s %s\n# TYPE %s histogram\n", h->name, h->help, h->name);
    for (int i = 0; i <= h->n_bounds; i++) {
        cum += get(&h->counts[i]);
        if (i < h->n_bounds)
            out(b, "%s_bucket{le=\"%g\"} %llu\n", h->name, h->bounds[i], cum);
        else
            out(b, "%s_bucket{le=\"+Inf\"} %llu\n", h->name, cum);
    }
    out(b, "%s_sum %.9g\n%s_count %llu\n", h->name, (double)get(&h->sum) * h->unit, h->name, cum);
}

static void render_requests(buf *b, srv_metrics *mt) {
    out(b, "# HELP ufbd_requests_total HTTP requests by route and status\n"
           "# TYPE ufbd_requests_total counter\n");
    for (int r = 0; r < SRV_N_ROUTES; r++)
        for (int s = 0; s < N_STATUS; s++) {
            unsigned long long v = get(&mt->requests[r][s]);
            if (v || statuses[s] == 200) /* the 200 series exist from start */
                out(b, "ufbd_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                    srv_route_name((enum srv_route)r), statuses[s], v);
        }
    out(b, "# HELP ufbd_errors_total Errors by type\n# TYPE ufbd_errors_total counter\n");
    for (int i = 0; i < N_ERR_TYPES; i++)
        out(b, "ufbd_errors_total{type=\"%s\"} %llu\n", error_types[i], get(&mt->errors[i]));
}

static void render_fff(buf *b, srv_metrics *mt) {
    const ufb_model_info *in = ufb_model_info_get(mt->m);
    counter(b, "ufbd_neurons_used_total", "FF neurons evaluated (tokens x layers x per token)",
            get(&mt->neurons_used));
    counter(b, "ufbd_neurons_available_total", "FF neurons a dense model would evaluate",
            get(&mt->neurons_total));
    counter(b, "ufbd_ff_flops_total", "FLOPs done in FF layers", get(&mt->flops));
    counter(b, "ufbd_ff_flops_dense_total", "FLOPs a dense FF of the same width would do",
            get(&mt->flops_dense));
    if (!mt->leaf_seen) return;
    out(b, "# HELP ufbd_fff_leaves_reached Distinct FFF leaves reached since start, per layer\n"
           "# TYPE ufbd_fff_leaves_reached gauge\n");
    const size_t per_layer = (size_t)in->fff_trees * mt->leaves_per_tree;
    for (int l = 0; l < in->n_layers; l++) {
        size_t n = 0;
        for (size_t i = 0; i < per_layer; i++)
            n += atomic_load_explicit(&mt->leaf_seen[l * per_layer + i], memory_order_relaxed);
        out(b, "ufbd_fff_leaves_reached{layer=\"%d\"} %zu\n", l, n);
    }
    gauge(b, "ufbd_fff_leaves_per_layer", "FFF leaves in each layer (all trees)",
          (double)per_layer);
}

char *srv_metrics_render(srv_metrics *mt, int queued, int busy, int workers, int in_flight,
                         bool ready) {
    const ufb_model_info *in = ufb_model_info_get(mt->m);
    buf b = {0};
    render_requests(&b, mt);
    counter(&b, "ufbd_inputs_accepted_total", "Inputs accepted into the queue", get(&mt->accepted));
    counter(&b, "ufbd_inputs_total", "Inputs computed", get(&mt->inputs));
    counter(&b, "ufbd_tokens_total", "Tokens computed", get(&mt->tokens));
    counter(&b, "ufbd_batches_total", "Batches computed", get(&mt->batches));
    counter(&b, "ufbd_client_disconnects_total",
            "Requests whose client closed the connection before its computed answer was sent",
            get(&mt->disconnects));
    for (int i = 0; i < N_HIST; i++)
        render_hist(&b, &mt->h[i]);
    gauge(&b, "ufbd_queue_depth", "Inputs waiting for a worker", queued);
    gauge(&b, "ufbd_in_flight_requests", "Requests accepted and not yet answered", in_flight);
    gauge(&b, "ufbd_workers_busy", "Engine workers computing a batch", busy);
    gauge(&b, "ufbd_workers", "Engine workers", workers);
    gauge(&b, "ufbd_ready", "1 when ready to serve", ready ? 1 : 0);
    out(&b,
        "# HELP ufbd_model_info Loaded model\n# TYPE ufbd_model_info gauge\n"
        "ufbd_model_info{family=\"%s\",ff=\"%s\",layers=\"%d\",hidden=\"%d\",fff_depth=\"%d\","
        "fff_trees=\"%d\",labels=\"%d\"} 1\n",
        in->family == UFB_FAMILY_CRAMMED ? "crammed" : "bert",
        in->ff_kind == UFB_FF_FFF ? "fff" : "dense", in->n_layers, in->hidden, in->fff_depth,
        in->fff_trees, in->n_labels);
    render_fff(&b, mt);
    return b.p;
}
