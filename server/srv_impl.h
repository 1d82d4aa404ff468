/* srv_impl.h — internal interfaces of the ufbd server (server/ only).
 *
 * Data flows one way: HTTP thread (srv_http.c: read body, srv_api.c: parse, validate,
 * tokenize) -> batcher queue (srv_batch.c) -> engine worker (ufb_forward) -> job done callback
 * -> the HTTP thread resumes the connection and formats the response (srv_api.c).
 * Only two thread domains exist: libmicrohttpd's pool and the engine workers; the batcher
 * queue is the only hand-off between them.
 */
#ifndef UFB_SRV_IMPL_H
#define UFB_SRV_IMPL_H

#include "config.h"
#include "engine.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UFBD_VERSION "0.1.0"

/* ---- Errors ---- */

typedef struct srv_error {
    int status;       /* HTTP status */
    const char *type; /* "Validation", "Tokenizer", "Overloaded", ... (static) */
    char msg[256];
} srv_error;

void srv_error_set(srv_error *e, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- Jobs: the inputs of one request, computed by the workers ---- */

typedef struct srv_item {
    ufb_encoding enc; /* tokenized input (owned) */
    srv_error err;    /* err.status != 0: item failed (not computed, or failed) */
    float logits[UFB_MAX_LABELS];
    ufb_seq_stats stats; /* stats.leaves owned, (layers, tokens, trees) */
    int batch_size;      /* sequences in the batch it ran in */
    int batch_tokens;
    double queue_ms, compute_ms;
} srv_item;

typedef struct srv_job srv_job;
typedef void (*srv_job_done_fn)(srv_job *job);

struct srv_job {
    srv_item *items;
    int n_items;
    atomic_int n_pending; /* items not yet computed; the worker that takes it to 0 calls done */
    double t_enqueue;     /* monotonic seconds */
    double deadline;      /* monotonic seconds; items not started by then fail with 504 */
    srv_job_done_fn done; /* called once, from a worker thread (or the enqueuing thread) */
    void *user;           /* the HTTP request */
    /* request options */
    bool raw_scores, return_stats, return_paths, tei, single;
    int top_k;
};

void srv_job_free(srv_job *job);

/* ---- Time ---- */

double srv_now(void); /* monotonic seconds */

/* ---- API: pure request handling (unit-tested without HTTP) ---- */

typedef struct srv_limits {
    int max_inputs;
    int max_input_tokens; /* already capped at the model's max positions */
} srv_limits;

/* Parse and validate a /classify (tei = false) or /predict (tei = true) body, tokenize every
 * input. Item-level failures (invalid UTF-8, too long without truncate) are recorded in the
 * items; request-level failures (bad JSON, wrong types, too many inputs) return NULL + err.
 * @return caller owns; free with srv_job_free(). */
srv_job *srv_parse_classify(const ufb_model *m, const srv_limits *lim, const char *body, size_t len,
                            bool tei, srv_error *err);

/* Response body of a finished job (classify or predict format). `timing` gives the request's
 * total ms. If every item failed, sets *status from the first item error and returns an error
 * body. @return caller owns (malloc'd, NUL-terminated). */
char *srv_format_classify(const ufb_model *m, const srv_job *job, const char *request_id,
                          double total_ms, int *status);

/* /tokenize: @return body (caller owns) and *status. */
char *srv_handle_tokenize(const ufb_model *m, const srv_limits *lim, const char *body, size_t len,
                          int *status, srv_error *err);

/* JSON error body {"error", "error_type", "request_id"}; caller owns. */
char *srv_error_json(const srv_error *e, const char *request_id);

/* ---- Batcher and engine workers ---- */

typedef struct srv_batcher srv_batcher;

typedef struct srv_batch_stats { /* one computed batch, for metrics */
    int n_seqs, n_tokens;
    double compute_s;
} srv_batch_stats;

typedef void (*srv_batch_observer)(const srv_batch_stats *st, const srv_item *const *items, int n,
                                   void *arg);

/* Start n_workers engine workers, each with its own ufb_ctx for max_batch_tokens tokens and,
 * when cfg->worker_threads > 1, its own ufb_pool of that many threads. cpus: NULL (unpinned)
 * or n_workers * worker_threads CPU ids, worker i taking the i-th run of worker_threads. `m` is
 * borrowed and must outlive the batcher.
 * @return caller owns; free with srv_batcher_free(); NULL on failure. */
srv_batcher *srv_batcher_create(const ufb_model *m, const cfg_settings *cfg, int n_workers,
                                const int *cpus, srv_batch_observer obs, void *obs_arg);

/* Queue all items of a job. @return 0, or -1 when the queue cannot take them (429) or the
 * batcher is stopping (503); the job is then untouched. Thread-safe. */
int srv_batcher_submit(srv_batcher *b, srv_job *job);

/* Items queued and not yet taken by a worker; workers busy. Thread-safe. */
int srv_batcher_queued(srv_batcher *b);
int srv_batcher_busy(srv_batcher *b);
int srv_batcher_workers(const srv_batcher *b);

/* Stop accepting; wait up to timeout_s for queued and running work to finish; fail what is
 * left with 503; join the workers. */
void srv_batcher_drain(srv_batcher *b, double timeout_s);

void srv_batcher_free(srv_batcher *b);

/* CPUs this process may use: the affinity mask, capped by the cgroup CPU quota.
 * Fills cpus (up to cap) and @return the count (>= 1). */
int srv_cpu_count(int *cpus, int cap);

/* ---- Metrics (Prometheus text) ---- */

typedef struct srv_metrics srv_metrics;

enum srv_route {
    SRV_ROUTE_CLASSIFY,
    SRV_ROUTE_PREDICT,
    SRV_ROUTE_TOKENIZE,
    SRV_ROUTE_INFO,
    SRV_ROUTE_HEALTH,
    SRV_ROUTE_METRICS,
    SRV_ROUTE_OPENAPI,
    SRV_ROUTE_PAGE,
    SRV_ROUTE_OTHER,
    SRV_N_ROUTES,
};

const char *srv_route_name(enum srv_route r);

srv_metrics *srv_metrics_create(const ufb_model *m);
void srv_metrics_free(srv_metrics *mt);

/* Record a finished HTTP request. Thread-safe (atomics); mt may be NULL (not ready). */
void srv_metrics_request(srv_metrics *mt, enum srv_route r, int status, double total_s);

/* Count batches from now on (after warm-up). */
void srv_metrics_enable(srv_metrics *mt);

/* Inputs accepted into the queue. Thread-safe; mt may be NULL. */
void srv_metrics_accepted(srv_metrics *mt, int n_inputs);

/* A client closed its connection before its computed answer was sent. Thread-safe; mt may
 * be NULL. */
void srv_metrics_disconnect(srv_metrics *mt);

/* Record an error by type. Thread-safe; mt may be NULL. */
void srv_metrics_error(srv_metrics *mt, const char *type);

/* Batch observer for srv_batcher_create (arg = srv_metrics). */
void srv_metrics_batch(const srv_batch_stats *st, const srv_item *const *items, int n, void *arg);

/* Render the text exposition; gauges passed in. @return caller owns. */
char *srv_metrics_render(srv_metrics *mt, int queued, int busy, int workers, int in_flight,
                         bool ready);

/* ---- Embedded assets ---- */

extern const unsigned char srv_page_html[];
extern const unsigned int srv_page_html_len;
extern const unsigned char srv_openapi_json[];
extern const unsigned int srv_openapi_json_len;

#endif /* UFB_SRV_IMPL_H */
