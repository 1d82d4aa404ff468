/* http_client.h — a minimal blocking HTTP/1.1 client and a ufbd process runner for the
 * integration tests (loopback only). Header-only: static functions, one test binary each. */
#ifndef UFB_HTTP_CLIENT_H
#define UFB_HTTP_CLIENT_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct http_resp {
    int status;
    char headers[4096];
    char *body; /* malloc'd, NUL-terminated */
    size_t body_len;
} http_resp;

static inline void http_resp_free(http_resp *r) {
    free(r->body);
    r->body = NULL;
}

static inline int http_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

static inline int send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return -1;
        p += w, n -= (size_t)w;
    }
    return 0;
}

/* Read a whole response (the server closes: we send Connection: close). */
static inline int read_response(int fd, http_resp *out) {
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 4096 > cap) buf = realloc(buf, cap *= 2);
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r <= 0) break;
        len += (size_t)r;
    }
    buf[len] = 0;
    char *end = strstr(buf, "\r\n\r\n");
    if (!end || sscanf(buf, "HTTP/1.%*d %d", &out->status) != 1) {
        free(buf);
        return -1;
    }
    size_t hlen = (size_t)(end - buf);
    snprintf(out->headers, sizeof out->headers, "%.*s", (int)hlen, buf);
    out->body_len = len - hlen - 4;
    out->body = malloc(out->body_len + 1);
    memcpy(out->body, end + 4, out->body_len);
    out->body[out->body_len] = 0;
    free(buf);
    return 0;
}

/* One request on a fresh connection. extra_headers: "" or lines ending in \r\n.
 * @return 0 and a response, or -1 (connection failed). */
static inline int http_request(int port, const char *method, const char *path,
                               const char *extra_headers, const char *body, size_t body_len,
                               http_resp *out) {
    memset(out, 0, sizeof *out);
    int fd = http_connect(port);
    if (fd < 0) return -1;
    char head[8192];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s%s"
                     "Content-Length: %zu\r\n\r\n",
                     method, path,
                     body && !strcasestr(extra_headers ? extra_headers : "", "Content-Type")
                         ? "Content-Type: application/json\r\n"
                         : "",
                     extra_headers ? extra_headers : "", body ? body_len : 0);
    /* a server may answer (413) and close before the body is sent: read the answer anyway */
    if (send_all(fd, head, (size_t)n) == 0 && body) send_all(fd, body, body_len);
    int rc = read_response(fd, out);
    close(fd);
    return rc;
}

static inline int http_post(int port, const char *path, const char *body, http_resp *out) {
    return http_request(port, "POST", path, "", body, strlen(body), out);
}

static inline int http_get(int port, const char *path, http_resp *out) {
    return http_request(port, "GET", path, "", NULL, 0, out);
}

/* Value of a response header (case-insensitive name), copied into v; @return 0 if found. */
static inline int http_header(const http_resp *r, const char *name, char *v, size_t n) {
    const char *p = r->headers;
    size_t k = strlen(name);
    while ((p = strstr(p, "\r\n"))) {
        p += 2;
        if (strncasecmp(p, name, k) == 0 && p[k] == ':') {
            p += k + 1;
            while (*p == ' ')
                p++;
            size_t len = strcspn(p, "\r\n");
            snprintf(v, n, "%.*s", (int)len, p);
            return 0;
        }
    }
    return -1;
}

/* ---- The server process ---- */

typedef struct ufbd_proc {
    pid_t pid;
    int port;
    char log_path[128]; /* the server's stderr goes to this file */
} ufbd_proc;

/* @return 1 when the log contains `what`; fills *port from the "listening" line. */
static inline int log_has(const ufbd_proc *p, const char *what, int *port) {
    FILE *f = fopen(p->log_path, "r");
    char line[2048];
    int found = 0;
    while (f && fgets(line, sizeof line, f)) {
        char *at = strstr(line, "listening on http://127.0.0.1:");
        if (at && port) *port = atoi(at + strlen("listening on http://127.0.0.1:"));
        found |= strstr(line, what) != NULL;
    }
    if (f) fclose(f);
    return found;
}

/* Start BUILD/<bin> (ufbd, ufbd-fault) with extra args on `port` (0: a free one); wait for
 * readiness. @return 0 or -1. */
static inline int ufbd_start_bin(ufbd_proc *p, const char *bin, int port, const char *model,
                                 const char *args) {
    static int seq;
    const char *b = getenv("BUILD");
    char cmd[4096];
    snprintf(p->log_path, sizeof p->log_path, "/tmp/ufbd_test_%d_%d.log", (int)getpid(), seq++);
    snprintf(cmd, sizeof cmd, "exec %s/%s --host 127.0.0.1 --port %d --model %s %s 2>%s",
             b && *b ? b : "build", bin, port, model, args ? args : "", p->log_path);
    unlink(p->log_path);
    p->pid = fork();
    if (p->pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    p->port = 0;
    for (int i = 0; i < 3000; i++) { /* up to 60 s */
        if (log_has(p, "ufbd: ready", &p->port)) return p->port ? 0 : -1;
        int st;
        if (waitpid(p->pid, &st, WNOHANG) == p->pid) break; /* exited: failed to start */
        usleep(20000);
    }
    return -1;
}

/* Start BUILD/ufbd with extra args on a free port; wait for readiness. @return 0 or -1. */
static inline int ufbd_start(ufbd_proc *p, const char *model, const char *args) {
    return ufbd_start_bin(p, "ufbd", 0, model, args);
}

/* Send sig (SIGTERM), wait; @return the exit status, or -1. */
static inline int ufbd_stop(ufbd_proc *p, int sig) {
    int st = 0;
    kill(p->pid, sig);
    if (waitpid(p->pid, &st, 0) != p->pid) return -1;
    unlink(p->log_path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#endif
