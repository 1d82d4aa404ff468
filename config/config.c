/* config.c — ufbd settings: defaults < config file (JSON) < environment (UFBD_*) < flags.
 *
 * DESIGN
 * One table, `opts`, lists every setting once: its key, type, place in cfg_settings, range,
 * default and help line. Everything else is derived from it: the flag `--max-batch-tokens` and
 * the environment name `UFBD_MAX_BATCH_TOKENS` come from the key `max_batch_tokens`,
 * cfg_defaults() parses the default strings with the same parser as env and flags (so the help
 * text cannot drift from the real defaults), and cfg_print_help() prints the table.
 *
 * Two parsers write a setting: set_from_text() (env, flags, defaults) and set_from_json() (the
 * file). Both validate fully before storing, so a rejected value never half-writes a field.
 *
 * cfg_load() walks the flags twice: first to find --help/--version/--config and to reject
 * unknown flags before anything else is read (so `--help` works with a broken config file),
 * then, after the file and the environment, to apply the flag values, which win.
 *
 * Errors are one line, "<where>: <what>", where <where> is `--port`, `UFBD_PORT` or
 * `config file PATH: port`. Values are echoed truncated and with control characters
 * replaced, so a message stays one line; API keys are secrets and are never echoed.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

/* ---- The settings table ---- */

enum cfg_kind {
    K_INT,  /* int field, decimal in env/flags, JSON integer in the file */
    K_LONG, /* long field, otherwise as K_INT */
    K_STR,  /* char[size] field */
    K_BOOL, /* int field, 0 or 1 */
    K_LOG,  /* enum cfg_log_format */
    K_KEYS, /* api_keys + n_api_keys */
};

enum {
    F_NONEMPTY = 1, /* K_STR: "" is rejected */
    F_SUFFIX = 2,   /* K_INT/K_LONG: env/flag text may end in k (x1024) or m (x1048576) */
};

typedef struct cfg_opt {
    const char *key; /* JSON key; flag and env names are derived from it */
    enum cfg_kind kind;
    size_t off, size;   /* the field in cfg_settings */
    long long min, max; /* K_INT/K_LONG: inclusive range */
    int flags;          /* F_* */
    const char *meta;   /* placeholder in the help: --port PORT */
    const char *def;    /* default, as env/flag text; "" = zero/empty */
    const char *help;   /* one line */
} cfg_opt;

#define FIELD(f) offsetof(cfg_settings, f), sizeof(((cfg_settings *)0)->f)
#define INT(f, lo, hi, m, d, h) \
    { #f, K_INT, FIELD(f), lo, hi, 0, m, d, h }
#define STR(f, fl, m, d, h) \
    { #f, K_STR, FIELD(f), 0, 0, fl, m, d, h }

static const cfg_opt opts[] = {
    STR(host, F_NONEMPTY, "ADDR", "127.0.0.1", "listen address; 0.0.0.0 or :: for all interfaces"),
    INT(port, 0, 65535, "PORT", "8080", "TCP port; 0 = any free port (printed at start)"),
    STR(model, F_NONEMPTY, "PATH", "models/sst2-minilm-fff", "model folder"),
    INT(threads, 0, 1024, "N", "0", "engine threads; 0 = auto (CPU affinity and cgroup quota)"),
    INT(worker_threads, 1, 64, "N", "1",
        "threads per worker: each batch split over them (latency); workers = threads / this"),
    INT(http_threads, 0, 256, "N", "0", "HTTP thread pool size; 0 = auto (2)"),
    INT(max_batch_tokens, 1, 1048576, "N", "8192", "token budget of one batch"),
    INT(max_batch_requests, 1, 4096, "N", "64", "sequences in one batch"),
    INT(max_wait_us, 0, 10000000, "US", "0", "wait for more work before running a batch (us)"),
    INT(queue_size, 1, 1000000, "N", "1024", "queued inputs before 429 Too Many Requests"),
    INT(max_input_tokens, 0, 65536, "N", "0", "tokens per input; 0 = the model's max positions"),
    INT(max_inputs, 1, 100000, "N", "64", "inputs per request"),
    {"body_limit", K_LONG, FIELD(body_limit), 1, 1073741824, F_SUFFIX, "BYTES", "1048576",
     "request body limit in bytes; k/m suffix allowed in env and flags"},
    INT(request_timeout_ms, 1, 3600000, "MS", "30000", "deadline from arrival to start of compute"),
    INT(connection_timeout_s, 1, 86400, "S", "15", "idle connection timeout (slow clients)"),
    INT(drain_timeout_s, 0, 3600, "S", "30", "on SIGTERM, bound on finishing accepted work"),
    {"api_keys", K_KEYS, FIELD(api_keys), 0, 0, 0, "KEY,...", "",
     "accepted API keys (at most 16, comma-separated); none = no authentication"},
    STR(cors_origin, 0, "ORIGIN", "", "Access-Control-Allow-Origin: * or an origin; empty = none"),
    {"log_format", K_LOG, FIELD(log_format), 0, 0, 0, "FORMAT", "text", "log lines: text or json"},
    {"warmup", K_BOOL, FIELD(warmup), 0, 0, 0, "BOOL", "true", "run one batch before ready"},
    STR(fff_weights, F_NONEMPTY, "FORMAT", "f32",
        "FFF rows in memory: f32, bf16 or int8 (F32 rows kept for routing checks)"),
};

#define N_OPTS (sizeof opts / sizeof opts[0])

static const struct {
    const char *text;
    int value;
} bool_words[] = {{"true", 1}, {"false", 0}, {"1", 1}, {"0", 0}, {"yes", 1}, {"no", 0}};

static const struct {
    const char *text;
    enum cfg_log_format value;
} log_words[] = {{"text", CFG_LOG_TEXT}, {"json", CFG_LOG_JSON}};

/* ---- Small helpers ---- */

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Write the message to err (when given). @return CFG_ERR, so callers can `return fail(...)`. */
static int fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return CFG_ERR;
}

/* Untrusted text for a message: at most n - 4 bytes, then "...", control characters as '?'. */
static const char *clean(char *buf, size_t n, const char *s, size_t len) {
    size_t max = n - 4, j = 0; /* room for "..." and the NUL */
    for (; j < len && j < max; j++)
        buf[j] = iscntrl((unsigned char)s[j]) ? '?' : s[j];
    if (len > max) {
        memcpy(buf + j, "...", 3);
        j += 3;
    }
    buf[j] = '\0';
    return buf;
}

static void flag_name(char *buf, size_t n, const cfg_opt *o) {
    size_t j = 0;
    buf[j++] = '-';
    buf[j++] = '-';
    for (const char *k = o->key; *k && j < n - 1; k++)
        buf[j++] = *k == '_' ? '-' : *k;
    buf[j] = '\0';
}

static void env_name(char *buf, size_t n, const cfg_opt *o) {
    size_t j = (size_t)snprintf(buf, n, "UFBD_");
    for (const char *k = o->key; *k && j < n - 1; k++)
        buf[j++] = (char)toupper((unsigned char)*k);
    buf[j] = '\0';
}

/* The option whose name, spelled by `spell` (flag_name or env_name), is name[0..len). */
static const cfg_opt *find_opt(void (*spell)(char *, size_t, const cfg_opt *), const char *name,
                               size_t len) {
    char buf[64];
    for (size_t i = 0; i < N_OPTS; i++) {
        spell(buf, sizeof buf, &opts[i]);
        if (strlen(buf) == len && memcmp(buf, name, len) == 0) return &opts[i];
    }
    return NULL;
}

static void *field(cfg_settings *s, const cfg_opt *o) {
    return (char *)s + o->off;
}

/* ---- Values ---- */

/* Parse a whole decimal integer (optional sign, optional k/m suffix when `suffix`).
 * @return 0, -1 if it is not an integer, -2 if it does not fit in a long long. */
static int parse_int(long long *out, const char *v, int suffix) {
    if (!isdigit((unsigned char)*v) && *v != '-' && *v != '+') return -1;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || !isdigit((unsigned char)end[-1])) return -1;
    int range = errno == ERANGE;
    long long mult = 1;
    if (suffix && (*end == 'k' || *end == 'K'))
        mult = 1024, end++;
    else if (suffix && (*end == 'm' || *end == 'M'))
        mult = 1048576, end++;
    if (*end != '\0') return -1;
    if (range || x > LLONG_MAX / mult || x < LLONG_MIN / mult) return -2;
    *out = x * mult;
    return 0;
}

/* Range-check x (spelled `text` in the message) and store it. */
static int store_int(cfg_settings *s, const cfg_opt *o, long long x, const char *text,
                     const char *where, char *err, size_t errlen) {
    if (x < o->min || x > o->max)
        return fail(err, errlen, "%s: %.40s is out of range %lld..%lld", where, text, o->min,
                    o->max);
    if (o->kind == K_LONG)
        *(long *)field(s, o) = (long)x;
    else
        *(int *)field(s, o) = (int)x;
    return CFG_OK;
}

static int store_str(cfg_settings *s, const cfg_opt *o, const char *v, size_t len,
                     const char *where, char *err, size_t errlen) {
    if (len == 0 && (o->flags & F_NONEMPTY))
        return fail(err, errlen, "%s: must not be empty", where);
    if (len >= o->size)
        return fail(err, errlen, "%s: too long (at most %zu characters)", where, o->size - 1);
    for (size_t i = 0; i < len; i++)
        if (iscntrl((unsigned char)v[i]))
            return fail(err, errlen, "%s: contains a control character", where);
    memcpy(field(s, o), v, len);
    ((char *)field(s, o))[len] = '\0';
    return CFG_OK;
}

/* Check API key number i (1-based) and append it to keys. Never echoes the key. */
static int add_key(char (*keys)[CFG_STR_LEN], int *n, const char *k, size_t len, const char *where,
                   char *err, size_t errlen) {
    int i = *n + 1;
    if (*n >= CFG_MAX_API_KEYS)
        return fail(err, errlen, "%s: more than %d API keys", where, CFG_MAX_API_KEYS);
    if (len == 0) return fail(err, errlen, "%s: API key %d is empty", where, i);
    if (len >= CFG_STR_LEN)
        return fail(err, errlen, "%s: API key %d is longer than %d characters", where, i,
                    CFG_STR_LEN - 1);
    for (size_t j = 0; j < len; j++)
        if ((unsigned char)k[j] <= ' ' || (unsigned char)k[j] > '~') /* also NUL, non-ASCII */
            return fail(err, errlen, "%s: API key %d has a space or non-printable character", where,
                        i);
    memcpy(keys[*n], k, len);
    keys[(*n)++][len] = '\0';
    return CFG_OK;
}

static void store_keys(cfg_settings *s, char (*keys)[CFG_STR_LEN], int n) {
    memcpy(s->api_keys, keys, sizeof s->api_keys);
    s->n_api_keys = n;
}

/* "a,b,c": every item must be a valid key, so "", "a,,b" and "a," are rejected. */
static int text_keys(cfg_settings *s, const char *v, const char *where, char *err, size_t errlen) {
    char keys[CFG_MAX_API_KEYS][CFG_STR_LEN] = {{0}};
    int n = 0;
    for (const char *p = v;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (add_key(keys, &n, p, len, where, err, errlen)) return CFG_ERR;
        if (!comma) break;
        p = comma + 1;
    }
    store_keys(s, keys, n);
    return CFG_OK;
}

static int json_keys(cfg_settings *s, const json_t *arr, const char *where, char *err,
                     size_t errlen) {
    char keys[CFG_MAX_API_KEYS][CFG_STR_LEN] = {{0}};
    int n = 0;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *k = json_array_get(arr, i);
        if (!json_is_string(k))
            return fail(err, errlen, "%s: API key %zu must be a string", where, i + 1);
        if (add_key(keys, &n, json_string_value(k), json_string_length(k), where, err, errlen))
            return CFG_ERR;
    }
    store_keys(s, keys, n);
    return CFG_OK;
}

/* Set o from env/flag/default text. */
static int set_from_text(cfg_settings *s, const cfg_opt *o, const char *v, const char *where,
                         char *err, size_t errlen) {
    char q[80];
    long long x;
    switch (o->kind) {
    case K_INT:
    case K_LONG: {
        int rc = parse_int(&x, v, o->flags & F_SUFFIX);
        if (rc == -1)
            return fail(err, errlen, "%s: \"%s\" is not an integer", where,
                        clean(q, sizeof q, v, strlen(v)));
        if (rc == -2) x = LLONG_MAX; /* out of every range; the message shows the text */
        return store_int(s, o, x, v, where, err, errlen);
    }
    case K_STR:
        return store_str(s, o, v, strlen(v), where, err, errlen);
    case K_BOOL:
        for (size_t i = 0; i < sizeof bool_words / sizeof bool_words[0]; i++)
            if (strcasecmp(v, bool_words[i].text) == 0)
                return *(int *)field(s, o) = bool_words[i].value, CFG_OK;
        return fail(err, errlen, "%s: \"%s\" is not a boolean (true/false, 1/0, yes/no)", where,
                    clean(q, sizeof q, v, strlen(v)));
    case K_LOG:
        for (size_t i = 0; i < sizeof log_words / sizeof log_words[0]; i++)
            if (strcmp(v, log_words[i].text) == 0)
                return *(enum cfg_log_format *)field(s, o) = log_words[i].value, CFG_OK;
        return fail(err, errlen, "%s: \"%s\" is not one of text, json", where,
                    clean(q, sizeof q, v, strlen(v)));
    case K_KEYS:
        return text_keys(s, v, where, err, errlen);
    }
    return fail(err, errlen, "%s: unsupported setting", where);
}

static const char *json_type_name(const json_t *v) {
    static const char *names[] = {"an object", "an array",  "a string",  "an integer",
                                  "a real",    "a boolean", "a boolean", "null"};
    unsigned t = (unsigned)json_typeof(v);
    return t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

/* Set o from a value of the config file: integers and booleans must have their JSON type. */
static int set_from_json(cfg_settings *s, const cfg_opt *o, const json_t *v, const char *where,
                         char *err, size_t errlen) {
    static const char *want[] = {
        [K_INT] = "an integer",
        [K_LONG] = "an integer",
        [K_STR] = "a string",
        [K_BOOL] = "a boolean",
        [K_LOG] = "\"text\" or \"json\"",
        [K_KEYS] = "an array of strings or a string",
    };
    char num[32];
    if ((o->kind == K_INT || o->kind == K_LONG) && json_is_integer(v)) {
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
        return store_int(s, o, json_integer_value(v), num, where, err, errlen);
    }
    if (o->kind == K_BOOL && json_is_boolean(v))
        return *(int *)field(s, o) = json_is_true(v), CFG_OK;
    if (o->kind == K_KEYS && json_is_array(v)) return json_keys(s, v, where, err, errlen);
    int textual = o->kind == K_STR || o->kind == K_LOG || o->kind == K_KEYS;
    if (textual && json_is_string(v)) /* no NUL inside: we do not pass JSON_ALLOW_NUL */
        return set_from_text(s, o, json_string_value(v), where, err, errlen);
    return fail(err, errlen, "%s: must be %s, not %s", where, want[o->kind], json_type_name(v));
}

/* ---- Sources ---- */

static int load_object(cfg_settings *s, json_t *root, const char *path, char *err, size_t errlen) {
    char where[CFG_PATH_LEN + 64], q[80];
    const char *key;
    json_t *v;
    if (!json_is_object(root)) return fail(err, errlen, "config file %s: not a JSON object", path);
    json_object_foreach(root, key, v) {
        const cfg_opt *o = NULL;
        for (size_t i = 0; i < N_OPTS && !o; i++)
            if (strcmp(opts[i].key, key) == 0) o = &opts[i];
        if (!o)
            return fail(err, errlen, "config file %s: unknown key \"%s\"", path,
                        clean(q, sizeof q, key, strlen(key)));
        snprintf(where, sizeof where, "config file %s: %s", path, key);
        if (set_from_json(s, o, v, where, err, errlen)) return CFG_ERR;
    }
    return CFG_OK;
}

static int load_file(cfg_settings *s, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) return fail(err, errlen, "config file %s: %s", path, strerror(errno));
    json_error_t je;
    char text[sizeof je.text + 4];
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
    fclose(f);
    if (!root) clean(text, sizeof text, je.text, strlen(je.text)); /* quotes the file: one line */
    if (!root && je.line > 0)
        return fail(err, errlen, "config file %s: line %d: %s", path, je.line, text);
    if (!root) return fail(err, errlen, "config file %s: %s", path, text);
    int rc = load_object(s, root, path, err, errlen);
    json_decref(root);
    return rc;
}

/* The value of UFBD_CONFIG in envp; NULL when absent or empty. */
static const char *env_config(char **envp) {
    const char *path = NULL;
    for (char **e = envp; e && *e; e++)
        if (strncmp(*e, "UFBD_CONFIG=", 12) == 0) path = *e + 12;
    return path && *path ? path : NULL;
}

/* Apply every UFBD_* variable; unknown ones are errors so that typos are not ignored. */
static int apply_env(cfg_settings *s, char **envp, char *err, size_t errlen) {
    char where[64], q[80];
    for (char **e = envp; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (strncmp(*e, "UFBD_", 5) != 0 || !eq || strncmp(*e, "UFBD_CONFIG=", 12) == 0) continue;
        const cfg_opt *o = find_opt(env_name, *e, (size_t)(eq - *e));
        if (!o)
            return fail(err, errlen, "unknown environment variable %s",
                        clean(q, sizeof q, *e, (size_t)(eq - *e)));
        env_name(where, sizeof where, o);
        if (set_from_text(s, o, eq + 1, where, err, errlen)) return CFG_ERR;
    }
    return CFG_OK;
}

enum flag_kind { FLAG_SETTING, FLAG_CONFIG, FLAG_HELP, FLAG_VERSION };

typedef struct cfg_flag {
    enum flag_kind kind;
    const cfg_opt *opt; /* FLAG_SETTING */
    const char *value;  /* FLAG_SETTING, FLAG_CONFIG */
} cfg_flag;

/* Decode argv[*i] and, for `--key VALUE`, its value (advancing *i). A following argument that
 * starts with "--" is taken as the next flag, not as a value: `--port --threads 4` is an error. */
static int next_flag(cfg_flag *fl, int argc, char **argv, int *i, char *err, size_t errlen) {
    const char *a = argv[*i];
    char q[80];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) return fl->kind = FLAG_HELP, CFG_OK;
    if (strcmp(a, "--version") == 0) return fl->kind = FLAG_VERSION, CFG_OK;
    if (a[0] != '-')
        return fail(err, errlen, "unexpected argument \"%s\"", clean(q, sizeof q, a, strlen(a)));
    const char *eq = strchr(a, '=');
    size_t len = eq ? (size_t)(eq - a) : strlen(a);
    fl->opt = find_opt(flag_name, a, len);
    fl->kind = fl->opt ? FLAG_SETTING : FLAG_CONFIG;
    if (!fl->opt && (len != 8 || memcmp(a, "--config", 8) != 0))
        return fail(err, errlen, "unknown flag %s", clean(q, sizeof q, a, len));
    if (eq)
        fl->value = eq + 1;
    else if (*i + 1 < argc && strncmp(argv[*i + 1], "--", 2) != 0)
        fl->value = argv[++*i];
    else
        return fail(err, errlen, "%.*s: missing value", (int)len, a);
    if (fl->kind == FLAG_CONFIG && !*fl->value) return fail(err, errlen, "--config: missing value");
    return CFG_OK;
}

/* With s == NULL: check the flags' shape, find --config, stop at --help/--version.
 * With s: apply the settings (the first pass has already vetted the shape). */
static int walk_flags(cfg_settings *s, int argc, char **argv, const char **config, char *err,
                      size_t errlen) {
    char where[64];
    for (int i = 1; i < argc; i++) {
        cfg_flag fl = {0};
        if (next_flag(&fl, argc, argv, &i, err, errlen)) return CFG_ERR;
        if (fl.kind == FLAG_HELP) return CFG_HELP;
        if (fl.kind == FLAG_VERSION) return CFG_VERSION;
        if (fl.kind == FLAG_CONFIG && config) *config = fl.value;
        if (fl.kind != FLAG_SETTING || !s) continue;
        flag_name(where, sizeof where, fl.opt);
        if (set_from_text(s, fl.opt, fl.value, where, err, errlen)) return CFG_ERR;
    }
    return CFG_OK;
}

/* ---- Public API ---- */

void cfg_defaults(cfg_settings *s) {
    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < N_OPTS; i++)
        if (opts[i].def[0]) (void)set_from_text(s, &opts[i], opts[i].def, "default", NULL, 0);
}

int cfg_load(cfg_settings *s, int argc, char **argv, char **envp, char *err, size_t errlen) {
    const char *path = NULL;
    if (err && errlen) err[0] = '\0';
    cfg_defaults(s);
    int rc = walk_flags(NULL, argc, argv, &path, err, errlen);
    if (rc != CFG_OK) return rc;
    if (!path) path = env_config(envp);
    if (path && load_file(s, path, err, errlen)) return CFG_ERR;
    if (apply_env(s, envp, err, errlen)) return CFG_ERR;
    rc = walk_flags(s, argc, argv, NULL, err, errlen);
    if (rc == CFG_OK && strcmp(s->fff_weights, "f32") && strcmp(s->fff_weights, "bf16") &&
        strcmp(s->fff_weights, "int8"))
        return fail(err, errlen, "fff_weights: '%s' is not one of f32, bf16, int8", s->fff_weights);
    return rc;
}

#define HELP_ROW "  %-26s %-26s %-23s %s%s\n"

void cfg_print_help(FILE *f) {
    char flag[64], env[64], range[48];
    fprintf(f, "usage: ufbd [--config FILE] [--KEY VALUE ...]\n\n"
               "Each setting is read from, later winning: its default < the config file (a JSON\n"
               "object with the keys below in snake_case) < the environment < the flags, given\n"
               "as --key VALUE or --key=VALUE. Booleans: true/false, 1/0, yes/no.\n\n");
    fprintf(f, HELP_ROW, "FLAG", "ENVIRONMENT", "DEFAULT", "MEANING", "");
    fprintf(f, HELP_ROW, "--config FILE", "UFBD_CONFIG", "(none)", "JSON config file", "");
    for (size_t i = 0; i < N_OPTS; i++) {
        const cfg_opt *o = &opts[i];
        size_t n;
        flag_name(flag, sizeof flag, o);
        n = strlen(flag);
        snprintf(flag + n, sizeof flag - n, " %s", o->meta);
        env_name(env, sizeof env, o);
        range[0] = '\0';
        if (o->kind == K_INT || o->kind == K_LONG)
            snprintf(range, sizeof range, " [%lld..%lld]", o->min, o->max);
        fprintf(f, HELP_ROW, flag, env, o->def[0] ? o->def : "(none)", o->help, range);
    }
    fprintf(f, "\n  -h, --help     print this help and exit\n"
               "  --version      print the version and exit\n");
}
