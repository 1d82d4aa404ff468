/* config.h — ufbd settings: defaults < config file (JSON) < environment (UFBD_*) < flags.
 *
 * Usage:
 *
 *     cfg_settings s;
 *     char err[256];
 *     int rc = cfg_load(&s, argc, argv, environ, err, sizeof err);
 *     if (rc == CFG_HELP) { cfg_print_help(stdout); return 0; }
 *     if (rc < 0) { fprintf(stderr, "ufbd: %s\n", err); return 2; }
 *
 * Every setting has one key used in three spellings: JSON key `max_batch_tokens`, environment
 * `UFBD_MAX_BATCH_TOKENS`, flag `--max-batch-tokens VALUE` (also `--max-batch-tokens=VALUE`).
 * The config file is given by `--config PATH` or `UFBD_CONFIG`. Invalid values (wrong type,
 * out of range, unknown key in the file, unknown flag) are errors whose message names the
 * key and where it came from (file, env or flag). Includes nothing of ours.
 * Thread-safety: cfg_load is not thread-safe; the result is plain data.
 */
#ifndef UFB_CONFIG_H
#define UFB_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#define CFG_MAX_API_KEYS 16
#define CFG_STR_LEN      256
#define CFG_PATH_LEN     4096

enum cfg_log_format {
    CFG_LOG_TEXT = 0,
    CFG_LOG_JSON = 1,
};

enum cfg_status {
    CFG_OK = 0,
    CFG_HELP = 1,    /* --help or -h was given: print help, exit 0 */
    CFG_VERSION = 2, /* --version */
    CFG_ERR = -1,    /* invalid setting; message in err */
};

typedef struct cfg_settings {
    char host[CFG_STR_LEN];   /* "127.0.0.1"; "0.0.0.0" or "::" to listen on all */
    int port;                 /* 8080; 0 = any free port (printed at start) */
    char model[CFG_PATH_LEN]; /* "models/sst2-minilm-fff" */
    int threads;              /* engine threads; 0 = auto (CPU affinity ∩ cgroup quota) */
    int worker_threads;       /* engine threads per worker (one batch split over them): 1 */
    int http_threads;         /* libmicrohttpd thread pool size; 0 = auto (2) */
    int max_batch_tokens;     /* token budget of one batch: 8192 */
    int max_batch_requests;   /* sequences in one batch: 64 */
    int max_wait_us;          /* wait for more work before running a batch: 0 */
    int queue_size;           /* queued inputs before 429: 1024 */
    int max_input_tokens;     /* per input; 0 = the model's max positions */
    int max_inputs;           /* inputs per request: 64 */
    long body_limit;          /* request body bytes: 1048576 */
    int request_timeout_ms;   /* deadline from arrival to start of compute: 30000 */
    int connection_timeout_s; /* idle connection timeout (slow clients): 15 */
    int drain_timeout_s;      /* SIGTERM: bound on finishing accepted work: 30 */
    char api_keys[CFG_MAX_API_KEYS][CFG_STR_LEN]; /* comma-separated in env/flag/file string,
                                                     or a JSON array in the file */
    int n_api_keys;                               /* 0 = no authentication */
    char cors_origin[CFG_STR_LEN];                /* "" = no CORS headers; "*" or an origin */
    enum cfg_log_format log_format;               /* "text" (default) or "json" */
    int warmup;                                   /* run one batch before ready: 1 */
    char fff_weights[8]; /* FFF rows in memory: "f32" (default), "bf16", "int8" */
} cfg_settings;

/* Fill s with the defaults above. */
void cfg_defaults(cfg_settings *s);

/* Apply defaults, then the config file (if --config/UFBD_CONFIG), then env, then flags.
 * envp is a NULL-terminated "KEY=VALUE" array (pass `environ`).
 * @return CFG_OK, CFG_HELP, CFG_VERSION, or CFG_ERR with a one-line message naming the key. */
int cfg_load(cfg_settings *s, int argc, char **argv, char **envp, char *err, size_t errlen);

/* Print usage: every setting with its flag, env name, default and meaning. */
void cfg_print_help(FILE *f);

#endif /* UFB_CONFIG_H */
