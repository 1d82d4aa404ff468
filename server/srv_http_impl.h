/* srv_http_impl.h — the server object shared by srv_http.c (handlers) and srv_main.c
 * (startup, warm-up, drain). server/ only. */
#ifndef UFB_SRV_HTTP_IMPL_H
#define UFB_SRV_HTTP_IMPL_H

#include "srv_impl.h"

#include <microhttpd.h>
#include <pthread.h>

typedef struct srv_server {
    cfg_settings cfg; /* read-only after start */
    /* Published before `ready` is set (release) and read after it is seen (acquire): */
    ufb_model *m;
    srv_batcher *batcher;
    srv_metrics *metrics;
    srv_limits limits;
    char *info_json;      /* GET /info body */
    atomic_bool ready;    /* model loaded and warmed */
    atomic_bool draining; /* SIGTERM seen: readiness 503, new POSTs 503 */
    atomic_int in_flight; /* requests between first call and NOTIFY_COMPLETED */
    struct MHD_Daemon *daemon;
} srv_server;

/* MHD access handler and completion callback; cls is the srv_server. */
enum MHD_Result srv_on_request(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **req_cls);
void srv_on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                      enum MHD_RequestTerminationCode toe);

#endif
