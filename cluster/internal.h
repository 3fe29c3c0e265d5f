/*
 * internal.h: what the cluster front end (cluster.c) and its drivers share.
 *
 * The front end checks arguments, counts each reactor's outstanding
 * requests, and copies every submission into one cluster_request (owned,
 * one allocation) that it hands to the driver. The driver answers by
 * calling cluster_request_complete on the submitting reactor.
 */
#ifndef STARLING_CLUSTER_INTERNAL_H
#define STARLING_CLUSTER_INTERNAL_H

#include <stdatomic.h>

#include "cluster/cluster.h"

typedef enum cluster_operation {
    CLUSTER_OPERATION_PUBLISH,
    CLUSTER_OPERATION_WITHDRAW,
    CLUSTER_OPERATION_LOOKUP,
    CLUSTER_OPERATION_DELIVER,
    CLUSTER_OPERATION_FAN_OUT,
} cluster_operation;

/* One submission and, once run, its answer. Strings point into the same
 * allocation. Owned by the driver from submit to complete. */
typedef struct cluster_request {
    struct cluster_request *next; /* for the driver's lists */
    cluster *owner;
    void *driver_state; /* the state the driver's create made */
    cluster_operation operation;
    unsigned reactor; /* the submitting reactor */
    cluster_callback *callback;
    void *context;
    cluster_status status; /* the answer */
    const char *jid;       /* publish, withdraw, lookup; deliver's recipient */
    size_t jid_length;
    cluster_node node;         /* deliver */
    const cluster_node *nodes; /* fan-out targets */
    size_t node_count;
    const cluster_bytes *recipients; /* fan-out */
    size_t recipient_count;
    const char *stanza; /* deliver, fan-out */
    size_t stanza_length;
    cluster_node *answer;    /* lookup: room for LIMIT_CLUSTER_NODES_MAX */
    size_t answer_count;     /* lookup: nodes in answer */
    atomic_size_t pending;   /* drivers' use: parts of a fan-out not yet done */
    atomic_bool part_failed; /* drivers' use: a part of a fan-out failed */
} cluster_request;

typedef struct cluster_driver {
    const char *name;
    /* Whether the driver reaches other nodes (cluster_spans_nodes). */
    bool spans_nodes;
    /* Creates the driver's state; CLUSTER_OK or a status with error set. */
    cluster_status (*create)(cluster *owner, const cluster_option *options, size_t option_count,
                             const cluster_host *host, void **state, char *error,
                             size_t error_size);
    void (*destroy)(void *state);
    cluster_node (*self)(const void *state);
    const char *(*node_name)(const void *state, cluster_node node);
    void (*poll)(void *state, unsigned reactor);
    /* Takes request (transferred) and returns CLUSTER_OK, after which it
     * completes it exactly once, never inside this call; or refuses it
     * (any other status) and leaves it to the caller. */
    cluster_status (*submit)(void *state, cluster_request *request);
} cluster_driver;

extern const cluster_driver cluster_driver_local;

/* Runs the request's callback (if any) with its answer on the calling
 * thread, which must be the submitting reactor, then frees it. */
void cluster_request_complete(cluster_request *request);

/* The bare part of a normalised JID: up to the first '/' (RFC 7622
 * section 3.1; a localpart or domainpart never holds one). */
size_t cluster_bare_length(const char *jid, size_t length);

#endif
