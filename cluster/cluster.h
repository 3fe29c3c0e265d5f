/*
 * cluster.h: the cluster interface, its public contract.
 *
 * What crosses nodes goes through here and only here: the global session
 * directory (which node holds which full JID), stanza delivery to another
 * node, presence fan-out to a set of nodes, and node failure. The XMPP layer
 * calls these functions and never knows which driver runs:
 *
 *   local   single node, the default: the directory is this node's own
 *           sessions, and delivery to this node is a loopback
 *   redis   (later) directory in Redis hashes, node heartbeats, node inboxes
 *   kafka   (later) node inbox topics, and the push ingest stream
 *
 * Every operation is asynchronous, like storage/storage.h: a submission
 * from reactor R (the caller passes its own reactor index) either returns
 * CLUSTER_OK, and then its callback runs exactly once, later, on reactor R
 * (never inside the submission itself), or returns another status, and the
 * callback never runs. A NULL callback asks for no completion (fire and
 * forget; the operation still runs). A driver with a network connection
 * (Redis) answers from its own thread through a runtime producer; the local
 * driver answers through the reactors' mailboxes. Each reactor may have
 * LIMIT_CLUSTER_REQUESTS_PER_REACTOR requests outstanding; over it a
 * submission returns CLUSTER_BUSY.
 *
 * Arriving traffic goes the other way, through the host callbacks the node
 * registers at creation (cluster_host): a stanza delivered to this node runs
 * host.on_stanza on the reactor that owns the recipient's shard
 * (cluster/hash.h), so the XMPP layer there applies the RFC 6121 delivery
 * rules with no further hop. A node the driver sees fail runs
 * host.on_node_down on every reactor, so each drops what it knew of that
 * node's sessions.
 *
 * Once per loop iteration each reactor calls cluster_poll: a driver sends
 * what that iteration batched (one pipeline per iteration) and retries
 * answers a full mailbox refused.
 *
 * Ownership: string and byte arguments are borrowed for the call (the
 * driver copies what it keeps). Results and arriving stanzas are borrowed
 * for their callback only.
 */
#ifndef STARLING_CLUSTER_CLUSTER_H
#define STARLING_CLUSTER_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/limits.h"
#include "server/runtime/rx.h"

typedef struct cluster cluster;

/* A node of the cluster, as the driver numbers them (dense, from 0). */
typedef uint32_t cluster_node;
#define CLUSTER_NODE_NONE UINT32_MAX

/* The one set of outcomes of the cluster layer. */
typedef enum cluster_status {
    CLUSTER_OK = 0,
    CLUSTER_BUSY,        /* too many requests outstanding, or a mailbox is full */
    CLUSTER_INVALID,     /* a bad argument: unknown node, empty or oversized JID */
    CLUSTER_UNAVAILABLE, /* the cluster backend (Redis, Kafka) cannot be reached */
    CLUSTER_NOMEM,       /* allocation failed */
    CLUSTER_CLOSED,      /* the cluster is closing */
} cluster_status;

/* A short name for logs, e.g. "busy" (static, never NULL). */
const char *cluster_status_name(cluster_status status);

/* What a completed operation produced; nodes only for cluster_lookup. */
typedef struct cluster_result {
    cluster_status status;
    const cluster_node *nodes; /* the nodes holding a session of the bare JID */
    size_t node_count;         /* 0 .. LIMIT_CLUSTER_NODES_MAX */
} cluster_result;

/* Runs once per accepted submission, on the submitting reactor. */
typedef void cluster_callback(void *context, const cluster_result *result);

/* What the node gives the driver. Borrowed: it must outlive the cluster. */
typedef struct cluster_host {
    unsigned reactor_count; /* reactors of this node, 1..LIMIT_REACTORS_MAX */
    /* How to reach a reactor from a reactor: NULL means rx_post. Tests put
     * a queue here to run the reactors' mailboxes by hand. */
    rx_status (*post)(void *post_context, unsigned reactor, const rx_message *message);
    void *post_context;
    /* A stanza arrived for recipient (a normalised JID, bare or full), on
     * the reactor that owns the recipient's bare JID's shard. Both borrowed
     * for the call. */
    void (*on_stanza)(void *context, unsigned reactor, const char *recipient,
                      size_t recipient_length, const char *stanza, size_t stanza_length);
    /* node is gone: every session it held is gone with it. Runs on each
     * reactor. May be NULL. */
    void (*on_node_down)(void *context, unsigned reactor, cluster_node node);
    void *context;
} cluster_host;

/* One driver option, e.g. {"node", "starling-0"}; both borrowed. */
typedef struct cluster_option {
    const char *key;
    const char *value;
} cluster_option;

/* A JID or bytes handed to a fan-out. Borrowed. */
typedef struct cluster_bytes {
    const char *bytes;
    size_t length;
} cluster_bytes;

/* ------------------------------------------------------------- lifecycle */

/* Creates a cluster handle for driver ("local") with its options
 * (borrowed; "local" knows "node", the node's name, default "local") and
 * host (borrowed for the handle's life). Returns an owned handle, or NULL
 * with a one-line reason in error (capacity error_size). Call it before
 * the reactors start. */
cluster *cluster_create(const char *driver, const cluster_option *options, size_t option_count,
                        const cluster_host *host, char *error, size_t error_size)
    __attribute__((warn_unused_result));

/* Frees the handle. Call it after the reactors stopped: requests still in
 * flight are dropped with their callbacks. */
void cluster_destroy(cluster *cluster);

/* This node's number and a node's name (static or owned by the handle,
 * never NULL: "" for an unknown node). */
cluster_node cluster_self(const cluster *cluster);
const char *cluster_node_name(const cluster *cluster, cluster_node node);
const char *cluster_driver_name(const cluster *cluster);
/* Whether the driver reaches other nodes. When it does not (`local`), a
 * node's own session tables already know every session the cluster has:
 * the XMPP layer then neither publishes its sessions nor looks users up,
 * which saves a directory entry per session and a mailbox hop per bind,
 * unbind and miss. */
bool cluster_spans_nodes(const cluster *cluster);

/* Once per loop iteration, on each reactor. */
void cluster_poll(cluster *cluster, unsigned reactor);

/* ------------------------------------------------------------ operations */

/* Every operation is called on reactor `reactor` (its index) and returns
 * CLUSTER_OK (the callback will run), or BUSY, INVALID, CLOSED or NOMEM (it
 * will not). JIDs are normalised, 1..LIMIT_ROUTE_JID_BYTES_MAX bytes. */

/* This node holds a session for full_jid. Completes OK. Publishing a full
 * JID twice is one entry. */
cluster_status cluster_publish(cluster *cluster, unsigned reactor, const char *full_jid,
                               size_t length, cluster_callback *callback, void *context);

/* This node no longer holds full_jid. Completes OK (also when it was not
 * published). */
cluster_status cluster_withdraw(cluster *cluster, unsigned reactor, const char *full_jid,
                                size_t length, cluster_callback *callback, void *context);

/* The nodes that hold at least one session of bare_jid, in
 * result->nodes (none: node_count 0). */
cluster_status cluster_lookup(cluster *cluster, unsigned reactor, const char *bare_jid,
                              size_t length, cluster_callback *callback, void *context);

/* Hands stanza (1..LIMIT_STANZA_BYTES_MAX bytes, already stamped) to node
 * for recipient (bare or full JID). Completes OK once the node's inbox took
 * it (not once a session received it); INVALID at once for an unknown
 * node. On the receiving node it arrives through host.on_stanza. */
cluster_status cluster_deliver(cluster *cluster, unsigned reactor, cluster_node node,
                               const char *recipient, size_t recipient_length, const char *stanza,
                               size_t stanza_length, cluster_callback *callback, void *context);

/* Sends one presence stanza to each of nodes (1..LIMIT_CLUSTER_NODES_MAX)
 * with the list of recipients (bare JIDs,
 * 1..LIMIT_CLUSTER_FAN_OUT_JIDS_MAX). The stanza crosses to each node
 * once; each node runs host.on_stanza once per recipient, on the
 * recipient's reactor (a node holding no session of a recipient finds none
 * there: presence to an absent user is silently ignored, RFC 6121 section
 * 8.5.2.2.2). Completes OK once every node's inbox took it. */
cluster_status cluster_fan_out(cluster *cluster, unsigned reactor, const cluster_node *nodes,
                               size_t node_count, const cluster_bytes *recipients,
                               size_t recipient_count, const char *stanza, size_t stanza_length,
                               cluster_callback *callback, void *context);

#endif
