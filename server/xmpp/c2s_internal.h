/*
 * c2s_internal.h: what the client-stream files share (c2s.c streams,
 * c2s_route.c routing and delivery, c2s_server.c the server's own IQs,
 * c2s_node.c the node and its per-reactor state). Not for other modules.
 *
 * Ownership: a c2s_session belongs to the reactor that owns its
 * connection; after resource binding that is the reactor of its bare JID's
 * shard (cluster_shard), and the session, its tokenizer and its TLS state
 * move there with the connection (rx_conn_move_to). A c2s_reactor is
 * touched only by its own reactor thread. The c2s_node is read-only once
 * the runtime runs, except for per-reactor slots.
 */
#ifndef STARLING_SERVER_XMPP_C2S_INTERNAL_H
#define STARLING_SERVER_XMPP_C2S_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/cluster.h"
#include "cluster/hash.h"
#include "proto/jid.h"
#include "proto/limits.h"
#include "proto/stream_errors.h"
#include "proto/xml.h"
#include "server/runtime/rx.h"
#include "server/tls/tls.h"
#include "server/xmpp/c2s.h"
#include "server/xmpp/router.h"
#include "server/xmpp/sasl.h"
#include "server/xmpp/session_table.h"
#include "server/xmpp/stanza_out.h"

/* Where a stream is. */
enum c2s_phase {
    C2S_HEADER = 0, /* waiting for the client's stream header (first, or after a restart) */
    C2S_OPEN,       /* header answered with features; negotiating or bound */
    C2S_CLOSED,     /* our closing tag is queued: input is ignored */
};

/* Stream flags. */
enum {
    C2S_SENT_HEADER = 1u << 0,   /* our header for the current stream is out */
    C2S_ENCRYPTED = 1u << 1,     /* TLS is on (direct, or after STARTTLS) */
    C2S_AUTHENTICATED = 1u << 2, /* SASL succeeded */
    C2S_BOUND = 1u << 3,         /* a resource is bound: the session is routable */
    C2S_AVAILABLE = 1u << 4,     /* sent available presence */
    C2S_HELD = 1u << 5,          /* input waits in `held` (SASL in flight, moving) */
    C2S_MOVING = 1u << 6,        /* rx_conn_move_to asked, done not yet run */
    C2S_IN_TABLE = 1u << 7,      /* in its reactor's session table */
};

typedef struct c2s_reactor c2s_reactor;

/* One client stream. Kept small: an idle bound session is this, its
 * tokenizer's idle state, the JID text and the connection's runtime state
 * (shared/DESIGN.md, "Memory"). */
typedef struct c2s_session {
    xml_tokenizer tokenizer;
    rx_conn *conn;
    const c2s_listener *listener;
    tls_session *tls;  /* NULL on a plaintext stream */
    sasl_session *sasl;/* during SASL only */
    rx_timer *delay;   /* a held-back SASL failure (allocated when needed) */
    char *jid;         /* "local@domain" after SASL, "/resource" added at bind */
    char *held;        /* plaintext that arrived while C2S_HELD */
    uint32_t held_length;
    uint16_t bare_length;
    uint16_t full_length;
    uint16_t domain_index; /* in c2s_node.domains */
    uint8_t phase;
    uint8_t flags;
    int8_t priority;
    uint8_t binds; /* bind requests seen (one is allowed) */
} c2s_session;

/* A stanza on its way to the reactor that owns its recipient's shard:
 * the stamped bytes and what the router read from them. Allocated by the
 * sender's reactor, freed by the reactor that handles it. */
typedef struct c2s_parcel {
    uint64_t recipient_hash; /* cluster_hash of the recipient's bare JID (parcel_address) */
    uint8_t kind;          /* router_kind */
    uint8_t type;          /* router_type */
    bool has_to;
    uint16_t recipient_length; /* the prepared recipient JID (bare or full) */
    uint16_t sender_length;    /* the sender's full JID (the stamped from) */
    uint32_t stanza_length;
    char bytes[];          /* recipient, sender, stanza */
} c2s_parcel;

static inline const char *c2s_parcel_recipient(const c2s_parcel *parcel)
{
    return parcel->bytes;
}
static inline const char *c2s_parcel_sender(const c2s_parcel *parcel)
{
    return parcel->bytes + parcel->recipient_length;
}
static inline const char *c2s_parcel_stanza(const c2s_parcel *parcel)
{
    return parcel->bytes + parcel->recipient_length + parcel->sender_length;
}

/* A served domain, prepared (RFC 7622), with its options. */
typedef struct c2s_domain {
    char name[LIMIT_JID_PART_BYTES_MAX + 1];
    uint16_t length;
    bool anonymous;
} c2s_domain;

/* What one reactor keeps for its streams. */
struct c2s_reactor {
    c2s_node *node;
    unsigned index;
    sasl_server sasl;
    session_table *sessions;
    xml_scratch *scratch;
    tls_io tls_io;
    uint8_t plaintext[LIMIT_TLS_PLAINTEXT_BUFFER_BYTES];
    stanza_out out;
    char reply[LIMIT_C2S_REPLY_BYTES]; /* answers built here (errors, IQ results) */
    char to[LIMIT_ROUTE_JID_BYTES_MAX + 1];
    char text[LIMIT_C2S_SASL_TEXT_BYTES]; /* a SASL element's base64 text */
    jid jid; /* a JID being prepared ('to', 'from') */
};

struct c2s_node {
    const config *settings;
    storage *storage;
    cluster *cluster;
    tls_context *tls; /* NULL when no listener uses TLS */
    session_conflict_policy conflict;
    unsigned reactor_count;
    size_t domain_count;
    c2s_domain domains[LIMIT_CONFIG_DOMAINS_MAX];
    cluster_host host;
    c2s_reactor *reactors; /* reactor_count of them */
    uint8_t sasl_secret[32];
};

/* ---------------------------------------------------------------- c2s.c */

/* The reactor state of the calling reactor thread. */
c2s_reactor *c2s_reactor_here(c2s_node *node);

/* Writes bytes to the client (through TLS when the stream is encrypted).
 * A refused write ends the stream. */
void c2s_write(c2s_session *session, const char *bytes, size_t length);

/* Answers the stanza of view (on session's reactor) with its stanza error
 * (never an error to an error). */
void c2s_reply_error(c2s_session *session, c2s_reactor *here, const xml_view *view,
                     stanza_error condition);

/* Ends the stream with a stream error (our header first if it was not
 * sent), the closing tag, and a close once the queue drains. */
void c2s_fail(c2s_session *session, stream_error condition);

/* ---------------------------------------------------------- c2s_route.c */

/* A stanza from a bound session (borrowed view on its reactor): checks
 * 'from', resolves 'to', and hands it on. */
void c2s_route_stanza(c2s_session *session, c2s_reactor *here, const xml_view *view);

/* The session is gone from routing (closing, replaced): takes it out of
 * its reactor's table and the cluster's directory. */
void c2s_route_unbind(c2s_session *session, c2s_reactor *here);

/* Binds the session (on its shard's reactor). Returns the table's status;
 * on SESSION_REPLACED the older session has been sent a conflict error. */
session_status c2s_route_bind(c2s_session *session, c2s_reactor *here);

/* The cluster host callback: a stanza arrived for a recipient of this
 * reactor's shard. */
void c2s_route_arrived(void *context, unsigned reactor, const char *recipient,
                       size_t recipient_length, const char *stanza, size_t stanza_length);

/* --------------------------------------------------------- c2s_server.c */

/* A stanza addressed to the server itself (its domain, or no 'to' on an
 * IQ or presence), from session on its own reactor: the server's IQs, and
 * presence broadcast (RFC 6121 section 4). Answers or drops it. */
void c2s_server_stanza(c2s_session *session, c2s_reactor *here, const xml_view *view,
                       const router_stanza *stanza);

/* The session ends without having sent unavailable presence: tells the
 * user's other available resources (RFC 6121 section 4.5.2). */
void c2s_server_gone(c2s_session *session, c2s_reactor *here);

/* Whether domain is one the node serves; its index in *index. */
bool c2s_node_domain(const c2s_node *node, const char *domain, size_t length, size_t *index);

#endif
