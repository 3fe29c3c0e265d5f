/*
 * postgres.c: the PostgreSQL driver (libpq, pipeline mode).
 *
 * Two paths share the statements and the way batches are sent:
 *
 *   - reactor-owned connections (operations submitted on a reactor, unless
 *     reactor_connections=off): one connection per reactor, made lazily on
 *     it; what the reactor submits in one loop iteration goes out as one
 *     pipeline from a message the reactor posts to itself; the socket is
 *     watched with rx_poll_add on the reactor's io_uring ring, results are
 *     read as they arrive, and completions run on the reactor directly;
 *   - a thread pool (waiters, or everything with reactor_connections=off):
 *     `connections` connections, each driven by its own storage thread
 *     with poll(2), sharing one bounded queue as SQLite's thread does.
 *
 * A batch is sent as
 *
 *   op 1, op 2, ..., op n, Sync      (one round trip, one transaction)
 *
 * since what lies between two Syncs is one implicit transaction. Every
 * operation is one prepared statement written so that its expected
 * outcomes (a duplicate user, a missing user) are rows, not errors: user
 * creation is INSERT ... ON CONFLICT DO NOTHING and reports the rows it
 * made, and so on. One unexpected error (invalid UTF-8 in a stanza, a
 * constraint a future migration adds) aborts the transaction; the batch is
 * then sent again with each operation its own implicit transaction (op 1,
 * Sync, op 2, Sync, ...: still one round trip), so the failing operation
 * fails alone and the others commit. With group_commit off every operation
 * is its own round trip and transaction (for the benchmark's comparison).
 *
 * Every wait is bounded: LIMIT_STORAGE_POSTGRESQL_BATCH_MS per batch,
 * LIMIT_STORAGE_POSTGRESQL_CONNECT_MS per connection attempt.
 *
 * Connection loss: the operations of the batch in flight complete with
 * STORAGE_UNAVAILABLE ("database unavailable: ..."); an operation whose
 * Sync (its commit) was not acknowledged is reported unavailable even
 * though the server may have applied it, as with any client of a server
 * database. The connection is made again when the next batch comes; a
 * failed attempt doubles the back-off from LIMIT_STORAGE_POSTGRESQL_
 * RECONNECT_MIN_MS up to ..._MAX_MS, and batches that come before the next
 * attempt is due fail at once with "database unavailable" (accepted
 * submissions are never held while the database is down). Statements are
 * prepared again on each new connection, in the first pipeline it sends.
 *
 * Thread-pool completions go through storage_request_complete under a
 * mutex: the runtime producer it posts with is single-threaded.
 *
 * Migrations run at storage_open on the pool's first connection while it
 * is still blocking, inside one transaction holding a transaction-level
 * advisory lock, so two starlings opening one database migrate it once.
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage/internal.h"
#include "storage/pq.h"

/* The advisory lock key migrations hold ("starling" in ASCII, truncated). */
#define MIGRATION_LOCK_KEY 0x737461726c696e67LL

/* Parameters of the widest statement: domain, localpart, a time, and five
 * per credential. */
#define PARAMETERS_MAX (3 + 5 * STORAGE_CREDENTIALS_MAX)

/* Connection options a deployment may set, passed to libpq as they are. */
static const char *const connection_keys[] = {"host",    "port",        "dbname",
                                              "user",    "password",    "sslmode",
                                              "sslrootcert", "sslcert", "sslkey"};
#define CONNECTION_KEYS (sizeof connection_keys / sizeof connection_keys[0])

typedef enum statement_id {
    STATEMENT_USER_CREATE = 0,
    STATEMENT_CREDENTIAL_FETCH,
    STATEMENT_CREDENTIALS_SET,
    STATEMENT_USER_DELETE,
    STATEMENT_USER_LIST,
    STATEMENT_USER_COUNT_DOMAIN,
    STATEMENT_USER_COUNT_ALL,
    STATEMENT_OFFLINE_INSERT,
    STATEMENT_OFFLINE_COUNT,
    STATEMENT_COUNT,
} statement_id;

static const char *const statement_names[STATEMENT_COUNT] = {
    "user_create",       "credential_fetch", "credentials_set", "user_delete",   "user_list",
    "user_count_domain", "user_count_all",   "offline_insert",  "offline_count",
};

/* The new credentials as a VALUES list: three rows, unused ones NULL. */
#define CREDENTIAL_VALUES                                                                          \
    "(VALUES ($4::text, $5::bytea, $6::bigint, $7::bytea, $8::bytea), "                            \
    "($9::text, $10::bytea, $11::bigint, $12::bytea, $13::bytea), "                                \
    "($14::text, $15::bytea, $16::bigint, $17::bytea, $18::bytea)) "                               \
    "AS v (hash, salt, iterations, stored_key, server_key)"

static const char *const statement_sql[STATEMENT_COUNT] = {
    [STATEMENT_USER_CREATE] =
        "WITH u AS (INSERT INTO users (domain, localpart, created_at_us) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING RETURNING id), "
        "c AS (INSERT INTO credentials (user_id, hash, salt, iterations, stored_key, server_key) "
        "SELECT u.id, v.hash, v.salt, v.iterations, v.stored_key, v.server_key "
        "FROM u, " CREDENTIAL_VALUES " WHERE v.hash IS NOT NULL) "
        "SELECT count(*) FROM u",
    [STATEMENT_CREDENTIAL_FETCH] =
        "SELECT c.salt, c.iterations::bigint, c.stored_key, c.server_key FROM credentials c "
        "JOIN users u ON u.id = c.user_id WHERE u.domain = $1 AND u.localpart = $2 "
        "AND c.hash = $3",
    /* Deletes the hashes not given, upserts the given ones: the two touch
     * different rows, as data-modifying CTEs of one statement must. */
    [STATEMENT_CREDENTIALS_SET] =
        "WITH u AS (SELECT id FROM users WHERE domain = $1 AND localpart = $2), "
        "v AS (SELECT * FROM " CREDENTIAL_VALUES " WHERE v.hash IS NOT NULL), "
        "d AS (DELETE FROM credentials WHERE user_id IN (SELECT id FROM u) "
        "AND hash NOT IN (SELECT hash FROM v)), "
        "i AS (INSERT INTO credentials (user_id, hash, salt, iterations, stored_key, server_key) "
        "SELECT u.id, v.hash, v.salt, v.iterations, v.stored_key, v.server_key FROM u, v "
        "ON CONFLICT (user_id, hash) DO UPDATE SET salt = EXCLUDED.salt, "
        "iterations = EXCLUDED.iterations, stored_key = EXCLUDED.stored_key, "
        "server_key = EXCLUDED.server_key) "
        "SELECT count(*), $3::bigint FROM u",
    [STATEMENT_USER_DELETE] =
        "WITH a AS (DELETE FROM muc_affiliations WHERE jid = $2 || '@' || $1 AND EXISTS "
        "(SELECT 1 FROM users WHERE domain = $1 AND localpart = $2)), "
        "u AS (DELETE FROM users WHERE domain = $1 AND localpart = $2 RETURNING id) "
        "SELECT count(*) FROM u",
    [STATEMENT_USER_LIST] =
        "SELECT localpart FROM users WHERE domain = $1 AND "
        "localpart COLLATE \"C\" > $2 ORDER BY localpart COLLATE \"C\" LIMIT $3",
    [STATEMENT_USER_COUNT_DOMAIN] = "SELECT count(*) FROM users WHERE domain = $1",
    [STATEMENT_USER_COUNT_ALL] = "SELECT count(*) FROM users",
    [STATEMENT_OFFLINE_INSERT] =
        "INSERT INTO offline_messages (user_id, received_at_us, stanza) "
        "SELECT id, $3, $4 FROM users WHERE domain = $1 AND localpart = $2 RETURNING id",
    [STATEMENT_OFFLINE_COUNT] = "SELECT count(*) FROM offline_messages WHERE user_id = "
                                "(SELECT id FROM users WHERE domain = $1 AND localpart = $2)",
};

typedef struct pg_driver pg_driver;

/* One connection and the storage thread that drives it. */
typedef struct pg_link {
    pg_driver *driver;
    PGconn *connection;
    bool prepared; /* the statements exist on this connection */
    bool broken;   /* the connection failed during this batch */
    int64_t retry_at_ms;
    int64_t failed_at_ms; /* of the last failed connection attempt */
    unsigned backoff_ms;
    char down_reason[LIMIT_STORAGE_REASON_BYTES];
    bool thread_started;
    pthread_t thread;
    storage_request **batch; /* capacity entries */
} pg_link;

typedef struct pg_local pg_local;

struct pg_driver {
    storage *owner;
    bool reactor_connections;             /* reactors own their connections */
    pg_local *locals[LIMIT_REACTORS_MAX]; /* made lazily, each on its reactor */
    unsigned outstanding;                 /* reactor-path work not finished (mutex) */
    pthread_cond_t drained;
    const char *keys[CONNECTION_KEYS + 4]; /* NULL-terminated, for libpq */
    char *values[CONNECTION_KEYS + 4];
    char where[160]; /* "host:port/dbname" for messages */
    bool group_commit;
    unsigned capacity;
    unsigned schema_version;
    unsigned link_count;
    pg_link links[LIMIT_STORAGE_POSTGRESQL_CONNECTIONS_MAX];
    bool serving; /* every link's thread started */

    pthread_mutex_t mutex; /* guards the queue and closing */
    pthread_cond_t wake;
    storage_queue queue;
    bool closing;
    /* storage_request_complete is called from one thread at a time. */
    pthread_mutex_t completing;

    atomic_uint_fast64_t operations;
    atomic_uint_fast64_t failed;
    atomic_uint_fast64_t batches;
    atomic_uint_fast64_t busy_refusals;
    /* When any connection last connected: a connection in back-off retries
     * at once after it, the database being evidently back. */
    atomic_int_fast64_t connected_at_ms;
};

static const char *const hash_names[] = {"SHA-1", "SHA-256", "SHA-512"};

/* ---------------------------------------------------------------- helpers */

static int64_t now_us(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

static int64_t monotonic_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static void notice_ignore(void *argument, const char *message)
{
    (void)argument;
    (void)message;
}

/* The first line of libpq's message, for a one-line reason. */
static const char *first_line(const char *message, char *out, size_t size)
{
    snprintf(out, size, "%s", message != NULL && message[0] != '\0' ? message : "unknown error");
    out[strcspn(out, "\n")] = '\0';
    return out;
}

static storage_status status_from_sqlstate(const char *state)
{
    if (state == NULL) {
        return STORAGE_UNAVAILABLE;
    }
    if (strncmp(state, "23", 2) == 0) {
        return STORAGE_CONFLICT;
    }
    if (strncmp(state, "08", 2) == 0 || strncmp(state, "53", 2) == 0 ||
        strncmp(state, "57", 2) == 0 || strncmp(state, "40", 2) == 0) {
        return STORAGE_UNAVAILABLE;
    }
    return STORAGE_ERROR;
}

static void encode_int64(uint8_t out[8], int64_t value)
{
    uint64_t bits = (uint64_t)value;
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)bits;
        bits >>= 8;
    }
}

static bool decode_int64(const PGresult *result, int row, int column, int64_t *value)
{
    if (pq_here()->PQgetisnull(result, row, column) || pq_here()->PQgetlength(result, row, column) != 8) {
        return false;
    }
    const uint8_t *bytes = (const uint8_t *)pq_here()->PQgetvalue(result, row, column);
    uint64_t bits = 0;
    for (int i = 0; i < 8; i++) {
        bits = bits << 8 | bytes[i];
    }
    *value = (int64_t)bits;
    return true;
}

/* ------------------------------------------------------------- the socket */

/* Marks the connection broken (the batch's operations will fail). */
static void connection_break(pg_link *link)
{
    if (!link->broken) {
        char line[LIMIT_STORAGE_REASON_BYTES];
        snprintf(link->down_reason, sizeof link->down_reason, "%s",
                 first_line(pq_here()->PQerrorMessage(link->connection), line, sizeof line));
    }
    link->broken = true;
}

/* Flushes what libpq holds and waits, until deadline, for the socket to be
 * readable (or writable while output is pending), then reads. */
static bool connection_wait(pg_link *link, int64_t deadline_ms)
{
    int flushed = pq_here()->PQflush(link->connection);
    if (flushed < 0) {
        return false;
    }
    int64_t left = deadline_ms - monotonic_ms();
    if (left <= 0) {
        snprintf(link->down_reason, sizeof link->down_reason, "no answer within %u ms",
                 (unsigned)LIMIT_STORAGE_POSTGRESQL_BATCH_MS);
        link->broken = true;
        return false;
    }
    struct pollfd poller = {.fd = pq_here()->PQsocket(link->connection),
                            .events = (short)(POLLIN | (flushed == 1 ? POLLOUT : 0))};
    int ready = poll(&poller, 1, (int)left);
    if (ready < 0) {
        return true; /* EINTR: go round */
    }
    return (poller.revents & (POLLIN | POLLERR | POLLHUP)) == 0 ||
           pq_here()->PQconsumeInput(link->connection) != 0;
}

/* The next result of the pipeline, NULL between queries; NULL with
 * link->broken when the connection failed or timed out. */
static PGresult *result_next(pg_link *link, int64_t deadline_ms)
{
    while (!link->broken && pq_here()->PQisBusy(link->connection)) {
        if (!connection_wait(link, deadline_ms)) {
            connection_break(link);
        }
    }
    return link->broken ? NULL : pq_here()->PQgetResult(link->connection);
}

/* One query's result (its terminating NULL consumed); NULL when broken. */
static PGresult *query_collect(pg_link *link, int64_t deadline_ms)
{
    PGresult *result = result_next(link, deadline_ms);
    if (result == NULL) {
        connection_break(link);
        return NULL;
    }
    PGresult *extra;
    while ((extra = result_next(link, deadline_ms)) != NULL) {
        pq_here()->PQclear(extra);
    }
    if (link->broken) {
        pq_here()->PQclear(result);
        return NULL;
    }
    return result;
}

/* Reads up to the Sync's result; false when broken. *clean (may be NULL)
 * is false when an error came before it (the commit at the Sync failed). */
static bool sync_collect(pg_link *link, int64_t deadline_ms, bool *clean)
{
    bool error = false;
    for (;;) {
        PGresult *result = result_next(link, deadline_ms);
        if (link->broken) {
            return false;
        }
        if (result != NULL && pq_here()->PQresultStatus(result) == PGRES_PIPELINE_SYNC) {
            pq_here()->PQclear(result);
            if (clean != NULL) {
                *clean = !error;
            }
            return true;
        }
        error = error || (result != NULL && pq_here()->PQresultStatus(result) == PGRES_FATAL_ERROR);
        pq_here()->PQclear(result);
    }
}

/* Whether a connection attempt is due: the back-off has passed, or
 * another connection has connected since this one last failed. */
static bool link_retry_due(const pg_link *link, int64_t now_ms)
{
    return now_ms >= link->retry_at_ms ||
           atomic_load(&link->driver->connected_at_ms) > link->failed_at_ms;
}

static void link_connect_failed(pg_link *link, int64_t now_ms)
{
    link->failed_at_ms = now_ms;
    link->retry_at_ms = now_ms + link->backoff_ms;
    link->backoff_ms = link->backoff_ms * 2 > LIMIT_STORAGE_POSTGRESQL_RECONNECT_MAX_MS
                           ? LIMIT_STORAGE_POSTGRESQL_RECONNECT_MAX_MS
                           : link->backoff_ms * 2;
}

static void link_connected(pg_link *link)
{
    link->backoff_ms = LIMIT_STORAGE_POSTGRESQL_RECONNECT_MIN_MS;
    atomic_store(&link->driver->connected_at_ms, monotonic_ms());
}

/* An idle connection the server has closed (a restart sends a FATAL
 * message, then EOF) is found before a batch is sent on it, so the batch
 * goes to a new connection instead of failing. */
static bool link_idle_alive(pg_link *link)
{
    return pq_here()->PQconsumeInput(link->connection) == 1 && pq_here()->PQstatus(link->connection) == CONNECTION_OK;
}

/* Connects without blocking past LIMIT_STORAGE_POSTGRESQL_CONNECT_MS;
 * the connection is left non-blocking, in pipeline mode. */
static bool connection_start(pg_link *link)
{
    PGconn *connection =
        pq_here()->PQconnectStartParams(link->driver->keys, (const char *const *)link->driver->values, 0);
    int64_t deadline = monotonic_ms() + LIMIT_STORAGE_POSTGRESQL_CONNECT_MS;
    PostgresPollingStatusType state = PGRES_POLLING_WRITING;
    while (connection != NULL && pq_here()->PQstatus(connection) != CONNECTION_BAD &&
           state != PGRES_POLLING_OK && state != PGRES_POLLING_FAILED) {
        int64_t left = deadline - monotonic_ms();
        if (left <= 0) {
            break;
        }
        struct pollfd poller = {.fd = pq_here()->PQsocket(connection),
                                .events = state == PGRES_POLLING_READING ? POLLIN : POLLOUT};
        if (poll(&poller, 1, (int)left) > 0) {
            state = pq_here()->PQconnectPoll(connection);
        }
    }
    char line[LIMIT_STORAGE_REASON_BYTES];
    if (connection == NULL || state != PGRES_POLLING_OK || pq_here()->PQsetnonblocking(connection, 1) != 0 ||
        pq_here()->PQenterPipelineMode(connection) != 1) {
        snprintf(link->down_reason, sizeof link->down_reason, "%s",
                 connection == NULL          ? "out of memory"
                 : state == PGRES_POLLING_OK ? "cannot enter pipeline mode"
                 : state == PGRES_POLLING_FAILED
                     ? first_line(pq_here()->PQerrorMessage(connection), line, sizeof line)
                     : "connection timed out");
        pq_here()->PQfinish(connection);
        return false;
    }
    pq_here()->PQsetNoticeProcessor(connection, notice_ignore, NULL);
    link->connection = connection;
    link->prepared = false;
    link->broken = false;
    return true;
}

/* ------------------------------------------------------------- operations */

typedef struct parameters {
    const char *values[PARAMETERS_MAX];
    int lengths[PARAMETERS_MAX];
    int formats[PARAMETERS_MAX];
    uint8_t integers[PARAMETERS_MAX][8];
    int count;
} parameters;

static void parameter_bytes(parameters *p, const void *bytes, size_t length)
{
    p->values[p->count] = bytes;
    p->lengths[p->count] = (int)length;
    p->formats[p->count] = 1;
    p->count++;
}

static void parameter_text(parameters *p, const char *text)
{
    parameter_bytes(p, text, strlen(text));
}

static void parameter_int64(parameters *p, int64_t value)
{
    encode_int64(p->integers[p->count], value);
    parameter_bytes(p, p->integers[p->count], 8);
}

static void parameter_null(parameters *p)
{
    p->values[p->count] = NULL;
    p->lengths[p->count] = 0;
    p->formats[p->count] = 1;
    p->count++;
}

/* $4..$18: the request's credentials, NULL rows for the unused ones. */
static void parameter_credentials(parameters *p, const storage_request *request)
{
    for (size_t i = 0; i < STORAGE_CREDENTIALS_MAX; i++) {
        if (i >= request->credential_count) {
            for (int k = 0; k < 5; k++) {
                parameter_null(p);
            }
            continue;
        }
        const storage_credential *credential = &request->credentials[i];
        parameter_text(p, hash_names[credential->hash]);
        parameter_bytes(p, credential->salt, credential->salt_len);
        parameter_int64(p, credential->iterations);
        parameter_bytes(p, credential->stored_key, credential->key_len);
        parameter_bytes(p, credential->server_key, credential->key_len);
    }
}

/* Queues the request's statement on the pipeline. */
static bool operation_send(pg_link *link, const storage_request *request)
{
    parameters p = {.count = 0};
    statement_id id = STATEMENT_USER_COUNT_ALL;
    if (request->domain != NULL) {
        parameter_text(&p, request->domain);
    }
    switch (request->operation) {
    case STORAGE_OP_USER_CREATE:
    case STORAGE_OP_USER_CREDENTIALS_SET:
        id = request->operation == STORAGE_OP_USER_CREATE ? STATEMENT_USER_CREATE
                                                          : STATEMENT_CREDENTIALS_SET;
        parameter_text(&p, request->localpart);
        parameter_int64(&p, now_us());
        parameter_credentials(&p, request);
        break;
    case STORAGE_OP_USER_CREDENTIAL_FETCH:
        id = STATEMENT_CREDENTIAL_FETCH;
        parameter_text(&p, request->localpart);
        parameter_text(&p, hash_names[request->hash]);
        break;
    case STORAGE_OP_USER_DELETE:
        id = STATEMENT_USER_DELETE;
        parameter_text(&p, request->localpart);
        break;
    case STORAGE_OP_USER_LIST:
        id = STATEMENT_USER_LIST;
        parameter_text(&p, request->after != NULL ? request->after : "");
        parameter_int64(&p, (int64_t)request->limit + 1);
        break;
    case STORAGE_OP_USER_COUNT:
        id = request->domain != NULL ? STATEMENT_USER_COUNT_DOMAIN : STATEMENT_USER_COUNT_ALL;
        break;
    case STORAGE_OP_OFFLINE_INSERT:
        id = STATEMENT_OFFLINE_INSERT;
        parameter_text(&p, request->localpart);
        parameter_int64(&p, request->timestamp_us);
        parameter_bytes(&p, request->stanza, request->stanza_len);
        break;
    case STORAGE_OP_OFFLINE_COUNT:
        id = STATEMENT_OFFLINE_COUNT;
        parameter_text(&p, request->localpart);
        break;
    }
    return pq_here()->PQsendQueryPrepared(link->connection, statement_names[id], p.count, p.values, p.lengths,
                               p.formats, 1) == 1;
}

static bool column_bytes(const PGresult *result, int column, uint8_t *out, size_t capacity,
                         size_t exact, size_t *length)
{
    size_t size = (size_t)pq_here()->PQgetlength(result, 0, column);
    if (pq_here()->PQgetisnull(result, 0, column) || size == 0 || size > capacity ||
        (exact != 0 && size != exact)) {
        return false;
    }
    memcpy(out, pq_here()->PQgetvalue(result, 0, column), size);
    if (length != NULL) {
        *length = size;
    }
    return true;
}

static void credential_read(storage_request *request, const PGresult *result)
{
    static const size_t digest_bytes[] = {20, 32, 64};
    if (pq_here()->PQntuples(result) == 0) {
        storage_request_fail(request, STORAGE_NOT_FOUND, "no %s credential for %s@%s",
                             hash_names[request->hash], request->localpart, request->domain);
        return;
    }
    storage_credential *out = &request->credential_out;
    size_t key_len = digest_bytes[request->hash];
    int64_t iterations = 0;
    out->hash = request->hash;
    out->key_len = key_len;
    if (!decode_int64(result, 0, 1, &iterations) || iterations <= 0 || iterations > UINT32_MAX ||
        !column_bytes(result, 0, out->salt, sizeof out->salt, 0, &out->salt_len) ||
        !column_bytes(result, 2, out->stored_key, sizeof out->stored_key, key_len, NULL) ||
        !column_bytes(result, 3, out->server_key, sizeof out->server_key, key_len, NULL)) {
        storage_request_fail(request, STORAGE_ERROR, "stored %s credential is malformed",
                             hash_names[request->hash]);
        return;
    }
    out->iterations = (uint32_t)iterations;
}

static void list_read(storage_request *request, const PGresult *result)
{
    size_t rows = (size_t)pq_here()->PQntuples(result);
    request->result.more = rows > request->limit;
    if (rows > request->limit) {
        rows = request->limit;
    }
    size_t bytes = 0;
    for (size_t i = 0; i < rows; i++) {
        bytes += (size_t)pq_here()->PQgetlength(result, (int)i, 0) + 1;
    }
    char *area = storage_request_names_alloc(request, rows, bytes);
    if (area == NULL) {
        request->result.more = false;
        storage_request_fail(request, STORAGE_NOMEM, "user list: out of memory");
        return;
    }
    for (size_t i = 0; i < rows; i++) {
        size_t length = (size_t)pq_here()->PQgetlength(result, (int)i, 0);
        memcpy(area, pq_here()->PQgetvalue(result, (int)i, 0), length);
        area[length] = '\0';
        request->names[i] = area;
        area += length + 1;
    }
    request->result.name_count = rows;
}

/* Fills the request's result from its statement's result. */
static void operation_read(storage_request *request, const PGresult *result)
{
    if (pq_here()->PQresultStatus(result) != PGRES_TUPLES_OK) {
        char line[LIMIT_STORAGE_REASON_BYTES];
        storage_request_fail(
            request, status_from_sqlstate(pq_here()->PQresultErrorField(result, PG_DIAG_SQLSTATE)), "%s",
            pq_here()->PQresultStatus(result) == PGRES_PIPELINE_ABORTED
                ? "the pipeline was aborted"
                : first_line(pq_here()->PQresultErrorMessage(result), line, sizeof line));
        return;
    }
    int64_t number = 0;
    bool one_row = pq_here()->PQntuples(result) >= 1;
    switch (request->operation) {
    case STORAGE_OP_USER_CREDENTIAL_FETCH:
        credential_read(request, result);
        return;
    case STORAGE_OP_USER_LIST:
        list_read(request, result);
        return;
    case STORAGE_OP_OFFLINE_INSERT:
        if (!one_row) {
            storage_request_fail(request, STORAGE_NOT_FOUND, "no user %s@%s", request->localpart,
                                 request->domain);
            return;
        }
        break;
    default:
        break;
    }
    if (!one_row || !decode_int64(result, 0, 0, &number)) {
        storage_request_fail(request, STORAGE_ERROR, "unexpected result shape");
        return;
    }
    switch (request->operation) {
    case STORAGE_OP_USER_CREATE:
        if (number == 0) {
            storage_request_fail(request, STORAGE_CONFLICT, "user %s@%s exists", request->localpart,
                                 request->domain);
        }
        break;
    case STORAGE_OP_USER_CREDENTIALS_SET:
    case STORAGE_OP_USER_DELETE:
        if (number == 0) {
            storage_request_fail(request, STORAGE_NOT_FOUND, "no user %s@%s", request->localpart,
                                 request->domain);
        }
        break;
    default:
        request->result.count = (uint64_t)number;
        break;
    }
}

/* Back to a blank outcome, before the operation is run again. */
static void operation_reset(storage_request *request)
{
    request->result.status = STORAGE_OK;
    request->reason[0] = '\0';
    request->result.count = 0;
    request->result.name_count = 0;
    request->result.more = false;
}

/* ------------------------------------------------------------------ batches */

/* Sends the PREPAREs when this connection has none yet. */
static bool statements_send(pg_link *link)
{
    if (link->prepared) {
        return true;
    }
    for (unsigned i = 0; i < STATEMENT_COUNT; i++) {
        if (pq_here()->PQsendPrepare(link->connection, statement_names[i], statement_sql[i], 0, NULL) != 1) {
            return false;
        }
    }
    return true;
}

/* Reads the PREPAREs' results; false with reason when one failed. */
static bool statements_collect(pg_link *link, int64_t deadline, char *reason, size_t size)
{
    if (link->prepared) {
        return true;
    }
    bool ok = true;
    for (unsigned i = 0; i < STATEMENT_COUNT; i++) {
        PGresult *result = query_collect(link, deadline);
        if (result == NULL) {
            return false;
        }
        if (ok && pq_here()->PQresultStatus(result) != PGRES_COMMAND_OK) {
            char line[LIMIT_STORAGE_REASON_BYTES];
            snprintf(reason, size, "prepare %s: %.200s", statement_names[i],
                     first_line(pq_here()->PQresultErrorMessage(result), line, sizeof line));
            ok = false;
        }
        pq_here()->PQclear(result);
    }
    return ok;
}

/* Sends batch[0..count) as one transaction: the operations, then Sync
 * (in pipeline mode what lies between two Syncs is one implicit
 * transaction, committed at the Sync, rolled back whole on an error).
 * Returns true when it committed; false when an operation failed or the
 * connection broke (link->broken) and the transaction did not commit. */
static bool batch_grouped(pg_link *link, storage_request **batch, unsigned count, char *reason,
                          size_t size)
{
    atomic_fetch_add(&link->driver->batches, 1);
    bool sent = statements_send(link);
    for (unsigned i = 0; i < count && sent; i++) {
        sent = operation_send(link, batch[i]);
    }
    if (!sent || pq_here()->PQpipelineSync(link->connection) != 1) {
        connection_break(link);
        return false;
    }
    int64_t deadline = monotonic_ms() + LIMIT_STORAGE_POSTGRESQL_BATCH_MS;
    bool ok = statements_collect(link, deadline, reason, size);
    link->prepared = ok;
    for (unsigned i = 0; i < count && !link->broken; i++) {
        PGresult *result = query_collect(link, deadline);
        if (result != NULL) {
            operation_read(batch[i], result);
            if (pq_here()->PQresultStatus(result) != PGRES_TUPLES_OK) {
                if (ok) {
                    snprintf(reason, size, "%s", batch[i]->reason);
                }
                ok = false;
            }
        }
        pq_here()->PQclear(result);
    }
    bool committed = false;
    if (!sync_collect(link, deadline, &committed)) {
        return false;
    }
    return ok && committed;
}

/* Sends batch[0..count) with each operation its own implicit transaction
 * (op, Sync, op, Sync, ...), all in one round trip. Operations whose Sync
 * was read are final; on a broken connection the rest are not. Returns how
 * many are final. */
static unsigned batch_singly(pg_link *link, storage_request **batch, unsigned count)
{
    atomic_fetch_add(&link->driver->batches, count);
    bool sent = statements_send(link) && (link->prepared || pq_here()->PQpipelineSync(link->connection));
    for (unsigned i = 0; i < count && sent; i++) {
        sent = operation_send(link, batch[i]) && pq_here()->PQpipelineSync(link->connection) == 1;
    }
    if (!sent) {
        connection_break(link);
        return 0;
    }
    int64_t deadline = monotonic_ms() + LIMIT_STORAGE_POSTGRESQL_BATCH_MS;
    if (!link->prepared) {
        char reason[LIMIT_STORAGE_REASON_BYTES] = "";
        bool ok = statements_collect(link, deadline, reason, sizeof reason);
        if (!sync_collect(link, deadline, NULL)) {
            return 0;
        }
        if (!ok) {
            for (unsigned i = 0; i < count; i++) {
                storage_request_fail(batch[i], STORAGE_SCHEMA, "%s", reason);
            }
            return count; /* the ops' own results follow: drop the connection */
        }
        link->prepared = true;
    }
    unsigned final = 0;
    for (unsigned i = 0; i < count; i++) {
        PGresult *result = query_collect(link, deadline);
        if (result == NULL) {
            return final;
        }
        operation_read(batch[i], result);
        pq_here()->PQclear(result);
        if (!sync_collect(link, deadline, NULL)) {
            return final;
        }
        final++;
    }
    return final;
}

/* Runs a batch on the connection (connecting first when due); every
 * request ends with its result set. */
static void batch_run(pg_link *link, storage_request **batch, unsigned count)
{
    int64_t now = monotonic_ms();
    if (link->connection != NULL && !link_idle_alive(link)) {
        pq_here()->PQfinish(link->connection);
        link->connection = NULL;
    }
    if (link->connection == NULL && link_retry_due(link, now)) {
        if (connection_start(link)) {
            link_connected(link);
        } else {
            link_connect_failed(link, now);
        }
    }
    unsigned final = 0;
    if (link->connection != NULL) {
        char reason[LIMIT_STORAGE_REASON_BYTES] = "";
        bool committed = link->driver->group_commit && count > 1 &&
                         batch_grouped(link, batch, count, reason, sizeof reason);
        if (committed) {
            final = count;
        } else if (!link->broken) {
            for (unsigned i = 0; i < count; i++) {
                operation_reset(batch[i]);
            }
            final = batch_singly(link, batch, count);
            if (final == count && !link->prepared) {
                link->broken = true; /* the statements could not be prepared */
            }
        }
        if (link->broken) {
            pq_here()->PQfinish(link->connection);
            link->connection = NULL;
            link->retry_at_ms = monotonic_ms();
        }
    }
    for (unsigned i = final; i < count; i++) {
        batch[i]->result.count = 0;
        batch[i]->result.name_count = 0;
        batch[i]->result.more = false;
        storage_request_fail(batch[i], STORAGE_UNAVAILABLE, "database unavailable: %s",
                             link->down_reason);
    }
}

static void *storage_thread(void *argument)
{
    pg_link *link = argument;
    pg_driver *driver = link->driver;
    storage_thread_block_signals();
    pthread_mutex_lock(&driver->mutex);
    for (;;) {
        while (driver->queue.count == 0 && !driver->closing) {
            pthread_cond_wait(&driver->wake, &driver->mutex);
        }
        unsigned taken = storage_queue_take(&driver->queue, link->batch, driver->group_commit);
        if (taken == 0) {
            break;
        }
        if (driver->queue.count > 0) {
            pthread_cond_signal(&driver->wake); /* another link may take the rest */
        }
        pthread_mutex_unlock(&driver->mutex);

        batch_run(link, link->batch, taken);
        atomic_fetch_add(&driver->operations, taken);
        pthread_mutex_lock(&driver->completing);
        for (unsigned i = 0; i < taken; i++) {
            if (link->batch[i]->result.status != STORAGE_OK) {
                atomic_fetch_add(&driver->failed, 1);
            }
            storage_request_complete(link->batch[i]);
        }
        pthread_mutex_unlock(&driver->completing);
        pthread_mutex_lock(&driver->mutex);
    }
    pthread_cond_signal(&driver->wake); /* the other links see closing too */
    pthread_mutex_unlock(&driver->mutex);
    return NULL;
}

/* ---------------------------------------------------- reactor connections */

/* A reactor's own connection: requests submitted on that reactor in one
 * loop iteration go out as one pipeline from a message the reactor posts
 * to itself (so never inline from the submission); the socket is watched
 * with rx_poll_add on the reactor's ring; results are read as they come,
 * against the plan of what was sent; completions run on the reactor. */
typedef enum plan_kind { PLAN_PREPARE, PLAN_OP, PLAN_SYNC } plan_kind;

struct pg_local {
    pg_link link; /* connection, prepared, broken, retry and back-off */
    unsigned index;
    bool connecting;
    PostgresPollingStatusType connect_state;
    rx_poll *poll;
    rx_timer timer;       /* the connect or batch deadline */
    rx_timer flush_timer; /* the flush, when the reactor's own mailbox was full */
    bool flush_scheduled;
    storage_request **pending; /* submitted, not sent; capacity entries */
    unsigned pending_count;
    unsigned batch_count; /* in link.batch */
    bool in_flight;
    bool grouped;
    unsigned prepares; /* PREPAREs at the head of the plan */
    unsigned step;
    bool awaiting_null;
    bool ok;
    bool prepare_failed;
    bool last_was_null; /* two NULLs in a row: wait for more input */
    unsigned final;     /* singly: operations whose Sync was read */
};

static void outstanding_add(pg_driver *driver, int delta)
{
    pthread_mutex_lock(&driver->mutex);
    driver->outstanding = (unsigned)((int)driver->outstanding + delta);
    if (driver->outstanding == 0) {
        pthread_cond_broadcast(&driver->drained);
    }
    pthread_mutex_unlock(&driver->mutex);
}

static void local_flush_message(const rx_message *message);

static void local_schedule_flush(pg_local *local)
{
    if (local->flush_scheduled || local->pending_count == 0) {
        return;
    }
    rx_message message = {.function = local_flush_message, .pointer = local};
    outstanding_add(local->link.driver, 1);
    local->flush_scheduled = true;
    if (rx_post(local->index, &message) != RX_OK) {
        /* The reactor's mailbox to itself is full: one timer slot later. */
        rx_timer_arm(&local->flush_timer, 0);
    }
}

/* Delivers the batch: the first `final` with their results, the rest
 * unavailable; then carries on with what is pending. */
static void local_complete(pg_local *local, unsigned final)
{
    pg_driver *driver = local->link.driver;
    unsigned count = local->batch_count;
    storage_request **batch = local->link.batch;
    for (unsigned i = final; i < count; i++) {
        batch[i]->result.count = 0;
        batch[i]->result.name_count = 0;
        batch[i]->result.more = false;
        storage_request_fail(batch[i], STORAGE_UNAVAILABLE, "database unavailable: %s",
                             local->link.down_reason);
    }
    local->batch_count = 0;
    local->in_flight = false;
    atomic_fetch_add(&driver->operations, count);
    local_schedule_flush(local);
    for (unsigned i = 0; i < count; i++) {
        if (batch[i]->result.status != STORAGE_OK) {
            atomic_fetch_add(&driver->failed, 1);
        }
        storage_request_complete_here(batch[i]);
    }
    outstanding_add(driver, -(int)count);
}

static void local_ready(void *argument, int events);

static void local_arm(pg_local *local, unsigned events)
{
    local->poll = rx_poll_add(pq_here()->PQsocket(local->link.connection), events, local_ready, local);
    if (local->poll == NULL) {
        snprintf(local->link.down_reason, sizeof local->link.down_reason, "cannot poll");
        local->link.broken = true;
    }
}

static void local_drop(pg_local *local)
{
    rx_poll_cancel(local->poll);
    local->poll = NULL;
    rx_timer_cancel(&local->timer);
    pq_here()->PQfinish(local->link.connection);
    local->link.connection = NULL;
    local->connecting = false;
}

static void local_connect_failed(pg_local *local, const char *reason)
{
    pg_link *link = &local->link;
    snprintf(link->down_reason, sizeof link->down_reason, "%s", reason);
    local_drop(local);
    link_connect_failed(link, monotonic_ms());
    local_complete(local, 0);
}

/* Sends the batch (grouped: one transaction; else op, Sync, ...) and
 * starts reading. */
static void local_send(pg_local *local, bool grouped)
{
    pg_link *link = &local->link;
    unsigned count = local->batch_count;
    local->grouped = grouped;
    local->prepares = link->prepared ? 0 : STATEMENT_COUNT;
    local->step = 0;
    local->awaiting_null = false;
    local->last_was_null = false;
    local->ok = true;
    local->prepare_failed = false;
    local->final = 0;
    local->in_flight = true;
    atomic_fetch_add(&link->driver->batches, grouped ? 1 : count);
    bool sent = statements_send(link);
    if (sent && !grouped && local->prepares > 0) {
        sent = pq_here()->PQpipelineSync(link->connection) == 1;
    }
    for (unsigned i = 0; i < count && sent; i++) {
        sent = operation_send(link, link->batch[i]) &&
               (grouped || pq_here()->PQpipelineSync(link->connection) == 1);
    }
    sent = sent && (!grouped || pq_here()->PQpipelineSync(link->connection) == 1);
    int flushed = sent ? pq_here()->PQflush(link->connection) : -1;
    if (flushed < 0) {
        connection_break(link);
        local_drop(local);
        link->retry_at_ms = monotonic_ms();
        local_complete(local, 0);
        return;
    }
    rx_timer_arm(&local->timer, LIMIT_STORAGE_POSTGRESQL_BATCH_MS);
    local_arm(local, POLLIN | (flushed == 1 ? POLLOUT : 0));
}

/* What the plan expects at step, and for PLAN_OP which operation. */
static plan_kind local_plan(const pg_local *local, unsigned step, unsigned *op)
{
    if (step < local->prepares) {
        return PLAN_PREPARE;
    }
    step -= local->prepares;
    if (local->grouped) {
        *op = step;
        return step < local->batch_count ? PLAN_OP : PLAN_SYNC;
    }
    if (local->prepares > 0) {
        if (step == 0) {
            return PLAN_SYNC;
        }
        step--;
    }
    *op = step / 2;
    return step % 2 == 0 ? PLAN_OP : PLAN_SYNC;
}

static unsigned local_plan_length(const pg_local *local)
{
    return local->prepares + (local->grouped ? local->batch_count + 1
                                             : (local->prepares > 0) + 2 * local->batch_count);
}

/* Takes one result (NULL: the end of a query's results) against the plan;
 * false when it was not what the plan expects next (wait for more). */
static bool local_result(pg_local *local, PGresult *result)
{
    if (local->awaiting_null) {
        if (result == NULL) {
            local->awaiting_null = false;
            local->step++;
        }
        pq_here()->PQclear(result);
        return true;
    }
    if (result == NULL) {
        bool progress = !local->last_was_null;
        local->last_was_null = true;
        return progress;
    }
    local->last_was_null = false;
    unsigned op = 0;
    plan_kind kind = local_plan(local, local->step, &op);
    ExecStatusType status = pq_here()->PQresultStatus(result);
    if (kind == PLAN_SYNC) {
        if (status == PGRES_PIPELINE_SYNC) {
            if (!local->grouped && local->step > local->prepares) {
                local->final = op + 1;
            }
            local->step++;
        } else if (status == PGRES_FATAL_ERROR) {
            local->ok = false; /* the commit at the Sync failed */
            if (!local->grouped && local->step > local->prepares) {
                char line[LIMIT_STORAGE_REASON_BYTES];
                storage_request_fail(local->link.batch[op], STORAGE_ERROR, "commit: %.200s",
                                     first_line(pq_here()->PQresultErrorMessage(result), line, sizeof line));
            }
        }
        pq_here()->PQclear(result);
        return true;
    }
    if (kind == PLAN_OP) {
        operation_read(local->link.batch[op], result);
        local->ok = local->ok && status == PGRES_TUPLES_OK;
    } else if (status != PGRES_COMMAND_OK) {
        local->prepare_failed = local->prepare_failed || kind == PLAN_PREPARE;
        if (local->ok) {
            char line[LIMIT_STORAGE_REASON_BYTES];
            snprintf(local->link.down_reason, sizeof local->link.down_reason, "%s",
                     first_line(pq_here()->PQresultErrorMessage(result), line, sizeof line));
        }
        local->ok = false;
    }
    local->awaiting_null = true;
    pq_here()->PQclear(result);
    return true;
}

/* The plan has been read to its end, or the connection broke. */
static void local_batch_end(pg_local *local)
{
    pg_link *link = &local->link;
    rx_timer_cancel(&local->timer);
    rx_poll_cancel(local->poll);
    local->poll = NULL;
    if (local->prepare_failed) {
        /* The statements cannot be prepared (a schema gone wrong): drop
         * the connection, fail the batch, and try afresh next time. */
        connection_break(link);
        local->final = 0;
    } else if (local->prepares > 0 && !link->broken) {
        link->prepared = true;
    }
    if (link->broken) {
        unsigned final = local->grouped ? 0 : local->final;
        local_drop(local);
        link->retry_at_ms = monotonic_ms();
        local_complete(local, final);
        return;
    }
    if (local->grouped && !local->ok) {
        /* One operation failed: again, each in its own transaction. */
        for (unsigned i = 0; i < local->batch_count; i++) {
            operation_reset(link->batch[i]);
        }
        local_send(local, false);
        return;
    }
    local_complete(local, local->grouped ? local->batch_count : local->final);
}

static void local_connected(pg_local *local)
{
    pg_link *link = &local->link;
    rx_timer_cancel(&local->timer);
    local->connecting = false;
    if (pq_here()->PQsetnonblocking(link->connection, 1) != 0 || pq_here()->PQenterPipelineMode(link->connection) != 1) {
        local_connect_failed(local, "cannot enter pipeline mode");
        return;
    }
    pq_here()->PQsetNoticeProcessor(link->connection, notice_ignore, NULL);
    link->prepared = false;
    link->broken = false;
    link_connected(link);
    local_send(local, link->driver->group_commit && local->batch_count > 1);
}

static void local_ready(void *argument, int events)
{
    pg_local *local = argument;
    pg_link *link = &local->link;
    local->poll = NULL;
    if (local->connecting) {
        local->connect_state = pq_here()->PQconnectPoll(link->connection);
        if (local->connect_state == PGRES_POLLING_OK) {
            local_connected(local);
        } else if (local->connect_state == PGRES_POLLING_FAILED) {
            char line[LIMIT_STORAGE_REASON_BYTES];
            local_connect_failed(local,
                                 first_line(pq_here()->PQerrorMessage(link->connection), line, sizeof line));
        } else {
            local_arm(local, local->connect_state == PGRES_POLLING_READING ? POLLIN : POLLOUT);
        }
        return;
    }
    if (!local->in_flight) {
        return;
    }
    int flushed = pq_here()->PQflush(link->connection);
    if (events < 0 || flushed < 0 ||
        ((events & (POLLIN | POLLERR | POLLHUP)) != 0 && pq_here()->PQconsumeInput(link->connection) == 0)) {
        connection_break(link);
    }
    unsigned length = local_plan_length(local);
    bool progress = true;
    local->last_was_null = false;
    while (progress && !link->broken && local->step < length && !pq_here()->PQisBusy(link->connection)) {
        progress = local_result(local, pq_here()->PQgetResult(link->connection));
        if (pq_here()->PQstatus(link->connection) == CONNECTION_BAD) {
            connection_break(link);
        }
    }
    if (link->broken || local->step >= length) {
        local_batch_end(local);
        return;
    }
    local_arm(local, POLLIN | (flushed == 1 ? POLLOUT : 0));
    if (link->broken) {
        local_batch_end(local);
    }
}

static void local_timeout(rx_timer *timer, void *argument)
{
    (void)timer;
    pg_local *local = argument;
    if (local->connecting) {
        local_connect_failed(local, "connection timed out");
        return;
    }
    snprintf(local->link.down_reason, sizeof local->link.down_reason, "no answer within %u ms",
             (unsigned)LIMIT_STORAGE_POSTGRESQL_BATCH_MS);
    local->link.broken = true;
    local_batch_end(local);
}

/* Takes the pending requests as the next batch and sends it, connecting
 * first when needed. */
static void local_start(pg_local *local)
{
    pg_link *link = &local->link;
    pg_driver *driver = link->driver;
    if (local->in_flight || local->connecting || local->pending_count == 0) {
        return;
    }
    unsigned taken = driver->group_commit ? local->pending_count : 1;
    memcpy(link->batch, local->pending, taken * sizeof *link->batch);
    memmove(local->pending, local->pending + taken,
            (local->pending_count - taken) * sizeof *local->pending);
    local->pending_count -= taken;
    local->batch_count = taken;
    if (link->connection != NULL && !link_idle_alive(link)) {
        local_drop(local);
    }
    if (link->connection != NULL) {
        local_send(local, driver->group_commit && taken > 1);
        return;
    }
    if (!link_retry_due(link, monotonic_ms())) {
        local_complete(local, 0);
        return;
    }
    link->connection = pq_here()->PQconnectStartParams(driver->keys, (const char *const *)driver->values, 0);
    if (link->connection == NULL || pq_here()->PQstatus(link->connection) == CONNECTION_BAD) {
        char line[LIMIT_STORAGE_REASON_BYTES];
        local_connect_failed(local,
                             link->connection == NULL
                                 ? "out of memory"
                                 : first_line(pq_here()->PQerrorMessage(link->connection), line, sizeof line));
        return;
    }
    local->connecting = true;
    local->in_flight = true;
    rx_timer_arm(&local->timer, LIMIT_STORAGE_POSTGRESQL_CONNECT_MS);
    local_arm(local, POLLOUT);
    if (local->poll == NULL) {
        local_connect_failed(local, "cannot poll the connection");
    }
}

static void local_flush(pg_local *local)
{
    pg_driver *driver = local->link.driver;
    local->flush_scheduled = false;
    local_start(local);
    outstanding_add(driver, -1);
}

static void local_flush_message(const rx_message *message)
{
    local_flush(message->pointer);
}

static void local_flush_timer(rx_timer *timer, void *argument)
{
    (void)timer;
    local_flush(argument);
}

/* On the submitting reactor: queue for this iteration's pipeline. */
static storage_status local_submit(pg_driver *driver, storage_request *request)
{
    unsigned index = request->reactor_index;
    pg_local *local = driver->locals[index];
    if (local == NULL) {
        local = calloc(1, sizeof *local);
        if (local == NULL ||
            (local->pending = calloc(driver->capacity, sizeof *local->pending)) == NULL ||
            (local->link.batch = calloc(driver->capacity, sizeof *local->link.batch)) == NULL) {
            if (local != NULL) {
                free(local->pending);
            }
            free(local);
            return STORAGE_NOMEM;
        }
        local->index = index;
        local->link.driver = driver;
        local->link.backoff_ms = LIMIT_STORAGE_POSTGRESQL_RECONNECT_MIN_MS;
        snprintf(local->link.down_reason, sizeof local->link.down_reason, "not connected yet");
        rx_timer_init(&local->timer, local_timeout, local);
        rx_timer_init(&local->flush_timer, local_flush_timer, local);
        driver->locals[index] = local;
    }
    if (local->pending_count + local->batch_count >= driver->capacity) {
        atomic_fetch_add(&driver->busy_refusals, 1);
        return STORAGE_BUSY;
    }
    pthread_mutex_lock(&driver->mutex);
    bool closing = driver->closing || !driver->serving;
    if (!closing) {
        driver->outstanding++;
    }
    pthread_mutex_unlock(&driver->mutex);
    if (closing) {
        return STORAGE_CLOSED;
    }
    local->pending[local->pending_count++] = request;
    local_schedule_flush(local);
    return STORAGE_OK;
}

/* ------------------------------------------------------------------ driver */

static void driver_free(pg_driver *driver)
{
    for (size_t i = 0; i < sizeof driver->values / sizeof driver->values[0]; i++) {
        free(driver->values[i]);
    }
    for (unsigned i = 0; i < LIMIT_STORAGE_POSTGRESQL_CONNECTIONS_MAX; i++) {
        free(driver->links[i].batch);
    }
    storage_queue_fini(&driver->queue);
    free(driver);
}

static storage_status pg_create(storage *owner, const storage_option *options, size_t option_count,
                                void **state, char *error, size_t error_size)
{
    char load_error[768];
    if (pq_load(load_error, sizeof load_error) == NULL) {
        snprintf(error, error_size, "postgresql: %s", load_error);
        return STORAGE_UNAVAILABLE;
    }
    pg_driver *driver = calloc(1, sizeof *driver);
    if (driver == NULL) {
        snprintf(error, error_size, "postgresql: out of memory");
        return STORAGE_NOMEM;
    }
    const char *given[CONNECTION_KEYS] = {0};
    bool group_commit = true;
    unsigned long capacity = LIMIT_STORAGE_QUEUE_REQUESTS;
    unsigned long connections = 1;
    bool reactor_connections = true;
    for (size_t i = 0; i < option_count; i++) {
        const char *key = options[i].key, *value = options[i].value;
        bool known = false;
        if (strcmp(key, "reactor_connections") == 0) {
            reactor_connections = strcmp(value, "on") == 0;
            known = reactor_connections || strcmp(value, "off") == 0;
        }
        if (strcmp(key, "connections") == 0) {
            char *end = NULL;
            connections = strtoul(value, &end, 10);
            known = end != value && *end == '\0' && value[0] != '-' && connections >= 1 &&
                    connections <= LIMIT_STORAGE_POSTGRESQL_CONNECTIONS_MAX;
        }
        for (size_t k = 0; k < CONNECTION_KEYS; k++) {
            if (strcmp(key, connection_keys[k]) == 0) {
                given[k] = value;
                known = true;
            }
        }
        if (strcmp(key, "group_commit") == 0) {
            group_commit = strcmp(value, "on") == 0;
            known = group_commit || strcmp(value, "off") == 0;
        } else if (strcmp(key, "queue_requests") == 0) {
            char *end = NULL;
            capacity = strtoul(value, &end, 10);
            known = end != value && *end == '\0' && value[0] != '-' && capacity >= 1 &&
                    capacity <= LIMIT_STORAGE_QUEUE_REQUESTS;
        }
        if (!known) {
            snprintf(error, error_size, "postgresql: bad option %s=%s", key, value);
            driver_free(driver);
            return STORAGE_INVALID;
        }
    }
    size_t n = 0;
    bool ok = true;
    for (size_t k = 0; k < CONNECTION_KEYS; k++) {
        if (given[k] != NULL) {
            driver->keys[n] = connection_keys[k];
            ok = ok && (driver->values[n++] = strdup(given[k])) != NULL;
        }
    }
    /* No GSSAPI encryption: Starling configures no Kerberos, and libpq's
     * default (prefer) would first try it against every server. */
    driver->keys[n] = "gssencmode";
    ok = ok && (driver->values[n++] = strdup("disable")) != NULL;
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%u", (LIMIT_STORAGE_POSTGRESQL_CONNECT_MS + 999) / 1000);
    driver->keys[n] = "connect_timeout";
    ok = ok && (driver->values[n++] = strdup(timeout)) != NULL;
    driver->keys[n] = "application_name";
    ok = ok && (driver->values[n++] = strdup("starling")) != NULL;
    for (unsigned i = 0; i < connections; i++) {
        pg_link *link = &driver->links[i];
        link->driver = driver;
        link->backoff_ms = LIMIT_STORAGE_POSTGRESQL_RECONNECT_MIN_MS;
        snprintf(link->down_reason, sizeof link->down_reason, "not connected yet");
        ok = ok && (link->batch = calloc(capacity, sizeof *link->batch)) != NULL;
    }
    if (!ok || !storage_queue_init(&driver->queue, (unsigned)capacity)) {
        driver_free(driver);
        snprintf(error, error_size, "postgresql: out of memory");
        return STORAGE_NOMEM;
    }
    snprintf(driver->where, sizeof driver->where, "%s:%s/%s",
             given[0] != NULL ? given[0] : "(default host)",
             given[1] != NULL ? given[1] : "(default port)",
             given[2] != NULL ? given[2] : "(default database)");
    driver->owner = owner;
    driver->group_commit = group_commit;
    driver->capacity = (unsigned)capacity;
    driver->link_count = (unsigned)connections;
    driver->reactor_connections = reactor_connections;
    pthread_cond_init(&driver->drained, NULL);
    pthread_mutex_init(&driver->mutex, NULL);
    pthread_mutex_init(&driver->completing, NULL);
    pthread_cond_init(&driver->wake, NULL);
    *state = driver;
    return STORAGE_OK;
}

/* Runs one command on the blocking connection; false with error set. */
static bool exec_ok(pg_driver *driver, const char *sql, char *error, size_t error_size,
                    PGresult **out)
{
    PGresult *result = pq_here()->PQexec(driver->links[0].connection, sql);
    ExecStatusType status = pq_here()->PQresultStatus(result);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
        char line[LIMIT_STORAGE_REASON_BYTES];
        snprintf(error, error_size, "postgresql %s: %.60s...: %s", driver->where, sql,
                 first_line(pq_here()->PQresultErrorMessage(result), line, sizeof line));
        pq_here()->PQclear(result);
        return false;
    }
    if (out != NULL) {
        *out = result;
    } else {
        pq_here()->PQclear(result);
    }
    return true;
}

/* Applies the missing migrations in one transaction under an advisory
 * lock, refusing a database newer than this binary. */
static storage_status migrate(pg_driver *driver, char *error, size_t error_size)
{
    char lock[96];
    snprintf(lock, sizeof lock, "SELECT pg_advisory_xact_lock(%lld)", MIGRATION_LOCK_KEY);
    PGresult *result = NULL;
    if (!exec_ok(driver, "BEGIN", error, error_size, NULL) ||
        !exec_ok(driver, lock, error, error_size, NULL) ||
        !exec_ok(driver,
                 "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                 "applied_at_us BIGINT NOT NULL)",
                 error, error_size, NULL) ||
        !exec_ok(driver, "SELECT COALESCE(MAX(version), 0) FROM schema_version", error, error_size,
                 &result)) {
        return STORAGE_UNAVAILABLE;
    }
    unsigned version = (unsigned)strtoul(pq_here()->PQgetvalue(result, 0, 0), NULL, 10);
    pq_here()->PQclear(result);
    if (version > storage_migration_count) {
        snprintf(error, error_size,
                 "postgresql %s: the database schema is version %u but this starling knows "
                 "versions up to %u; run a newer starling (or restore a backup)",
                 driver->where, version, (unsigned)storage_migration_count);
        return STORAGE_SCHEMA;
    }
    for (size_t i = version; i < storage_migration_count; i++) {
        const storage_migration *migration = &storage_migrations[i];
        char *sql = storage_schema_render(migration, STORAGE_DIALECT_POSTGRESQL);
        char insert[128];
        snprintf(insert, sizeof insert,
                 "INSERT INTO schema_version (version, applied_at_us) VALUES (%u, %lld)",
                 migration->version, (long long)now_us());
        char reason[LIMIT_STORAGE_REASON_BYTES] = "out of memory";
        bool ok = sql != NULL && exec_ok(driver, sql, reason, sizeof reason, NULL) &&
                  exec_ok(driver, insert, reason, sizeof reason, NULL);
        free(sql);
        if (!ok) {
            snprintf(error, error_size, "postgresql %s: migration %s failed: %s", driver->where,
                     migration->name, reason);
            return STORAGE_SCHEMA;
        }
    }
    if (!exec_ok(driver, "COMMIT", error, error_size, NULL)) {
        return STORAGE_UNAVAILABLE;
    }
    driver->schema_version = (unsigned)storage_migration_count;
    return STORAGE_OK;
}

/* Stops and joins the links' threads that were started. */
static void links_stop(pg_driver *driver)
{
    pthread_mutex_lock(&driver->mutex);
    driver->closing = true;
    pthread_cond_broadcast(&driver->wake);
    pthread_mutex_unlock(&driver->mutex);
    for (unsigned i = 0; i < driver->link_count; i++) {
        pg_link *link = &driver->links[i];
        if (link->thread_started) {
            pthread_join(link->thread, NULL);
            link->thread_started = false;
        }
        pq_here()->PQfinish(link->connection);
        link->connection = NULL;
    }
}

/* Connects link 0 (blocking), migrates on it, makes it non-blocking in
 * pipeline mode and starts every link's thread; the other links connect
 * when their first batch comes. */
static storage_status pg_open(void *state, char *error, size_t error_size)
{
    pg_driver *driver = state;
    pg_link *first = &driver->links[0];
    first->connection = pq_here()->PQconnectdbParams(driver->keys, (const char *const *)driver->values, 0);
    if (first->connection == NULL || pq_here()->PQstatus(first->connection) != CONNECTION_OK) {
        char line[LIMIT_STORAGE_REASON_BYTES];
        snprintf(error, error_size, "postgresql %s: cannot connect: %s", driver->where,
                 first_line(first->connection != NULL ? pq_here()->PQerrorMessage(first->connection)
                                                      : "out of memory",
                            line, sizeof line));
        pq_here()->PQfinish(first->connection);
        first->connection = NULL;
        return STORAGE_UNAVAILABLE;
    }
    pq_here()->PQsetNoticeProcessor(first->connection, notice_ignore, NULL);
    storage_status status = migrate(driver, error, error_size);
    if (status == STORAGE_OK && (pq_here()->PQsetnonblocking(first->connection, 1) != 0 ||
                                 pq_here()->PQenterPipelineMode(first->connection) != 1)) {
        snprintf(error, error_size, "postgresql %s: cannot enter pipeline mode", driver->where);
        status = STORAGE_ERROR;
    }
    for (unsigned i = 0; i < driver->link_count && status == STORAGE_OK; i++) {
        pg_link *link = &driver->links[i];
        link->thread_started = pthread_create(&link->thread, NULL, storage_thread, link) == 0;
        if (!link->thread_started) {
            snprintf(error, error_size, "postgresql: cannot start a storage thread");
            status = STORAGE_ERROR;
        }
    }
    if (status != STORAGE_OK) {
        links_stop(driver);
        return status;
    }
    pthread_mutex_lock(&driver->mutex);
    driver->serving = true;
    pthread_mutex_unlock(&driver->mutex);
    return STORAGE_OK;
}

static storage_status pg_submit(void *state, storage_request *request)
{
    pg_driver *driver = state;
    if (driver->reactor_connections && request->waiter == NULL) {
        return local_submit(driver, request);
    }
    storage_status status = STORAGE_OK;
    pthread_mutex_lock(&driver->mutex);
    if (driver->closing || !driver->serving) {
        status = STORAGE_CLOSED;
    } else if (!storage_queue_push(&driver->queue, request)) {
        atomic_fetch_add(&driver->busy_refusals, 1);
        status = STORAGE_BUSY;
    } else if (driver->queue.count == 1) {
        pthread_cond_signal(&driver->wake);
    }
    pthread_mutex_unlock(&driver->mutex);
    return status;
}

static void pg_stats(void *state, storage_stats *stats)
{
    pg_driver *driver = state;
    stats->operations = atomic_load(&driver->operations);
    stats->failed = atomic_load(&driver->failed);
    stats->batches = atomic_load(&driver->batches);
    stats->busy_refusals = atomic_load(&driver->busy_refusals);
    pthread_mutex_lock(&driver->mutex);
    stats->queued = driver->queue.count;
    pthread_mutex_unlock(&driver->mutex);
}

static unsigned pg_schema_version(void *state)
{
    return ((pg_driver *)state)->schema_version;
}

static void pg_close(void *state)
{
    pg_driver *driver = state;
    /* The reactors finish what they hold (each batch is bounded by
     * LIMIT_STORAGE_POSTGRESQL_BATCH_MS); then no message, poll or timer
     * of theirs refers to a local any more. */
    pthread_mutex_lock(&driver->mutex);
    driver->closing = true;
    while (driver->outstanding > 0) {
        pthread_cond_wait(&driver->drained, &driver->mutex);
    }
    pthread_mutex_unlock(&driver->mutex);
    for (unsigned i = 0; i < LIMIT_REACTORS_MAX; i++) {
        pg_local *local = driver->locals[i];
        if (local != NULL) {
            pq_here()->PQfinish(local->link.connection);
            free(local->link.batch);
            free(local->pending);
            free(local);
        }
    }
    links_stop(driver);
    pthread_cond_destroy(&driver->drained);
    pthread_cond_destroy(&driver->wake);
    pthread_mutex_destroy(&driver->mutex);
    pthread_mutex_destroy(&driver->completing);
    driver_free(driver);
}

const storage_driver storage_driver_postgresql = {
    .name = "postgresql",
    .create = pg_create,
    .open = pg_open,
    .submit = pg_submit,
    .stats = pg_stats,
    .schema_version = pg_schema_version,
    .close = pg_close,
};
