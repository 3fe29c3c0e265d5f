/*
 * storage.c: the storage front end, shared by every driver.
 *
 * It validates and copies each operation's arguments into one allocation
 * (the request), decides where the completion goes (the submitting reactor,
 * or the waiter the submitting thread attached), hands the request to the
 * driver, and delivers finished requests. A driver thread posts a
 * completion to a reactor through the storage's runtime producer; when that
 * reactor's mailbox is full it pauses and retries (a completion is never
 * dropped for back-pressure, only when its reactor has exited).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage/internal.h"

struct storage {
    const storage_driver *driver;
    void *state;
    rx_runtime *runtime;
    rx_producer *producer;
    atomic_bool accepting;
    atomic_uint_fast64_t undeliverable;
};

struct storage_waiter {
    pthread_mutex_t mutex;
    pthread_cond_t arrived;
    storage_request *head;
    storage_request *tail;
    unsigned pending; /* submitted, callback not run; the waiter's thread only */
};

static _Thread_local storage_waiter *attached_waiter;

static const storage_driver *const drivers[] = {&storage_driver_sqlite, &storage_driver_postgresql};

const char *storage_status_name(storage_status status)
{
    switch (status) {
    case STORAGE_OK:
        return "ok";
    case STORAGE_NOT_FOUND:
        return "not-found";
    case STORAGE_CONFLICT:
        return "conflict";
    case STORAGE_BUSY:
        return "busy";
    case STORAGE_INVALID:
        return "invalid";
    case STORAGE_CLOSED:
        return "closed";
    case STORAGE_UNAVAILABLE:
        return "unavailable";
    case STORAGE_SCHEMA:
        return "schema";
    case STORAGE_NOMEM:
        return "no-memory";
    case STORAGE_ERROR:
        return "error";
    }
    return "unknown";
}

/* ------------------------------------------------------------- lifecycle */

storage *storage_create(const char *driver_name, const storage_option *options, size_t option_count,
                        rx_runtime *runtime, char *error, size_t error_size)
{
    const storage_driver *driver = NULL;
    for (size_t i = 0; i < sizeof drivers / sizeof drivers[0]; i++) {
        if (driver_name != NULL && strcmp(drivers[i]->name, driver_name) == 0) {
            driver = drivers[i];
        }
    }
    if (driver == NULL) {
        snprintf(error, error_size, "unknown storage driver '%s' (known: sqlite)",
                 driver_name != NULL ? driver_name : "");
        return NULL;
    }
    storage *handle = calloc(1, sizeof *handle);
    if (handle == NULL) {
        snprintf(error, error_size, "out of memory");
        return NULL;
    }
    handle->driver = driver;
    handle->runtime = runtime;
    if (runtime != NULL) {
        handle->producer = rx_producer_create(runtime);
        if (handle->producer == NULL) {
            snprintf(error, error_size, "no free runtime producer for the storage thread");
            free(handle);
            return NULL;
        }
    }
    if (driver->create(handle, options, option_count, &handle->state, error, error_size) !=
        STORAGE_OK) {
        free(handle);
        return NULL;
    }
    return handle;
}

storage_status storage_open(storage *handle, char *error, size_t error_size)
{
    storage_status status = handle->driver->open(handle->state, error, error_size);
    if (status == STORAGE_OK) {
        atomic_store(&handle->accepting, true);
    }
    return status;
}

void storage_close(storage *handle)
{
    if (handle == NULL) {
        return;
    }
    atomic_store(&handle->accepting, false);
    handle->driver->close(handle->state);
    free(handle);
}

unsigned storage_schema_version(const storage *handle)
{
    return handle->driver->schema_version(handle->state);
}

unsigned storage_schema_version_known(void)
{
    return (unsigned)storage_migration_count;
}

void storage_get_stats(const storage *handle, storage_stats *stats)
{
    memset(stats, 0, sizeof *stats);
    handle->driver->stats(handle->state, stats);
    stats->undeliverable = atomic_load(&handle->undeliverable);
}

/* --------------------------------------------------------------- waiters */

storage_waiter *storage_waiter_create(void)
{
    storage_waiter *waiter = calloc(1, sizeof *waiter);
    if (waiter == NULL) {
        return NULL;
    }
    pthread_mutex_init(&waiter->mutex, NULL);
    pthread_cond_init(&waiter->arrived, NULL);
    return waiter;
}

void storage_waiter_destroy(storage_waiter *waiter)
{
    if (waiter == NULL) {
        return;
    }
    if (attached_waiter == waiter) {
        attached_waiter = NULL;
    }
    pthread_cond_destroy(&waiter->arrived);
    pthread_mutex_destroy(&waiter->mutex);
    free(waiter);
}

void storage_waiter_attach(storage_waiter *waiter)
{
    attached_waiter = waiter;
}

static void request_free(storage_request *request)
{
    free(request->names);
    free(request);
}

static void request_run_callback(storage_request *request)
{
    request->result.reason = request->reason;
    request->result.names = (const char *const *)request->names;
    if (request->result.status == STORAGE_OK &&
        request->operation == STORAGE_OP_USER_CREDENTIAL_FETCH) {
        request->result.credential = &request->credential_out;
    }
    request->callback(request->context, &request->result);
    request_free(request);
}

unsigned storage_waiter_run(storage_waiter *waiter, unsigned timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000u;
    deadline.tv_nsec += (long)(timeout_ms % 1000u) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&waiter->mutex);
    while (waiter->head == NULL) {
        if (pthread_cond_timedwait(&waiter->arrived, &waiter->mutex, &deadline) == ETIMEDOUT) {
            break;
        }
    }
    storage_request *ready = waiter->head;
    waiter->head = NULL;
    waiter->tail = NULL;
    pthread_mutex_unlock(&waiter->mutex);
    unsigned ran = 0;
    while (ready != NULL) {
        storage_request *next = ready->next;
        waiter->pending--;
        request_run_callback(ready);
        ready = next;
        ran++;
    }
    return ran;
}

/* ------------------------------------------------------------ completion */

void storage_request_fail(storage_request *request, storage_status status, const char *format, ...)
{
    request->result.status = status;
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(request->reason, sizeof request->reason, format, arguments);
    va_end(arguments);
}

char *storage_request_names_alloc(storage_request *request, size_t count, size_t bytes)
{
    free(request->names);
    request->names = malloc(count * sizeof(char *) + bytes + 1);
    request->result.name_count = 0;
    if (request->names == NULL) {
        return NULL;
    }
    return (char *)(request->names + count);
}

void storage_request_complete_here(storage_request *request)
{
    request_run_callback(request);
}

/* Runs on the submitting reactor. */
static void deliver_on_reactor(const rx_message *message)
{
    request_run_callback(message->pointer);
}

void storage_request_complete(storage_request *request)
{
    if (request->waiter != NULL) {
        storage_waiter *waiter = request->waiter;
        request->next = NULL;
        pthread_mutex_lock(&waiter->mutex);
        if (waiter->tail != NULL) {
            waiter->tail->next = request;
        } else {
            waiter->head = request;
        }
        waiter->tail = request;
        pthread_cond_signal(&waiter->arrived);
        pthread_mutex_unlock(&waiter->mutex);
        return;
    }
    storage *owner = request->owner;
    rx_message message = {.function = deliver_on_reactor, .pointer = request};
    for (;;) {
        rx_status status = rx_producer_post(owner->producer, request->reactor_index, &message);
        if (status == RX_OK) {
            return;
        }
        if (status != RX_ERR_FULL) {
            break;
        }
        struct timespec pause = {0, (long)LIMIT_STORAGE_COMPLETION_RETRY_MS * 1000000L};
        nanosleep(&pause, NULL);
    }
    rx_log(RX_LOG_WARNING, "storage: reactor %u has exited; a completion is dropped",
           request->reactor_index);
    atomic_fetch_add(&owner->undeliverable, 1);
    request_free(request);
}

/* ------------------------------------------------------------ submission */

static bool jid_part_valid(const char *part)
{
    if (part == NULL) {
        return false;
    }
    size_t length = strnlen(part, LIMIT_STORAGE_JID_PART_BYTES_MAX + 1);
    return length > 0 && length <= LIMIT_STORAGE_JID_PART_BYTES_MAX;
}

static bool credentials_valid(const storage_credential *credentials, size_t count)
{
    static const size_t digest_bytes[] = {20, 32, 64};
    if (credentials == NULL || count == 0 || count > STORAGE_CREDENTIALS_MAX) {
        return false;
    }
    for (size_t i = 0; i < count; i++) {
        const storage_credential *credential = &credentials[i];
        if ((unsigned)credential->hash > SCRAM_HASH_SHA512 ||
            credential->key_len != digest_bytes[credential->hash] || credential->salt_len == 0 ||
            credential->salt_len > LIMIT_SCRAM_SALT_BYTES_MAX || credential->iterations == 0) {
            return false;
        }
        for (size_t j = 0; j < i; j++) {
            if (credentials[j].hash == credential->hash) {
                return false;
            }
        }
    }
    return true;
}

/* Copies text (may be NULL) into the tail at *cursor. */
static const char *tail_copy(storage_request *request, size_t *cursor, const char *text,
                             size_t length)
{
    if (text == NULL) {
        return NULL;
    }
    char *copy = request->tail + *cursor;
    memcpy(copy, text, length);
    copy[length] = '\0';
    *cursor += length + 1;
    return copy;
}

/* Allocates a request with room for the strings (each may be NULL). */
static storage_request *request_new(storage_operation operation, const char *domain,
                                    const char *localpart, const char *extra, size_t extra_len,
                                    storage_callback *callback, void *context)
{
    size_t domain_len = domain != NULL ? strlen(domain) : 0;
    size_t localpart_len = localpart != NULL ? strlen(localpart) : 0;
    storage_request *request =
        calloc(1, sizeof *request + domain_len + localpart_len + extra_len + 3);
    if (request == NULL) {
        return NULL;
    }
    size_t cursor = 0;
    request->operation = operation;
    request->callback = callback;
    request->context = context;
    request->domain = tail_copy(request, &cursor, domain, domain_len);
    request->localpart = tail_copy(request, &cursor, localpart, localpart_len);
    request->stanza = tail_copy(request, &cursor, extra, extra_len);
    request->stanza_len = extra_len;
    request->result.reason = request->reason;
    return request;
}

/* Picks the completion target and hands the request to the driver; frees
 * it when refused. */
static storage_status request_submit(storage *handle, storage_request *request)
{
    rx_reactor *reactor = rx_reactor_current();
    if (reactor != NULL && rx_reactor_runtime(reactor) == handle->runtime &&
        handle->producer != NULL) {
        request->reactor_index = rx_reactor_index(reactor);
    } else if (reactor == NULL && attached_waiter != NULL) {
        if (attached_waiter->pending >= LIMIT_STORAGE_WAITER_PENDING) {
            request_free(request);
            return STORAGE_BUSY;
        }
        request->waiter = attached_waiter;
    } else {
        request_free(request);
        return STORAGE_INVALID;
    }
    if (!atomic_load(&handle->accepting)) {
        request_free(request);
        return STORAGE_CLOSED;
    }
    request->owner = handle;
    storage_waiter *waiter = request->waiter;
    storage_status status = handle->driver->submit(handle->state, request);
    if (status != STORAGE_OK) {
        request_free(request);
    } else if (waiter != NULL) {
        waiter->pending++;
    }
    return status;
}

storage_status storage_user_create(storage *handle, const char *domain, const char *localpart,
                                   const storage_credential *credentials, size_t credential_count,
                                   storage_callback *callback, void *context)
{
    if (callback == NULL || !jid_part_valid(domain) || !jid_part_valid(localpart) ||
        !credentials_valid(credentials, credential_count)) {
        return STORAGE_INVALID;
    }
    storage_request *request =
        request_new(STORAGE_OP_USER_CREATE, domain, localpart, NULL, 0, callback, context);
    if (request == NULL) {
        return STORAGE_NOMEM;
    }
    memcpy(request->credentials, credentials, credential_count * sizeof *credentials);
    request->credential_count = credential_count;
    return request_submit(handle, request);
}

storage_status storage_user_credential_fetch(storage *handle, const char *domain,
                                             const char *localpart, scram_hash hash,
                                             storage_callback *callback, void *context)
{
    if (callback == NULL || !jid_part_valid(domain) || !jid_part_valid(localpart) ||
        (unsigned)hash > SCRAM_HASH_SHA512) {
        return STORAGE_INVALID;
    }
    storage_request *request = request_new(STORAGE_OP_USER_CREDENTIAL_FETCH, domain, localpart,
                                           NULL, 0, callback, context);
    if (request == NULL) {
        return STORAGE_NOMEM;
    }
    request->hash = hash;
    return request_submit(handle, request);
}

storage_status storage_user_credentials_set(storage *handle, const char *domain,
                                            const char *localpart,
                                            const storage_credential *credentials,
                                            size_t credential_count, storage_callback *callback,
                                            void *context)
{
    if (callback == NULL || !jid_part_valid(domain) || !jid_part_valid(localpart) ||
        !credentials_valid(credentials, credential_count)) {
        return STORAGE_INVALID;
    }
    storage_request *request =
        request_new(STORAGE_OP_USER_CREDENTIALS_SET, domain, localpart, NULL, 0, callback, context);
    if (request == NULL) {
        return STORAGE_NOMEM;
    }
    memcpy(request->credentials, credentials, credential_count * sizeof *credentials);
    request->credential_count = credential_count;
    return request_submit(handle, request);
}

storage_status storage_user_delete(storage *handle, const char *domain, const char *localpart,
                                   storage_callback *callback, void *context)
{
    if (callback == NULL || !jid_part_valid(domain) || !jid_part_valid(localpart)) {
        return STORAGE_INVALID;
    }
    storage_request *request =
        request_new(STORAGE_OP_USER_DELETE, domain, localpart, NULL, 0, callback, context);
    return request == NULL ? STORAGE_NOMEM : request_submit(handle, request);
}

storage_status storage_user_list(storage *handle, const char *domain, const char *after,
                                 unsigned limit, storage_callback *callback, void *context)
{
    if (after == NULL) {
        after = "";
    }
    size_t after_len = strnlen(after, LIMIT_STORAGE_JID_PART_BYTES_MAX + 1);
    if (callback == NULL || !jid_part_valid(domain) ||
        after_len > LIMIT_STORAGE_JID_PART_BYTES_MAX || limit == 0 ||
        limit > LIMIT_STORAGE_PAGE_ROWS_MAX) {
        return STORAGE_INVALID;
    }
    storage_request *request =
        request_new(STORAGE_OP_USER_LIST, domain, NULL, after, after_len, callback, context);
    if (request == NULL) {
        return STORAGE_NOMEM;
    }
    request->after = request->stanza;
    request->stanza = NULL;
    request->stanza_len = 0;
    request->limit = limit;
    return request_submit(handle, request);
}

storage_status storage_user_count(storage *handle, const char *domain, storage_callback *callback,
                                  void *context)
{
    if (callback == NULL || (domain != NULL && !jid_part_valid(domain))) {
        return STORAGE_INVALID;
    }
    storage_request *request =
        request_new(STORAGE_OP_USER_COUNT, domain, NULL, NULL, 0, callback, context);
    return request == NULL ? STORAGE_NOMEM : request_submit(handle, request);
}

storage_status storage_offline_insert(storage *handle, const char *domain, const char *localpart,
                                      int64_t timestamp_us, const char *stanza, size_t stanza_len,
                                      storage_callback *callback, void *context)
{
    if (callback == NULL || !jid_part_valid(domain) || !jid_part_valid(localpart) ||
        stanza == NULL || stanza_len == 0 || stanza_len > LIMIT_STANZA_BYTES_MAX) {
        return STORAGE_INVALID;
    }
    storage_request *request = request_new(STORAGE_OP_OFFLINE_INSERT, domain, localpart, stanza,
                                           stanza_len, callback, context);
    if (request == NULL) {
        return STORAGE_NOMEM;
    }
    request->timestamp_us = timestamp_us;
    return request_submit(handle, request);
}

storage_status storage_offline_count(storage *handle, const char *domain, const char *localpart,
                                     storage_callback *callback, void *context)
{
    if (callback == NULL || !jid_part_valid(domain) || !jid_part_valid(localpart)) {
        return STORAGE_INVALID;
    }
    storage_request *request =
        request_new(STORAGE_OP_OFFLINE_COUNT, domain, localpart, NULL, 0, callback, context);
    return request == NULL ? STORAGE_NOMEM : request_submit(handle, request);
}

/* ------------------------------------------------------------- migrations */

/* The schema is written once for both engines. Where they differ, a
 * migration writes a placeholder and each dialect substitutes its own text:
 *   @ID@    an auto-assigned, never-reused 64-bit key
 *   @BLOB@  raw bytes */
static const char *placeholder_value(const char *name, size_t name_len, storage_dialect dialect)
{
    bool sqlite = dialect == STORAGE_DIALECT_SQLITE;
    if (name_len == 2 && memcmp(name, "ID", 2) == 0) {
        return sqlite ? "INTEGER PRIMARY KEY AUTOINCREMENT"
                      : "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY";
    }
    if (name_len == 4 && memcmp(name, "BLOB", 4) == 0) {
        return sqlite ? "BLOB" : "BYTEA";
    }
    return NULL;
}

char *storage_schema_render(const storage_migration *migration, storage_dialect dialect)
{
    const char *sql = migration->sql;
    size_t capacity = strlen(sql) * 2 + 1;
    char *out = malloc(capacity);
    if (out == NULL) {
        return NULL;
    }
    size_t used = 0;
    while (*sql != '\0') {
        const char *close = sql[0] == '@' ? strchr(sql + 1, '@') : NULL;
        const char *value =
            close != NULL ? placeholder_value(sql + 1, (size_t)(close - sql - 1), dialect) : NULL;
        size_t length = value != NULL ? strlen(value) : 1;
        if (used + length + 1 > capacity) {
            capacity = (capacity + length) * 2;
            char *grown = realloc(out, capacity);
            if (grown == NULL) {
                free(out);
                return NULL;
            }
            out = grown;
        }
        memcpy(out + used, value != NULL ? value : sql, length);
        used += length;
        sql = value != NULL ? close + 1 : sql + 1;
    }
    out[used] = '\0';
    return out;
}

void storage_thread_block_signals(void)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
}

bool storage_queue_init(storage_queue *queue, unsigned capacity)
{
    *queue = (storage_queue){.capacity = capacity};
    queue->ring = calloc(capacity, sizeof *queue->ring);
    return queue->ring != NULL;
}

void storage_queue_fini(storage_queue *queue)
{
    free(queue->ring);
    queue->ring = NULL;
}

bool storage_queue_push(storage_queue *queue, storage_request *request)
{
    if (queue->count == queue->capacity)
        return false;
    queue->ring[(queue->head + queue->count) % queue->capacity] = request;
    queue->count++;
    return true;
}

unsigned storage_queue_take(storage_queue *queue, storage_request **out, bool group)
{
    unsigned taken = group ? queue->count : (queue->count > 0 ? 1 : 0);
    for (unsigned i = 0; i < taken; i++) {
        out[i] = queue->ring[queue->head];
        queue->head = (queue->head + 1) % queue->capacity;
    }
    queue->count -= taken;
    return taken;
}
