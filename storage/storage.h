/*
 * storage.h: the storage interface, its public contract.
 *
 * A storage handle is made from a driver name ("sqlite" or "postgresql")
 * and the driver's options. storage_open applies the schema's numbered
 * migrations (refusing a database newer than this binary); after that
 * every operation is asynchronous:
 *
 *   storage_user_create(storage, domain, localpart, credentials, count,
 *                       on_created, context);
 *   ... later, on the same thread that submitted ...
 *   void on_created(void *context, const storage_result *result);
 *
 * Submission never blocks: it copies the arguments into a request and
 * queues it for the driver, or refuses at once (STORAGE_BUSY when the
 * bounded queue is full, STORAGE_INVALID for a bad argument, STORAGE_CLOSED
 * while closing). A submission that returns STORAGE_OK has its callback run
 * exactly once; one that returns anything else never does. (The one
 * exception: a completion for a reactor that has already exited cannot run
 * anywhere; it is dropped and counted in storage_stats.undeliverable. Close
 * the storage before stopping the runtime.)
 *
 * Where the callback runs (the completion target) depends on the
 * submitting thread:
 *   - on a reactor thread of the runtime given to storage_create: on that
 *     reactor, during a later loop iteration (through its mailbox, the
 *     driver posting with rx_producer_post, or directly when the reactor
 *     owns the driver's connection, as PostgreSQL's reactors do);
 *   - on any other thread: that thread must have attached a waiter
 *     (storage_waiter_attach); completions queue on the waiter and run when
 *     the thread calls storage_waiter_run. This is how starlingctl and the
 *     tests wait for results.
 *
 * Errors are values: a failed query completes its operation with a status
 * and a reason; it never stops the server. Drivers group the operations
 * that arrive together into one transaction (group commit), each in its
 * own savepoint, so a failing operation fails alone.
 *
 * Ownership: string and byte arguments are borrowed for the call (copied
 * into the request). The result passed to a callback, and everything it
 * points to, is borrowed for the callback only.
 */
#ifndef STARLING_STORAGE_STORAGE_H
#define STARLING_STORAGE_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/limits.h"
#include "proto/scram.h"
#include "server/runtime/rx.h"

typedef struct storage storage;
typedef struct storage_waiter storage_waiter;

/* The one set of outcomes of the storage layer. */
typedef enum storage_status {
    STORAGE_OK = 0,
    STORAGE_NOT_FOUND,   /* no such user (or no credential for that hash) */
    STORAGE_CONFLICT,    /* it exists already (user create) */
    STORAGE_BUSY,        /* the request queue is full: nothing was queued */
    STORAGE_INVALID,     /* a bad argument, or a call from the wrong thread */
    STORAGE_CLOSED,      /* the storage is closing or closed */
    STORAGE_UNAVAILABLE, /* the database cannot be reached, is locked, or I/O failed */
    STORAGE_SCHEMA,      /* the schema is newer than this binary, or a migration failed */
    STORAGE_NOMEM,       /* allocation failed */
    STORAGE_ERROR,       /* any other failure; the reason says which */
} storage_status;

/* A short name for logs, e.g. "conflict" (static, never NULL). */
const char *storage_status_name(storage_status status);

/* One driver option, e.g. {"path", "/var/lib/starling/starling.db"}; both
 * strings borrowed for the call. SQLite knows:
 *   path            the database file (created if missing); required
 *   group_commit    "on" (default) or "off": one transaction per operation
 *   queue_requests  the request queue's capacity, 1..LIMIT_STORAGE_QUEUE_REQUESTS
 * PostgreSQL knows host, port, dbname, user, password, sslmode, sslrootcert,
 * sslcert, sslkey (libpq's),
 * group_commit, queue_requests (each queue's bound), reactor_connections
 * ("on" by default: each reactor owns a connection) and connections (the
 * thread pool for waiters, 1..LIMIT_STORAGE_POSTGRESQL_CONNECTIONS_MAX);
 * see storage/README.md. */
typedef struct storage_option {
    const char *key;
    const char *value;
} storage_option;

/* A SCRAM credential of one user for one hash: never a password. key_len
 * is the hash's digest length (20, 32 or 64) for both keys. */
typedef struct storage_credential {
    scram_hash hash;
    uint32_t iterations;
    size_t salt_len;
    size_t key_len;
    uint8_t salt[LIMIT_SCRAM_SALT_BYTES_MAX];
    uint8_t stored_key[SCRAM_HASH_BYTES_MAX];
    uint8_t server_key[SCRAM_HASH_BYTES_MAX];
} storage_credential;

/* Credentials one user holds at most: one per scram_hash. */
#define STORAGE_CREDENTIALS_MAX 3u

/* What an operation produced. Which fields carry data depends on the
 * operation (see each one); the rest are zero. */
typedef struct storage_result {
    storage_status status;
    const char *reason;                   /* "" on success, else why (never NULL) */
    uint64_t count;                       /* counts; offline_insert: the new message id */
    const storage_credential *credential; /* user_credential_fetch */
    const char *const *names;             /* user_list: localparts in order */
    size_t name_count;
    bool more; /* user_list: rows remain after this page */
} storage_result;

/* Runs exactly once per accepted submission, on the submitting thread (see
 * the top of this file). result is borrowed for the call. */
typedef void storage_callback(void *context, const storage_result *result);

/* Operation counters, snapshots readable from any thread. */
typedef struct storage_stats {
    uint64_t operations;    /* executed */
    uint64_t failed;        /* executed with a status other than OK */
    uint64_t batches;       /* transactions (group commit: batches < operations) */
    uint64_t busy_refusals; /* submissions refused because the queue was full */
    uint64_t queued;        /* waiting in the queue, not yet taken by the driver */
    uint64_t undeliverable; /* completions dropped: their reactor had exited */
} storage_stats;

/* ------------------------------------------------------------- lifecycle */

/* Creates a handle for driver with its options (borrowed). runtime
 * (borrowed, may be NULL) is where reactor submitters live; it must have a
 * free producer slot (rx_options.producers_max) and outlive the handle. No
 * database is touched yet. Returns an owned handle, or NULL with a
 * one-line reason in error (capacity error_size). */
storage *storage_create(const char *driver, const storage_option *options, size_t option_count,
                        rx_runtime *runtime, char *error, size_t error_size)
    __attribute__((warn_unused_result));

/* Connects, applies the migrations this binary knows that the database
 * lacks, and starts the driver. Blocking: call it at start, off any
 * reactor. A database whose schema is newer than this binary is refused
 * (STORAGE_SCHEMA, and error names both versions). */
storage_status storage_open(storage *storage, char *error, size_t error_size)
    __attribute__((warn_unused_result));

/* Stops accepting submissions, executes every request already accepted,
 * delivers their completions (to reactors, which must still run, or to
 * waiters), and frees the handle. Blocking; call it off any reactor, once
 * every submitter has stopped (the handle is gone when it returns). */
void storage_close(storage *storage);

/* The schema version the database is at (after storage_open) and the
 * newest one this binary knows. */
unsigned storage_schema_version(const storage *storage);
unsigned storage_schema_version_known(void);

void storage_get_stats(const storage *storage, storage_stats *stats);

/* --------------------------------------------------------------- waiters */

/* A completion target for a thread that is not a reactor: a queue guarded
 * by a mutex and a condition variable. Returns an owned waiter or NULL. */
storage_waiter *storage_waiter_create(void);
/* Frees a waiter that has no completion pending. */
void storage_waiter_destroy(storage_waiter *waiter);
/* Submissions made by the calling thread from now on complete through
 * waiter (borrowed until detached with NULL). A waiter holds at most
 * LIMIT_STORAGE_WAITER_PENDING requests submitted and not yet run; beyond
 * that submission is refused with STORAGE_BUSY until it runs some. */
void storage_waiter_attach(storage_waiter *waiter);
/* Runs the completions that have arrived, waiting up to timeout_ms for the
 * first one. Returns how many callbacks ran (0 on timeout). */
unsigned storage_waiter_run(storage_waiter *waiter, unsigned timeout_ms);

/* ------------------------------------------------------------ operations */

/* Every operation returns STORAGE_OK (the callback will run), or BUSY,
 * INVALID, CLOSED or NOMEM (it will not). domain and localpart are
 * non-empty strings of at most LIMIT_STORAGE_JID_PART_BYTES_MAX bytes. */

/* Creates a user with its credentials (1..STORAGE_CREDENTIALS_MAX, at most
 * one per hash). Completes OK, or CONFLICT when the user exists. */
storage_status storage_user_create(storage *storage, const char *domain, const char *localpart,
                                   const storage_credential *credentials, size_t credential_count,
                                   storage_callback *callback, void *context);

/* Fetches the user's credential for hash: result->credential, or
 * NOT_FOUND (no such user, or none for that hash). */
storage_status storage_user_credential_fetch(storage *storage, const char *domain,
                                             const char *localpart, scram_hash hash,
                                             storage_callback *callback, void *context);

/* Replaces all of the user's credentials with these. NOT_FOUND when the
 * user does not exist. */
storage_status storage_user_credentials_set(storage *storage, const char *domain,
                                            const char *localpart,
                                            const storage_credential *credentials,
                                            size_t credential_count, storage_callback *callback,
                                            void *context);

/* Deletes the user and everything they own (credentials, roster, offline
 * messages, archive, documents, block list, push registrations, their MUC
 * affiliations). NOT_FOUND when the user does not exist. */
storage_status storage_user_delete(storage *storage, const char *domain, const char *localpart,
                                   storage_callback *callback, void *context);

/* One page of the domain's localparts in byte order, strictly after
 * `after` ("" or NULL: from the start), at most limit
 * (1..LIMIT_STORAGE_PAGE_ROWS_MAX) in result->names; result->more says
 * whether to ask again with the last name as `after`. */
storage_status storage_user_list(storage *storage, const char *domain, const char *after,
                                 unsigned limit, storage_callback *callback, void *context);

/* Users of domain (NULL: of every domain) in result->count. */
storage_status storage_user_count(storage *storage, const char *domain, storage_callback *callback,
                                  void *context);

/* Stores a stanza (bytes borrowed, 1..LIMIT_STANZA_BYTES_MAX) for the user
 * to receive at the next login; timestamp_us is when it arrived (UTC
 * microseconds). result->count is the message id (increasing per
 * database). NOT_FOUND when the user does not exist. */
storage_status storage_offline_insert(storage *storage, const char *domain, const char *localpart,
                                      int64_t timestamp_us, const char *stanza, size_t stanza_len,
                                      storage_callback *callback, void *context);

/* The user's stored offline messages in result->count (0 for no user). */
storage_status storage_offline_count(storage *storage, const char *domain, const char *localpart,
                                     storage_callback *callback, void *context);

#endif
