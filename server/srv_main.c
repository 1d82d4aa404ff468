/* srv_main.c — ufbd: start the HTTP server, load and warm the model, serve, drain on SIGTERM.
 *
 * Order matters for probes: the HTTP server starts first, so /health/live answers while the
 * model loads; readiness turns 200 only after the model is loaded and one warm-up batch has
 * run. SIGTERM/SIGINT (received by sigwait in this thread; every other thread blocks them):
 * readiness 503 at once, stop accepting connections, finish every accepted request within
 * drain_timeout_s, stop, exit 0.
 *
 * A start that fails prints exactly one line on stderr, "ufbd: <why>", naming the file, key
 * or address, and exits non-zero (2: settings, 1: listen, model or warm-up): so the progress
 * lines ("listening on", "model loaded") are printed only once the model is loaded and warm,
 * and libmicrohttpd's own messages during the start are folded into the one line.
 */
#include "srv_http_impl.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;
extern void openblas_set_num_threads(int n);
extern char *openblas_get_config(void);
extern char *openblas_get_corename(void);

#define MAX_CPUS 1024

#ifdef __clang__
#    define UFB_COMPILER "clang " __clang_version__
#else
#    define UFB_COMPILER "gcc " __VERSION__
#endif

static char *make_info(const srv_server *s, int workers) {
    const ufb_model_info *in = ufb_model_info_get(s->m);
    json_t *labels = json_array();
    for (int i = 0; in->head_kind == UFB_HEAD_CLASSIFIER && i < in->n_labels; i++)
        json_array_append_new(labels, json_string(in->labels[i]));
    const char *base = strrchr(s->cfg.model, '/');
    char blas[256];
    snprintf(blas, sizeof blas, "%s (%s)", openblas_get_config(), openblas_get_corename());
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:o, s:s, s:i, s:i, s:i, s:i, "
        "s:s, s:{s:s, s:s, s:s}, s:i}",
        "model_id", base && base[1] ? base + 1 : s->cfg.model, "model_dir", s->cfg.model, "family",
        in->family == UFB_FAMILY_CRAMMED ? "crammed" : "bert", "ff",
        in->ff_kind == UFB_FF_FFF ? "fff" : "dense", "hidden", in->hidden, "layers", in->n_layers,
        "heads", in->n_heads, "fff_depth", in->fff_depth, "fff_trees", in->fff_trees,
        "neurons_per_layer", in->intermediate, "neurons_per_token_layer",
        in->ff_kind == UFB_FF_FFF ? in->fff_trees * (in->fff_depth + 1) : in->intermediate,
        "labels", labels, "problem_type", in->problem_type, "max_input_length",
        s->limits.max_input_tokens, "max_batch_tokens", s->cfg.max_batch_tokens,
        "max_batch_requests", s->cfg.max_batch_requests, "max_client_batch_size", s->cfg.max_inputs,
        "version", UFBD_VERSION, "build", "simd", ufb_kernel_name(ufb_kernel_best()), "blas", blas,
        "compiler", UFB_COMPILER, "workers", workers);
    if (o) json_object_set_new(o, "fff_weights", json_string(ufb_wfmt_name(in->fff_weights)));
    if (o) json_object_set_new(o, "worker_threads", json_integer(s->cfg.worker_threads));
    char *str = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return str;
}

/* ---- Warm-up: one real batch through the batcher before readiness ---- */

static pthread_mutex_t warm_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t warm_cv = PTHREAD_COND_INITIALIZER;
static bool warm_done;

static void on_warm_done(srv_job *job) {
    (void)job;
    pthread_mutex_lock(&warm_mu);
    warm_done = true;
    pthread_cond_signal(&warm_cv);
    pthread_mutex_unlock(&warm_mu);
}

static int warm_up(srv_server *s) {
    static const char body[] = "{\"inputs\": [\"warm up the engine\", \"a second input\"]}";
    srv_error e;
    srv_job *job = srv_parse_classify(s->m, &s->limits, body, sizeof body - 1, false, &e);
    if (!job) {
        fprintf(stderr, "ufbd: warm-up failed: %s\n", e.msg);
        return -1;
    }
    job->done = on_warm_done;
    job->t_enqueue = srv_now();
    job->deadline = job->t_enqueue + 3600;
    int rc = srv_batcher_submit(s->batcher, job);
    pthread_mutex_lock(&warm_mu);
    while (rc == 0 && !warm_done)
        pthread_cond_wait(&warm_cv, &warm_mu);
    pthread_mutex_unlock(&warm_mu);
    const srv_error *failed = &job->items[0].err;
    if (rc != 0 || failed->status)
        fprintf(stderr, "ufbd: warm-up failed: %s\n", rc ? "batcher refused" : failed->msg);
    rc = rc == 0 && !failed->status ? 0 : -1;
    srv_job_free(job);
    return rc;
}

/* ---- Startup ---- */

/* libmicrohttpd's messages: the last one while MHD_start_daemon runs (in the main thread) is
 * kept to become part of the line that says why the start failed; afterwards each message is
 * printed as one line. */
static char mhd_start_msg[512];
static atomic_bool mhd_started;

__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\r\n")] = 0;
    if (atomic_load_explicit(&mhd_started, memory_order_acquire))
        fprintf(stderr, "ufbd: libmicrohttpd: %s\n", msg);
    else
        snprintf(mhd_start_msg, sizeof mhd_start_msg, "%s", msg);
}

/* @return 0 and the port bound in *bound (the chosen one when cfg.port is 0), or -1. */
static int start_http(srv_server *s, unsigned *bound) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", s->cfg.port);
    if (getaddrinfo(s->cfg.host, port, &hints, &ai) != 0 || !ai) {
        fprintf(stderr, "ufbd: host '%s' does not resolve\n", s->cfg.host);
        return -1;
    }
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
                     MHD_USE_ITC | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    int pool = s->cfg.http_threads > 0 ? s->cfg.http_threads : 2;
    /* Per-connection memory (request line, headers, read buffer) over 32 KiB is mmap'd by MHD
     * and unmapped when the connection closes; at the default 32 KiB it is malloc'd, and
     * bursts of connections left RSS at new highs in glibc's per-thread arenas (soak test:
     * +38% in 40 s with bursts of 512 connections; flat with 64 KiB). */
    const size_t conn_memory = 64 * 1024;
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, srv_on_request, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)pool, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)s->cfg.connection_timeout_s, MHD_OPTION_CONNECTION_LIMIT, 1000u,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, conn_memory, MHD_OPTION_NOTIFY_COMPLETED,
        srv_on_completed, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
    atomic_store_explicit(&mhd_started, true, memory_order_release);
    freeaddrinfo(ai);
    if (!s->daemon) { /* MHD says "Failed to bind to port 0: <strerror>": keep the reason */
        const char *why = strrchr(mhd_start_msg, ':');
        why = why && why[1] == ' ' ? why + 2 : mhd_start_msg;
        fprintf(stderr, "ufbd: cannot listen on %s:%d%s%s\n", s->cfg.host, s->cfg.port,
                *why ? ": " : "", why);
        return -1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    *bound = di ? (unsigned)di->port : (unsigned)s->cfg.port;
    return 0;
}

static int load(srv_server *s) {
    char err[512];
    ufb_load_params lp = ufb_load_params_default();
    (void)ufb_wfmt_parse(s->cfg.fff_weights, &lp.fff_weights); /* checked by cfg_load */
    s->m = ufb_model_load(s->cfg.model, &lp, err, sizeof err);
    if (!s->m) {
        fprintf(stderr, "ufbd: cannot load model '%s': %s\n", s->cfg.model, err);
        return -1;
    }
    const ufb_model_info *in = ufb_model_info_get(s->m);
    if (in->head_kind != UFB_HEAD_CLASSIFIER) {
        fprintf(stderr, "ufbd: cannot serve model '%s': no classifier head in model.safetensors\n",
                s->cfg.model);
        return -1;
    }
    if (!ufb_model_tokenizer(s->m)) {
        fprintf(stderr, "ufbd: cannot serve model '%s': no tokenizer.json or vocab.txt\n",
                s->cfg.model);
        return -1;
    }
    int cpus[MAX_CPUS], n = srv_cpu_count(cpus, MAX_CPUS);
    const int total = s->cfg.threads > 0 ? s->cfg.threads : n, wt = s->cfg.worker_threads;
    const int workers = total / wt > 0 ? total / wt : 1;
    int *pin = workers * wt == n ? cpus : NULL; /* pinned when the threads fill the CPUs */
    s->limits.max_inputs = s->cfg.max_inputs;
    s->limits.max_input_tokens =
        s->cfg.max_input_tokens > 0 && s->cfg.max_input_tokens < in->max_positions
            ? s->cfg.max_input_tokens
            : in->max_positions;
    s->metrics = srv_metrics_create(s->m);
    s->batcher =
        s->metrics ? srv_batcher_create(s->m, &s->cfg, workers, pin, srv_metrics_batch, s->metrics)
                   : NULL;
    s->info_json = s->batcher ? make_info(s, workers) : NULL;
    if (!s->info_json) {
        fprintf(stderr, "ufbd: out of memory starting %d workers\n", workers);
        return -1;
    }
    return 0;
}

/* Requests that arrived before the signal are finished: the batcher keeps running until
 * they are answered (or the bound passes); only then are leftovers failed with 503. */
static void drain(srv_server *s, int sig) {
    fprintf(stderr, "ufbd: %s: draining (up to %d s)\n", strsignal(sig), s->cfg.drain_timeout_s);
    atomic_store(&s->draining, true);
    MHD_socket listen_fd = MHD_quiesce_daemon(s->daemon); /* no new connections */
    if (listen_fd != MHD_INVALID_SOCKET) close(listen_fd);
    double until = srv_now() + s->cfg.drain_timeout_s;
    while (atomic_load(&s->in_flight) > 0 && srv_now() < until)
        usleep(2000);
    double left = until - srv_now();
    srv_batcher_drain(s->batcher, left > 0 ? left : 0);
    while (atomic_load(&s->in_flight) > 0 && srv_now() < until + 1.0)
        usleep(2000);
    MHD_stop_daemon(s->daemon);
    fprintf(stderr, "ufbd: stopped\n");
}

static void release(srv_server *s) {
    srv_batcher_free(s->batcher);
    srv_metrics_free(s->metrics);
    free(s->info_json);
    ufb_model_free(s->m);
}

int main(int argc, char **argv) {
    static srv_server s;
    char err[512];
    int rc = cfg_load(&s.cfg, argc, argv, environ, err, sizeof err);
    if (rc == CFG_HELP) return cfg_print_help(stdout), 0;
    if (rc == CFG_VERSION) return printf("ufbd %s\n", UFBD_VERSION), 0;
    if (rc < 0) return fprintf(stderr, "ufbd: %s\n", err), 2;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited by every thread started below */
    signal(SIGPIPE, SIG_IGN);
    openblas_set_num_threads(1); /* the workers are the parallelism; BLAS must not add more */
    unsigned port = 0;
    if (start_http(&s, &port)) return 1;
    if (load(&s) || (s.cfg.warmup && warm_up(&s))) {
        if (s.batcher) srv_batcher_drain(s.batcher, 0);
        MHD_stop_daemon(s.daemon);
        release(&s);
        return 1;
    }
    fprintf(stderr, "ufbd: listening on http://%s:%u\n", s.cfg.host, port);
    fprintf(stderr, "ufbd: model %s loaded (%s), %d workers\n", s.cfg.model,
            ufb_model_info_get(s.m)->ff_kind == UFB_FF_FFF ? "fff" : "dense",
            srv_batcher_workers(s.batcher));
    srv_metrics_enable(s.metrics);
    atomic_store_explicit(&s.ready, true, memory_order_release);
    fprintf(stderr, "ufbd: ready\n");
    int sig = 0;
    sigwait(&set, &sig);
    drain(&s, sig);
    release(&s);
    return 0;
}
