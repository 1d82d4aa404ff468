/* test_bad_input.c — a table of malformed and hostile requests against the real server.
 *
 * Each row must get its documented status with a JSON error body (error, error_type,
 * request_id), and after every row a normal request must still get the same correct answer.
 * Then the transport-level cases: headers over the limit, a slowloris sender, a client that
 * disconnects mid-body and one that disconnects while its request is being computed.
 */
#include "test_util.h"

#include "http_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODEL FIXTURES "/bert_text"

static ufbd_proc srv;
static char *baseline; /* the body of the normal request's answer, without its request id */

typedef struct bad_case {
    const char *what, *method, *path, *headers, *body;
    int status;
} bad_case;

#define J "Content-Type: application/json\r\n"

static const bad_case cases[] = {
    /* broken JSON: 400 */
    {"empty body", "POST", "/classify", J, "", 400},
    {"open brace", "POST", "/classify", J, "{", 400},
    {"missing value", "POST", "/classify", J, "{\"inputs\": }", 400},
    {"trailing comma", "POST", "/classify", J, "{\"inputs\": \"a\",}", 400},
    {"single quotes", "POST", "/classify", J, "{'inputs': 'a'}", 400},
    {"trailing garbage", "POST", "/classify", J, "{\"inputs\": \"a\"} x", 400},
    {"unterminated string", "POST", "/classify", J, "{\"inputs\": \"abc}", 400},
    {"bare word", "POST", "/classify", J, "inputs", 400},
    {"duplicate key", "POST", "/classify", J, "{\"inputs\": \"a\", \"inputs\": \"b\"}", 400},
    {"lone surrogate escape", "POST", "/classify", J, "{\"inputs\": \"\\ud800\"}", 400},
    {"bad escape", "POST", "/classify", J, "{\"inputs\": \"\\q\"}", 400},
    {"huge integer", "POST", "/classify", J, "{\"inputs\": \"a\", \"top_k\": 1e999999}", 400},
    {"integer overflow", "POST", "/classify", J,
     "{\"inputs\": \"a\", \"top_k\": 99999999999999999999999}", 400},
    {"empty inputs list", "POST", "/classify", J, "{\"inputs\": []}", 400},
    /* wrong shapes and types: 422 */
    {"top-level array", "POST", "/classify", J, "[\"a\"]", 422},
    {"top-level string", "POST", "/classify", J, "\"a\"", 422},
    {"top-level number", "POST", "/classify", J, "42", 422},
    {"no inputs", "POST", "/classify", J, "{}", 422},
    {"inputs number", "POST", "/classify", J, "{\"inputs\": 5}", 422},
    {"inputs true", "POST", "/classify", J, "{\"inputs\": true}", 422},
    {"inputs null", "POST", "/classify", J, "{\"inputs\": null}", 422},
    {"inputs object", "POST", "/classify", J, "{\"inputs\": {\"a\": 1}}", 422},
    {"inputs list of numbers", "POST", "/classify", J, "{\"inputs\": [1, 2]}", 422},
    {"triple", "POST", "/classify", J, "{\"inputs\": [[\"a\", \"b\", \"c\"]]}", 422},
    {"empty inner list", "POST", "/classify", J, "{\"inputs\": [[]]}", 422},
    {"pair with number", "POST", "/classify", J, "{\"inputs\": [[\"a\", 1]]}", 422},
    {"nested lists", "POST", "/classify", J, "{\"inputs\": [[[\"a\"]]]}", 422},
    {"truncate string", "POST", "/classify", J, "{\"inputs\": \"a\", \"truncate\": \"yes\"}", 422},
    {"raw_scores number", "POST", "/classify", J, "{\"inputs\": \"a\", \"raw_scores\": 1}", 422},
    {"top_k negative", "POST", "/classify", J, "{\"inputs\": \"a\", \"top_k\": -1}", 422},
    {"top_k zero", "POST", "/classify", J, "{\"inputs\": \"a\", \"top_k\": 0}", 422},
    {"top_k float", "POST", "/classify", J, "{\"inputs\": \"a\", \"top_k\": 1.5}", 422},
    {"top_k big", "POST", "/classify", J, "{\"inputs\": \"a\", \"top_k\": 1000000}", 422},
    {"return_stats null", "POST", "/classify", J, "{\"inputs\": \"a\", \"return_stats\": null}",
     422},
    {"unknown field", "POST", "/classify", J, "{\"inputs\": \"a\", \"input\": \"b\"}", 422},
    {"empty text", "POST", "/classify", J, "{\"inputs\": \"\"}", 422},
    {"empty pair", "POST", "/classify", J, "{\"inputs\": [[\"\", \"\"]]}", 422},
    {"tei return_paths", "POST", "/predict", J, "{\"inputs\": \"a\", \"return_paths\": true}", 422},
    {"tei direction", "POST", "/predict", J,
     "{\"inputs\": \"a\", \"truncation_direction\": \"Left\"}", 422},
    {"tokenize number", "POST", "/tokenize", J, "{\"inputs\": 3}", 422},
    {"tokenize unknown field", "POST", "/tokenize", J, "{\"inputs\": \"a\", \"x\": 1}", 422},
    /* invalid UTF-8 anywhere in the body: 422 */
    {"utf8 bad continuation", "POST", "/classify", J, "{\"inputs\": \"\xc3\x28\"}", 422},
    {"utf8 surrogate", "POST", "/classify", J, "{\"inputs\": \"\xed\xa0\x80\"}", 422},
    {"utf8 overlong", "POST", "/classify", J, "{\"inputs\": \"\xc0\xaf\"}", 422},
    {"utf8 above U+10FFFF", "POST", "/classify", J, "{\"inputs\": \"\xf4\x90\x80\x80\"}", 422},
    {"utf8 lone continuation", "POST", "/classify", J, "{\"inputs\": \"\x80\"}", 422},
    {"utf8 truncated", "POST", "/classify", J, "{\"inputs\": \"\xe4\xb8\"}", 422},
    {"utf8 in a key", "POST", "/classify", J, "{\"inp\xff\": \"a\"}", 422},
    {"utf8 tokenize", "POST", "/tokenize", J, "{\"inputs\": \"\xfe\"}", 422},
    /* methods: 405 */
    {"PUT classify", "PUT", "/classify", J, "{\"inputs\": \"a\"}", 405},
    {"GET classify", "GET", "/classify", "", NULL, 405},
    {"DELETE info", "DELETE", "/info", "", NULL, 405},
    {"POST health", "POST", "/health", J, "{}", 405},
    {"PATCH page", "PATCH", "/", J, "{}", 405},
    {"POST metrics", "POST", "/metrics", J, "{}", 405},
    /* content types: 415 */
    {"text/plain", "POST", "/classify", "Content-Type: text/plain\r\n", "{\"inputs\": \"a\"}", 415},
    {"no content type", "POST", "/classify", "X-Content-Type: none\r\n", "{\"inputs\": \"a\"}",
     415},
    {"form", "POST", "/classify", "Content-Type: application/x-www-form-urlencoded\r\n", "inputs=a",
     415},
    {"jsonx", "POST", "/classify", "Content-Type: application/jsonx\r\n", "{\"inputs\": \"a\"}",
     415},
    {"multipart", "POST", "/predict", "Content-Type: multipart/form-data; boundary=x\r\n", "--x",
     415},
    /* routes: 404 */
    {"trailing slash", "POST", "/classify/", J, "{\"inputs\": \"a\"}", 404},
    {"upper case", "POST", "/CLASSIFY", J, "{\"inputs\": \"a\"}", 404},
    {"versioned", "POST", "/v1/classify", J, "{\"inputs\": \"a\"}", 404},
    {"dot dot", "GET", "/../etc/passwd", "", NULL, 404},
    {"query", "GET", "/nothing?x=1", "", NULL, 404},
    /* size: 413 from Content-Length, before the body */
    {"declared 2 GB", "POST", "/classify", J, NULL, 413}, /* sent by send_case */
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

static const char *probe = "{\"inputs\": \"a fine film\", \"raw_scores\": true, "
                           "\"return_stats\": false}";

/* The same results as at the start (the body's metrics hold timings, so compare results). */
static void check_still_serving(const char *after) {
    http_resp r;
    assert_int_equal(http_request(srv.port, "POST", "/classify", J, probe, strlen(probe), &r), 0);
    json_t *now = json_loads(r.body, 0, NULL), *then = json_loads(baseline, 0, NULL);
    bool same = r.status == 200 && now && then &&
                json_equal(json_object_get(now, "results"), json_object_get(then, "results"));
    if (!same) fprintf(stderr, "  after '%s': %d %s\n", after, r.status, r.body);
    assert_true(same);
    json_decref(now);
    json_decref(then);
    http_resp_free(&r);
}

static int setup(void **state) {
    (void)state;
    if (ufbd_start(&srv, MODEL, "--connection-timeout-s 2") != 0) return -1;
    http_resp r;
    if (http_request(srv.port, "POST", "/classify", J, probe, strlen(probe), &r) || r.status != 200)
        return -1;
    baseline = r.body;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    free(baseline);
    return ufbd_stop(&srv, SIGTERM) == 0 ? 0 : -1;
}

/* Send one table row; the 413 row declares a 2 GB body it never sends. */
static void send_case(const bad_case *c, http_resp *r) {
    if (c->status != 413) {
        assert_int_equal(http_request(srv.port, c->method, c->path, c->headers, c->body,
                                      c->body ? strlen(c->body) : 0, r),
                         0);
        return;
    }
    int fd = http_connect(srv.port);
    const char *req = "POST /classify HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      "Content-Type: application/json\r\nContent-Length: 2000000000\r\n\r\n{";
    assert_int_equal(send_all(fd, req, strlen(req)), 0);
    memset(r, 0, sizeof *r);
    assert_int_equal(read_response(fd, r), 0);
    close(fd);
}

static void test_bad_request_table(void **state) {
    (void)state;
    int ok = 0;
    for (int i = 0; i < N_CASES; i++) {
        const bad_case *c = &cases[i];
        http_resp r;
        send_case(c, &r);
        json_t *j = json_loads(r.body, 0, NULL);
        bool good = r.status == c->status && j && json_is_string(json_object_get(j, "error")) &&
                    json_is_string(json_object_get(j, "error_type")) &&
                    json_is_string(json_object_get(j, "request_id"));
        if (!good)
            fprintf(stderr, "  %-24s want %d, got %d %s\n", c->what, c->status, r.status, r.body);
        ok += good;
        json_decref(j);
        http_resp_free(&r);
        check_still_serving(c->what);
    }
    printf("  bad-input table: %d of %d requests got their documented status and JSON error; "
           "the server answered correctly after each\n",
           ok, N_CASES);
    assert_int_equal(ok, N_CASES);
}

/* Requests that are hostile by size: 10,000 inputs, a 1 MB single token, NUL bytes, deep
 * nesting; each answered as documented. */
static void test_big_and_odd_bodies(void **state) {
    (void)state;
    size_t cap = 1 << 20;
    char *b = malloc(cap + 64);
    http_resp r;
    char *w = b + sprintf(b, "{\"inputs\": [\"x\"");
    for (int i = 1; i < 10000; i++)
        w += sprintf(w, ",\"x\"");
    strcpy(w, "]}");
    assert_int_equal(http_post(srv.port, "/classify", b, &r), 0);
    assert_int_equal(r.status, 422); /* more than max_inputs */
    http_resp_free(&r);
    size_t n = snprintf(b, cap, "{\"inputs\": \"");
    memset(b + n, 'a', cap - n - 100); /* one 1 MB word -> [UNK] */
    strcpy(b + cap - 100, "\"}");
    assert_int_equal(http_post(srv.port, "/classify", b, &r), 0);
    assert_int_equal(r.status, 200);
    http_resp_free(&r);
    assert_int_equal(http_post(srv.port, "/classify", "{\"inputs\": \"a\\u0000b\\u0000\"}", &r), 0);
    assert_int_equal(r.status, 200); /* NUL is a character the normalizer drops */
    http_resp_free(&r);
    n = 0;
    n += (size_t)snprintf(b, cap, "{\"inputs\": ");
    for (int i = 0; i < 100000; i++)
        b[n++] = '[';
    strcpy(b + n, "]}");
    assert_int_equal(http_post(srv.port, "/classify", b, &r), 0);
    assert_int_equal(r.status, 400); /* nesting beyond the parser's depth limit */
    http_resp_free(&r);
    free(b);
    check_still_serving("big bodies");
}

static void test_transport_abuse(void **state) {
    (void)state;
    /* headers over the limit: refused by libmicrohttpd itself (status >= 400), still serving */
    char *big = malloc(200000);
    strcpy(big, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(big + strlen(big), 'h', 150000);
    strcpy(big + 150000 + 39, "\r\n\r\n");
    int fd = http_connect(srv.port);
    send_all(fd, big, strlen(big)); /* may fail once the server closed: fine */
    http_resp r = {0};
    if (read_response(fd, &r) == 0) assert_true(r.status >= 400);
    http_resp_free(&r);
    close(fd);
    free(big);
    check_still_serving("huge header");
    /* slowloris: half a request line, then nothing: closed after connection_timeout_s (2) */
    fd = http_connect(srv.port);
    assert_int_equal(send_all(fd, "POST /classify HTTP/1.1\r\nHost:", 31), 0);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 6000), 1); /* readable: EOF */
    char c;
    assert_true(recv(fd, &c, 1, 0) <= 0);
    close(fd);
    check_still_serving("slowloris");
    /* disconnect mid-body, and right after sending a full request (mid-inference) */
    fd = http_connect(srv.port);
    const char *half = "POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Content-Length: 100\r\n\r\n{\"inputs\": ";
    assert_int_equal(send_all(fd, half, strlen(half)), 0);
    close(fd);
    for (int i = 0; i < 20; i++) {
        fd = http_connect(srv.port);
        const char *full = "POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: "
                           "application/json\r\nContent-Length: 17\r\n\r\n{\"inputs\": \"go\"}";
        send_all(fd, full, strlen(full));
        close(fd);
    }
    check_still_serving("disconnects");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_request_table),
        cmocka_unit_test(test_big_and_odd_bodies),
        cmocka_unit_test(test_transport_abuse),
    };
    return cmocka_run_group_tests_name("bad_input", tests, setup, teardown);
}
