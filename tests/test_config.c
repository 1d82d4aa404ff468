/* test_config.c — config/: defaults, each source alone, precedence file < env < flags, every
 * error class with its exact one-line message, API key lists, the help table, the example file.
 * Environments are passed as explicit envp arrays; config files are temp files under /tmp. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#define ARGS(...) ((char *[]){__VA_ARGS__, NULL})
#define ENV(...)  ((char *[]){__VA_ARGS__, NULL})
#define NO_ENV    ENV(NULL)
#define NO_ARGS   ARGS(NULL)

static char err[512];
static char tmp_paths[128][32];
static int n_tmp;

/* Every key, as the header documents them. */
static const char *all_keys[] = {"host",
                                 "port",
                                 "model",
                                 "threads",
                                 "http_threads",
                                 "max_batch_tokens",
                                 "max_batch_requests",
                                 "max_wait_us",
                                 "queue_size",
                                 "max_input_tokens",
                                 "max_inputs",
                                 "body_limit",
                                 "request_timeout_ms",
                                 "connection_timeout_s",
                                 "drain_timeout_s",
                                 "api_keys",
                                 "cors_origin",
                                 "log_format",
                                 "warmup"};

#define N_KEYS (sizeof all_keys / sizeof all_keys[0])

/* The integer settings, their ranges and fields. */
static const struct int_key {
    const char *key, *flag, *env;
    long lo, hi;
    size_t off;
    int is_long;
} int_keys[] = {

#define IK(k, f, e, lo, hi) \
    { #k, f, e, lo, hi, offsetof(cfg_settings, k), 0 }
    IK(port, "--port", "UFBD_PORT", 0, 65535),
    IK(threads, "--threads", "UFBD_THREADS", 0, 1024),
    IK(http_threads, "--http-threads", "UFBD_HTTP_THREADS", 0, 256),
    IK(max_batch_tokens, "--max-batch-tokens", "UFBD_MAX_BATCH_TOKENS", 1, 1048576),
    IK(max_batch_requests, "--max-batch-requests", "UFBD_MAX_BATCH_REQUESTS", 1, 4096),
    IK(max_wait_us, "--max-wait-us", "UFBD_MAX_WAIT_US", 0, 10000000),
    IK(queue_size, "--queue-size", "UFBD_QUEUE_SIZE", 1, 1000000),
    IK(max_input_tokens, "--max-input-tokens", "UFBD_MAX_INPUT_TOKENS", 0, 65536),
    IK(max_inputs, "--max-inputs", "UFBD_MAX_INPUTS", 1, 100000),
    {"body_limit", "--body-limit", "UFBD_BODY_LIMIT", 1, 1073741824,
     offsetof(cfg_settings, body_limit), 1},
    IK(request_timeout_ms, "--request-timeout-ms", "UFBD_REQUEST_TIMEOUT_MS", 1, 3600000),
    IK(connection_timeout_s, "--connection-timeout-s", "UFBD_CONNECTION_TIMEOUT_S", 1, 86400),
    IK(drain_timeout_s, "--drain-timeout-s", "UFBD_DRAIN_TIMEOUT_S", 0, 3600),
#undef IK
};

static long get_int(const cfg_settings *s, const struct int_key *k) {
    const char *p = (const char *)s + k->off;
    return k->is_long ? *(const long *)(const void *)p : *(const int *)(const void *)p;
}

/* ---- Helpers ---- */

/* Write text to a fresh /tmp file; removed in the group teardown. @return its path. */
static const char *write_tmp(const char *text) {
    assert_true(n_tmp < 128);
    char *path = tmp_paths[n_tmp++];
    strcpy(path, "/tmp/ufbd_cfg_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return path;
}

static int teardown_files(void **state) {
    (void)state;
    for (int i = 0; i < n_tmp; i++)
        unlink(tmp_paths[i]);
    n_tmp = 0;
    return 0;
}

/* cfg_load with argv = "ufbd" + args (NULL-terminated). */
static int load(cfg_settings *s, char **envp, char **args) {
    char *argv[64] = {"ufbd"};
    int argc = 1;
    while (args[argc - 1]) {
        argv[argc] = args[argc - 1];
        argc++;
    }
    err[0] = '\0';
    return cfg_load(s, argc, argv, envp, err, sizeof err);
}

/* Assert cfg_load fails with exactly the message `want`. */
static void expect_err(char **envp, char **args, const char *want) {
    cfg_settings s;
    assert_int_equal(load(&s, envp, args), CFG_ERR);
    assert_string_equal(err, want);
}

/* Load a config file holding `json` and nothing else. */
static int load_json(cfg_settings *s, const char *json, const char **path) {
    *path = write_tmp(json);
    return load(s, NO_ENV, ARGS("--config", (char *)*path));
}

static void expect_file_err(const char *json, const char *what) {
    cfg_settings s;
    const char *path;
    char want[256];
    assert_int_equal(load_json(&s, json, &path), CFG_ERR);
    snprintf(want, sizeof want, "config file %s: %s", path, what);
    assert_string_equal(err, want);
}

static void check_defaults(const cfg_settings *s) {
    assert_string_equal(s->host, "127.0.0.1");
    assert_int_equal(s->port, 8080);
    assert_string_equal(s->model, "models/sst2-minilm-fff");
    assert_int_equal(s->threads, 0);
    assert_int_equal(s->http_threads, 0);
    assert_int_equal(s->max_batch_tokens, 8192);
    assert_int_equal(s->max_batch_requests, 64);
    assert_int_equal(s->max_wait_us, 0);
    assert_int_equal(s->queue_size, 1024);
    assert_int_equal(s->max_input_tokens, 0);
    assert_int_equal(s->max_inputs, 64);
    assert_int_equal(s->body_limit, 1048576);
    assert_int_equal(s->request_timeout_ms, 30000);
    assert_int_equal(s->connection_timeout_s, 15);
    assert_int_equal(s->drain_timeout_s, 30);
    assert_int_equal(s->n_api_keys, 0);
    assert_string_equal(s->cors_origin, "");
    assert_int_equal(s->log_format, CFG_LOG_TEXT);
    assert_int_equal(s->warmup, 1);
}

/* The non-default values that test_{file,env,flags}_every_key set. */
static void check_every_key(const cfg_settings *s) {
    assert_string_equal(s->host, "0.0.0.0");
    assert_int_equal(s->port, 9001);
    assert_string_equal(s->model, "/srv/model");
    assert_int_equal(s->threads, 3);
    assert_int_equal(s->http_threads, 4);
    assert_int_equal(s->max_batch_tokens, 100);
    assert_int_equal(s->max_batch_requests, 5);
    assert_int_equal(s->max_wait_us, 250);
    assert_int_equal(s->queue_size, 7);
    assert_int_equal(s->max_input_tokens, 128);
    assert_int_equal(s->max_inputs, 9);
    assert_int_equal(s->body_limit, 2048);
    assert_int_equal(s->request_timeout_ms, 1500);
    assert_int_equal(s->connection_timeout_s, 20);
    assert_int_equal(s->drain_timeout_s, 0);
    assert_int_equal(s->n_api_keys, 2);
    assert_string_equal(s->api_keys[0], "k1");
    assert_string_equal(s->api_keys[1], "k2");
    assert_string_equal(s->cors_origin, "*");
    assert_int_equal(s->log_format, CFG_LOG_JSON);
    assert_int_equal(s->warmup, 0);
}

/* ---- Defaults and single sources ---- */

static void test_defaults(void **state) {
    (void)state;
    cfg_settings s;
    memset(&s, 0xab, sizeof s);
    cfg_defaults(&s);
    check_defaults(&s);
    assert_int_equal(load(&s, ENV("PATH=/bin", "HOME=/root", "UFB_OTHER=1"), NO_ARGS), CFG_OK);
    check_defaults(&s);
    assert_string_equal(err, "");
    assert_int_equal(cfg_load(&s, 0, NULL, NULL, NULL, 0), CFG_OK);
    check_defaults(&s);
}

static void test_example_file_is_defaults(void **state) {
    (void)state;
    cfg_settings s, d;
    cfg_defaults(&d);
    assert_int_equal(load(&s, NO_ENV, ARGS("--config", "config/ufbd.example.json")), CFG_OK);
    check_defaults(&s);
    assert_memory_equal(&s, &d, sizeof s);
}

static void test_file_every_key(void **state) {
    (void)state;
    cfg_settings s;
    const char *path;
    int rc = load_json(&s,
                       "{\"host\": \"0.0.0.0\", \"port\": 9001, \"model\": \"/srv/model\",\n"
                       " \"threads\": 3, \"http_threads\": 4, \"max_batch_tokens\": 100,\n"
                       " \"max_batch_requests\": 5, \"max_wait_us\": 250, \"queue_size\": 7,\n"
                       " \"max_input_tokens\": 128, \"max_inputs\": 9, \"body_limit\": 2048,\n"
                       " \"request_timeout_ms\": 1500, \"connection_timeout_s\": 20,\n"
                       " \"drain_timeout_s\": 0, \"api_keys\": [\"k1\", \"k2\"],\n"
                       " \"cors_origin\": \"*\", \"log_format\": \"json\", \"warmup\": false}\n",
                       &path);
    assert_int_equal(rc, CFG_OK);
    check_every_key(&s);
}

static void test_env_every_key(void **state) {
    (void)state;
    cfg_settings s;
    char **env =
        ENV("UFBD_HOST=0.0.0.0", "UFBD_PORT=9001", "UFBD_MODEL=/srv/model", "UFBD_THREADS=3",
            "UFBD_HTTP_THREADS=4", "UFBD_MAX_BATCH_TOKENS=100", "UFBD_MAX_BATCH_REQUESTS=5",
            "UFBD_MAX_WAIT_US=250", "UFBD_QUEUE_SIZE=7", "UFBD_MAX_INPUT_TOKENS=128",
            "UFBD_MAX_INPUTS=9", "UFBD_BODY_LIMIT=2k", "UFBD_REQUEST_TIMEOUT_MS=1500",
            "UFBD_CONNECTION_TIMEOUT_S=20", "UFBD_DRAIN_TIMEOUT_S=0", "UFBD_API_KEYS=k1,k2",
            "UFBD_CORS_ORIGIN=*", "UFBD_LOG_FORMAT=json", "UFBD_WARMUP=no", "PATH=/usr/bin");
    assert_int_equal(load(&s, env, NO_ARGS), CFG_OK);
    check_every_key(&s);
}

static void test_flags_every_key(void **state) {
    (void)state;
    cfg_settings s;
    char **args =
        ARGS("--host", "0.0.0.0", "--port=9001", "--model", "/srv/model", "--threads", "3",
             "--http-threads=4", "--max-batch-tokens", "100", "--max-batch-requests", "5",
             "--max-wait-us", "250", "--queue-size", "7", "--max-input-tokens", "128",
             "--max-inputs", "9", "--body-limit", "2048", "--request-timeout-ms", "1500",
             "--connection-timeout-s", "20", "--drain-timeout-s", "0", "--api-keys", "k1,k2",
             "--cors-origin=*", "--log-format", "json", "--warmup=0");
    assert_int_equal(load(&s, NO_ENV, args), CFG_OK);
    check_every_key(&s);
}

/* ---- Precedence ---- */

static void test_precedence(void **state) {
    (void)state;
    cfg_settings s;
    const char *a = write_tmp("{\"port\": 1, \"threads\": 1, \"max_inputs\": 1, "
                              "\"api_keys\": [\"a\", \"b\", \"c\"]}");
    const char *b = write_tmp("{\"port\": 5}");
    char env_a[64], env_b[64];
    snprintf(env_a, sizeof env_a, "UFBD_CONFIG=%s", a);
    snprintf(env_b, sizeof env_b, "UFBD_CONFIG=%s", b);

    /* file < env < flag, key by key */
    char **env = ENV(env_a, "UFBD_PORT=2", "UFBD_THREADS=2", "UFBD_API_KEYS=d");
    assert_int_equal(load(&s, env, ARGS("--port", "3")), CFG_OK);
    assert_int_equal(s.port, 3);
    assert_int_equal(s.threads, 2);
    assert_int_equal(s.max_inputs, 1);
    assert_int_equal(s.max_batch_tokens, 8192);
    assert_int_equal(s.n_api_keys, 1); /* a later source replaces the list, never merges */
    assert_string_equal(s.api_keys[0], "d");
    assert_int_equal(load(&s, env, NO_ARGS), CFG_OK);
    assert_int_equal(s.port, 2);
    assert_int_equal(load(&s, ENV(env_a), NO_ARGS), CFG_OK);
    assert_int_equal(s.port, 1);
    assert_int_equal(s.n_api_keys, 3);

    /* --config beats UFBD_CONFIG; both flag spellings; the last flag wins */
    assert_int_equal(load(&s, ENV(env_b), NO_ARGS), CFG_OK);
    assert_int_equal(s.port, 5);
    assert_int_equal(load(&s, ENV(env_b), ARGS("--config", (char *)a)), CFG_OK);
    assert_int_equal(s.port, 1);
    char flag_a[64];
    snprintf(flag_a, sizeof flag_a, "--config=%s", a);
    assert_int_equal(load(&s, ENV(env_b), ARGS(flag_a)), CFG_OK);
    assert_int_equal(s.port, 1);
    assert_int_equal(load(&s, NO_ENV, ARGS("--port=7", "--port", "8")), CFG_OK);
    assert_int_equal(s.port, 8);
    assert_int_equal(load(&s, ENV("UFBD_CONFIG="), NO_ARGS), CFG_OK); /* empty = no file */
    check_defaults(&s);
}

static void test_help_and_version(void **state) {
    (void)state;
    cfg_settings s;
    /* --help wins over bad values, a missing file and unknown env, which are read later */
    char **bad_env = ENV("UFBD_PROT=1", "UFBD_CONFIG=/nonexistent/ufbd.json");
    assert_int_equal(load(&s, bad_env, ARGS("--port", "99999", "--help")), CFG_HELP);
    assert_int_equal(load(&s, NO_ENV, ARGS("-h")), CFG_HELP);
    assert_int_equal(load(&s, NO_ENV, ARGS("--version")), CFG_VERSION);
    assert_int_equal(load(&s, NO_ENV, ARGS("--version", "--help")), CFG_VERSION);
}

static void test_help_lists_every_key(void **state) {
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    cfg_print_help(f);
    fclose(f);
    assert_int_equal(strncmp(text, "usage: ufbd [--config FILE] [--KEY VALUE ...]\n", 46), 0);
    assert_non_null(strstr(text, "--config FILE"));
    assert_non_null(strstr(text, "UFBD_CONFIG"));
    assert_non_null(strstr(text, "--help"));
    assert_non_null(strstr(text, "--version"));
    for (size_t i = 0; i < N_KEYS; i++) {
        char flag[64], env[64];
        size_t j;
        for (j = 0; all_keys[i][j]; j++) {
            flag[j] = all_keys[i][j] == '_' ? '-' : all_keys[i][j];
            env[j] = (char)(all_keys[i][j] == '_' ? '_' : all_keys[i][j] - 'a' + 'A');
        }
        flag[j] = env[j] = '\0';
        char want[160];
        snprintf(want, sizeof want, "\n  --%s ", flag); /* each setting starts a row */
        assert_non_null(strstr(text, want));
        char *row = strstr(text, want) + 1;
        char *eol = strchr(row, '\n');
        snprintf(want, sizeof want, "UFBD_%s ", env);
        char *at = strstr(row, want);
        assert_true(at != NULL && at < eol); /* the env name is on the same row */
    }
    assert_non_null(strstr(text, "models/sst2-minilm-fff")); /* defaults are shown */
    assert_non_null(strstr(text, "8192"));
    assert_non_null(strstr(text, "[0..65535]")); /* and ranges */
    free(text);
}

/* ---- Errors ---- */

static void test_int_ranges(void **state) {
    (void)state;
    cfg_settings s;
    char arg[64], want[160], env[64];
    for (size_t i = 0; i < sizeof int_keys / sizeof int_keys[0]; i++) {
        const struct int_key *k = &int_keys[i];
        snprintf(arg, sizeof arg, "%s=%ld", k->flag, k->lo);
        assert_int_equal(load(&s, NO_ENV, ARGS(arg)), CFG_OK);
        assert_int_equal(get_int(&s, k), k->lo);
        snprintf(arg, sizeof arg, "%s=%ld", k->flag, k->hi);
        assert_int_equal(load(&s, NO_ENV, ARGS(arg)), CFG_OK);
        assert_int_equal(get_int(&s, k), k->hi);

        snprintf(arg, sizeof arg, "%s=%ld", k->flag, k->lo - 1);
        snprintf(want, sizeof want, "%s: %ld is out of range %ld..%ld", k->flag, k->lo - 1, k->lo,
                 k->hi);
        expect_err(NO_ENV, ARGS(arg), want);
        snprintf(env, sizeof env, "%s=%ld", k->env, k->hi + 1);
        snprintf(want, sizeof want, "%s: %ld is out of range %ld..%ld", k->env, k->hi + 1, k->lo,
                 k->hi);
        expect_err(ENV(env), NO_ARGS, want);

        char json[128], what[160];
        snprintf(json, sizeof json, "{\"%s\": %ld}", k->key, k->hi + 1);
        snprintf(what, sizeof what, "%s: %ld is out of range %ld..%ld", k->key, k->hi + 1, k->lo,
                 k->hi);
        expect_file_err(json, what);
    }
}

static void test_int_syntax(void **state) {
    (void)state;
    cfg_settings s;
    expect_err(NO_ENV, ARGS("--port", "70000"), "--port: 70000 is out of range 0..65535");
    expect_err(ENV("UFBD_MAX_BATCH_TOKENS=abc"), NO_ARGS,
               "UFBD_MAX_BATCH_TOKENS: \"abc\" is not an integer");
    static const char *junk[] = {"", "12x", " 12", "12 ", "0x10", "1.5", "+", "-", "1e3", "1k"};
    char want[128];
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        snprintf(want, sizeof want, "--port: \"%s\" is not an integer", junk[i]);
        expect_err(NO_ENV, ARGS("--port", (char *)junk[i]), want);
    }
    expect_err(NO_ENV, ARGS("--port=99999999999999999999"),
               "--port: 99999999999999999999 is out of range 0..65535");
    expect_err(NO_ENV, ARGS("--port=-99999999999999999999"),
               "--port: -99999999999999999999 is out of range 0..65535");
    assert_int_equal(load(&s, NO_ENV, ARGS("--port=+80")), CFG_OK);
    assert_int_equal(s.port, 80);

    /* body_limit alone takes k/m suffixes, in env and flags */
    assert_int_equal(load(&s, ENV("UFBD_BODY_LIMIT=2M"), NO_ARGS), CFG_OK);
    assert_int_equal(s.body_limit, 2097152);
    assert_int_equal(load(&s, NO_ENV, ARGS("--body-limit", "1024m")), CFG_OK);
    assert_int_equal(s.body_limit, 1073741824);
    expect_err(NO_ENV, ARGS("--body-limit", "1025m"),
               "--body-limit: 1025m is out of range 1..1073741824");
    expect_err(NO_ENV, ARGS("--body-limit", "1g"), "--body-limit: \"1g\" is not an integer");
    expect_err(NO_ENV, ARGS("--body-limit", "99999999999999999k"),
               "--body-limit: 99999999999999999k is out of range 1..1073741824");

    /* a value is echoed on one line, control characters replaced */
    expect_err(ENV("UFBD_PORT=1\n2"), NO_ARGS, "UFBD_PORT: \"1?2\" is not an integer");
}

static void test_file_errors(void **state) {
    (void)state;
    cfg_settings s;
    const char *path;
    char want[256];
    expect_file_err("{\"max_batchtokens\": 1}", "unknown key \"max_batchtokens\"");
    expect_file_err("{\"config\": \"/x\"}", "unknown key \"config\"");
    expect_file_err("{\"port\": \"8080\"}", "port: must be an integer, not a string");
    expect_file_err("{\"port\": 8080.0}", "port: must be an integer, not a real");
    expect_file_err("{\"port\": null}", "port: must be an integer, not null");
    expect_file_err("{\"body_limit\": \"1m\"}", "body_limit: must be an integer, not a string");
    expect_file_err("{\"warmup\": \"yes\"}", "warmup: must be a boolean, not a string");
    expect_file_err("{\"warmup\": 1}", "warmup: must be a boolean, not an integer");
    expect_file_err("{\"host\": 1}", "host: must be a string, not an integer");
    expect_file_err("{\"host\": \"\"}", "host: must not be empty");
    expect_file_err("{\"log_format\": \"xml\"}", "log_format: \"xml\" is not one of text, json");
    expect_file_err("[1, 2]", "not a JSON object");

    /* jansson's own messages, with the line */
    assert_int_equal(load_json(&s, "{\n  \"port\": 1,\n  \"host\": ,\n}\n", &path), CFG_ERR);
    snprintf(want, sizeof want, "config file %s: line 3: ", path);
    assert_int_equal(strncmp(err, want, strlen(want)), 0);
    assert_null(strchr(err, '\n'));
    assert_int_equal(load_json(&s, "{\"port\": 1,\n \"port\": 2}", &path), CFG_ERR);
    snprintf(want, sizeof want, "config file %s: line 2: duplicate object key", path);
    assert_int_equal(strncmp(err, want, strlen(want)), 0);
    assert_int_equal(load_json(&s, "{\"cors_origin\": \"a\\u0000b\"}", &path), CFG_ERR);
    snprintf(want, sizeof want, "config file %s: line 1: \\u0000 is not allowed", path);
    assert_int_equal(strncmp(err, want, strlen(want)), 0);
    assert_int_equal(load_json(&s, "", &path), CFG_ERR);
    snprintf(want, sizeof want, "config file %s: ", path);
    assert_int_equal(strncmp(err, want, strlen(want)), 0);

    expect_err(NO_ENV, ARGS("--config", "/nonexistent/ufbd.json"),
               "config file /nonexistent/ufbd.json: No such file or directory");
    expect_err(ENV("UFBD_CONFIG=/nonexistent/ufbd.json"), NO_ARGS,
               "config file /nonexistent/ufbd.json: No such file or directory");
}

static void test_flag_and_env_errors(void **state) {
    (void)state;
    cfg_settings s;
    expect_err(NO_ENV, ARGS("--frobnicate"), "unknown flag --frobnicate");
    expect_err(NO_ENV, ARGS("--frobnicate=3"), "unknown flag --frobnicate");
    expect_err(NO_ENV, ARGS("--max_batch_tokens", "3"), "unknown flag --max_batch_tokens");
    expect_err(NO_ENV, ARGS("-p", "3"), "unknown flag -p");
    expect_err(NO_ENV, ARGS("serve"), "unexpected argument \"serve\"");
    expect_err(NO_ENV, ARGS("--port"), "--port: missing value");
    expect_err(NO_ENV, ARGS("--port", "--threads", "2"), "--port: missing value");
    expect_err(NO_ENV, ARGS("--config"), "--config: missing value");
    expect_err(NO_ENV, ARGS("--config="), "--config: missing value");
    expect_err(ENV("UFBD_PROT=1"), NO_ARGS, "unknown environment variable UFBD_PROT");
    expect_err(ENV("UFBD_port=1"), NO_ARGS, "unknown environment variable UFBD_port");
    expect_err(NO_ENV, ARGS("--warmup", "maybe"),
               "--warmup: \"maybe\" is not a boolean (true/false, 1/0, yes/no)");
    expect_err(NO_ENV, ARGS("--log-format=JSON"),
               "--log-format: \"JSON\" is not one of text, json");
    expect_err(NO_ENV, ARGS("--host="), "--host: must not be empty");
    expect_err(ENV("UFBD_MODEL="), NO_ARGS, "UFBD_MODEL: must not be empty");
    expect_err(NO_ENV, ARGS("--cors-origin", "*\r\nX-Evil: 1"),
               "--cors-origin: contains a control character");

    char host[300];
    memset(host, 'h', 255);
    host[255] = '\0';
    assert_int_equal(load(&s, NO_ENV, ARGS("--host", host)), CFG_OK);
    assert_string_equal(s.host, host);
    strcat(host, "h");
    expect_err(NO_ENV, ARGS("--host", host), "--host: too long (at most 255 characters)");
    /* a setting may be empty where that means "off"; a value may start with one dash */
    assert_int_equal(load(&s, ENV("UFBD_CORS_ORIGIN=*"), ARGS("--cors-origin=")), CFG_OK);
    assert_string_equal(s.cors_origin, "");
    expect_err(NO_ENV, ARGS("--port", "-1"), "--port: -1 is out of range 0..65535");
    /* a NULL error buffer is allowed */
    char *argv[] = {"ufbd", "--port", "x", NULL};
    assert_int_equal(cfg_load(&s, 3, argv, NULL, NULL, 0), CFG_ERR);
}

static void test_booleans(void **state) {
    (void)state;
    cfg_settings s;

    static const struct {
        const char *text;
        int value;
    } cases[] = {{"true", 1}, {"false", 0}, {"1", 1},    {"0", 0},
                 {"yes", 1},  {"no", 0},    {"TRUE", 1}, {"No", 0}};

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(load(&s, NO_ENV, ARGS("--warmup", (char *)cases[i].text)), CFG_OK);
        assert_int_equal(s.warmup, cases[i].value);
    }
    const char *path;
    assert_int_equal(load_json(&s, "{\"warmup\": false}", &path), CFG_OK);
    assert_int_equal(s.warmup, 0);
    expect_err(ENV("UFBD_WARMUP=2"), NO_ARGS,
               "UFBD_WARMUP: \"2\" is not a boolean (true/false, 1/0, yes/no)");
}

/* ---- API keys ---- */

static void test_api_keys(void **state) {
    (void)state;
    cfg_settings s;
    const char *path;
    assert_int_equal(load(&s, NO_ENV, ARGS("--api-keys", "a,b-2,c_3")), CFG_OK);
    assert_int_equal(s.n_api_keys, 3);
    assert_string_equal(s.api_keys[0], "a");
    assert_string_equal(s.api_keys[1], "b-2");
    assert_string_equal(s.api_keys[2], "c_3");
    expect_err(NO_ENV, ARGS("--api-keys", "a,,b"), "--api-keys: API key 2 is empty");
    expect_err(NO_ENV, ARGS("--api-keys", "a,"), "--api-keys: API key 2 is empty");
    expect_err(NO_ENV, ARGS("--api-keys", ",a"), "--api-keys: API key 1 is empty");
    expect_err(ENV("UFBD_API_KEYS="), NO_ARGS, "UFBD_API_KEYS: API key 1 is empty");

    /* the count limit */
    char list[128] = "0";
    for (int i = 1; i < CFG_MAX_API_KEYS; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), ",%x", i);
    assert_int_equal(load(&s, NO_ENV, ARGS("--api-keys", list)), CFG_OK);
    assert_int_equal(s.n_api_keys, CFG_MAX_API_KEYS);
    assert_string_equal(s.api_keys[15], "f");
    strcat(list, ",10");
    expect_err(NO_ENV, ARGS("--api-keys", list), "--api-keys: more than 16 API keys");

    /* the length limit and the characters; the key itself is never echoed */
    char key[300];
    memset(key, 'k', 255);
    key[255] = '\0';
    assert_int_equal(load(&s, NO_ENV, ARGS("--api-keys", key)), CFG_OK);
    assert_string_equal(s.api_keys[0], key);
    strcat(key, "k");
    expect_err(NO_ENV, ARGS("--api-keys", key),
               "--api-keys: API key 1 is longer than 255 characters");
    expect_err(ENV("UFBD_API_KEYS=ok,secret1 x"), NO_ARGS,
               "UFBD_API_KEYS: API key 2 has a space or non-printable character");
    expect_err(ENV("UFBD_API_KEYS=secret1\t"), NO_ARGS,
               "UFBD_API_KEYS: API key 1 has a space or non-printable character");

    /* the file: an array of strings, or the same comma string */
    assert_int_equal(load_json(&s, "{\"api_keys\": [\"x\", \"y\"]}", &path), CFG_OK);
    assert_int_equal(s.n_api_keys, 2);
    assert_string_equal(s.api_keys[1], "y");
    assert_int_equal(load_json(&s, "{\"api_keys\": \"x,y,z\"}", &path), CFG_OK);
    assert_int_equal(s.n_api_keys, 3);
    assert_int_equal(load_json(&s, "{\"api_keys\": []}", &path), CFG_OK);
    assert_int_equal(s.n_api_keys, 0);
    expect_file_err("{\"api_keys\": [\"x\", 1]}", "api_keys: API key 2 must be a string");
    expect_file_err("{\"api_keys\": [\"x\", \"\"]}", "api_keys: API key 2 is empty");
    expect_file_err("{\"api_keys\": [\"a b\"]}",
                    "api_keys: API key 1 has a space or non-printable character");
    expect_file_err("{\"api_keys\": 5}",
                    "api_keys: must be an array of strings or a string, not an integer");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),         cmocka_unit_test(test_example_file_is_defaults),
        cmocka_unit_test(test_file_every_key),   cmocka_unit_test(test_env_every_key),
        cmocka_unit_test(test_flags_every_key),  cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_help_and_version), cmocka_unit_test(test_help_lists_every_key),
        cmocka_unit_test(test_int_ranges),       cmocka_unit_test(test_int_syntax),
        cmocka_unit_test(test_file_errors),      cmocka_unit_test(test_flag_and_env_errors),
        cmocka_unit_test(test_booleans),         cmocka_unit_test(test_api_keys),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, teardown_files);
}
