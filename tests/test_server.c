/* test_server.c — the real ufbd binary on a loopback port, driven by a small HTTP client.
 *
 * Every endpoint; batches form under concurrent load and every client gets exactly the
 * logits it gets alone (and the engine gives in-process); neuron statistics equal the
 * engine's; every error status with its JSON body; API keys; /metrics counters move by
 * exactly the requests sent; SIGTERM with 64 requests in flight answers all 64 and exits 0.
 */
#include "test_util.h"

#include "http_client.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODEL FIXTURES "/bert_text"

static ufbd_proc srv;
static ufb_model *model;

static const char *texts[] = {
    "a gorgeous , witty , seductive movie .",
    "the plot is paper-thin and the acting worse",
    "it 's a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    "an utterly compelling ` who wrote it ' in which the reputation of the most famous author "
    "who ever lived comes into question .",
    "Héllo wörld, 中文 and emoji 👍",
    "ok",
    "the movie is long , slow and very , very boring",
};
#define N_TEXTS ((int)(sizeof texts / sizeof texts[0]))

static int setup(void **state) {
    (void)state;
    char err[256];
    model = ufb_model_load(MODEL, NULL, err, sizeof err);
    return model && ufbd_start(&srv, MODEL, "--max-wait-us 20000") == 0 ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    int rc = ufbd_stop(&srv, SIGTERM);
    ufb_model_free(model);
    return rc == 0 ? 0 : -1;
}

static json_t *post_json(int port, const char *path, const char *body, int want_status) {
    http_resp r;
    assert_int_equal(http_post(port, path, body, &r), 0);
    if (r.status != want_status)
        fprintf(stderr, "  %s %s -> %d %s\n", path, body, r.status, r.body);
    assert_int_equal(r.status, want_status);
    json_t *j = json_loads(r.body, 0, NULL);
    assert_non_null(j);
    http_resp_free(&r);
    return j;
}

static json_t *classify_one(const char *text) {
    json_t *req = json_pack("{s:s, s:b}", "inputs", text, "raw_scores", 1);
    char *body = json_dumps(req, 0);
    json_t *resp = post_json(srv.port, "/classify", body, 200);
    free(body);
    json_decref(req);
    return resp;
}

static void test_classify_matches_engine(void **state) {
    (void)state;
    const ufb_model_info *in = ufb_model_info_get(model);
    for (int i = 0; i < N_TEXTS; i++) {
        json_t *resp = classify_one(texts[i]);
        json_t *res = json_array_get(json_object_get(resp, "results"), 0);
        float logits[UFB_MAX_LABELS];
        ufb_seq_stats st;
        engine_logits(model, texts[i], logits, &st);
        json_t *lg = json_object_get(res, "logits");
        for (int k = 0; k < in->n_labels; k++) /* 9 significant digits: float32 exactly */
            assert_true((float)json_number_value(json_array_get(lg, (size_t)k)) == logits[k]);
        json_t *stats = json_object_get(res, "stats");
        assert_int_equal(json_integer_value(json_object_get(stats, "tokens")), st.n_tokens);
        assert_int_equal(json_integer_value(json_object_get(stats, "neurons_used")),
                         st.neurons_used);
        json_t *layers = json_object_get(stats, "layers");
        assert_int_equal(json_array_size(layers), in->n_layers);
        for (int l = 0; l < in->n_layers; l++) {
            json_t *L = json_array_get(layers, (size_t)l);
            assert_int_equal(json_integer_value(json_object_get(L, "distinct")),
                             st.nodes_distinct[l]);
            assert_int_equal(json_integer_value(json_object_get(L, "total")), in->intermediate);
        }
        const char *label = json_string_value(json_object_get(res, "label"));
        assert_string_equal(label, in->labels[logits[1] > logits[0] ? 1 : 0]);
        json_decref(resp);
    }
}

/* worker_threads = 2: one worker whose pool splits each batch over two threads; the answers
 * are the engine's single-threaded ones bit for bit, alone and in concurrent batches. */
static void test_concurrent_batches_identical(void **state);

static void test_worker_threads(void **state) {
    ufbd_proc main_srv = srv, pooled;
    assert_int_equal(
        ufbd_start(&pooled, MODEL, "--threads 2 --worker-threads 2 --max-wait-us 20000"), 0);
    http_resp r;
    assert_int_equal(http_get(pooled.port, "/info", &r), 0);
    json_t *info = json_loads(r.body, 0, NULL);
    http_resp_free(&r);
    assert_non_null(info);
    assert_int_equal(json_integer_value(json_object_get(info, "workers")), 1);
    assert_int_equal(json_integer_value(json_object_get(info, "worker_threads")), 2);
    json_decref(info);
    srv = pooled;
    test_classify_matches_engine(state);
    test_concurrent_batches_identical(state);
    srv = main_srv;
    assert_int_equal(ufbd_stop(&pooled, SIGTERM), 0);
}

/* ---- 32 clients at once ---- */

typedef struct client_arg {
    int idx;
    pthread_barrier_t *go;
    json_t *resp;
} client_arg;

static void *client_main(void *p) {
    client_arg *a = p;
    json_t *req = json_pack("{s:s, s:b}", "inputs", texts[a->idx % N_TEXTS], "raw_scores", 1);
    char *body = json_dumps(req, 0);
    pthread_barrier_wait(a->go);
    http_resp r;
    if (http_post(srv.port, "/classify", body, &r) == 0 && r.status == 200)
        a->resp = json_loads(r.body, 0, NULL);
    http_resp_free(&r);
    free(body);
    json_decref(req);
    return NULL;
}

static void test_concurrent_batches_identical(void **state) {
    (void)state;

    enum { N = 32 };

    json_t *alone[N_TEXTS];
    for (int i = 0; i < N_TEXTS; i++)
        alone[i] = classify_one(texts[i]);
    pthread_t th[N];
    client_arg args[N];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, N);
    for (int i = 0; i < N; i++) {
        args[i] = (client_arg){i, &go, NULL};
        pthread_create(&th[i], NULL, client_main, &args[i]);
    }
    int max_batch = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_non_null(args[i].resp);
        json_t *res = json_array_get(json_object_get(args[i].resp, "results"), 0);
        json_t *ref = json_array_get(json_object_get(alone[i % N_TEXTS], "results"), 0);
        assert_true(json_equal(json_object_get(res, "logits"), json_object_get(ref, "logits")));
        assert_true(json_equal(json_object_get(res, "label"), json_object_get(ref, "label")));
        int bs =
            (int)json_integer_value(json_object_get(json_object_get(res, "stats"), "batch_size"));
        max_batch = bs > max_batch ? bs : max_batch;
        json_decref(args[i].resp);
    }
    printf("  32 concurrent clients: largest batch %d, every client's logits identical to its "
           "request alone\n",
           max_batch);
    assert_true(max_batch > 1);
    pthread_barrier_destroy(&go);
    for (int i = 0; i < N_TEXTS; i++)
        json_decref(alone[i]);
}

static void test_request_id_and_timing_headers(void **state) {
    (void)state;
    http_resp r;
    const char *body = "{\"inputs\": \"x\"}";
    assert_int_equal(http_request(srv.port, "POST", "/classify", "X-Request-Id: my-id.42\r\n", body,
                                  strlen(body), &r),
                     0);
    char v[80];
    assert_int_equal(http_header(&r, "X-Request-Id", v, sizeof v), 0);
    assert_string_equal(v, "my-id.42");
    assert_non_null(strstr(r.body, "\"request_id\":\"my-id.42\""));
    const char *timing[] = {"x-queue-time", "x-compute-time", "x-total-time", "x-compute-tokens"};
    for (int i = 0; i < 4; i++)
        assert_int_equal(http_header(&r, timing[i], v, sizeof v), 0);
    assert_int_equal(atoi(v), 3); /* [CLS] x [SEP] */
    http_resp_free(&r);
    assert_int_equal(
        http_request(srv.port, "GET", "/nope", "X-Request-Id: bad id!\r\n", NULL, 0, &r), 0);
    assert_int_equal(http_header(&r, "X-Request-Id", v, sizeof v), 0);
    assert_int_equal(strlen(v), 16); /* not echoed: a generated one */
    http_resp_free(&r);
}

static void test_batch_request_and_item_errors(void **state) {
    (void)state;
    json_t *resp = post_json(srv.port, "/classify",
                             "{\"inputs\": [\"good\", [\"a question\", \"an answer\"], \"\"], "
                             "\"top_k\": 1, \"return_paths\": true}",
                             200);
    json_t *res = json_object_get(resp, "results");
    assert_int_equal(json_array_size(res), 3);
    assert_int_equal(json_array_size(json_object_get(json_array_get(res, 0), "scores")), 1);
    json_t *layer0 = json_array_get(
        json_object_get(json_object_get(json_array_get(res, 1), "stats"), "layers"), 0);
    assert_true(json_array_size(json_object_get(layer0, "leaves")) > 3); /* per token */
    assert_string_equal(json_string_value(json_object_get(json_array_get(res, 2), "error_type")),
                        "Validation");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(resp, "metrics"), "inputs")), 3);
    json_decref(resp);
}

static void test_predict_tei_and_tokenize(void **state) {
    (void)state;
    json_t *one = post_json(srv.port, "/predict", "{\"inputs\": \"a fine film\"}", 200);
    assert_true(json_is_array(one) && json_is_object(json_array_get(one, 0)));
    json_decref(one);
    json_t *pair = post_json(srv.port, "/predict", "{\"inputs\": [\"a\", \"b\"]}", 200);
    assert_true(json_is_object(json_array_get(pair, 0))); /* TEI: one pair, one answer */
    json_decref(pair);
    json_t *batch = post_json(srv.port, "/predict", "{\"inputs\": [[\"a\"], [\"b\", \"c\"]]}", 200);
    assert_int_equal(json_array_size(batch), 2);
    assert_true(json_is_array(json_array_get(batch, 1)));
    json_decref(batch);
    json_t *tok = post_json(srv.port, "/tokenize", "{\"inputs\": \"Hello world\"}", 200);
    json_t *toks = json_array_get(tok, 0);
    assert_int_equal(json_array_size(toks), 4); /* [CLS] hello world [SEP] */
    assert_int_equal(json_integer_value(json_object_get(json_array_get(toks, 1), "stop")), 5);
    assert_true(json_is_true(json_object_get(json_array_get(toks, 0), "special")));
    json_decref(tok);
}

static void test_get_endpoints(void **state) {
    (void)state;
    http_resp r;
    const char *ok[] = {
        "/health", "/health/live", "/health/ready", "/info", "/metrics", "/openapi.json", "/"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_int_equal(http_get(srv.port, ok[i], &r), 0);
        assert_int_equal(r.status, 200);
        char id[80], ms[32];
        assert_int_equal(http_header(&r, "X-Request-Id", id, sizeof id), 0);
        assert_int_equal(http_header(&r, "x-total-time", ms, sizeof ms), 0);
        if (!strcmp(ok[i], "/")) assert_non_null(strstr(r.body, "<html"));
        http_resp_free(&r);
    }
    assert_int_equal(http_get(srv.port, "/openapi.json", &r), 0);
    json_t *api = json_loads(r.body, 0, NULL), *paths = json_object_get(api, "paths");
    const char *routes[] = {
        "/classify",    "/predict",      "/tokenize", "/info",         "/health",
        "/health/live", "/health/ready", "/metrics",  "/openapi.json", "/"};
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        assert_non_null(json_object_get(paths, routes[i]));
    json_decref(api);
    http_resp_free(&r);
    assert_int_equal(http_get(srv.port, "/info", &r), 0);
    json_t *info = json_loads(r.body, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(info, "labels")), 2);
    json_decref(info);
    http_resp_free(&r);
}

/* Many short requests from several threads at once: every one answered 200. Under ASan this
 * is what catches races between a worker resuming a connection and MHD freeing it. */
typedef struct stress_arg {
    int n_ok, n;
} stress_arg;

static void *stress_client(void *p) {
    stress_arg *a = p;
    for (int i = 0; i < a->n; i++) {
        http_resp r;
        if (http_post(srv.port, "/classify", "{\"inputs\": [\"fast\", \"and short\"]}", &r) == 0 &&
            r.status == 200)
            a->n_ok++;
        http_resp_free(&r);
    }
    return NULL;
}

static void test_stress_many_requests(void **state) {
    (void)state;

    enum { THREADS = 8, EACH = 150 };

    pthread_t th[THREADS];
    stress_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (stress_arg){0, EACH};
        pthread_create(&th[i], NULL, stress_client, &args[i]);
    }
    int ok = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        ok += args[i].n_ok;
    }
    assert_int_equal(ok, THREADS * EACH);
}

/* ---- Errors ---- */

static void expect_error(int port, const char *method, const char *path, const char *headers,
                         const char *body, size_t len, int status, const char *type) {
    http_resp r;
    if (body && len == 0) len = strlen(body);
    assert_int_equal(http_request(port, method, path, headers, body, len, &r), 0);
    if (r.status != status) fprintf(stderr, "  %s %s -> %d %s\n", method, path, r.status, r.body);
    assert_int_equal(r.status, status);
    json_t *j = json_loads(r.body, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "error_type")), type);
    assert_non_null(json_string_value(json_object_get(j, "error")));
    json_decref(j);
    http_resp_free(&r);
}

static void test_error_statuses(void **state) {
    (void)state;
    const int p = srv.port;
    expect_error(p, "POST", "/classify", "", "{\"inputs\": ", 0, 400, "Validation");
    expect_error(p, "POST", "/classify", "", "{\"inputs\": []}", 0, 400, "Validation");
    expect_error(p, "GET", "/nope", "", NULL, 0, 404, "NotFound");
    expect_error(p, "GET", "/classify", "", NULL, 0, 405, "MethodNotAllowed");
    expect_error(p, "POST", "/classify", "Content-Type: text/plain\r\n", "x", 1, 415,
                 "UnsupportedMediaType");
    static char big[1100000];
    memset(big, 'a', sizeof big);
    expect_error(p, "POST", "/classify", "", big, sizeof big, 413, "PayloadTooLarge");
    expect_error(p, "POST", "/classify", "", "{\"inputs\": \"\xc3\x28\"}", 0, 422, "Validation");
    expect_error(p, "POST", "/classify", "", "{\"inputs\": 5}", 0, 422, "Validation");
    expect_error(p, "POST", "/classify", "", "{\"inputs\": \"a\", \"top_k\": 0}", 0, 422,
                 "Validation");
    expect_error(p, "POST", "/classify", "", "{\"inputs\": \"a\", \"topk\": 1}", 0, 422,
                 "Validation");
    char many[2048] = "{\"inputs\": [";
    for (int i = 0; i < 65; i++)
        strcat(many, i ? ",\"x\"" : "\"x\"");
    strcat(many, "]}");
    expect_error(p, "POST", "/classify", "", many, strlen(many), 422, "Validation");
}

static double metric(int port, const char *series);

static void test_limits_timeouts_overload(void **state) {
    (void)state;
    ufbd_proc s2; /* one worker that waits 1.5 s for a fuller batch: the queue stays put */
    assert_int_equal(ufbd_start(&s2, MODEL,
                                "--threads 1 --queue-size 2 --max-wait-us 1500000 "
                                "--max-input-tokens 8 --request-timeout-ms 1000"),
                     0);
    http_resp r;
    expect_error(s2.port, "POST", "/classify", "",
                 "{\"inputs\": \"one two three four five six "
                 "seven eight nine\"}",
                 0, 422, "Validation"); /* 11 tokens > 8 */
    pid_t child = fork();
    if (child == 0) { /* holds the queue: 1 input, waits, then times out (504) */
        int rc = http_post(s2.port, "/classify", "{\"inputs\": \"x\"}", &r);
        _exit(rc == 0 && r.status == 504 ? 0 : 1);
    }
    while (metric(s2.port, "ufbd_inputs_accepted_total") < 1)
        usleep(1000); /* it is queued */
    expect_error(s2.port, "POST", "/classify", "", "{\"inputs\": [\"a\", \"b\"]}", 0, 429,
                 "Overloaded");
    assert_int_equal(http_post(s2.port, "/classify", "{\"inputs\": \"a\"}", &r), 0);
    char retry[16];
    assert_true(r.status == 429 || r.status == 504); /* queue: 1 of 2 used -> may fit */
    if (r.status == 429) assert_int_equal(http_header(&r, "Retry-After", retry, sizeof retry), 0);
    http_resp_free(&r);
    int st;
    waitpid(child, &st, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0); /* the deadline passed: 504 */
    assert_int_equal(ufbd_stop(&s2, SIGTERM), 0);
}

static void test_api_keys(void **state) {
    (void)state;
    ufbd_proc s2;
    assert_int_equal(ufbd_start(&s2, MODEL, "--api-keys first-key,second-key"), 0);
    const char *body = "{\"inputs\": \"fine\"}";
    expect_error(s2.port, "POST", "/classify", "", body, 0, 401, "Unauthorized");
    expect_error(s2.port, "POST", "/classify", "Authorization: Bearer second-kez\r\n", body, 0, 401,
                 "Unauthorized");
    http_resp r;
    assert_int_equal(http_request(s2.port, "POST", "/classify",
                                  "Authorization: Bearer second-key\r\n", body, strlen(body), &r),
                     0);
    assert_int_equal(r.status, 200);
    http_resp_free(&r);
    assert_int_equal(http_get(s2.port, "/health/ready", &r), 0); /* probes stay open */
    assert_int_equal(r.status, 200);
    http_resp_free(&r);
    assert_int_equal(http_get(s2.port, "/metrics", &r), 0);
    assert_int_equal(r.status, 200);
    http_resp_free(&r);
    assert_int_equal(ufbd_stop(&s2, SIGTERM), 0);
}

/* ---- Metrics ---- */

static double metric(int port, const char *series) {
    http_resp r;
    assert_int_equal(http_get(port, "/metrics", &r), 0);
    char line[256];
    snprintf(line, sizeof line, "\n%s ", series); /* the sample, not its # HELP line */
    const char *at = strstr(r.body, line);
    double v = at ? atof(at + strlen(line)) : -1;
    http_resp_free(&r);
    return v;
}

static void test_metrics_count_exactly(void **state) {
    (void)state;
    const char *ok = "ufbd_requests_total{route=\"classify\",status=\"200\"}";
    const char *inputs = "ufbd_inputs_total";
    double before = metric(srv.port, ok), in_before = metric(srv.port, inputs);
    assert_true(before >= 0 && in_before >= 0);
    for (int i = 0; i < 7; i++)
        json_decref(classify_one(texts[i]));
    json_decref(post_json(srv.port, "/classify", "{\"inputs\": [\"a\", \"b\", \"c\"]}", 200));
    assert_true(metric(srv.port, ok) == before + 8);
    assert_true(metric(srv.port, inputs) == in_before + 10);
    assert_true(metric(srv.port, "ufbd_fff_leaves_per_layer") > 0);
}

/* ---- SIGTERM with 64 requests in flight ---- */

typedef struct drain_arg {
    int port, status;
    pthread_barrier_t *go;
} drain_arg;

static void *drain_client(void *p) {
    drain_arg *a = p;
    http_resp r;
    pthread_barrier_wait(a->go);
    a->status = http_post(a->port, "/classify", "{\"inputs\": \"still answered\"}", &r) == 0
                    ? r.status
                    : -1;
    http_resp_free(&r);
    return NULL;
}

static void test_sigterm_drains_in_flight(void **state) {
    (void)state;

    enum { N = 64 };

    ufbd_proc s2; /* one worker, batches of 8 */
    assert_int_equal(
        ufbd_start(&s2, MODEL, "--threads 1 --max-batch-requests 8 --max-wait-us 50000"), 0);
    /* a request whose body is still arriving when SIGTERM comes: accepted, so answered */
    const char *body = "{\"inputs\": \"half now, half after the signal\"}";
    char head[256];
    snprintf(head, sizeof head,
             "POST /classify HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
             "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%.10s",
             strlen(body), body);
    int slow = http_connect(s2.port), probe = http_connect(s2.port), late = http_connect(s2.port);
    assert_int_equal(send_all(slow, head, strlen(head)), 0);
    while (metric(s2.port, "ufbd_in_flight_requests") < 2)
        usleep(1000);
    pthread_t th[N];
    drain_arg args[N];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, N);
    for (int i = 0; i < N; i++) {
        args[i] = (drain_arg){s2.port, 0, &go};
        pthread_create(&th[i], NULL, drain_client, &args[i]);
    }
    while (metric(s2.port, "ufbd_inputs_accepted_total") < N)
        usleep(1000); /* all queued */
    kill(s2.pid, SIGTERM);
    usleep(50000);
    const char *get = "GET /health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    http_resp r = {0};
    assert_int_equal(send_all(probe, get, strlen(get)), 0);
    assert_int_equal(read_response(probe, &r), 0);
    assert_int_equal(r.status, 503); /* readiness turned at once */
    assert_non_null(strstr(r.body, "draining"));
    http_resp_free(&r);
    /* a new request on an already open connection after the signal: 503 with a JSON error */
    const char *post = "POST /classify HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                       "Content-Type: application/json\r\nContent-Length: 15\r\n\r\n"
                       "{\"inputs\": \"a\"}";
    assert_int_equal(send_all(late, post, strlen(post)), 0);
    assert_int_equal(read_response(late, &r), 0);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "\"error_type\":\"Unhealthy\""));
    http_resp_free(&r);
    close(late);
    assert_int_equal(send_all(slow, body + 10, strlen(body) - 10), 0);
    assert_int_equal(read_response(slow, &r), 0);
    assert_int_equal(r.status, 200);
    http_resp_free(&r);
    close(slow);
    close(probe);
    int n_ok = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        n_ok += args[i].status == 200;
    }
    printf("  SIGTERM with %d requests in flight (+1 still uploading): %d answered 200, "
           "readiness 503 while draining\n",
           N, n_ok);
    assert_int_equal(n_ok, N);
    assert_int_equal(ufbd_stop(&s2, 0), 0); /* already exiting: wait for exit code 0 */
    pthread_barrier_destroy(&go);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_endpoints),
        cmocka_unit_test(test_classify_matches_engine),
        cmocka_unit_test(test_concurrent_batches_identical),
        cmocka_unit_test(test_worker_threads),
        cmocka_unit_test(test_request_id_and_timing_headers),
        cmocka_unit_test(test_batch_request_and_item_errors),
        cmocka_unit_test(test_stress_many_requests),
        cmocka_unit_test(test_predict_tei_and_tokenize),
        cmocka_unit_test(test_error_statuses),
        cmocka_unit_test(test_metrics_count_exactly),
        cmocka_unit_test(test_api_keys),
        cmocka_unit_test(test_limits_timeouts_overload),
        cmocka_unit_test(test_sigterm_drains_in_flight),
    };
    return cmocka_run_group_tests_name("server", tests, setup, teardown);
}
