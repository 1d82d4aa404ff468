/* srv_http.c — the libmicrohttpd front: routing, limits, authentication, suspend/resume.
 *
 * DESIGN (libmicrohttpd 0.9.75, epoll + internal thread pool + suspend/resume):
 *   first call   allocate the request context; decide 404/405/401/415/413/503 from the
 *                method, path and headers before any body is read (413 from Content-Length);
 *   upload calls append to our own bounded buffer;
 *   final call   GET routes answer at once; POST routes parse, validate and tokenize
 *                (srv_api.c), queue the inputs for the engine workers and suspend;
 *   resumed      a worker finished the job and resumed the connection: format and answer,
 *                unless the client closed its connection meanwhile (counted, logged as 499,
 *                as nginx does, and the connection closed).
 * No HTTP thread ever waits on inference. A request's `mu` orders suspend (HTTP thread)
 * against resume (worker), which may otherwise run first. Responses are always queued from
 * MHD's threads, never from a worker. The request context is freed in NOTIFY_COMPLETED.
 */
#include "srv_http_impl.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

enum req_state { REQ_READING, REQ_QUEUED, REQ_SUSPENDED, REQ_DONE };

typedef struct srv_req {
    srv_server *s;
    struct MHD_Connection *conn;
    enum srv_route route;
    char method[8];
    char path[64];
    char id[65];
    double t0;
    char *body;
    size_t len;
    bool too_large;
    srv_job *job;
    pthread_mutex_t mu;
    enum req_state state; /* (mu) */
    int status;
    double queue_ms, compute_ms;
    int tokens;
} srv_req;

static const struct route_def {
    const char *path;
    const char *method;
    enum srv_route route;
    bool auth;
} routes[] = {
    {"/classify", "POST", SRV_ROUTE_CLASSIFY, true},
    {"/predict", "POST", SRV_ROUTE_PREDICT, true},
    {"/tokenize", "POST", SRV_ROUTE_TOKENIZE, true},
    {"/info", "GET", SRV_ROUTE_INFO, true},
    {"/health", "GET", SRV_ROUTE_HEALTH, false},
    {"/health/live", "GET", SRV_ROUTE_HEALTH, false},
    {"/health/ready", "GET", SRV_ROUTE_HEALTH, false},
    {"/metrics", "GET", SRV_ROUTE_METRICS, false},
    {"/openapi.json", "GET", SRV_ROUTE_OPENAPI, false},
    {"/", "GET", SRV_ROUTE_PAGE, false},
};

/* ---- Responses ---- */

/* Components exist once `ready` was published (release in srv_main.c, acquire here). */
static srv_metrics *metrics_of(srv_server *s) {
    return atomic_load_explicit(&s->ready, memory_order_acquire) ? s->metrics : NULL;
}

static void add_common_headers(srv_req *r, struct MHD_Response *resp, const char *type) {
    MHD_add_response_header(resp, "Content-Type", type);
    MHD_add_response_header(resp, "X-Request-Id", r->id);
    if (r->s->cfg.cors_origin[0]) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", r->s->cfg.cors_origin);
        MHD_add_response_header(resp, "Vary", "Origin");
    }
    char v[32];
    snprintf(v, sizeof v, "%.3f", (srv_now() - r->t0) * 1e3);
    MHD_add_response_header(resp, "x-total-time", v);
    bool post = r->route == SRV_ROUTE_CLASSIFY || r->route == SRV_ROUTE_PREDICT ||
                r->route == SRV_ROUTE_TOKENIZE;
    if (!post) return;
    snprintf(v, sizeof v, "%.3f", r->queue_ms);
    MHD_add_response_header(resp, "x-queue-time", v);
    snprintf(v, sizeof v, "%.3f", r->compute_ms);
    MHD_add_response_header(resp, "x-compute-time", v);
    snprintf(v, sizeof v, "%d", r->tokens);
    MHD_add_response_header(resp, "x-compute-tokens", v);
}

/* Queue `body` (taken over: freed by MHD) with status; NULL body = 500. */
static enum MHD_Result reply(srv_req *r, int status, char *body, const char *type) {
    static const char oom[] = "{\"error\":\"out of memory\",\"error_type\":\"Internal\"}";
    struct MHD_Response *resp =
        body ? MHD_create_response_from_buffer_with_free_callback(strlen(body), body, &free)
             : MHD_create_response_from_buffer(sizeof oom - 1, (void *)oom, MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    r->status = body ? status : 500;
    add_common_headers(r, resp, type);
    if (status == 429) MHD_add_response_header(resp, "Retry-After", "1");
    if (status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    if (status == 503 && atomic_load(&r->s->draining))
        MHD_add_response_header(resp, "Connection", "close");
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result reply_json(srv_req *r, int status, char *body) {
    return reply(r, status, body, "application/json");
}

static enum MHD_Result reply_error(srv_req *r, const srv_error *e) {
    srv_metrics_error(metrics_of(r->s), e->type);
    return reply_json(r, e->status, srv_error_json(e, r->id));
}

static enum MHD_Result reply_static(srv_req *r, const unsigned char *data, unsigned len,
                                    const char *type) {
    char *copy = malloc(len + 1u);
    if (copy) memcpy(copy, data, len), copy[len] = 0;
    return reply(r, 200, copy, type);
}

/* ---- GET routes ---- */

static const char *readiness(srv_server *s) {
    if (atomic_load(&s->draining)) return "draining";
    if (!atomic_load_explicit(&s->ready, memory_order_acquire)) return "loading";
    if (srv_batcher_queued(s->batcher) >= s->cfg.queue_size) return "overloaded";
    return "ok";
}

static enum MHD_Result get_route(srv_req *r) {
    srv_server *s = r->s;
    bool ready = atomic_load_explicit(&s->ready, memory_order_acquire);
    switch (r->route) {
    case SRV_ROUTE_HEALTH: {
        const char *st = strcmp(r->path, "/health/live") ? readiness(s) : "ok";
        char *body = NULL;
        if (asprintf(&body, "{\"status\":\"%s\"}", st) < 0) body = NULL;
        return reply_json(r, strcmp(st, "ok") ? 503 : 200, body);
    }
    case SRV_ROUTE_METRICS:
        if (!ready) return reply(r, 200, strdup("ufbd_ready 0\n"), "text/plain; version=0.0.4");
        return reply(r, 200,
                     srv_metrics_render(s->metrics, srv_batcher_queued(s->batcher),
                                        srv_batcher_busy(s->batcher),
                                        srv_batcher_workers(s->batcher), atomic_load(&s->in_flight),
                                        ready && !s->draining),
                     "text/plain; version=0.0.4");
    case SRV_ROUTE_INFO:
        if (!ready) break;
        return reply_json(r, 200, strdup(s->info_json));
    case SRV_ROUTE_OPENAPI:
        return reply_static(r, srv_openapi_json, srv_openapi_json_len, "application/json");
    case SRV_ROUTE_PAGE:
        return reply_static(r, srv_page_html, srv_page_html_len, "text/html; charset=utf-8");
    case SRV_ROUTE_CLASSIFY:
    case SRV_ROUTE_PREDICT:
    case SRV_ROUTE_TOKENIZE:
    case SRV_ROUTE_OTHER:
    case SRV_N_ROUTES:
        break;
    }
    srv_error e;
    srv_error_set(&e, 503, "Unhealthy", "model is loading");
    return reply_error(r, &e);
}

/* ---- Checks before the body ---- */

/* Constant-time comparison against every key: the time does not depend on where or whether
 * a key matches. */
static bool auth_ok(const srv_server *s, struct MHD_Connection *c) {
    if (s->cfg.n_api_keys == 0) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return false;
    const char *tok = h + 7;
    size_t n = strlen(tok);
    unsigned ok = 0;
    for (int k = 0; k < s->cfg.n_api_keys; k++) {
        const char *key = s->cfg.api_keys[k];
        size_t klen = strlen(key);
        unsigned diff = (unsigned)(klen ^ n);
        for (size_t i = 0; i < klen; i++)
            diff |= (unsigned char)key[i] ^ (unsigned char)tok[i % (n ? n : 1)];
        ok |= diff == 0;
    }
    return ok;
}

static bool json_content_type(struct MHD_Connection *c) {
    const char *t = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    if (!t) return false;
    size_t n = strcspn(t, ";");
    while (n > 0 && t[n - 1] == ' ')
        n--;
    return n == strlen("application/json") && strncasecmp(t, "application/json", n) == 0;
}

/* @return an error to answer before reading the body, or status 0. */
static srv_error precheck(srv_req *r, const struct route_def *def) {
    srv_error e = {0};
    srv_server *s = r->s;
    if (def->auth && !auth_ok(s, r->conn)) {
        srv_error_set(&e, 401, "Unauthorized", "missing or invalid API key");
    } else if (strcmp(def->method, "POST") != 0) {
        return e;
    } else if (atomic_load(&s->draining)) {
        srv_error_set(&e, 503, "Unhealthy", "server is shutting down");
    } else if (!atomic_load_explicit(&s->ready, memory_order_acquire)) {
        srv_error_set(&e, 503, "Unhealthy", "model is loading");
    } else if (!json_content_type(r->conn)) {
        srv_error_set(&e, 415, "UnsupportedMediaType", "Content-Type must be application/json");
    } else {
        const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > (unsigned long long)s->cfg.body_limit)
            srv_error_set(&e, 413, "PayloadTooLarge", "body of %s bytes exceeds the limit of %ld",
                          cl, s->cfg.body_limit);
    }
    return e;
}

static void set_request_id(srv_req *r) {
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Request-Id");
    size_t n = h ? strlen(h) : 0;
    bool ok = n > 0 && n < sizeof r->id;
    for (size_t i = 0; ok && i < n; i++)
        ok = (h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'z') ||
             (h[i] >= 'A' && h[i] <= 'Z') || h[i] == '-' || h[i] == '_' || h[i] == '.';
    if (ok) {
        memcpy(r->id, h, n + 1);
        return;
    }
    unsigned char rnd[8] = {0};
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) { /* fall back: time + address */
        uint64_t x = (uint64_t)(srv_now() * 1e9) ^ (uint64_t)(uintptr_t)r;
        memcpy(rnd, &x, sizeof rnd);
    }
    for (int i = 0; i < 8; i++)
        snprintf(r->id + 2 * i, 3, "%02x", rnd[i]);
}

static enum MHD_Result first_call(srv_req *r, const char *url, const char *method) {
    snprintf(r->method, sizeof r->method, "%s", method);
    snprintf(r->path, sizeof r->path, "%s", url);
    set_request_id(r);
    const struct route_def *def = NULL, *any = NULL;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(routes[i].path, url) != 0) continue;
        any = &routes[i];
        if (!strcmp(routes[i].method, method)) def = &routes[i];
    }
    srv_error e = {0};
    r->route = any ? any->route : SRV_ROUTE_OTHER;
    if (any && !def && !strcmp(method, "OPTIONS") && r->s->cfg.cors_origin[0]) return MHD_YES;
    if (!any)
        srv_error_set(&e, 404, "NotFound", "no route %.64s", url);
    else if (!def)
        srv_error_set(&e, 405, "MethodNotAllowed", "%.64s takes %s", url, any->method);
    else
        e = precheck(r, def);
    if (e.status) return reply_error(r, &e);
    if (!strcmp(def->method, "GET")) return get_route(r);
    return MHD_YES; /* POST: wait for the body */
}

/* CORS preflight for a configured origin. */
static enum MHD_Result preflight(srv_req *r) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    add_common_headers(r, resp, "text/plain");
    MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                            "Content-Type, Authorization, X-Request-Id");
    r->status = 204;
    enum MHD_Result ret = MHD_queue_response(r->conn, 204, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ---- POST routes ---- */

/* Worker thread: the job's last input is done. Once the connection is resumed an HTTP
 * thread may answer and free the request at once, so nothing of it is touched after the
 * resume (not even its mutex). */
static void on_job_done(srv_job *job) {
    srv_req *r = job->user;
    struct MHD_Connection *conn = r->conn;
    pthread_mutex_lock(&r->mu);
    bool suspended = r->state == REQ_SUSPENDED;
    r->state = REQ_DONE;
    pthread_mutex_unlock(&r->mu);
    if (suspended) MHD_resume_connection(conn);
}

/* Has the client closed its connection (EOF or a reset) while its request was computed? A
 * suspended connection is not polled, so MHD cannot know; peek at the socket (plain TCP, no
 * TLS). Nothing is consumed: pipelined requests stay for MHD. */
static bool client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    char byte;
    ssize_t n = recv(ci->connect_fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* The client is gone: no body is formatted; 499 (nginx's "client closed request") is for the
 * log and the metrics. An empty answer that closes the connection, rather than MHD_NO, which
 * MHD would log as an internal error. */
static enum MHD_Result reply_gone(srv_req *r) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Connection", "close");
    r->status = 499;
    enum MHD_Result ret = MHD_queue_response(r->conn, 499, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result answer_job(srv_req *r) {
    srv_server *s = r->s;
    int status = 500;
    for (int i = 0; i < r->job->n_items; i++) {
        const srv_item *it = &r->job->items[i];
        if (it->queue_ms > r->queue_ms) r->queue_ms = it->queue_ms;
        if (it->compute_ms > r->compute_ms) r->compute_ms = it->compute_ms;
        if (!it->err.status)
            r->tokens += it->enc.n;
        else
            srv_metrics_error(metrics_of(s), it->err.type);
    }
    char *body = srv_format_classify(s->m, r->job, r->id, (srv_now() - r->t0) * 1e3, &status);
    return reply_json(r, status, body);
}

static enum MHD_Result post_classify(srv_req *r) {
    srv_server *s = r->s;
    srv_error e = {0};
    r->job = srv_parse_classify(s->m, &s->limits, r->body ? r->body : "", r->len,
                                r->route == SRV_ROUTE_PREDICT, &e);
    if (!r->job) return reply_error(r, &e);
    r->job->user = r;
    r->job->done = on_job_done;
    r->job->t_enqueue = srv_now();
    r->job->deadline = r->t0 + s->cfg.request_timeout_ms * 1e-3;
    int n_ok = 0; /* counted before submit: afterwards workers write the items */
    for (int i = 0; i < r->job->n_items; i++)
        n_ok += r->job->items[i].err.status == 0;
    pthread_mutex_lock(&r->mu);
    r->state = REQ_QUEUED;
    int rc = srv_batcher_submit(s->batcher, r->job);
    if (rc == 0) srv_metrics_accepted(metrics_of(s), n_ok);
    if (rc == 0 && r->state != REQ_DONE) {
        r->state = REQ_SUSPENDED;
        MHD_suspend_connection(r->conn);
        pthread_mutex_unlock(&r->mu);
        return MHD_YES;
    }
    pthread_mutex_unlock(&r->mu);
    if (rc == -1) srv_error_set(&e, 429, "Overloaded", "queue is full, retry later");
    if (rc == -2) srv_error_set(&e, 503, "Unhealthy", "server is shutting down");
    return rc < 0 ? reply_error(r, &e) : answer_job(r);
}

static enum MHD_Result final_call(srv_req *r) {
    srv_error e = {0};
    if (r->too_large) {
        srv_error_set(&e, 413, "PayloadTooLarge", "body exceeds the limit of %ld bytes",
                      r->s->cfg.body_limit);
        return reply_error(r, &e);
    }
    if (r->route != SRV_ROUTE_TOKENIZE) return post_classify(r);
    int status = 500;
    char *body =
        srv_handle_tokenize(r->s->m, &r->s->limits, r->body ? r->body : "", r->len, &status, &e);
    return body ? reply_json(r, status, body) : reply_error(r, &e);
}

static void append_body(srv_req *r, const char *data, size_t n) {
    if (r->too_large || r->len + n > (size_t)r->s->cfg.body_limit) {
        r->too_large = true; /* keep reading and dropping: the answer is 413 */
        return;
    }
    char *p = realloc(r->body, r->len + n + 1);
    if (!p) {
        r->too_large = true;
        return;
    }
    memcpy(p + r->len, data, n);
    r->body = p;
    r->len += n;
    r->body[r->len] = 0;
}

enum MHD_Result srv_on_request(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **req_cls) {
    (void)version;
    srv_req *r = *req_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->s = cls;
        r->conn = c;
        r->t0 = srv_now();
        pthread_mutex_init(&r->mu, NULL);
        *req_cls = r;
        atomic_fetch_add(&r->s->in_flight, 1);
        return first_call(r, url, method);
    }
    if (r->status) { /* answered early (e.g. 413): drop the rest of the upload */
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->state == REQ_DONE) /* resumed by the worker that finished the job */
        return client_gone(c) ? reply_gone(r) : answer_job(r);
    if (!strcmp(r->method, "OPTIONS")) return preflight(r);
    if (*upload_size) {
        append_body(r, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    return final_call(r);
}

/* ---- Completion: log, count, free ---- */

static void log_request(const srv_req *r, double ms) {
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    if (r->s->cfg.log_format == CFG_LOG_JSON)
        fprintf(stderr,
                "{\"ts\":\"%s\",\"id\":\"%s\",\"method\":\"%s\",\"path\":\"%s\",\"status\":%d,"
                "\"total_ms\":%.3f,\"queue_ms\":%.3f,\"compute_ms\":%.3f,\"tokens\":%d}\n",
                ts, r->id, r->method, r->route == SRV_ROUTE_OTHER ? "other" : r->path, r->status,
                ms, r->queue_ms, r->compute_ms, r->tokens);
    else
        fprintf(stderr, "%s %s %s %s %d %.3fms queue=%.3fms compute=%.3fms tokens=%d\n", ts, r->id,
                r->method, r->route == SRV_ROUTE_OTHER ? "other" : r->path, r->status, ms,
                r->queue_ms, r->compute_ms, r->tokens);
}

void srv_on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                      enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)c, (void)toe;
    srv_req *r = *req_cls;
    if (!r) return;
    double total = srv_now() - r->t0;
    /* A computed answer nobody received: the client closed its connection while its request
     * was queued or computed, seen at the resume (reply_gone) or by MHD itself (no status). */
    if (r->state == REQ_DONE && (r->status == 0 || r->status == 499)) {
        r->status = 499;
        srv_metrics_disconnect(metrics_of(r->s));
    }
    srv_metrics_request(metrics_of(r->s), r->route, r->status, total);
    if (r->route != SRV_ROUTE_HEALTH && r->route != SRV_ROUTE_METRICS) log_request(r, total * 1e3);
    atomic_fetch_sub(&r->s->in_flight, 1);
    srv_job_free(r->job);
    free(r->body);
    pthread_mutex_destroy(&r->mu);
    free(r);
    *req_cls = NULL;
}
