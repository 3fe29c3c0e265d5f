/*
 * cluster.c: the front end of the cluster interface. It checks arguments,
 * bounds each reactor's outstanding requests, copies each submission into
 * one owned request, and hands it to the driver the handle was made with.
 * The driver table is the seam where the Redis and Kafka drivers plug in;
 * nothing above this file changes when they do.
 */
#include "cluster/internal.h"

#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One reactor's count of outstanding requests, alone on its cache line:
 * each is written only by its reactor, and neighbours must not bounce. */
typedef struct reactor_counter {
    alignas(64) size_t outstanding;
} reactor_counter;

struct cluster {
    const cluster_driver *driver;
    void *state;
    const cluster_host *host;
    reactor_counter *counters; /* owned; host->reactor_count */
};

static const cluster_driver *const drivers[] = {&cluster_driver_local};

const char *cluster_status_name(cluster_status status)
{
    switch (status) {
    case CLUSTER_OK:
        return "ok";
    case CLUSTER_BUSY:
        return "busy";
    case CLUSTER_INVALID:
        return "invalid";
    case CLUSTER_UNAVAILABLE:
        return "unavailable";
    case CLUSTER_NOMEM:
        return "out of memory";
    case CLUSTER_CLOSED:
        return "closed";
    }
    return "unknown";
}

size_t cluster_bare_length(const char *jid, size_t length)
{
    const char *slash = memchr(jid, '/', length);
    return slash != NULL ? (size_t)(slash - jid) : length;
}

cluster *cluster_create(const char *driver, const cluster_option *options, size_t option_count,
                        const cluster_host *host, char *error, size_t error_size)
{
    if (host == NULL || host->reactor_count == 0 || host->reactor_count > LIMIT_REACTORS_MAX ||
        host->on_stanza == NULL) {
        snprintf(error, error_size, "cluster: the host needs 1..%u reactors and on_stanza",
                 LIMIT_REACTORS_MAX);
        return NULL;
    }
    const cluster_driver *chosen = NULL;
    for (size_t i = 0; i < sizeof drivers / sizeof drivers[0]; i++)
        if (driver != NULL && strcmp(drivers[i]->name, driver) == 0)
            chosen = drivers[i];
    if (chosen == NULL) {
        snprintf(error, error_size, "cluster: unknown driver '%s' (known: local)",
                 driver != NULL ? driver : "");
        return NULL;
    }
    cluster *c = calloc(1, sizeof *c);
    reactor_counter *counters =
        c != NULL ? aligned_alloc(64, sizeof *counters * host->reactor_count) : NULL;
    if (counters == NULL) {
        free(c);
        snprintf(error, error_size, "cluster: out of memory");
        return NULL;
    }
    memset(counters, 0, sizeof *counters * host->reactor_count);
    *c = (cluster){.driver = chosen, .host = host, .counters = counters};
    if (chosen->create(c, options, option_count, host, &c->state, error, error_size) !=
        CLUSTER_OK) {
        free(counters);
        free(c);
        return NULL;
    }
    return c;
}

void cluster_destroy(cluster *cluster)
{
    if (cluster == NULL)
        return;
    cluster->driver->destroy(cluster->state);
    free(cluster->counters);
    free(cluster);
}

cluster_node cluster_self(const cluster *cluster)
{
    return cluster->driver->self(cluster->state);
}

const char *cluster_node_name(const cluster *cluster, cluster_node node)
{
    return cluster->driver->node_name(cluster->state, node);
}

const char *cluster_driver_name(const cluster *cluster)
{
    return cluster->driver->name;
}

bool cluster_spans_nodes(const cluster *cluster)
{
    return cluster->driver->spans_nodes;
}

void cluster_poll(cluster *cluster, unsigned reactor)
{
    if (reactor < cluster->host->reactor_count)
        cluster->driver->poll(cluster->state, reactor);
}

void cluster_request_complete(cluster_request *request)
{
    cluster *c = request->owner;
    cluster_result result = {
        .status = request->status,
        .nodes = request->answer,
        .node_count = request->status == CLUSTER_OK ? request->answer_count : 0,
    };
    size_t *outstanding = &c->counters[request->reactor].outstanding;
    if (*outstanding > 0)
        (*outstanding)--;
    /* result.nodes points into the request: it is freed after the call. */
    if (request->callback != NULL)
        request->callback(request->context, &result);
    free(request);
}

static bool jid_ok(const char *jid, size_t length)
{
    return jid != NULL && length >= 1 && length <= LIMIT_ROUTE_JID_BYTES_MAX;
}

static bool stanza_ok(const char *stanza, size_t length)
{
    return stanza != NULL && length >= 1 && length <= LIMIT_STANZA_BYTES_MAX;
}

/* Everything a request copies, measured before the one allocation. */
typedef struct request_shape {
    cluster_operation operation;
    const char *jid;
    size_t jid_length;
    const cluster_node *nodes;
    size_t node_count;
    const cluster_bytes *recipients;
    size_t recipient_count;
    const char *stanza;
    size_t stanza_length;
} request_shape;

static cluster_request *request_build(cluster *c, unsigned reactor, const request_shape *shape,
                                      cluster_callback *callback, void *context)
{
    size_t bytes = sizeof(cluster_request);
    size_t answer_bytes = shape->operation == CLUSTER_OPERATION_LOOKUP
                              ? sizeof(cluster_node) * LIMIT_CLUSTER_NODES_MAX
                              : 0;
    size_t text_bytes = shape->jid_length + shape->stanza_length;
    for (size_t i = 0; i < shape->recipient_count; i++)
        text_bytes += shape->recipients[i].length;
    bytes += answer_bytes + sizeof(cluster_node) * shape->node_count +
             sizeof(cluster_bytes) * shape->recipient_count + text_bytes;
    cluster_request *r = calloc(1, bytes);
    if (r == NULL)
        return NULL;
    char *at = (char *)(r + 1);
    r->owner = c;
    r->driver_state = c->state;
    r->operation = shape->operation;
    r->reactor = reactor;
    r->callback = callback;
    r->context = context;
    r->node = CLUSTER_NODE_NONE;
    /* Pointer-aligned parts first (the request itself is), then the
     * 4-byte node numbers, then the bytes. */
    cluster_bytes *recipients = (cluster_bytes *)at;
    at += sizeof(cluster_bytes) * shape->recipient_count;
    r->answer = answer_bytes > 0 ? (cluster_node *)at : NULL;
    at += answer_bytes;
    if (shape->node_count > 0) {
        memcpy(at, shape->nodes, sizeof(cluster_node) * shape->node_count);
        r->nodes = (const cluster_node *)at;
        r->node_count = shape->node_count;
        at += sizeof(cluster_node) * shape->node_count;
    }
    for (size_t i = 0; i < shape->recipient_count; i++) {
        memcpy(at, shape->recipients[i].bytes, shape->recipients[i].length);
        recipients[i] = (cluster_bytes){at, shape->recipients[i].length};
        at += shape->recipients[i].length;
    }
    r->recipients = shape->recipient_count > 0 ? recipients : NULL;
    r->recipient_count = shape->recipient_count;
    if (shape->jid_length > 0) {
        memcpy(at, shape->jid, shape->jid_length);
        r->jid = at;
        r->jid_length = shape->jid_length;
        at += shape->jid_length;
    }
    if (shape->stanza_length > 0) {
        memcpy(at, shape->stanza, shape->stanza_length);
        r->stanza = at;
        r->stanza_length = shape->stanza_length;
    }
    return r;
}

static cluster_status submit(cluster *c, unsigned reactor, const request_shape *shape,
                             cluster_node node, cluster_callback *callback, void *context)
{
    if (reactor >= c->host->reactor_count)
        return CLUSTER_INVALID;
    size_t *outstanding = &c->counters[reactor].outstanding;
    if (*outstanding >= LIMIT_CLUSTER_REQUESTS_PER_REACTOR)
        return CLUSTER_BUSY;
    cluster_request *r = request_build(c, reactor, shape, callback, context);
    if (r == NULL)
        return CLUSTER_NOMEM;
    r->node = node;
    (*outstanding)++;
    cluster_status status = c->driver->submit(c->state, r);
    if (status != CLUSTER_OK) {
        (*outstanding)--;
        free(r);
    }
    return status;
}

static cluster_status submit_jid(cluster *c, unsigned reactor, cluster_operation operation,
                                 const char *jid, size_t length, cluster_callback *callback,
                                 void *context)
{
    if (!jid_ok(jid, length))
        return CLUSTER_INVALID;
    request_shape shape = {.operation = operation, .jid = jid, .jid_length = length};
    return submit(c, reactor, &shape, CLUSTER_NODE_NONE, callback, context);
}

cluster_status cluster_publish(cluster *cluster, unsigned reactor, const char *full_jid,
                               size_t length, cluster_callback *callback, void *context)
{
    return submit_jid(cluster, reactor, CLUSTER_OPERATION_PUBLISH, full_jid, length, callback,
                      context);
}

cluster_status cluster_withdraw(cluster *cluster, unsigned reactor, const char *full_jid,
                                size_t length, cluster_callback *callback, void *context)
{
    return submit_jid(cluster, reactor, CLUSTER_OPERATION_WITHDRAW, full_jid, length, callback,
                      context);
}

cluster_status cluster_lookup(cluster *cluster, unsigned reactor, const char *bare_jid,
                              size_t length, cluster_callback *callback, void *context)
{
    if (jid_ok(bare_jid, length) && cluster_bare_length(bare_jid, length) != length)
        return CLUSTER_INVALID; /* a full JID: lookups are by bare JID */
    return submit_jid(cluster, reactor, CLUSTER_OPERATION_LOOKUP, bare_jid, length, callback,
                      context);
}

cluster_status cluster_deliver(cluster *cluster, unsigned reactor, cluster_node node,
                               const char *recipient, size_t recipient_length, const char *stanza,
                               size_t stanza_length, cluster_callback *callback, void *context)
{
    if (!jid_ok(recipient, recipient_length) || !stanza_ok(stanza, stanza_length))
        return CLUSTER_INVALID;
    request_shape shape = {
        .operation = CLUSTER_OPERATION_DELIVER,
        .jid = recipient,
        .jid_length = recipient_length,
        .stanza = stanza,
        .stanza_length = stanza_length,
    };
    return submit(cluster, reactor, &shape, node, callback, context);
}

cluster_status cluster_fan_out(cluster *cluster, unsigned reactor, const cluster_node *nodes,
                               size_t node_count, const cluster_bytes *recipients,
                               size_t recipient_count, const char *stanza, size_t stanza_length,
                               cluster_callback *callback, void *context)
{
    if (nodes == NULL || node_count == 0 || node_count > LIMIT_CLUSTER_NODES_MAX ||
        recipients == NULL || recipient_count == 0 ||
        recipient_count > LIMIT_CLUSTER_FAN_OUT_JIDS_MAX || !stanza_ok(stanza, stanza_length))
        return CLUSTER_INVALID;
    for (size_t i = 0; i < recipient_count; i++)
        if (!jid_ok(recipients[i].bytes, recipients[i].length))
            return CLUSTER_INVALID;
    request_shape shape = {
        .operation = CLUSTER_OPERATION_FAN_OUT,
        .nodes = nodes,
        .node_count = node_count,
        .recipients = recipients,
        .recipient_count = recipient_count,
        .stanza = stanza,
        .stanza_length = stanza_length,
    };
    return submit(cluster, reactor, &shape, CLUSTER_NODE_NONE, callback, context);
}
