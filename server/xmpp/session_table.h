/*
 * session_table.h: one reactor's bound sessions, by bare JID.
 *
 * After resource binding a session moves to the reactor that owns its bare
 * JID's shard (cluster_shard in cluster/hash.h), so every resource of a user
 * lives in one reactor's table, and that reactor alone reads and writes it:
 * no locks. The table maps a bare JID to its resources (full JID, presence
 * priority, available or only connected, and a handle to the session that
 * the table never looks into), in O(1) expected time: a chained hash table
 * keyed with the process's SipHash key, so a client cannot flood one bucket.
 *
 * Binds are bounded: LIMIT_SESSION_RESOURCES_PER_USER resources per user and
 * a table-wide bound (at most LIMIT_SESSIONS_PER_REACTOR). A bind of a full
 * JID that is already bound is a conflict (RFC 6120 section 7.7.2.2); the
 * table's policy says who wins:
 *
 *   SESSION_CONFLICT_REPLACE  the new session takes the resource; the bind
 *                             returns the older handle, which the caller
 *                             closes with a <conflict/> stream error
 *                             (the default, as most servers do)
 *   SESSION_CONFLICT_REFUSE   the new bind is refused; the caller answers
 *                             the bind IQ with a <conflict/> stanza error
 *
 * JIDs are handed in normalised (RFC 7622) and split: the bare JID
 * (localpart@domainpart) and the resourcepart. Everything the table returns
 * is borrowed from it and valid until the next bind, remove or destroy.
 */
#ifndef STARLING_SERVER_XMPP_SESSION_TABLE_H
#define STARLING_SERVER_XMPP_SESSION_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/limits.h"

typedef struct session_table session_table;

typedef enum session_conflict_policy {
    SESSION_CONFLICT_REPLACE = 0,
    SESSION_CONFLICT_REFUSE,
} session_conflict_policy;

typedef enum session_status {
    SESSION_OK = 0,
    SESSION_REPLACED,   /* bound; *replaced is the older session, to be closed */
    SESSION_CONFLICT,   /* refused: the full JID is bound (REFUSE policy) */
    SESSION_USER_FULL,  /* refused: the user has the most resources allowed */
    SESSION_TABLE_FULL, /* refused: the table has the most sessions allowed */
    SESSION_INVALID,    /* an empty or oversized part, or a '/' in the bare JID */
    SESSION_NOMEM,      /* refused: allocation failed */
    SESSION_NOT_FOUND,  /* no such resource (or another session holds it) */
} session_status;

/* A short name for logs, e.g. "conflict" (static, never NULL). */
const char *session_status_name(session_status status);

/* One bound resource. Read-only for callers. */
typedef struct session_resource {
    const char *full_jid; /* "bare/resource", owned by the table */
    size_t full_length;
    const char *resource; /* points into full_jid */
    size_t resource_length;
    void *handle;    /* the caller's session; borrowed, never dereferenced */
    int8_t priority; /* RFC 6121 section 4.7.2.3: -128..127, 0 until set */
    bool available;  /* sent available presence (else only connected) */
} session_resource;

/* One user's resources. Read-only for callers. */
typedef struct session_user {
    const char *bare_jid; /* owned by the table */
    size_t bare_length;
    size_t resource_count; /* 1..LIMIT_SESSION_RESOURCES_PER_USER */
    const session_resource *resources;
} session_user;

/* Creates an empty table. sessions_max and resources_per_user_max are
 * clamped to 1..LIMIT_SESSIONS_PER_REACTOR and
 * 1..LIMIT_SESSION_RESOURCES_PER_USER (0 means the limit). Returns an owned
 * table, or NULL when out of memory. */
session_table *session_table_create(size_t sessions_max, size_t resources_per_user_max,
                                    session_conflict_policy policy)
    __attribute__((warn_unused_result));

/* Frees the table (the handles are the caller's). */
void session_table_destroy(session_table *table);

/*
 * Binds bare/resource to handle (borrowed). Returns SESSION_OK, or
 * SESSION_REPLACED with *replaced set to the older session's handle (the
 * resource now belongs to handle, unavailable with priority 0), or a
 * refusal with nothing changed. Binding the same handle again is SESSION_OK.
 */
session_status session_table_bind(session_table *table, const char *bare, size_t bare_length,
                                  const char *resource, size_t resource_length, void *handle,
                                  void **replaced);

/* Unbinds bare/resource if handle holds it: SESSION_OK, or
 * SESSION_NOT_FOUND (not bound, or bound to another handle: a replaced
 * session closing later must not remove its successor). */
session_status session_table_remove(session_table *table, const char *bare, size_t bare_length,
                                    const char *resource, size_t resource_length,
                                    const void *handle);

/* Records the resource's presence (RFC 6121 section 4): available or not,
 * and its priority. SESSION_OK or SESSION_NOT_FOUND. */
session_status session_table_set_presence(session_table *table, const char *bare,
                                          size_t bare_length, const char *resource,
                                          size_t resource_length, bool available, int8_t priority);

/* The user's resources, or NULL when the user has none here. */
const session_user *session_table_user(const session_table *table, const char *bare,
                                       size_t bare_length);

/* The same, for a caller that already has bare_hash = cluster_hash(bare). */
const session_user *session_table_user_hashed(const session_table *table, const char *bare,
                                              size_t bare_length, uint64_t bare_hash);

/* One resource, or NULL. */
const session_resource *session_table_find(const session_table *table, const char *bare,
                                           size_t bare_length, const char *resource,
                                           size_t resource_length);

/* Sessions (resources) and users in the table. */
size_t session_table_sessions(const session_table *table);
size_t session_table_users(const session_table *table);

#endif
