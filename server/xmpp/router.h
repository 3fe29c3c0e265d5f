/*
 * router.h: where a stanza goes, as pure decisions (RFC 6120 section 10,
 * RFC 6121 section 8).
 *
 * Routing happens in two steps on (at most) two reactors:
 *
 *   1. On the sender's reactor, router_resolve reads the addressing and
 *      says who handles the stanza: the server itself (its own domain, or
 *      no 'to' on an IQ or presence), a local user (then the caller computes
 *      cluster_shard(bare JID) and posts the stamped bytes there, or asks
 *      the cluster where the user is), or a remote domain (no federation
 *      yet: remote-server-not-found).
 *   2. On the reactor that owns the recipient's shard, router_decide applies
 *      RFC 6121 section 8.5 to the user's sessions from the session table and
 *      returns an action list: deliver to these sessions, reply with this
 *      stanza error, let the server handle it on the user's behalf, or drop
 *      it silently.
 *
 * Nothing here sends, allocates or touches a table: the functions read
 * their arguments and fill the caller's structures, so every rule is a unit
 * test. Errors are never answered with errors (RFC 6120 section 8.3.1): any
 * decision that would reply to a stanza of type error drops it instead.
 *
 * Offline storage comes with complete IM (shared/DESIGN.md, "Where this is
 * going", step 2): until then a message that the RFC lets a server store
 * offline is answered with service-unavailable, and the action says it
 * could have been stored (router_action.offline).
 *
 * Wiring, in c2s and the reactor that owns a shard:
 *   router_stanza_read(view, session's full JID, ...)   addressing
 *   stanza_from_allowed(...)                             else invalid-from
 *   router_resolve(...)                                  who handles it
 *   stanza_out_stamp + stanza_out_copy                   bytes to hand on
 *   rx_post to cluster_shard(recipient bare JID)         or inline if here
 *   ... on that reactor:
 *   router_decide(stanza, recipient, session_table_user(...), &actions)
 *   DELIVER: send the bytes; ERROR: stanza_error_write_from_bytes on the
 *   stamped copy, sent back to the sender; SERVER: the IQ and presence
 *   handlers, then router_unhandled.
 */
#ifndef STARLING_SERVER_XMPP_ROUTER_H
#define STARLING_SERVER_XMPP_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/limits.h"
#include "proto/xml.h"
#include "server/xmpp/session_table.h"
#include "server/xmpp/stanza_out.h"

/* A JID split into its parts (RFC 7622 section 3.1), syntactically: the
 * first '/' ends the bare JID, an '@' before it ends the localpart. Parts
 * borrow from the split string; absent parts are empty. */
typedef struct router_jid {
    xml_slice local, domain, resource;
    xml_slice bare; /* local@domain, or domain */
} router_jid;

/* Splits jid (borrowed, normalised). false for an empty domainpart, an
 * empty localpart before '@' or an empty resourcepart after '/', or more
 * than LIMIT_ROUTE_JID_BYTES_MAX bytes: jid-malformed. */
bool router_jid_split(const char *jid, size_t length, router_jid *out);

typedef enum router_kind {
    ROUTER_KIND_MESSAGE = 0,
    ROUTER_KIND_PRESENCE,
    ROUTER_KIND_IQ,
    ROUTER_KIND_OTHER, /* not a stanza (a nonza, or another element) */
} router_kind;

/* The 'type' of a stanza, over all three kinds. */
typedef enum router_type {
    ROUTER_TYPE_NORMAL = 0, /* message: absent, "normal" or not understood */
    ROUTER_TYPE_CHAT,
    ROUTER_TYPE_GROUPCHAT,
    ROUTER_TYPE_HEADLINE,
    ROUTER_TYPE_AVAILABLE, /* presence: absent */
    ROUTER_TYPE_UNAVAILABLE,
    ROUTER_TYPE_SUBSCRIBE,
    ROUTER_TYPE_SUBSCRIBED,
    ROUTER_TYPE_UNSUBSCRIBE,
    ROUTER_TYPE_UNSUBSCRIBED,
    ROUTER_TYPE_PROBE,
    ROUTER_TYPE_GET, /* iq */
    ROUTER_TYPE_SET,
    ROUTER_TYPE_RESULT,
    ROUTER_TYPE_ERROR,   /* any kind */
    ROUTER_TYPE_INVALID, /* presence or iq with a type it does not define */
} router_type;

/* The kind of a root element by its local name (borrowed). */
router_kind router_kind_of(xml_slice name);

/* The type for kind from the 'type' attribute's value (borrowed, as
 * written: a type spelled with character references is not understood;
 * has_type false when absent). A message's unknown type is normal (RFC 6121 section
 * 5.2.2); an IQ needs one of get/set/result/error (RFC 6120 section 8.2.3);
 * a presence's unknown type is invalid. */
router_type router_type_of(router_kind kind, bool has_type, xml_slice value);

/* What the router needs to know of a stanza. */
typedef struct router_stanza {
    router_kind kind;
    router_type type;
    bool has_to;
    router_jid to;     /* when has_to */
    router_jid sender; /* the sender's full JID (what `from` is stamped with) */
} router_stanza;

/* Whether this server serves domain (borrowed). */
typedef bool router_domain_fn(void *context, xml_slice domain);

typedef enum router_target {
    ROUTER_TARGET_SERVER = 0, /* the server handles it (modules, IQ handlers) */
    ROUTER_TARGET_LOCAL_USER, /* a user of a served domain: decide on its shard */
    ROUTER_TARGET_ERROR,      /* reply with resolution.condition */
    ROUTER_TARGET_DROP,       /* silently ignore */
} router_target;

typedef struct router_resolution {
    router_target target;
    stanza_error condition; /* ROUTER_TARGET_ERROR */
    router_jid recipient;   /* LOCAL_USER: to, or the sender's bare JID for a message with no to */
} router_resolution;

/*
 * Step 1 (RFC 6120 section 10): where stanza goes. served says which
 * domains are local. A stanza of type invalid gets bad-request; an unknown
 * domain gets remote-server-not-found (no federation yet).
 */
void router_resolve(const router_stanza *stanza, router_domain_fn *served, void *context,
                    router_resolution *out);

typedef enum router_action_kind {
    ROUTER_ACTION_DELIVER = 0, /* write the stamped bytes to action.resource's session */
    ROUTER_ACTION_ERROR,       /* reply to the sender with action.condition */
    ROUTER_ACTION_SERVER,      /* the server handles it on the user's behalf */
    ROUTER_ACTION_DROP,        /* silently ignore */
} router_action_kind;

typedef struct router_action {
    router_action_kind kind;
    const session_resource *resource; /* DELIVER: borrowed from the session table */
    stanza_error condition;           /* ERROR */
    bool offline;                     /* ERROR: the RFC lets this be stored offline */
} router_action;

/* The decision: one DELIVER per target resource, or a single other action. */
typedef struct router_actions {
    size_t count;
    router_action actions[LIMIT_SESSION_RESOURCES_PER_USER];
} router_actions;

/*
 * Step 2 (RFC 6121 section 8.5): stanza to recipient (a local user's bare
 * or full JID), given the user's sessions on this reactor (NULL: none).
 * Fills out with at least one action.
 */
void router_decide(const router_stanza *stanza, const router_jid *recipient,
                   const session_user *user, router_actions *out);

/* The answer to a stanza the server received and no handler took (an IQ
 * get or set: service-unavailable, RFC 6120 section 8.2.3 and RFC 6121
 * section 8.5.2.1.3; anything else is dropped). One action. */
void router_unhandled(const router_stanza *stanza, router_actions *out);

/*
 * Reads a stanza's kind, type and 'to' from its view (borrowed). to_buffer
 * (borrowed, to_capacity bytes) receives the unescaped 'to' when it holds
 * references; out->to borrows from it or from the view. sender (borrowed) is
 * the sending session's full JID. Returns STANZA_ERROR_COUNT when the
 * stanza can be routed, else the condition to answer with
 * (STANZA_ERROR_JID_MALFORMED for a 'to' that is not a JID).
 */
stanza_error router_stanza_read(const xml_view *view, const char *sender, size_t sender_length,
                                char *to_buffer, size_t to_capacity, router_stanza *out);

#endif
