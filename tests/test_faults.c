/* test_faults.c — faults the server must refuse cleanly or survive (issue 7, item 5).
 *
 * - Broken model folders (truncated, garbage header, config.json that disagrees with the
 *   tensors, bad or missing config.json or tokenizer.json) and bad settings (config file,
 *   environment, a port in use, a failing warm-up): ufbd exits non-zero with exactly one
 *   non-empty line on stderr that names the file, key or address.
 * - SIGKILL under load, then a restart on the same port: ready again, same answers.
 * - An injected failure of the worker's forward pass (build/ufbd-fault, UFB_FAULT_FAIL_EVERY)
 *   fails that batch's requests with 500 and the JSON error, is counted in the metrics, and
 *   the next requests get the engine's exact answers.
 * - Clients that close their connection while their request is computed are counted
 *   (ufbd_client_disconnects_total, status 499), a client that stays gets its answer, and
 *   nothing stays in flight.
 * SIGTERM under load (every accepted request answered, exit 0) is test_server's
 * test_sigterm_drains_in_flight.
 */
#include "test_util.h"

#include "http_client.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MODEL FIXTURES "/bert_text"

static char tmpdir[64];
static ufb_model *model;

static int setup(void **state) {
    (void)state;
    char err[256];
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ufb_test_faults_XXXXXX");
    model = ufb_model_load(MODEL, NULL, err, sizeof err);
    return mkdtemp(tmpdir) && model ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ufb_model_free(model);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- Helpers ---- */

static const char *build_dir(void) {
    const char *b = getenv("BUILD");
    return b && *b ? b : "build";
}

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void sh(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    assert_int_equal(system(cmd), 0);
}

/* A fresh copy of the fixture at tmpdir/name; @return its path (static buffer). */
static const char *copy_model(const char *name) {
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, name);
    sh("rm -rf '%s' && cp -r " MODEL " '%s'", dir, dir);
    return dir;
}

static void write_file(const char *dir, const char *name, const char *text) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    fclose(f);
}

static int count_nonempty_lines(const char *s) {
    int n = 0;
    for (const char *p = s; *p; p++)
        n += *p != '\n' && (p[1] == '\n' || p[1] == 0);
    return n;
}

/* Run `[env] BUILD/bin args` and wait for it to exit; a server that gets ready instead is
 * killed (status -1). stderr goes to err (NUL-terminated). @return the exit status. */
static int run_to_exit(const char *env, const char *bin, const char *args, char *err, size_t cap) {
    char cmd[4096], log[sizeof((ufbd_proc *)0)->log_path];
    snprintf(log, sizeof log, "%s/stderr.txt", tmpdir);
    snprintf(cmd, sizeof cmd, "exec env %s %s/%s %s 2>'%s'", env ? env : "", build_dir(), bin, args,
             log);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    ufbd_proc p = {.pid = pid};
    snprintf(p.log_path, sizeof p.log_path, "%s", log);
    int st = 0, status = -1;
    for (int i = 0; i < 12000; i++) { /* up to 4 min: a guard against a hang, not a timing */
        if (waitpid(pid, &st, WNOHANG) == pid) {
            status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
            break;
        }
        if (log_has(&p, "ufbd: ready", NULL)) break;
        usleep(20000);
    }
    if (status == -1 && waitpid(pid, &st, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    FILE *f = fopen(log, "r");
    size_t n = f ? fread(err, 1, cap - 1, f) : 0;
    err[n] = 0;
    if (f) fclose(f);
    return status;
}

/* ufbd must exit with `code` and exactly one non-empty line "ufbd: ..." containing each
 * needle (NULL-terminated list). */
static void expect_refusal(const char *what, const char *env, const char *bin, const char *args,
                           int code, const char *const *needles) {
    char err[8192];
    int status = run_to_exit(env, bin, args, err, sizeof err);
    bool ok = status == code && count_nonempty_lines(err) == 1 && !strncmp(err, "ufbd: ", 6);
    for (int i = 0; needles[i]; i++)
        ok = ok && strstr(err, needles[i]);
    printf("  %-28s exit %d: %s", what, status, err);
    if (!ok) fprintf(stderr, "  %s: want exit %d and one line with '%s'\n", what, code, needles[0]);
    assert_int_equal(status, code);
    assert_int_equal(count_nonempty_lines(err), 1);
    assert_memory_equal(err, "ufbd: ", 6);
    for (int i = 0; needles[i]; i++)
        assert_non_null(strstr(err, needles[i]));
}

#define NEEDLES(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Refusal with the broken model folder `dir`: exit 1, the line names the folder and `file`. */
static void expect_model_refusal(const char *what, const char *dir, const char *file) {
    char args[700];
    snprintf(args, sizeof args, "--port 0 --model '%s'", dir);
    expect_refusal(what, NULL, "ufbd", args, 1, NEEDLES(dir, file));
}

/* ---- Broken model folders and settings ---- */

static void test_broken_models_refuse_to_start(void **state) {
    (void)state;
    const char *dir = copy_model("truncated");
    sh("truncate -s 400000 '%s/model.safetensors'", dir);
    expect_model_refusal("truncated safetensors", dir, "model.safetensors");

    dir = copy_model("garbage-header"); /* a header length far beyond the file */
    sh("printf '\\377\\377\\377\\377\\377\\377\\377\\177garbage' | "
       "dd of='%s/model.safetensors' conv=notrunc status=none",
       dir);
    expect_model_refusal("garbage header length", dir, "model.safetensors");

    dir = copy_model("garbage-json"); /* a plausible length, then no JSON */
    sh("printf '\\100\\000\\000\\000\\000\\000\\000\\000{{{{{{{{' | "
       "dd of='%s/model.safetensors' conv=notrunc status=none",
       dir);
    expect_model_refusal("garbage header JSON", dir, "model.safetensors");

    dir = copy_model("wider-config"); /* config.json says hidden 32, the tensors hold 16 */
    sh("sed -i 's/\"hidden_size\": 16/\"hidden_size\": 32/' '%s/config.json'", dir);
    expect_model_refusal("config.json vs shapes", dir, "bert.embeddings.word_embeddings.weight");

    dir = copy_model("deeper-config"); /* one layer more than the file has */
    sh("sed -i 's/\"num_hidden_layers\": 2/\"num_hidden_layers\": 3/' '%s/config.json'", dir);
    expect_model_refusal("config.json vs layers", dir, "bert.encoder.layer.2");

    dir = copy_model("bad-json-config");
    write_file(dir, "config.json", "{\"model_type\": \"bert\",");
    expect_model_refusal("bad JSON config.json", dir, "config.json");

    dir = copy_model("no-config");
    sh("rm '%s/config.json'", dir);
    expect_model_refusal("missing config.json", dir, "config.json");

    dir = copy_model("no-tokenizer");
    sh("rm '%s/tokenizer.json'", dir);
    expect_model_refusal("missing tokenizer.json", dir, "tokenizer.json");

    dir = copy_model("bad-tokenizer");
    write_file(dir, "tokenizer.json", "{\"model\": [");
    expect_model_refusal("bad JSON tokenizer.json", dir, "tokenizer.json");

    char missing[300];
    snprintf(missing, sizeof missing, "%s/no-such-model", tmpdir);
    expect_model_refusal("missing model folder", missing, "config.json");
}

static void test_bad_settings_refuse_to_start(void **state) {
    (void)state;

    static const struct {
        const char *what, *json, *key;
    } files[] = {
        {"config file not JSON", "{\"port\": ", "line"},
        {"config file unknown key", "{\"queue_sise\": 8}", "queue_sise"},
        {"config file out of range", "{\"queue_size\": 0}", "queue_size"},
        {"config file wrong type", "{\"threads\": \"many\"}", "threads"},
        {"config file not an object", "[1, 2]", "object"},
    };

    char path[300], args[700];
    snprintf(path, sizeof path, "%s/ufbd.json", tmpdir);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        write_file(tmpdir, "ufbd.json", files[i].json);
        snprintf(args, sizeof args, "--port 0 --model " MODEL " --config '%s'", path);
        expect_refusal(files[i].what, NULL, "ufbd", args, 2, NEEDLES(path, files[i].key));
    }
    snprintf(path, sizeof path, "%s/absent.json", tmpdir);
    snprintf(args, sizeof args, "--port 0 --model " MODEL " --config '%s'", path);
    expect_refusal("config file missing", NULL, "ufbd", args, 2, NEEDLES(path));
    expect_refusal("unknown UFBD_ variable", "UFBD_QUEUE=8", "ufbd", "--port 0 --model " MODEL, 2,
                   NEEDLES("UFBD_QUEUE"));
    expect_refusal("flag out of range", NULL, "ufbd", "--port 0 --model " MODEL " --threads -1", 2,
                   NEEDLES("--threads"));
}

static void test_port_in_use_and_failed_warmup(void **state) {
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0); /* holds a port without SO_REUSEPORT */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 1), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    char args[256], port[16];
    snprintf(port, sizeof port, ":%d", ntohs(a.sin_port));
    snprintf(args, sizeof args, "--port %d --model " MODEL, ntohs(a.sin_port));
    expect_refusal("port in use", NULL, "ufbd", args, 1, NEEDLES("cannot listen", port, "in use"));
    close(fd);
    /* every batch fails, the warm-up batch too */
    expect_refusal("failed warm-up", "UFB_FAULT_FAIL_EVERY=1", "ufbd-fault",
                   "--port 0 --model " MODEL, 1, NEEDLES("warm-up", "out of memory"));
}

/* ---- Metrics and requests ---- */

static double metric(int port, const char *series) {
    http_resp r;
    assert_int_equal(http_get(port, "/metrics", &r), 0);
    char line[256];
    snprintf(line, sizeof line, "\n%s ", series); /* the sample, not its # HELP line */
    const char *at = strstr(r.body, line);
    double v = at ? atof(at + strlen(line)) : 0; /* absent series (e.g. status 499): 0 */
    http_resp_free(&r);
    return v;
}

static const char *probe = "{\"inputs\": \"a fine film\", \"raw_scores\": true, "
                           "\"return_stats\": false}";

/* POST the probe; @return its status and, for 200, the results in *results (caller owns). */
static int post_probe(int port, json_t **results) {
    http_resp r;
    assert_int_equal(http_post(port, "/classify", probe, &r), 0);
    json_t *j = json_loads(r.body, 0, NULL);
    assert_non_null(j);
    if (results) *results = json_incref(json_object_get(j, "results"));
    json_decref(j);
    http_resp_free(&r);
    return r.status;
}

/* The results of a 200 equal the engine's own logits for the probe text, bit for bit. */
static void assert_engine_answer(const json_t *results) {
    float logits[UFB_MAX_LABELS];
    engine_logits(model, "a fine film", logits, NULL);
    json_t *lg = json_object_get(json_array_get(results, 0), "logits");
    assert_int_equal(json_array_size(lg), ufb_model_info_get(model)->n_labels);
    for (size_t k = 0; k < json_array_size(lg); k++)
        assert_true((float)json_number_value(json_array_get(lg, k)) == logits[k]);
}

/* ---- SIGKILL under load, restart on the same port ---- */

typedef struct load_arg {
    int port;
    atomic_bool *stop;
    int n_ok, n_other, n_conn_fail;
} load_arg;

static void *load_client(void *p) {
    load_arg *a = p;
    while (!atomic_load(a->stop)) {
        http_resp r;
        if (http_post(a->port, "/classify", "{\"inputs\": [\"keep going\", \"and on\"]}", &r))
            a->n_conn_fail++; /* refused, or reset by the kill */
        else if (r.status == 200)
            a->n_ok++;
        else
            a->n_other++;
        http_resp_free(&r);
    }
    return NULL;
}

/* @return the total 200s; asserts no client saw any other status. */
static int run_load(int port, int n_threads, bool (*until)(void *), void *arg) {
    enum { MAX_THREADS = 16 };

    pthread_t th[MAX_THREADS];
    load_arg args[MAX_THREADS];
    atomic_bool stop = false;
    for (int i = 0; i < n_threads; i++) {
        args[i] = (load_arg){.port = port, .stop = &stop};
        pthread_create(&th[i], NULL, load_client, &args[i]);
    }
    while (!until(arg))
        usleep(5000);
    atomic_store(&stop, true);
    int ok = 0, other = 0;
    for (int i = 0; i < n_threads; i++) {
        pthread_join(th[i], NULL);
        ok += args[i].n_ok, other += args[i].n_other;
    }
    assert_int_equal(other, 0);
    return ok;
}

static bool kill_after_load(void *p) { /* SIGKILL once 100 inputs were computed */
    ufbd_proc *s = p;
    if (metric(s->port, "ufbd_inputs_total") < 100) return false;
    int st;
    assert_int_equal(kill(s->pid, SIGKILL), 0);
    assert_int_equal(waitpid(s->pid, &st, 0), s->pid);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    unlink(s->log_path);
    return true;
}

static bool served_200(void *p) { /* 200 more classify answers */
    const int *port = p;
    return metric(*port, "ufbd_requests_total{route=\"classify\",status=\"200\"}") >= 200;
}

static void test_sigkill_under_load_then_restart(void **state) {
    (void)state;
    ufbd_proc s1, s2;
    assert_int_equal(ufbd_start(&s1, MODEL, "--max-wait-us 2000"), 0);
    json_t *before = NULL, *after = NULL;
    assert_int_equal(post_probe(s1.port, &before), 200);
    int ok = run_load(s1.port, 8, kill_after_load, &s1);
    assert_true(ok >= 40); /* 100 inputs, 2 per request, were computed before the kill */
    /* the same port at once: connections of the killed process are in TIME_WAIT */
    assert_int_equal(ufbd_start_bin(&s2, "ufbd", s1.port, MODEL, "--max-wait-us 2000"), 0);
    assert_int_equal(s2.port, s1.port);
    assert_int_equal(post_probe(s2.port, &after), 200);
    assert_true(json_equal(before, after));
    assert_engine_answer(after);
    ok = run_load(s2.port, 8, served_200, &s2.port); /* and under load again: all 200 */
    printf("  SIGKILL under load, restart on port %d: ready, same answer, %d requests 200\n",
           s2.port, ok);
    assert_int_equal(metric(s2.port, "ufbd_requests_total{route=\"classify\",status=\"500\"}"), 0);
    assert_int_equal(ufbd_stop(&s2, SIGTERM), 0);
    json_decref(before);
    json_decref(after);
}

/* ---- Injected worker failure ---- */

static void test_injected_worker_failure(void **state) {
    (void)state;
    ufbd_proc s;
    setenv("UFB_FAULT_FAIL_EVERY", "2", 1); /* batches 2, 4, ... fail; 1 is the warm-up */
    int rc = ufbd_start_bin(&s, "ufbd-fault", 0, MODEL, "--threads 1");
    unsetenv("UFB_FAULT_FAIL_EVERY");
    assert_int_equal(rc, 0);
    int n_500 = 0, n_200 = 0;
    for (int i = 0; i < 6; i++) { /* one worker, one request at a time: one batch each */
        http_resp r;
        assert_int_equal(http_post(s.port, "/classify", probe, &r), 0);
        json_t *j = json_loads(r.body, 0, NULL);
        assert_non_null(j);
        if (i % 2 == 0) { /* batches 2, 4, 6: the documented error body */
            assert_int_equal(r.status, 500);
            assert_string_equal(json_string_value(json_object_get(j, "error_type")), "Internal");
            assert_non_null(
                strstr(json_string_value(json_object_get(j, "error")), "out of memory"));
            assert_true(json_is_string(json_object_get(j, "request_id")));
            n_500++;
        } else { /* the worker survived: the next batch is answered exactly */
            assert_int_equal(r.status, 200);
            assert_engine_answer(json_object_get(j, "results"));
            n_200++;
        }
        json_decref(j);
        http_resp_free(&r);
    }
    http_resp r; /* a request of two inputs in a failing batch (8): both fail, one 500 */
    assert_int_equal(http_post(s.port, "/classify", "{\"inputs\": [\"one\", \"two\"]}", &r), 0);
    assert_int_equal(r.status, 500);
    http_resp_free(&r);
    n_500++;
    assert_int_equal(post_probe(s.port, NULL), 200);
    n_200++;
    assert_int_equal(metric(s.port, "ufbd_requests_total{route=\"classify\",status=\"500\"}"),
                     n_500);
    assert_int_equal(metric(s.port, "ufbd_requests_total{route=\"classify\",status=\"200\"}"),
                     n_200);
    assert_int_equal(metric(s.port, "ufbd_errors_total{type=\"Internal\"}"), n_500 + 1);
    assert_int_equal(metric(s.port, "ufbd_batches_total"), n_200); /* failed ones: not computed */
    assert_int_equal(metric(s.port, "ufbd_workers"), 1);
    assert_int_equal(http_get(s.port, "/health/ready", &r), 0);
    assert_int_equal(r.status, 200);
    http_resp_free(&r);
    printf("  injected forward failures: %d requests 500 (Internal), %d answered exactly\n", n_500,
           n_200);
    assert_int_equal(ufbd_stop(&s, SIGTERM), 0);
}

/* ---- Clients that disconnect mid-inference ---- */

static void *staying_client(void *p) { /* no cmocka asserts off the main thread */
    int *status = p;
    http_resp r;
    *status = http_post(*status, "/classify", probe, &r) == 0 ? r.status : -1; /* in: the port */
    http_resp_free(&r);
    return NULL;
}

static void test_client_disconnect_mid_inference(void **state) {
    (void)state;

    enum { GONE = 4 };

    ufbd_proc s; /* one worker that waits 2 s for a fuller batch: requests stay queued */
    assert_int_equal(ufbd_start(&s, MODEL, "--threads 1 --max-wait-us 2000000"), 0);
    const char *body = "{\"inputs\": \"go\"}";
    char req[256];
    snprintf(req, sizeof req,
             "POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n\r\n%s",
             strlen(body), body);
    int fds[GONE], stay = s.port;
    pthread_t th;
    pthread_create(&th, NULL, staying_client, &stay);
    for (int i = 0; i < GONE; i++) {
        fds[i] = http_connect(s.port);
        assert_true(fds[i] >= 0);
        assert_int_equal(send_all(fds[i], req, strlen(req)), 0);
    }
    while (metric(s.port, "ufbd_inputs_accepted_total") < GONE + 1)
        usleep(1000); /* all queued, none computed yet */
    for (int i = 0; i < GONE; i++)
        close(fds[i]);
    pthread_join(th, NULL);
    assert_int_equal(stay, 200); /* computed in the same batch and answered */
    for (int i = 0; i < 3000 && metric(s.port, "ufbd_client_disconnects_total") < GONE; i++)
        usleep(10000); /* the resumed connections are handled by the HTTP threads */
    assert_int_equal(metric(s.port, "ufbd_client_disconnects_total"), GONE);
    assert_int_equal(metric(s.port, "ufbd_requests_total{route=\"classify\",status=\"499\"}"),
                     GONE);
    assert_int_equal(metric(s.port, "ufbd_requests_total{route=\"classify\",status=\"200\"}"), 1);
    assert_int_equal(metric(s.port, "ufbd_inputs_total"), GONE + 1); /* all were computed */
    assert_int_equal(metric(s.port, "ufbd_in_flight_requests"), 1);  /* the scrape itself */
    json_t *results = NULL;
    assert_int_equal(post_probe(s.port, &results), 200);
    assert_engine_answer(results);
    json_decref(results);
    printf("  %d clients gone mid-inference: counted, logged 499; the staying one got 200\n", GONE);
    assert_int_equal(ufbd_stop(&s, SIGTERM), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_broken_models_refuse_to_start),
        cmocka_unit_test(test_bad_settings_refuse_to_start),
        cmocka_unit_test(test_port_in_use_and_failed_warmup),
        cmocka_unit_test(test_injected_worker_failure),
        cmocka_unit_test(test_client_disconnect_mid_inference),
        cmocka_unit_test(test_sigkill_under_load_then_restart),
    };
    return cmocka_run_group_tests_name("faults", tests, setup, teardown);
}
