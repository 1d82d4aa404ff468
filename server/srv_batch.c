/* srv_batch.c — the batcher: one bounded FIFO of inputs shared by the engine workers.
 *
 * DESIGN: HTTP threads push the inputs of a request (srv_batcher_submit) and never wait on
 * inference. Each worker (by default one per usable CPU, pinned, each with its own ufb_ctx; with
 * worker_threads > 1 a worker owns a ufb_pool of that many pinned threads that splits each of
 * its batches, for latency) takes the
 * oldest inputs while they fit a token budget and a request cap, optionally waits up to
 * max_wait_us for more, runs one ufb_forward() over the whole batch, stores each input's
 * results in its item and, when a job's last item is done, calls the job's done callback
 * (which resumes the HTTP connection). Inputs whose deadline passed before compute fail with
 * 504 without running. The queue is bounded (queue_size inputs): a request that does not fit
 * is refused whole with 429, the same way for one input or many.
 *
 * Locks: `mu` guards every field marked (mu); `n_pending` of a job is atomic because workers
 * finish items of one job concurrently.
 *
 * A failed forward pass fails only its batch: each of its inputs gets a 500, the worker goes
 * on. Test builds (-DUFBD_FAULT_INJECTION, build/ufbd-fault) can force that failure:
 * UFB_FAULT_FAIL_EVERY=N fails every Nth batch (counted from 1, the warm-up included) as if
 * ufb_forward had run out of memory. Production builds contain no hook.
 */
#include "srv_impl.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct qent {
    srv_job *job;
    int idx;
} qent;

typedef struct worker {
    srv_batcher *b;
    pthread_t thread;
    int cpu;              /* -1: not pinned */
    ufb_pool *pool;       /* worker_threads > 1: splits each batch (the worker thread works too) */
    ufb_ctx *ctx;         /* scratch for one batch */
    ufb_seq *seqs;        /* (max_batch_requests) */
    ufb_seq_stats *stats; /* (max_batch_requests) */
    float *logits;        /* (max_batch_requests, n_outputs) */
    srv_item **items;     /* (max_batch_requests) */
    qent *taken;          /* (max_batch_requests) */
} worker;

struct srv_batcher {
    const ufb_model *m;
    int max_tokens, max_requests, max_wait_us, q_cap;
    srv_batch_observer obs;
    void *obs_arg;
    pthread_mutex_t mu;
    pthread_cond_t cv_work; /* workers: queue not empty, or stopping */
    pthread_cond_t cv_idle; /* drain: queue empty and no worker busy */
    qent *q;                /* (mu) ring buffer of q_cap entries */
    int q_head, q_len;      /* (mu) */
    int busy;               /* (mu) workers computing */
    bool stopping;          /* (mu) */
    int n_workers;
    worker *workers;
#ifdef UFBD_FAULT_INJECTION
    int fault_every;          /* UFB_FAULT_FAIL_EVERY; 0 = off */
    atomic_int fault_batches; /* batches started */
#endif
};

#ifdef UFBD_FAULT_INJECTION
static bool fault_injected(srv_batcher *b) {
    int k = atomic_fetch_add_explicit(&b->fault_batches, 1, memory_order_relaxed) + 1;
    return b->fault_every > 0 && k % b->fault_every == 0;
}
#else
static bool fault_injected(srv_batcher *b) {
    (void)b;
    return false;
}
#endif

/* Finish one item of a job; the call that finishes the last item runs the callback. */
static void finish_item(srv_job *job) {
    if (atomic_fetch_sub_explicit(&job->n_pending, 1, memory_order_acq_rel) == 1) job->done(job);
}

static void fail_entry(qent e, int status, const char *type, const char *msg) {
    srv_error_set(&e.job->items[e.idx].err, status, type, "%s", msg);
    finish_item(e.job);
}

/* ---- Taking a batch (mu held) ---- */

static qent q_peek(const srv_batcher *b, int i) {
    return b->q[(b->q_head + i) % b->q_cap];
}

static void q_pop(srv_batcher *b) {
    b->q_head = (b->q_head + 1) % b->q_cap;
    b->q_len--;
}

/* Wait (bounded by max_wait_us after the oldest input arrived) while the queue holds less
 * than a full batch. */
static void wait_for_more(srv_batcher *b) {
    if (b->max_wait_us <= 0) return;
    for (;;) {
        int tokens = 0;
        for (int i = 0; i < b->q_len; i++)
            tokens += q_peek(b, i).job->items[q_peek(b, i).idx].enc.n;
        if (b->stopping || b->q_len >= b->max_requests || tokens >= b->max_tokens) return;
        double until = q_peek(b, 0).job->t_enqueue + b->max_wait_us * 1e-6;
        if (srv_now() >= until) return;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double wait = until - srv_now();
        ts.tv_sec += (time_t)wait;
        ts.tv_nsec += (long)((wait - (double)(time_t)wait) * 1e9);
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&b->cv_work, &b->mu, &ts);
        if (b->q_len == 0) return;
    }
}

/* Pop inputs into w->taken while they fit; @return count taken (expired ones included). */
static int take_batch(srv_batcher *b, worker *w, int *n_expired) {
    int n = 0, tokens = 0;
    *n_expired = 0;
    while (b->q_len > 0 && n < b->max_requests) {
        qent e = q_peek(b, 0);
        int t = e.job->items[e.idx].enc.n;
        if (n > *n_expired && tokens + t > b->max_tokens) break;
        q_pop(b);
        if (srv_now() > e.job->deadline) { /* expired entries go first in `taken` */
            w->taken[n++] = w->taken[*n_expired];
            w->taken[(*n_expired)++] = e;
            continue;
        }
        w->taken[n++] = e;
        tokens += t;
    }
    return n;
}

/* ---- Computing a batch (no lock held) ---- */

static void run_batch(srv_batcher *b, worker *w, const qent *taken, int n) {
    const int C = ufb_model_info_get(b->m)->n_outputs;
    int tokens = 0;
    double t0 = srv_now();
    for (int i = 0; i < n; i++) {
        srv_item *it = &taken[i].job->items[taken[i].idx];
        w->items[i] = it;
        w->seqs[i] = (ufb_seq){it->enc.ids, it->enc.type_ids, it->enc.n};
        w->stats[i] = (ufb_seq_stats){.leaves = it->stats.leaves};
        it->queue_ms = (t0 - taken[i].job->t_enqueue) * 1e3;
        tokens += it->enc.n;
    }
    int rc =
        fault_injected(b) ? UFB_ERR_NOMEM : ufb_forward(w->ctx, w->logits, w->stats, w->seqs, n);
    double t1 = srv_now();
    for (int i = 0; i < n; i++) {
        srv_item *it = w->items[i];
        if (rc) {
            srv_error_set(&it->err, 500, "Internal", "inference failed: %s", ufb_status_str(rc));
            continue;
        }
        memcpy(it->logits, w->logits + (size_t)i * C, sizeof(float) * (size_t)C);
        it->stats = w->stats[i];
        it->batch_size = n, it->batch_tokens = tokens;
        it->compute_ms = (t1 - t0) * 1e3;
    }
    if (!rc && b->obs) {
        srv_batch_stats st = {n, tokens, t1 - t0};
        b->obs(&st, (const srv_item *const *)w->items, n, b->obs_arg);
    }
    for (int i = 0; i < n; i++)
        finish_item(taken[i].job);
}

static void *worker_main(void *arg) {
    worker *w = arg;
    srv_batcher *b = w->b;
    if (w->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(w->cpu, &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set); /* best effort */
    }
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (b->q_len == 0 && !b->stopping)
            pthread_cond_wait(&b->cv_work, &b->mu);
        if (b->q_len == 0) break; /* stopping and nothing left */
        wait_for_more(b);
        int n_expired, n = take_batch(b, w, &n_expired);
        if (n == 0) continue;
        b->busy++;
        pthread_mutex_unlock(&b->mu);
        for (int i = 0; i < n_expired; i++)
            fail_entry(w->taken[i], 504, "Timeout", "request deadline passed before compute");
        if (n > n_expired) run_batch(b, w, w->taken + n_expired, n - n_expired);
        pthread_mutex_lock(&b->mu);
        b->busy--;
        if (b->q_len == 0 && b->busy == 0) pthread_cond_broadcast(&b->cv_idle);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* ---- Lifecycle ---- */

/* cpus: n_threads CPUs for this worker (its own thread takes the first), or NULL: unpinned */
static int worker_init(worker *w, srv_batcher *b, const int *cpus, int n_threads) {
    const ufb_model_info *in = ufb_model_info_get(b->m);
    const size_t R = (size_t)b->max_requests;
    ufb_ctx_params cp = ufb_ctx_params_default();
    cp.max_tokens = b->max_tokens > in->max_positions ? b->max_tokens : in->max_positions;
    w->b = b;
    w->cpu = cpus ? cpus[0] : -1;
    if (n_threads > 1) {
        /* ufb_pool_create pins the calling thread to cpus[0]: that is this worker's CPU, not
           the main thread's, so keep and restore the caller's mask */
        cpu_set_t keep;
        int have = pthread_getaffinity_np(pthread_self(), sizeof keep, &keep) == 0;
        w->pool = ufb_pool_create(n_threads, cpus);
        if (have) pthread_setaffinity_np(pthread_self(), sizeof keep, &keep);
        if (!w->pool) return -1;
        cp.pool = w->pool;
    }
    w->ctx = ufb_ctx_create(b->m, &cp);
    w->seqs = calloc(R, sizeof *w->seqs);
    w->stats = calloc(R, sizeof *w->stats);
    w->logits = calloc(R * (size_t)in->n_outputs, sizeof *w->logits);
    w->items = calloc(R, sizeof *w->items);
    w->taken = calloc(R, sizeof *w->taken);
    return w->ctx && w->seqs && w->stats && w->logits && w->items && w->taken ? 0 : -1;
}

static void worker_free(worker *w) {
    ufb_ctx_free(w->ctx);
    ufb_pool_free(w->pool);
    free(w->seqs);
    free(w->stats);
    free(w->logits);
    free(w->items);
    free(w->taken);
}

srv_batcher *srv_batcher_create(const ufb_model *m, const cfg_settings *cfg, int n_workers,
                                const int *cpus, srv_batch_observer obs, void *obs_arg) {
    srv_batcher *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    *b = (srv_batcher){.m = m,
                       .max_tokens = cfg->max_batch_tokens,
                       .max_requests = cfg->max_batch_requests,
                       .max_wait_us = cfg->max_wait_us,
                       .q_cap = cfg->queue_size,
                       .obs = obs,
                       .obs_arg = obs_arg};
#ifdef UFBD_FAULT_INJECTION
    const char *every = getenv("UFB_FAULT_FAIL_EVERY");
    b->fault_every = every ? atoi(every) : 0;
#endif
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv_work, NULL);
    pthread_cond_init(&b->cv_idle, NULL);
    b->q = calloc((size_t)b->q_cap, sizeof *b->q);
    b->workers = calloc((size_t)n_workers, sizeof *b->workers);
    if (!b->q || !b->workers) goto fail;
    for (int i = 0; i < n_workers; i++)
        if (worker_init(&b->workers[i], b, cpus ? cpus + (size_t)i * cfg->worker_threads : NULL,
                        cfg->worker_threads))
            goto fail;
    for (; b->n_workers < n_workers; b->n_workers++)
        if (pthread_create(&b->workers[b->n_workers].thread, NULL, worker_main,
                           &b->workers[b->n_workers]))
            goto fail;
    return b;
fail:
    pthread_mutex_lock(&b->mu);
    b->stopping = true;
    pthread_cond_broadcast(&b->cv_work);
    pthread_mutex_unlock(&b->mu);
    for (int i = 0; i < b->n_workers; i++)
        pthread_join(b->workers[i].thread, NULL);
    for (int i = 0; b->workers && i < n_workers; i++)
        worker_free(&b->workers[i]);
    b->n_workers = 0;
    srv_batcher_free(b);
    return NULL;
}

int srv_batcher_submit(srv_batcher *b, srv_job *job) {
    int n = 0;
    for (int i = 0; i < job->n_items; i++)
        n += job->items[i].err.status == 0;
    if (n == 0) return 1;
    pthread_mutex_lock(&b->mu);
    int rc = b->stopping ? -2 : b->q_len + n > b->q_cap ? -1 : 0;
    if (rc == 0) {
        atomic_store_explicit(&job->n_pending, n, memory_order_relaxed);
        for (int i = 0; i < job->n_items; i++)
            if (job->items[i].err.status == 0)
                b->q[(b->q_head + b->q_len++) % b->q_cap] = (qent){job, i};
        if (n > 1)
            pthread_cond_broadcast(&b->cv_work);
        else
            pthread_cond_signal(&b->cv_work);
    }
    pthread_mutex_unlock(&b->mu);
    return rc;
}

int srv_batcher_queued(srv_batcher *b) {
    pthread_mutex_lock(&b->mu);
    int n = b->q_len;
    pthread_mutex_unlock(&b->mu);
    return n;
}

int srv_batcher_busy(srv_batcher *b) {
    pthread_mutex_lock(&b->mu);
    int n = b->busy;
    pthread_mutex_unlock(&b->mu);
    return n;
}

int srv_batcher_workers(const srv_batcher *b) {
    return b->n_workers;
}

void srv_batcher_drain(srv_batcher *b, double timeout_s) {
    if (!b || !b->workers) return;
    double until = srv_now() + timeout_s;
    pthread_mutex_lock(&b->mu);
    b->stopping = true;
    pthread_cond_broadcast(&b->cv_work);
    while ((b->q_len > 0 || b->busy > 0) && srv_now() < until) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000L; /* re-check every 50 ms against the monotonic bound */
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&b->cv_idle, &b->mu, &ts);
    }
    int left = b->q_len > 0 ? b->q_len : 0;
    qent *rest = calloc((size_t)left + 1, sizeof *rest);
    for (int i = 0; rest && i < left; i++)
        rest[i] = q_peek(b, i);
    if (rest) b->q_len = 0; /* without memory the entries stay for the workers to run */
    pthread_mutex_unlock(&b->mu);
    for (int i = 0; rest && i < left; i++)
        fail_entry(rest[i], 503, "Unhealthy", "server is shutting down");
    free(rest);
    for (int i = 0; i < b->n_workers; i++)
        pthread_join(b->workers[i].thread, NULL);
    for (int i = 0; i < b->n_workers; i++)
        worker_free(&b->workers[i]);
    b->n_workers = 0;
}

void srv_batcher_free(srv_batcher *b) {
    if (!b) return;
    if (b->n_workers) srv_batcher_drain(b, 0);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv_work);
    pthread_cond_destroy(&b->cv_idle);
    free(b->q);
    free(b->workers);
    free(b);
}

/* ---- CPUs ---- */

/* cgroup v2 cpu.max ("max 100000" or "200000 100000") or v1 cfs quota; @return CPUs or 0. */
static int cgroup_cpus(void) {
    long quota = -1, period = 0;
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r");
    if (f) {
        char q[32] = "";
        if (fscanf(f, "%31s %ld", q, &period) == 2 && strcmp(q, "max") != 0) quota = atol(q);
        fclose(f);
    } else if ((f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "r"))) {
        if (fscanf(f, "%ld", &quota) != 1) quota = -1;
        fclose(f);
        if ((f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "r"))) {
            if (fscanf(f, "%ld", &period) != 1) period = 0;
            fclose(f);
        }
    }
    if (quota <= 0 || period <= 0) return 0;
    return (int)((quota + period - 1) / period);
}

int srv_cpu_count(int *cpus, int cap) {
    cpu_set_t set;
    int n = 0;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        for (int c = 0; c < CPU_SETSIZE && n < cap; c++)
            if (CPU_ISSET(c, &set)) cpus[n++] = c;
    if (n == 0) cpus[n++] = 0;
    int quota = cgroup_cpus();
    if (quota > 0 && quota < n) n = quota;
    return n;
}
