/*
 * internal.h: what the storage front end (storage.c) and the drivers share.
 *
 * The front end turns each public operation into a request: a tagged value
 * holding a copy of the arguments, the callback and where to deliver it.
 * A driver is a table of functions; submit takes a request without
 * blocking, and the driver, once the operation ran, fills request->result
 * and hands the request to storage_request_complete, which delivers it to
 * the submitting reactor or waiter. Drivers know SQL and their client
 * library; they never know who submitted.
 */
#ifndef STARLING_STORAGE_INTERNAL_H
#define STARLING_STORAGE_INTERNAL_H

#include "storage/storage.h"

typedef enum storage_operation {
    STORAGE_OP_USER_CREATE = 0,
    STORAGE_OP_USER_CREDENTIAL_FETCH,
    STORAGE_OP_USER_CREDENTIALS_SET,
    STORAGE_OP_USER_DELETE,
    STORAGE_OP_USER_LIST,
    STORAGE_OP_USER_COUNT,
    STORAGE_OP_OFFLINE_INSERT,
    STORAGE_OP_OFFLINE_COUNT,
} storage_operation;

typedef struct storage_request storage_request;

/* One operation in flight. Strings point into the request's own tail; the
 * result's rows (names) are owned by the request and freed with it. */
struct storage_request {
    storage_operation operation;
    storage_callback *callback;
    void *context;
    storage_waiter *waiter; /* NULL: deliver to reactor_index */
    unsigned reactor_index;
    storage *owner;
    storage_request *next; /* waiter queue */

    const char *domain; /* NULL only for a count over every domain */
    const char *localpart;
    const char *after;
    unsigned limit;
    scram_hash hash;
    storage_credential credentials[STORAGE_CREDENTIALS_MAX];
    size_t credential_count;
    int64_t timestamp_us;
    const char *stanza;
    size_t stanza_len;

    storage_result result;
    char reason[LIMIT_STORAGE_REASON_BYTES];
    storage_credential credential_out;
    char **names; /* one allocation: the pointer array, then the strings */
    char tail[];
};

/* The SQL dialects the schema is written for. */
typedef enum storage_dialect {
    STORAGE_DIALECT_SQLITE = 0,
    STORAGE_DIALECT_POSTGRESQL,
} storage_dialect;

/* A driver: one table of functions. create parses options (borrowed) and
 * returns the driver's state; open connects and migrates (blocking, at
 * start); submit queues without blocking (STORAGE_OK, BUSY or CLOSED) and
 * takes the request only on STORAGE_OK; close executes and completes every
 * accepted request, then frees the state. */
typedef struct storage_driver {
    const char *name;
    storage_status (*create)(storage *owner, const storage_option *options, size_t option_count,
                             void **state, char *error, size_t error_size);
    storage_status (*open)(void *state, char *error, size_t error_size);
    storage_status (*submit)(void *state, storage_request *request);
    void (*stats)(void *state, storage_stats *stats);
    unsigned (*schema_version)(void *state);
    void (*close)(void *state);
} storage_driver;

extern const storage_driver storage_driver_sqlite;
extern const storage_driver storage_driver_postgresql;

/* Sets the request's status and reason (printf-style, truncated). */
void storage_request_fail(storage_request *request, storage_status status, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* Delivers a finished request (transferred) to its submitter. Called by
 * the driver, from one thread at a time (it owns the runtime producer). */
void storage_request_complete(storage_request *request);

/* Runs a finished request's callback (transferred) on the calling thread,
 * which must be the submitting reactor: for a driver whose connection that
 * reactor owns. Never call it from within the submission itself. */
void storage_request_complete_here(storage_request *request);

/* Allocates result->names for count rows of total string bytes (including
 * terminators); returns the string area or NULL. */
char *storage_request_names_alloc(storage_request *request, size_t count, size_t bytes);

/* ------------------------------------------------------------- migrations */

typedef struct storage_migration {
    unsigned version;
    const char *name; /* the file name, e.g. "0001_initial.sql" */
    const char *sql;  /* with @TOKEN@ placeholders (see storage_schema_render) */
} storage_migration;

/* Generated from storage/schema/ at build time, in version order 1..count. */
extern const storage_migration storage_migrations[];
extern const size_t storage_migration_count;

/* The migration's SQL for dialect, its placeholders substituted. Returns
 * an owned string (free it) or NULL. */
char *storage_schema_render(const storage_migration *migration, storage_dialect dialect);

/* First call of a driver's own thread: blocks every asynchronous signal in
 * it, so that SIGTERM and SIGINT reach the runtime's signalfd (or the
 * process's default action on the threads that take them), never a storage
 * thread that would die with them or delay them. */
void storage_thread_block_signals(void);

/* The bounded ring of requests a driver's threads take their batches from.
 * It has no lock of its own: every call is made with the driver's mutex
 * held (the driver's condition variable goes with that mutex). */
typedef struct storage_queue {
    storage_request **ring; /* capacity entries */
    unsigned capacity;
    unsigned head;
    unsigned count;
} storage_queue;

/* false: out of memory. */
bool storage_queue_init(storage_queue *queue, unsigned capacity);
void storage_queue_fini(storage_queue *queue);
/* Appends request; false when the queue is full (nothing appended). */
bool storage_queue_push(storage_queue *queue, storage_request *request);
/* Moves the oldest requests into out (capacity entries): all of them when
 * group, else one; returns how many (0 when empty). */
unsigned storage_queue_take(storage_queue *queue, storage_request **out, bool group);

#endif
