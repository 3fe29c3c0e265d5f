/*
 * sqlite.c: the embedded SQLite driver (the default).
 *
 * One database file, one connection, one storage thread. Reactors (and
 * waiter threads) put requests in a bounded queue under a mutex held for a
 * few pointer moves; the thread takes everything queued at once (group
 * commit), runs it as one transaction with one savepoint per operation, so
 * a failing operation rolls back alone and the others commit, then posts
 * every completion. A burst submitted in one loop iteration therefore
 * costs one commit, not one per operation. With group_commit off each
 * operation is its own transaction (kept for the benchmark comparison).
 *
 * Choices:
 *   - WAL journal: readers (an operator's sqlite3 shell, a backup) never
 *     block the writer, and a commit appends to the log instead of
 *     rewriting pages.
 *   - synchronous=NORMAL: in WAL mode a commit is not fsynced; the log is
 *     synced at checkpoints. A power loss (not a process crash) may lose
 *     the last transactions before the checkpoint, never corrupt the file.
 *     That trades the durability of the last few hundred milliseconds for
 *     an order of magnitude more commits per second.
 *   - foreign_keys=ON, so deleting a user cascades to everything they own.
 *   - busy timeout LIMIT_STORAGE_SQLITE_BUSY_TIMEOUT_MS: a lock held by
 *     another connection makes the storage thread wait, never a reactor.
 *   - every statement prepared once at open and reset after each use.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage/internal.h"

typedef enum statement_id {
    STATEMENT_BEGIN = 0,
    STATEMENT_COMMIT,
    STATEMENT_ROLLBACK,
    STATEMENT_SAVEPOINT,
    STATEMENT_ROLLBACK_TO,
    STATEMENT_RELEASE,
    STATEMENT_USER_INSERT,
    STATEMENT_USER_ID,
    STATEMENT_USER_DELETE,
    STATEMENT_USER_LIST,
    STATEMENT_USER_COUNT_DOMAIN,
    STATEMENT_USER_COUNT_ALL,
    STATEMENT_CREDENTIAL_INSERT,
    STATEMENT_CREDENTIAL_SELECT,
    STATEMENT_CREDENTIALS_DELETE,
    STATEMENT_AFFILIATIONS_DELETE,
    STATEMENT_OFFLINE_INSERT,
    STATEMENT_OFFLINE_COUNT,
    STATEMENT_COUNT,
} statement_id;

static const char *const statement_sql[STATEMENT_COUNT] = {
    [STATEMENT_BEGIN] = "BEGIN IMMEDIATE",
    [STATEMENT_COMMIT] = "COMMIT",
    [STATEMENT_ROLLBACK] = "ROLLBACK",
    [STATEMENT_SAVEPOINT] = "SAVEPOINT operation",
    [STATEMENT_ROLLBACK_TO] = "ROLLBACK TO operation",
    [STATEMENT_RELEASE] = "RELEASE operation",
    [STATEMENT_USER_INSERT] =
        "INSERT INTO users (domain, localpart, created_at_us) VALUES (?1, ?2, ?3)",
    [STATEMENT_USER_ID] = "SELECT id FROM users WHERE domain = ?1 AND localpart = ?2",
    [STATEMENT_USER_DELETE] = "DELETE FROM users WHERE id = ?1",
    [STATEMENT_USER_LIST] = "SELECT localpart FROM users WHERE domain = ?1 AND localpart > ?2 "
                            "ORDER BY localpart LIMIT ?3",
    [STATEMENT_USER_COUNT_DOMAIN] = "SELECT count(*) FROM users WHERE domain = ?1",
    [STATEMENT_USER_COUNT_ALL] = "SELECT count(*) FROM users",
    [STATEMENT_CREDENTIAL_INSERT] = "INSERT INTO credentials (user_id, hash, salt, iterations, "
                                    "stored_key, server_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [STATEMENT_CREDENTIAL_SELECT] =
        "SELECT c.salt, c.iterations, c.stored_key, c.server_key FROM credentials c "
        "JOIN users u ON u.id = c.user_id WHERE u.domain = ?1 AND u.localpart = ?2 "
        "AND c.hash = ?3",
    [STATEMENT_CREDENTIALS_DELETE] = "DELETE FROM credentials WHERE user_id = ?1",
    [STATEMENT_AFFILIATIONS_DELETE] = "DELETE FROM muc_affiliations WHERE jid = ?1",
    [STATEMENT_OFFLINE_INSERT] =
        "INSERT INTO offline_messages (user_id, received_at_us, stanza) "
        "SELECT id, ?3, ?4 FROM users WHERE domain = ?1 AND localpart = ?2",
    [STATEMENT_OFFLINE_COUNT] = "SELECT count(*) FROM offline_messages WHERE user_id = "
                                "(SELECT id FROM users WHERE domain = ?1 AND localpart = ?2)",
};

typedef struct sqlite_driver {
    storage *owner;
    char *path;
    bool group_commit;
    unsigned capacity;
    sqlite3 *database;
    sqlite3_stmt *statements[STATEMENT_COUNT];
    unsigned schema_version;
    bool thread_started;
    pthread_t thread;

    pthread_mutex_t mutex; /* guards the queue and closing */
    pthread_cond_t wake;
    storage_queue queue;
    bool closing;
    storage_request **batch; /* the storage thread's, capacity entries */

    atomic_uint_fast64_t operations;
    atomic_uint_fast64_t failed;
    atomic_uint_fast64_t batches;
    atomic_uint_fast64_t busy_refusals;
} sqlite_driver;

static const char *const hash_names[] = {"SHA-1", "SHA-256", "SHA-512"};

/* ---------------------------------------------------------------- helpers */

static int64_t now_us(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

static storage_status status_from_sqlite(int code)
{
    switch (code & 0xff) {
    case SQLITE_CONSTRAINT:
        return STORAGE_CONFLICT;
    case SQLITE_NOMEM:
        return STORAGE_NOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PROTOCOL:
        return STORAGE_UNAVAILABLE;
    default:
        return STORAGE_ERROR;
    }
}

static void fail_sqlite(sqlite_driver *driver, storage_request *request, int code, const char *what)
{
    storage_request_fail(request, status_from_sqlite(code), "%s: %s", what,
                         sqlite3_errmsg(driver->database));
}

/* Steps a statement that returns no row (BEGIN, DELETE, ...) and resets
 * it. Returns SQLITE_DONE or the error. */
static int run(sqlite_driver *driver, statement_id id)
{
    sqlite3_stmt *statement = driver->statements[id];
    int code = sqlite3_step(statement);
    sqlite3_reset(statement);
    return code == SQLITE_ROW ? SQLITE_DONE : code;
}

static sqlite3_stmt *bind_user(sqlite_driver *driver, statement_id id,
                               const storage_request *request)
{
    sqlite3_stmt *statement = driver->statements[id];
    sqlite3_bind_text(statement, 1, request->domain, -1, SQLITE_STATIC);
    sqlite3_bind_text(statement, 2, request->localpart, -1, SQLITE_STATIC);
    return statement;
}

/* Looks the user's id up: true with *id, or false with the request failed
 * (NOT_FOUND or the error). */
static bool user_id_find(sqlite_driver *driver, storage_request *request, int64_t *id)
{
    sqlite3_stmt *statement = bind_user(driver, STATEMENT_USER_ID, request);
    int code = sqlite3_step(statement);
    if (code == SQLITE_ROW) {
        *id = sqlite3_column_int64(statement, 0);
    }
    sqlite3_reset(statement);
    if (code == SQLITE_DONE) {
        storage_request_fail(request, STORAGE_NOT_FOUND, "no user %s@%s", request->localpart,
                             request->domain);
    } else if (code != SQLITE_ROW) {
        fail_sqlite(driver, request, code, "user lookup");
    }
    return code == SQLITE_ROW;
}

/* A single-row count query, bound already; the result goes to count. */
static void count_run(sqlite_driver *driver, storage_request *request, statement_id id)
{
    sqlite3_stmt *statement = driver->statements[id];
    int code = sqlite3_step(statement);
    if (code == SQLITE_ROW) {
        request->result.count = (uint64_t)sqlite3_column_int64(statement, 0);
    } else {
        fail_sqlite(driver, request, code, "count");
    }
    sqlite3_reset(statement);
}

/* -------------------------------------------------------------- operations */

static void credentials_insert(sqlite_driver *driver, storage_request *request, int64_t user_id)
{
    sqlite3_stmt *statement = driver->statements[STATEMENT_CREDENTIAL_INSERT];
    for (size_t i = 0; i < request->credential_count; i++) {
        const storage_credential *credential = &request->credentials[i];
        sqlite3_bind_int64(statement, 1, user_id);
        sqlite3_bind_text(statement, 2, hash_names[credential->hash], -1, SQLITE_STATIC);
        sqlite3_bind_blob(statement, 3, credential->salt, (int)credential->salt_len, SQLITE_STATIC);
        sqlite3_bind_int64(statement, 4, credential->iterations);
        sqlite3_bind_blob(statement, 5, credential->stored_key, (int)credential->key_len,
                          SQLITE_STATIC);
        sqlite3_bind_blob(statement, 6, credential->server_key, (int)credential->key_len,
                          SQLITE_STATIC);
        int code = run(driver, STATEMENT_CREDENTIAL_INSERT);
        if (code != SQLITE_DONE) {
            fail_sqlite(driver, request, code, "credential insert");
            return;
        }
    }
}

static void user_create(sqlite_driver *driver, storage_request *request)
{
    sqlite3_stmt *statement = bind_user(driver, STATEMENT_USER_INSERT, request);
    sqlite3_bind_int64(statement, 3, now_us());
    int code = run(driver, STATEMENT_USER_INSERT);
    if ((code & 0xff) == SQLITE_CONSTRAINT) {
        storage_request_fail(request, STORAGE_CONFLICT, "user %s@%s exists", request->localpart,
                             request->domain);
        return;
    }
    if (code != SQLITE_DONE) {
        fail_sqlite(driver, request, code, "user insert");
        return;
    }
    credentials_insert(driver, request, sqlite3_last_insert_rowid(driver->database));
}

/* Copies a blob column into out (capacity bytes); false when it does not
 * fit or is not exactly `exact` bytes (exact 0: any length from 1). */
static bool column_blob(sqlite3_stmt *statement, int column, uint8_t *out, size_t capacity,
                        size_t exact, size_t *length)
{
    const void *bytes = sqlite3_column_blob(statement, column);
    size_t size = (size_t)sqlite3_column_bytes(statement, column);
    if (bytes == NULL || size == 0 || size > capacity || (exact != 0 && size != exact)) {
        return false;
    }
    memcpy(out, bytes, size);
    if (length != NULL) {
        *length = size;
    }
    return true;
}

static void user_credential_fetch(sqlite_driver *driver, storage_request *request)
{
    static const size_t digest_bytes[] = {20, 32, 64};
    sqlite3_stmt *statement = bind_user(driver, STATEMENT_CREDENTIAL_SELECT, request);
    sqlite3_bind_text(statement, 3, hash_names[request->hash], -1, SQLITE_STATIC);
    int code = sqlite3_step(statement);
    storage_credential *out = &request->credential_out;
    if (code == SQLITE_ROW) {
        size_t key_len = digest_bytes[request->hash];
        out->hash = request->hash;
        out->key_len = key_len;
        int64_t iterations = sqlite3_column_int64(statement, 1);
        out->iterations = (uint32_t)iterations;
        if (iterations <= 0 || iterations > UINT32_MAX ||
            !column_blob(statement, 0, out->salt, sizeof out->salt, 0, &out->salt_len) ||
            !column_blob(statement, 2, out->stored_key, sizeof out->stored_key, key_len, NULL) ||
            !column_blob(statement, 3, out->server_key, sizeof out->server_key, key_len, NULL)) {
            storage_request_fail(request, STORAGE_ERROR, "stored %s credential is malformed",
                                 hash_names[request->hash]);
        }
    } else if (code == SQLITE_DONE) {
        storage_request_fail(request, STORAGE_NOT_FOUND, "no %s credential for %s@%s",
                             hash_names[request->hash], request->localpart, request->domain);
    } else {
        fail_sqlite(driver, request, code, "credential select");
    }
    sqlite3_reset(statement);
}

static void user_credentials_set(sqlite_driver *driver, storage_request *request)
{
    int64_t user_id = 0;
    if (!user_id_find(driver, request, &user_id)) {
        return;
    }
    sqlite3_bind_int64(driver->statements[STATEMENT_CREDENTIALS_DELETE], 1, user_id);
    int code = run(driver, STATEMENT_CREDENTIALS_DELETE);
    if (code != SQLITE_DONE) {
        fail_sqlite(driver, request, code, "credential delete");
        return;
    }
    credentials_insert(driver, request, user_id);
}

static void user_delete(sqlite_driver *driver, storage_request *request)
{
    int64_t user_id = 0;
    if (!user_id_find(driver, request, &user_id)) {
        return;
    }
    char *jid = sqlite3_mprintf("%s@%s", request->localpart, request->domain);
    if (jid == NULL) {
        storage_request_fail(request, STORAGE_NOMEM, "out of memory");
        return;
    }
    sqlite3_bind_text(driver->statements[STATEMENT_AFFILIATIONS_DELETE], 1, jid, -1, SQLITE_STATIC);
    int code = run(driver, STATEMENT_AFFILIATIONS_DELETE);
    sqlite3_free(jid);
    if (code == SQLITE_DONE) {
        sqlite3_bind_int64(driver->statements[STATEMENT_USER_DELETE], 1, user_id);
        code = run(driver, STATEMENT_USER_DELETE);
    }
    if (code != SQLITE_DONE) {
        fail_sqlite(driver, request, code, "user delete");
    }
}

/* Copies up to limit localparts into the request's names. */
static void user_list(sqlite_driver *driver, storage_request *request)
{
    sqlite3_stmt *statement = driver->statements[STATEMENT_USER_LIST];
    sqlite3_bind_text(statement, 1, request->domain, -1, SQLITE_STATIC);
    sqlite3_bind_text(statement, 2, request->after, -1, SQLITE_STATIC);
    sqlite3_bind_int64(statement, 3, (int64_t)request->limit + 1);
    char *text = NULL;
    size_t used = 0;
    size_t rows = 0;
    int code;
    while ((code = sqlite3_step(statement)) == SQLITE_ROW) {
        if (rows == request->limit) {
            request->result.more = true;
            continue;
        }
        const char *name = (const char *)sqlite3_column_text(statement, 0);
        size_t length = (size_t)sqlite3_column_bytes(statement, 0) + 1;
        char *grown = name != NULL ? realloc(text, used + length) : NULL;
        if (grown == NULL) {
            code = SQLITE_NOMEM;
            break;
        }
        text = grown;
        memcpy(text + used, name, length);
        used += length;
        rows++;
    }
    sqlite3_reset(statement);
    char *area = code == SQLITE_DONE ? storage_request_names_alloc(request, rows, used) : NULL;
    if (area == NULL) {
        fail_sqlite(driver, request, code == SQLITE_DONE ? SQLITE_NOMEM : code, "user list");
        request->result.more = false;
        free(text);
        return;
    }
    if (used > 0) {
        memcpy(area, text, used);
    }
    for (size_t i = 0, offset = 0; i < rows; i++) {
        request->names[i] = area + offset;
        offset += strlen(area + offset) + 1;
    }
    request->result.name_count = rows;
    free(text);
}

static void offline_insert(sqlite_driver *driver, storage_request *request)
{
    sqlite3_stmt *statement = bind_user(driver, STATEMENT_OFFLINE_INSERT, request);
    sqlite3_bind_int64(statement, 3, request->timestamp_us);
    sqlite3_bind_text(statement, 4, request->stanza, (int)request->stanza_len, SQLITE_STATIC);
    int code = run(driver, STATEMENT_OFFLINE_INSERT);
    if (code != SQLITE_DONE) {
        fail_sqlite(driver, request, code, "offline insert");
    } else if (sqlite3_changes(driver->database) == 0) {
        storage_request_fail(request, STORAGE_NOT_FOUND, "no user %s@%s", request->localpart,
                             request->domain);
    } else {
        request->result.count = (uint64_t)sqlite3_last_insert_rowid(driver->database);
    }
}

static void operation_execute(sqlite_driver *driver, storage_request *request)
{
    switch (request->operation) {
    case STORAGE_OP_USER_CREATE:
        user_create(driver, request);
        break;
    case STORAGE_OP_USER_CREDENTIAL_FETCH:
        user_credential_fetch(driver, request);
        break;
    case STORAGE_OP_USER_CREDENTIALS_SET:
        user_credentials_set(driver, request);
        break;
    case STORAGE_OP_USER_DELETE:
        user_delete(driver, request);
        break;
    case STORAGE_OP_USER_LIST:
        user_list(driver, request);
        break;
    case STORAGE_OP_USER_COUNT:
        if (request->domain != NULL) {
            sqlite3_bind_text(driver->statements[STATEMENT_USER_COUNT_DOMAIN], 1, request->domain,
                              -1, SQLITE_STATIC);
        }
        count_run(driver, request,
                  request->domain != NULL ? STATEMENT_USER_COUNT_DOMAIN : STATEMENT_USER_COUNT_ALL);
        break;
    case STORAGE_OP_OFFLINE_INSERT:
        offline_insert(driver, request);
        break;
    case STORAGE_OP_OFFLINE_COUNT:
        bind_user(driver, STATEMENT_OFFLINE_COUNT, request);
        count_run(driver, request, STATEMENT_OFFLINE_COUNT);
        break;
    }
}

/* ------------------------------------------------------------------ batches */

/* Marks batch[from..to) that had succeeded as failed: their transaction did
 * not commit. */
static void batch_fail_range(storage_request **batch, unsigned from, unsigned to,
                             const char *reason)
{
    for (unsigned i = from; i < to; i++) {
        if (batch[i]->result.status == STORAGE_OK) {
            storage_request_fail(batch[i], STORAGE_UNAVAILABLE, "%s", reason);
            batch[i]->result.count = 0;
            batch[i]->result.name_count = 0;
            batch[i]->result.more = false;
        }
    }
}

/* Runs one operation inside its savepoint. Returns false when the
 * transaction can no longer go on: SQLite ended it (an I/O error, a full
 * disk) or a savepoint statement failed. */
static bool operation_in_savepoint(sqlite_driver *driver, storage_request *request)
{
    int code = run(driver, STATEMENT_SAVEPOINT);
    if (code != SQLITE_DONE) {
        fail_sqlite(driver, request, code, "savepoint");
        return false;
    }
    operation_execute(driver, request);
    if (sqlite3_get_autocommit(driver->database) != 0) {
        if (request->result.status == STORAGE_OK) {
            storage_request_fail(request, STORAGE_UNAVAILABLE, "the transaction ended");
        }
        return false;
    }
    if (request->result.status != STORAGE_OK) {
        code = run(driver, STATEMENT_ROLLBACK_TO);
    }
    if (code == SQLITE_DONE) {
        code = run(driver, STATEMENT_RELEASE);
    }
    if (code != SQLITE_DONE) {
        fail_sqlite(driver, request, code, "savepoint release");
        return false;
    }
    return true;
}

/* Runs batch[0..count) in one transaction, each operation in a savepoint.
 * When the transaction breaks, the operations run so far in it lose their
 * effects and fail; the rest start a new transaction. */
static void batch_run(sqlite_driver *driver, storage_request **batch, unsigned count)
{
    unsigned first = 0;
    while (first < count) {
        atomic_fetch_add(&driver->batches, 1);
        int code = run(driver, STATEMENT_BEGIN);
        if (code != SQLITE_DONE) {
            for (unsigned i = first; i < count; i++) {
                fail_sqlite(driver, batch[i], code, "begin");
            }
            return;
        }
        unsigned next = first;
        bool intact = true;
        while (next < count && intact) {
            intact = operation_in_savepoint(driver, batch[next++]);
        }
        char reason[LIMIT_STORAGE_REASON_BYTES] = "the transaction was rolled back by an error";
        if (intact && (code = run(driver, STATEMENT_COMMIT)) != SQLITE_DONE) {
            snprintf(reason, sizeof reason, "commit: %s", sqlite3_errmsg(driver->database));
            intact = false;
        }
        if (!intact) {
            /* Fails harmlessly when SQLite has already ended the transaction. */
            (void)run(driver, STATEMENT_ROLLBACK);
            batch_fail_range(batch, first, next, reason);
        }
        first = next;
    }
}

static void *storage_thread(void *argument)
{
    sqlite_driver *driver = argument;
    storage_thread_block_signals();
    pthread_mutex_lock(&driver->mutex);
    for (;;) {
        while (driver->queue.count == 0 && !driver->closing) {
            pthread_cond_wait(&driver->wake, &driver->mutex);
        }
        unsigned taken = storage_queue_take(&driver->queue, driver->batch, driver->group_commit);
        if (taken == 0) {
            break;
        }
        pthread_mutex_unlock(&driver->mutex);

        batch_run(driver, driver->batch, taken);
        atomic_fetch_add(&driver->operations, taken);
        for (unsigned i = 0; i < taken; i++) {
            if (driver->batch[i]->result.status != STORAGE_OK) {
                atomic_fetch_add(&driver->failed, 1);
            }
            storage_request_complete(driver->batch[i]);
        }
        pthread_mutex_lock(&driver->mutex);
    }
    pthread_mutex_unlock(&driver->mutex);
    return NULL;
}

/* ------------------------------------------------------------------ driver */

static storage_status sqlite_create(storage *owner, const storage_option *options,
                                    size_t option_count, void **state, char *error,
                                    size_t error_size)
{
    const char *path = NULL;
    bool group_commit = true;
    unsigned long capacity = LIMIT_STORAGE_QUEUE_REQUESTS;
    for (size_t i = 0; i < option_count; i++) {
        const char *key = options[i].key, *value = options[i].value;
        bool known = false;
        if (strcmp(key, "path") == 0) {
            path = value;
            known = value[0] != '\0';
        } else if (strcmp(key, "group_commit") == 0) {
            group_commit = strcmp(value, "on") == 0;
            known = group_commit || strcmp(value, "off") == 0;
        } else if (strcmp(key, "queue_requests") == 0) {
            char *end = NULL;
            capacity = strtoul(value, &end, 10);
            known = end != value && *end == '\0' && value[0] != '-' && capacity >= 1 &&
                    capacity <= LIMIT_STORAGE_QUEUE_REQUESTS;
        }
        if (!known) {
            snprintf(error, error_size, "sqlite: bad option %s=%s", key, value);
            return STORAGE_INVALID;
        }
    }
    if (path == NULL) {
        snprintf(error, error_size, "sqlite: the path option is required");
        return STORAGE_INVALID;
    }
    sqlite_driver *driver = calloc(1, sizeof *driver);
    if (driver == NULL || (driver->path = strdup(path)) == NULL ||
        !storage_queue_init(&driver->queue, (unsigned)capacity) ||
        (driver->batch = calloc(capacity, sizeof *driver->batch)) == NULL) {
        if (driver != NULL) {
            storage_queue_fini(&driver->queue);
            free(driver->path);
        }
        free(driver);
        snprintf(error, error_size, "sqlite: out of memory");
        return STORAGE_NOMEM;
    }
    driver->owner = owner;
    driver->group_commit = group_commit;
    driver->capacity = (unsigned)capacity;
    pthread_mutex_init(&driver->mutex, NULL);
    pthread_cond_init(&driver->wake, NULL);
    *state = driver;
    return STORAGE_OK;
}

/* The highest applied version (0 when the table is missing or empty). */
static unsigned schema_version_read(sqlite3 *database)
{
    sqlite3_stmt *statement = NULL;
    unsigned version = 0;
    if (sqlite3_prepare_v2(database, "SELECT COALESCE(MAX(version), 0) FROM schema_version", -1,
                           &statement, NULL) == SQLITE_OK &&
        sqlite3_step(statement) == SQLITE_ROW) {
        version = (unsigned)sqlite3_column_int64(statement, 0);
    }
    sqlite3_finalize(statement);
    return version;
}

static storage_status schema_refuse_newer(const sqlite_driver *driver, unsigned version,
                                          char *error, size_t error_size)
{
    snprintf(error, error_size,
             "sqlite %s: the database schema is version %u but this starling knows "
             "versions up to %u; run a newer starling (or restore a backup)",
             driver->path, version, (unsigned)storage_migration_count);
    return STORAGE_SCHEMA;
}

/* Applies migrations version+1.. inside the caller's transaction. */
static storage_status migrations_apply(sqlite_driver *driver, unsigned version, char *error,
                                       size_t error_size)
{
    for (size_t i = version; i < storage_migration_count; i++) {
        const storage_migration *migration = &storage_migrations[i];
        char *sql = storage_schema_render(migration, STORAGE_DIALECT_SQLITE);
        char *insert =
            sqlite3_mprintf("INSERT INTO schema_version (version, applied_at_us) VALUES (%u, %lld)",
                            migration->version, (long long)now_us());
        char *message = NULL;
        int code = SQLITE_NOMEM;
        if (sql != NULL && insert != NULL &&
            (code = sqlite3_exec(driver->database, sql, NULL, NULL, &message)) == SQLITE_OK) {
            code = sqlite3_exec(driver->database, insert, NULL, NULL, &message);
        }
        free(sql);
        sqlite3_free(insert);
        if (code != SQLITE_OK) {
            snprintf(error, error_size, "sqlite %s: migration %s failed: %s", driver->path,
                     migration->name, message != NULL ? message : sqlite3_errstr(code));
            sqlite3_free(message);
            return STORAGE_SCHEMA;
        }
    }
    return STORAGE_OK;
}

/* Refuses a schema newer than this binary; applies every migration the
 * database lacks in one write transaction, re-reading the version under
 * the lock (another process may have migrated meanwhile). A database
 * already up to date is opened without taking the write lock. */
static storage_status migrate(sqlite_driver *driver, char *error, size_t error_size)
{
    sqlite3 *database = driver->database;
    unsigned version = schema_version_read(database);
    if (version > storage_migration_count) {
        return schema_refuse_newer(driver, version, error, error_size);
    }
    if (version == storage_migration_count) {
        driver->schema_version = version;
        return STORAGE_OK;
    }
    char *message = NULL;
    if (sqlite3_exec(database,
                     "BEGIN IMMEDIATE; CREATE TABLE IF NOT EXISTS schema_version ("
                     "version INTEGER PRIMARY KEY, applied_at_us BIGINT NOT NULL)",
                     NULL, NULL, &message) != SQLITE_OK) {
        snprintf(error, error_size, "sqlite %s: cannot lock the database to migrate it: %s",
                 driver->path, message != NULL ? message : "?");
        sqlite3_free(message);
        sqlite3_exec(database, "ROLLBACK", NULL, NULL, NULL);
        return STORAGE_UNAVAILABLE;
    }
    version = schema_version_read(database);
    storage_status status = version > storage_migration_count
                                ? schema_refuse_newer(driver, version, error, error_size)
                                : migrations_apply(driver, version, error, error_size);
    if (status == STORAGE_OK &&
        sqlite3_exec(database, "COMMIT", NULL, NULL, &message) != SQLITE_OK) {
        snprintf(error, error_size, "sqlite %s: cannot commit the migrations: %s", driver->path,
                 message != NULL ? message : "?");
        sqlite3_free(message);
        status = STORAGE_UNAVAILABLE;
    }
    if (status != STORAGE_OK) {
        sqlite3_exec(database, "ROLLBACK", NULL, NULL, NULL);
        return status;
    }
    driver->schema_version = (unsigned)storage_migration_count;
    return STORAGE_OK;
}

/* Opens the file and sets the connection up (WAL, synchronous, keys). */
static storage_status connect_database(sqlite_driver *driver, char *error, size_t error_size)
{
    int code =
        sqlite3_open_v2(driver->path, &driver->database,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (code != SQLITE_OK) {
        snprintf(error, error_size, "sqlite %s: cannot open: %s", driver->path,
                 driver->database != NULL ? sqlite3_errmsg(driver->database)
                                          : sqlite3_errstr(code));
        return STORAGE_UNAVAILABLE;
    }
    sqlite3_busy_timeout(driver->database, (int)LIMIT_STORAGE_SQLITE_BUSY_TIMEOUT_MS);
    sqlite3_stmt *statement = NULL;
    bool wal = sqlite3_prepare_v2(driver->database, "PRAGMA journal_mode=WAL", -1, &statement,
                                  NULL) == SQLITE_OK &&
               sqlite3_step(statement) == SQLITE_ROW &&
               strcmp((const char *)sqlite3_column_text(statement, 0), "wal") == 0;
    sqlite3_finalize(statement);
    if (!wal || sqlite3_exec(driver->database, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON",
                             NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(error, error_size, "sqlite %s: cannot enable WAL and foreign keys: %s",
                 driver->path, sqlite3_errmsg(driver->database));
        return STORAGE_UNAVAILABLE;
    }
    return STORAGE_OK;
}

static storage_status sqlite_open(void *state, char *error, size_t error_size)
{
    sqlite_driver *driver = state;
    storage_status status = connect_database(driver, error, error_size);
    if (status == STORAGE_OK) {
        status = migrate(driver, error, error_size);
    }
    for (unsigned i = 0; i < STATEMENT_COUNT && status == STORAGE_OK; i++) {
        if (sqlite3_prepare_v3(driver->database, statement_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &driver->statements[i], NULL) != SQLITE_OK) {
            snprintf(error, error_size, "sqlite %s: cannot prepare \"%s\": %s", driver->path,
                     statement_sql[i], sqlite3_errmsg(driver->database));
            status = STORAGE_SCHEMA;
        }
    }
    if (status == STORAGE_OK &&
        pthread_create(&driver->thread, NULL, storage_thread, driver) != 0) {
        snprintf(error, error_size, "sqlite: cannot start the storage thread");
        status = STORAGE_ERROR;
    }
    driver->thread_started = status == STORAGE_OK;
    return status;
}

static storage_status sqlite_submit(void *state, storage_request *request)
{
    sqlite_driver *driver = state;
    storage_status status = STORAGE_OK;
    pthread_mutex_lock(&driver->mutex);
    if (driver->closing || !driver->thread_started) {
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

static void sqlite_stats(void *state, storage_stats *stats)
{
    sqlite_driver *driver = state;
    stats->operations = atomic_load(&driver->operations);
    stats->failed = atomic_load(&driver->failed);
    stats->batches = atomic_load(&driver->batches);
    stats->busy_refusals = atomic_load(&driver->busy_refusals);
    pthread_mutex_lock(&driver->mutex);
    stats->queued = driver->queue.count;
    pthread_mutex_unlock(&driver->mutex);
}

static unsigned sqlite_schema_version(void *state)
{
    return ((sqlite_driver *)state)->schema_version;
}

static void sqlite_close(void *state)
{
    sqlite_driver *driver = state;
    pthread_mutex_lock(&driver->mutex);
    driver->closing = true;
    pthread_cond_signal(&driver->wake);
    pthread_mutex_unlock(&driver->mutex);
    if (driver->thread_started) {
        pthread_join(driver->thread, NULL);
    }
    for (unsigned i = 0; i < STATEMENT_COUNT; i++) {
        sqlite3_finalize(driver->statements[i]);
    }
    sqlite3_close(driver->database);
    pthread_cond_destroy(&driver->wake);
    pthread_mutex_destroy(&driver->mutex);
    free(driver->batch);
    storage_queue_fini(&driver->queue);
    free(driver->path);
    free(driver);
}

const storage_driver storage_driver_sqlite = {
    .name = "sqlite",
    .create = sqlite_create,
    .open = sqlite_open,
    .submit = sqlite_submit,
    .stats = sqlite_stats,
    .schema_version = sqlite_schema_version,
    .close = sqlite_close,
};
