/*
 * c2s.h: client-to-server XMPP streams (RFC 6120) on the runtime.
 *
 * A client stream starts when a connection is accepted on a client
 * listener (direct TLS from the first byte, XEP-0368, or STARTTLS, or
 * plaintext on a listener that allows it for loopback benchmarks). c2s
 * reads the stream with the zero-copy tokenizer, answers the header with
 * the features the stream is at (STARTTLS required; then SASL; then
 * resource binding and the optional legacy session), runs TLS over memory
 * (server/tls), SASL against storage (server/xmpp/sasl.h), binds a
 * resource, moves the connection to the reactor that owns its bare JID's
 * shard, and routes stanzas (server/xmpp/router.h) as bytes with `from`
 * stamped. Whatever breaks the rules ends only that stream, with the
 * stream error RFC 6120 names.
 *
 * A c2s_node is the XMPP layer of one process: the served domains, storage,
 * cluster driver, TLS context and each reactor's state. Create it before
 * the runtime runs and destroy it after the runtime has stopped.
 */
#ifndef STARLING_SERVER_XMPP_C2S_H
#define STARLING_SERVER_XMPP_C2S_H

#include <stdbool.h>
#include <stddef.h>

#include "cluster/cluster.h"
#include "server/config/config.h"
#include "server/runtime/rx.h"
#include "server/tls/tls.h"
#include "storage/storage.h"

typedef struct c2s_node c2s_node;

/* What one client listener serves; the listener context of
 * c2s_listener_ops. Must outlive the runtime. */
typedef struct c2s_listener {
    c2s_node *node;
    unsigned tls; /* config_tls_mode: CONFIG_TLS_STARTTLS, _DIRECT or _PLAINTEXT */
} c2s_listener;

/* Creates the node for settings (borrowed, must outlive it): prepares the
 * domains, makes the cluster driver, one state per reactor. storage and
 * tls (NULL when no listener needs TLS) are borrowed. Returns NULL with a
 * line in error. */
c2s_node *c2s_node_create(const config *settings, unsigned reactor_count, storage *storage,
                          tls_context *tls, char *error, size_t error_size);
void c2s_node_destroy(c2s_node *node);

/* The per-iteration work of a reactor (the cluster driver's batch and
 * retries); the runtime's iteration hook. */
void c2s_node_iteration(void *node, unsigned reactor_index);

extern const rx_listener_ops c2s_listener_ops;

#endif
