/*
 * storage_suite.c: the shared storage suite (see storage_suite.h).
 *
 * Tests off the reactors submit from the main thread through a waiter;
 * tests of delivery, grouping and shutdown run a real runtime with two
 * reactors and submit from inside reactor callbacks, checking that each
 * completion runs on the reactor that submitted.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/harness.h"
#include "tests/storage/storage_suite.h"

#define DOMAIN      "example.org"
#define WAIT_MS     20000u
#define OPTIONS_MAX 8u

static const storage_fixture *fixture;
static storage_waiter *waiter;

/* ------------------------------------------------------------ waiter side */

#define OUTCOME_NAMES_MAX 16u

typedef struct outcome {
    bool done;
    storage_status status;
    uint64_t count;
    bool has_credential;
    storage_credential credential;
    size_t name_count;
    char names[OUTCOME_NAMES_MAX][64];
    bool more;
    char reason[LIMIT_STORAGE_REASON_BYTES];
} outcome;

static void outcome_record(void *context, const storage_result *result)
{
    outcome *out = context;
    out->done = true;
    out->status = result->status;
    out->count = result->count;
    out->has_credential = result->credential != NULL;
    if (result->credential != NULL) {
        out->credential = *result->credential;
    }
    out->name_count = result->name_count;
    for (size_t i = 0; i < result->name_count && i < OUTCOME_NAMES_MAX; i++) {
        snprintf(out->names[i], sizeof out->names[i], "%s", result->names[i]);
    }
    out->more = result->more;
    snprintf(out->reason, sizeof out->reason, "%s", result->reason);
}

/* Runs the waiter until out completes; returns its status, or -1 when it
 * never did. */
static int await(outcome *out)
{
    unsigned long long deadline = harness_now_ms() + WAIT_MS;
    while (!out->done && harness_now_ms() < deadline) {
        storage_waiter_run(waiter, 100);
    }
    return out->done ? (int)out->status : -1;
}

static storage *open_with(const storage_option *extra, rx_runtime *runtime, char *error,
                          size_t error_size, storage_status *status)
{
    storage_option options[OPTIONS_MAX];
    size_t count = fixture->options(options, OPTIONS_MAX, extra);
    storage *handle = storage_create(fixture->driver, options, count, runtime, error, error_size);
    *status = STORAGE_INVALID;
    if (handle == NULL) {
        return NULL;
    }
    *status = storage_open(handle, error, error_size);
    if (*status != STORAGE_OK) {
        storage_close(handle);
        return NULL;
    }
    return handle;
}

static storage *open_storage(const storage_option *extra, rx_runtime *runtime)
{
    char error[512];
    storage_status status;
    storage *handle = open_with(extra, runtime, error, sizeof error, &status);
    if (handle == NULL) {
        fprintf(stderr, "storage open failed: %s\n", error);
    }
    return handle;
}

static storage_credential credential_make(scram_hash hash, uint8_t seed)
{
    static const size_t digest_bytes[] = {20, 32, 64};
    storage_credential credential = {.hash = hash, .iterations = 4096u + seed, .salt_len = 16};
    credential.key_len = digest_bytes[hash];
    for (size_t i = 0; i < sizeof credential.salt; i++) {
        credential.salt[i] = (uint8_t)(seed + i);
    }
    for (size_t i = 0; i < SCRAM_HASH_BYTES_MAX; i++) {
        credential.stored_key[i] = (uint8_t)(seed * 3 + i);
        credential.server_key[i] = (uint8_t)(seed * 7 + i);
    }
    return credential;
}

static bool credential_equal(const storage_credential *a, const storage_credential *b)
{
    return a->hash == b->hash && a->iterations == b->iterations && a->salt_len == b->salt_len &&
           a->key_len == b->key_len && memcmp(a->salt, b->salt, a->salt_len) == 0 &&
           memcmp(a->stored_key, b->stored_key, a->key_len) == 0 &&
           memcmp(a->server_key, b->server_key, a->key_len) == 0;
}

/* Creates localpart@DOMAIN with one SHA-256 credential; returns the status. */
static int user_create_wait(storage *handle, const char *domain, const char *localpart)
{
    storage_credential credential = credential_make(SCRAM_HASH_SHA256, 1);
    outcome out = {0};
    if (storage_user_create(handle, domain, localpart, &credential, 1, outcome_record, &out) !=
        STORAGE_OK) {
        return -2;
    }
    return await(&out);
}

static int64_t count_wait(storage *handle, const char *domain, const char *localpart)
{
    outcome out = {0};
    storage_status submitted =
        localpart != NULL ? storage_offline_count(handle, domain, localpart, outcome_record, &out)
                          : storage_user_count(handle, domain, outcome_record, &out);
    if (submitted != STORAGE_OK || await(&out) != STORAGE_OK) {
        return -1;
    }
    return (int64_t)out.count;
}

/* ------------------------------------------------------------------- tests */

static void test_migrations_from_empty(void)
{
    CHECK(fixture->database_fresh());
    storage *handle = open_storage(NULL, NULL);
    CHECK(handle != NULL);
    if (handle == NULL) {
        return;
    }
    CHECK(storage_schema_version_known() >= 1);
    CHECK(storage_schema_version(handle) == storage_schema_version_known());
    CHECK(fixture->query_number("SELECT MAX(version) FROM schema_version") ==
          (int64_t)storage_schema_version_known());
    CHECK(fixture->query_number("SELECT count(*) FROM users") == 0);
    CHECK(fixture->query_number("SELECT count(*) FROM muc_affiliations") == 0);
    storage_close(handle);
}

static void test_reopen_idempotent(void)
{
    CHECK(fixture->database_fresh());
    storage *handle = open_storage(NULL, NULL);
    CHECK(handle != NULL);
    if (handle == NULL) {
        return;
    }
    CHECK(user_create_wait(handle, DOMAIN, "alice") == STORAGE_OK);
    storage_close(handle);
    for (int round = 0; round < 2; round++) {
        handle = open_storage(NULL, NULL);
        CHECK(handle != NULL);
        if (handle == NULL) {
            return;
        }
        CHECK(storage_schema_version(handle) == storage_schema_version_known());
        CHECK(count_wait(handle, DOMAIN, NULL) == 1);
        storage_close(handle);
    }
    CHECK(fixture->query_number("SELECT count(*) FROM schema_version") ==
          (int64_t)storage_schema_version_known());
}

static void test_newer_schema_refused(void)
{
    CHECK(fixture->database_fresh());
    storage *handle = open_storage(NULL, NULL);
    CHECK(handle != NULL);
    storage_close(handle);
    unsigned known = storage_schema_version_known();
    char sql[128];
    snprintf(sql, sizeof sql, "INSERT INTO schema_version (version, applied_at_us) VALUES (%u, 0)",
             known + 7);
    CHECK(fixture->execute(sql));
    char error[512] = "";
    storage_status status;
    handle = open_with(NULL, NULL, error, sizeof error, &status);
    CHECK(handle == NULL);
    CHECK(status == STORAGE_SCHEMA);
    char newer[32], older[32];
    snprintf(newer, sizeof newer, "version %u", known + 7);
    snprintf(older, sizeof older, "up to %u", known);
    CHECK(strstr(error, newer) != NULL);
    CHECK(strstr(error, older) != NULL);
    fprintf(stderr, "refusal: %s\n", error);
    storage_close(handle);
}

static void test_user_lifecycle(void)
{
    CHECK(fixture->database_fresh());
    storage *handle = open_storage(NULL, NULL);
    CHECK(handle != NULL);
    if (handle == NULL) {
        return;
    }
    storage_credential both[2] = {credential_make(SCRAM_HASH_SHA1, 5),
                                  credential_make(SCRAM_HASH_SHA256, 9)};
    outcome out = {0};
    CHECK(storage_user_create(handle, DOMAIN, "alice", both, 2, outcome_record, &out) ==
          STORAGE_OK);
    CHECK(await(&out) == STORAGE_OK);
    out = (outcome){0};
    CHECK(storage_user_create(handle, DOMAIN, "alice", both, 2, outcome_record, &out) ==
          STORAGE_OK);
    CHECK(await(&out) == STORAGE_CONFLICT);
    CHECK(out.reason[0] != '\0');
    for (int i = 0; i < 2; i++) {
        out = (outcome){0};
        CHECK(storage_user_credential_fetch(handle, DOMAIN, "alice", both[i].hash, outcome_record,
                                            &out) == STORAGE_OK);
        CHECK(await(&out) == STORAGE_OK);
        CHECK(out.has_credential && credential_equal(&out.credential, &both[i]));
    }
    out = (outcome){0};
    CHECK(storage_user_credential_fetch(handle, DOMAIN, "alice", SCRAM_HASH_SHA512, outcome_record,
                                        &out) == STORAGE_OK);
    CHECK(await(&out) == STORAGE_NOT_FOUND && !out.has_credential);
    out = (outcome){0};
    CHECK(storage_user_credential_fetch(handle, DOMAIN, "nobody", SCRAM_HASH_SHA256, outcome_record,
                                        &out) == STORAGE_OK);
    CHECK(await(&out) == STORAGE_NOT_FOUND);

    storage_credential replaced = credential_make(SCRAM_HASH_SHA512, 42);
    out = (outcome){0};
    CHECK(storage_user_credentials_set(handle, DOMAIN, "alice", &replaced, 1, outcome_record,
                                       &out) == STORAGE_OK);
    CHECK(await(&out) == STORAGE_OK);
    out = (outcome){0};
    CHECK(storage_user_credential_fetch(handle, DOMAIN, "alice", SCRAM_HASH_SHA512, outcome_record,
                                        &out) == STORAGE_OK);
    CHECK(await(&out) == STORAGE_OK && credential_equal(&out.credential, &replaced));
    out = (outcome){0};
    CHECK(storage_user_credential_fetch(handle, DOMAIN, "alice", SCRAM_HASH_SHA1, outcome_record,
                                        &out) == STORAGE_OK);
    CHECK(await(&out) == STORAGE_NOT_FOUND);
    out = (outcome){0};
    CHECK(storage_user_credentials_set(handle, DOMAIN, "nobody", &replaced, 1, outcome_record,
                                       &out) == STORAGE_OK);
    CHECK(await(&out) == STORAGE_NOT_FOUND);

    out = (outcome){0};
    CHECK(storage_user_delete(handle, DOMAIN, "alice", outcome_record, &out) == STORAGE_OK);
    CHECK(await(&out) == STORAGE_OK);
    out = (outcome){0};
    CHECK(storage_user_delete(handle, DOMAIN, "alice", outcome_record, &out) == STORAGE_OK);
    CHECK(await(&out) == STORAGE_NOT_FOUND);
    out = (outcome){0};
    CHECK(storage_user_credential_fetch(handle, DOMAIN, "alice", SCRAM_HASH_SHA512, outcome_record,
                                        &out) == STORAGE_OK);
    CHECK(await(&out) == STORAGE_NOT_FOUND);
    CHECK(count_wait(handle, DOMAIN, NULL) == 0);
    storage_close(handle);
}

/* Gives localpart a row in every table that belongs to a user. */
static bool dependents_insert(const char *localpart)
{
    static const char *const templates[] = {
        "INSERT INTO roster_items (user_id, contact, subscription, version) "
        "SELECT id, 'friend@example.net', 3, 1 FROM users WHERE localpart = '%s'",
        "INSERT INTO roster_groups (user_id, contact, group_name) "
        "SELECT id, 'friend@example.net', 'Friends' FROM users WHERE localpart = '%s'",
        "INSERT INTO subscription_requests (user_id, contact, received_at_us, stanza) "
        "SELECT id, 'stranger@example.net', 1, '<presence/>' FROM users WHERE localpart = '%s'",
        "INSERT INTO archive (user_id, stable_id, timestamp_us, peer, direction, stanza) "
        "SELECT id, 'a1', 1, 'friend@example.net', 0, '<message/>' FROM users "
        "WHERE localpart = '%s'",
        "INSERT INTO documents (user_id, kind, node, item_id, updated_at_us, payload) "
        "SELECT id, 'vcard', '', '', 1, '<vCard/>' FROM users WHERE localpart = '%s'",
        "INSERT INTO block_list (user_id, blocked) "
        "SELECT id, 'spam@example.net' FROM users WHERE localpart = '%s'",
        "INSERT INTO push_registrations (user_id, service, node, registered_at_us) "
        "SELECT id, 'push.example.net', 'n1', 1 FROM users WHERE localpart = '%s'",
        "INSERT INTO muc_affiliations (room_id, jid, affiliation) "
        "SELECT id, '%s@" DOMAIN "', 1 FROM muc_rooms",
    };
    bool ok = true;
    for (size_t i = 0; i < sizeof templates / sizeof templates[0]; i++) {
        char sql[512];
        snprintf(sql, sizeof sql, templates[i], localpart);
        ok = ok && fixture->execute(sql);
    }
    return ok;
}

static void test_delete_cascades(void)
{
    static const char *const tables[] = {
        "credentials",      "roster_items",    "roster_groups", "subscription_requests",
        "archive",          "documents",       "block_list",    "push_registrations",
        "muc_affiliations", "offline_messages"};
    CHECK(fixture->database_fresh());
    storage *handle = open_storage(NULL, NULL);
    CHECK(handle != NULL);
    if (handle == NULL) {
        return;
    }
    CHECK(user_create_wait(handle, DOMAIN, "alice") == STORAGE_OK);
    CHECK(user_create_wait(handle, DOMAIN, "bob") == STORAGE_OK);
    CHECK(fixture->execute("INSERT INTO muc_rooms (domain, name, config, created_at_us) "
                           "VALUES ('conference.example.org', 'room', '<x/>', 1)"));
    CHECK(dependents_insert("alice"));
    CHECK(dependents_insert("bob"));
    for (int i = 0; i < 2; i++) {
        outcome out = {0};
        CHECK(storage_offline_insert(handle, DOMAIN, i == 0 ? "alice" : "bob", 1, "<message/>", 10,
                                     outcome_record, &out) == STORAGE_OK);
        CHECK(await(&out) == STORAGE_OK);
    }
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", tables[i]);
        CHECK(fixture->query_number(sql) == 2);
    }
    outcome out = {0};
    CHECK(storage_user_delete(handle, DOMAIN, "alice", outcome_record, &out) == STORAGE_OK);
    CHECK(await(&out) == STORAGE_OK);
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        char sql[160];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", tables[i]);
        int64_t left = fixture->query_number(sql);
        if (left != 1) {
            fprintf(stderr, "table %s keeps %lld rows\n", tables[i], (long long)left);
        }
        CHECK(left == 1);
    }
    CHECK(fixture->query_number("SELECT count(*) FROM muc_affiliations "
                                "WHERE jid = 'bob@" DOMAIN "'") == 1);
    CHECK(fixture->query_number("SELECT count(*) FROM muc_rooms") == 1);
    CHECK(count_wait(handle, DOMAIN, NULL) == 1);
    storage_close(handle);
}

#define LIST_USERS 25u
#define LIST_PAGE  7u

static void test_list_paging(void)
{
    CHECK(fixture->database_fresh());
    storage *handle = open_storage(NULL, NULL);
    CHECK(handle != NULL);
    if (handle == NULL) {
        return;
    }
    /* Submitted in a scrambled order; listed back in byte order. */
    for (unsigned i = 0; i < LIST_USERS; i++) {
        char name[32];
        snprintf(name, sizeof name, "user%02u", (i * 7u) % LIST_USERS);
        CHECK(user_create_wait(handle, DOMAIN, name) == STORAGE_OK);
    }
    for (unsigned i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "other%u", i);
        CHECK(user_create_wait(handle, "example.net", name) == STORAGE_OK);
    }
    char after[64] = "";
    unsigned seen = 0;
    bool ordered = true;
    for (unsigned page = 0; page < LIST_USERS; page++) {
        outcome out = {0};
        CHECK(storage_user_list(handle, DOMAIN, after, LIST_PAGE, outcome_record, &out) ==
              STORAGE_OK);
        CHECK(await(&out) == STORAGE_OK);
        CHECK(out.name_count <= LIST_PAGE);
        for (size_t i = 0; i < out.name_count; i++) {
            char expected[32];
            snprintf(expected, sizeof expected, "user%02u", seen);
            ordered = ordered && strcmp(out.names[i], expected) == 0;
            seen++;
        }
        if (out.name_count > 0) {
            snprintf(after, sizeof after, "%s", out.names[out.name_count - 1]);
        }
        CHECK(out.more == (seen < LIST_USERS));
        if (!out.more) {
            break;
        }
    }
    CHECK(ordered);
    CHECK(seen == LIST_USERS);
    CHECK(count_wait(handle, DOMAIN, NULL) == LIST_USERS);
    CHECK(count_wait(handle, "example.net", NULL) == 3);
    CHECK(count_wait(handle, NULL, NULL) == LIST_USERS + 3);
    outcome out = {0};
    CHECK(storage_user_list(handle, DOMAIN, NULL, 0, outcome_record, &out) == STORAGE_INVALID);
    CHECK(storage_user_list(handle, DOMAIN, NULL, LIMIT_STORAGE_PAGE_ROWS_MAX + 1, outcome_record,
                            &out) == STORAGE_INVALID);
    CHECK(!out.done);
    storage_close(handle);
}

static void test_offline_insert_count(void)
{
    CHECK(fixture->database_fresh());
    storage *handle = open_storage(NULL, NULL);
    CHECK(handle != NULL);
    if (handle == NULL) {
        return;
    }
    CHECK(user_create_wait(handle, DOMAIN, "alice") == STORAGE_OK);
    uint64_t previous = 0;
    for (int i = 0; i < 5; i++) {
        static const char stanza[] = "<message to='alice@example.org'><body>hi</body></message>";
        outcome out = {0};
        CHECK(storage_offline_insert(handle, DOMAIN, "alice", 1700000000000000 + i, stanza,
                                     sizeof stanza - 1, outcome_record, &out) == STORAGE_OK);
        CHECK(await(&out) == STORAGE_OK);
        CHECK(out.count > previous);
        previous = out.count;
    }
    CHECK(count_wait(handle, DOMAIN, "alice") == 5);
    CHECK(fixture->query_number("SELECT count(*) FROM offline_messages WHERE stanza = "
                                "'<message to=''alice@example.org''><body>hi</body></message>'") ==
          5);
    outcome out = {0};
    CHECK(storage_offline_insert(handle, DOMAIN, "nobody", 1, "<message/>", 10, outcome_record,
                                 &out) == STORAGE_OK);
    CHECK(await(&out) == STORAGE_NOT_FOUND);
    CHECK(count_wait(handle, DOMAIN, "nobody") == 0);
    storage_close(handle);
}

static void test_invalid_arguments(void)
{
    CHECK(fixture->database_fresh());
    char error[256] = "";
    CHECK(storage_create("no-such-driver", NULL, 0, NULL, error, sizeof error) == NULL);
    CHECK(strstr(error, "no-such-driver") != NULL);
    storage_option bad = {"no_such_option", "1"};
    CHECK(storage_create(fixture->driver, &bad, 1, NULL, error, sizeof error) == NULL);
    storage_option empty_queue = {"queue_requests", "0"};
    storage_option options[OPTIONS_MAX];
    size_t count = fixture->options(options, OPTIONS_MAX, &empty_queue);
    CHECK(storage_create(fixture->driver, options, count, NULL, error, sizeof error) == NULL);
    CHECK(strstr(error, "queue_requests") != NULL);
    storage *handle = open_storage(NULL, NULL);
    CHECK(handle != NULL);
    if (handle == NULL) {
        return;
    }
    outcome out = {0};
    storage_credential credential = credential_make(SCRAM_HASH_SHA256, 1);
    storage_credential twice[2] = {credential, credential};
    storage_credential short_key = credential;
    short_key.key_len = 20;
    CHECK(storage_user_create(handle, DOMAIN, "", &credential, 1, outcome_record, &out) ==
          STORAGE_INVALID);
    CHECK(storage_user_create(handle, DOMAIN, "a", &credential, 0, outcome_record, &out) ==
          STORAGE_INVALID);
    CHECK(storage_user_create(handle, DOMAIN, "a", twice, 2, outcome_record, &out) ==
          STORAGE_INVALID);
    CHECK(storage_user_create(handle, DOMAIN, "a", &short_key, 1, outcome_record, &out) ==
          STORAGE_INVALID);
    CHECK(storage_offline_insert(handle, DOMAIN, "a", 1, "", 0, outcome_record, &out) ==
          STORAGE_INVALID);
    /* A thread that is neither a reactor nor attached to a waiter has no
     * completion target. */
    storage_waiter_attach(NULL);
    CHECK(storage_user_count(handle, NULL, outcome_record, &out) == STORAGE_INVALID);
    storage_waiter_attach(waiter);
    CHECK(!out.done);
    storage_close(handle);
}

/* -------------------------------------------------------- on the reactors */

#define REACTOR_OPS_MAX 1024u

typedef struct reactor_op {
    unsigned reactor;
    atomic_int status;
    atomic_bool done;
    atomic_bool wrong_thread;
} reactor_op;

typedef enum burst_kind {
    BURST_CREATE_WITH_DUPLICATES = 0,
    BURST_MIXED_FAILURES,
    BURST_OFFLINE_INSERTS,
} burst_kind;

static struct {
    storage *handle;
    burst_kind kind;
    reactor_op ops[REACTOR_OPS_MAX];
    atomic_uint completed;
    atomic_uint submitted;
    atomic_uint refused;
    atomic_uint bursts_done;
} reactors;

static void reactor_op_done(void *context, const storage_result *result)
{
    reactor_op *op = context;
    rx_reactor *reactor = rx_reactor_current();
    if (reactor == NULL || rx_reactor_index(reactor) != op->reactor) {
        atomic_store(&op->wrong_thread, true);
    }
    atomic_store(&op->status, (int)result->status);
    atomic_store(&op->done, true);
    atomic_fetch_add(&reactors.completed, 1);
}

static storage_status burst_submit_one(unsigned index, unsigned number)
{
    storage_credential credential = credential_make(SCRAM_HASH_SHA256, 3);
    reactor_op *op = &reactors.ops[index];
    char name[32];
    switch (reactors.kind) {
    case BURST_CREATE_WITH_DUPLICATES:
        /* Every tenth creates the previous name again: a conflict. */
        snprintf(name, sizeof name, "r%u-%u", op->reactor, number % 10 == 9 ? number - 1 : number);
        return storage_user_create(reactors.handle, DOMAIN, name, &credential, 1, reactor_op_done,
                                   op);
    case BURST_MIXED_FAILURES:
        switch (number % 5) {
        case 0:
            return storage_user_create(reactors.handle, DOMAIN, "x", &credential, 1,
                                       reactor_op_done, op);
        case 1:
            return storage_user_create(reactors.handle, DOMAIN, "x", &credential, 1,
                                       reactor_op_done, op);
        case 2:
            return storage_user_create(reactors.handle, DOMAIN, "y", &credential, 1,
                                       reactor_op_done, op);
        case 3:
            return storage_offline_insert(reactors.handle, DOMAIN, "nobody", 1, "<m/>", 4,
                                          reactor_op_done, op);
        default:
            return storage_offline_insert(reactors.handle, DOMAIN, "x", 1, "<m/>", 4,
                                          reactor_op_done, op);
        }
    case BURST_OFFLINE_INSERTS:
        return storage_offline_insert(reactors.handle, DOMAIN, "alice", number, "<message/>", 10,
                                      reactor_op_done, op);
    }
    return STORAGE_INVALID;
}

/* Runs on a reactor: submits words[1] operations in one go, into ops
 * starting at words[0]. */
static void burst_run(const rx_message *message)
{
    unsigned here = rx_reactor_index(rx_reactor_current());
    for (unsigned i = 0; i < message->words[1]; i++) {
        unsigned index = (unsigned)message->words[0] + i;
        reactors.ops[index].reactor = here;
        if (burst_submit_one(index, i) == STORAGE_OK) {
            atomic_fetch_add(&reactors.submitted, 1);
        } else {
            atomic_fetch_add(&reactors.refused, 1);
        }
    }
    atomic_fetch_add(&reactors.bursts_done, 1);
}

static bool wait_until(atomic_uint *counter, unsigned target)
{
    unsigned long long deadline = harness_now_ms() + WAIT_MS;
    while (atomic_load(counter) < target && harness_now_ms() < deadline) {
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    return atomic_load(counter) >= target;
}

/* Starts a two-reactor runtime with a storage on a fresh database, and
 * posts one burst of per_reactor operations to each reactor (or only to
 * reactor 0 when one_reactor). */
static rx_runtime *reactors_start(const storage_option *extra, burst_kind kind,
                                  unsigned per_reactor, bool one_reactor)
{
    memset(&reactors, 0, sizeof reactors);
    reactors.kind = kind;
    rx_options options;
    rx_options_init(&options);
    options.reactors = 2;
    options.handle_signals = false;
    rx_runtime *runtime = rx_runtime_create(&options);
    rx_producer *producer = runtime != NULL ? rx_producer_create(runtime) : NULL;
    if (producer == NULL) {
        rx_runtime_destroy(runtime);
        return NULL;
    }
    reactors.handle = open_storage(extra, runtime);
    if (reactors.handle == NULL || rx_runtime_start(runtime) != RX_OK) {
        storage_close(reactors.handle);
        rx_runtime_destroy(runtime);
        return NULL;
    }
    unsigned targets = one_reactor ? 1 : 2;
    for (unsigned target = 0; target < targets; target++) {
        rx_message message = {.function = burst_run, .words = {target * per_reactor, per_reactor}};
        if (rx_producer_post(producer, target, &message) != RX_OK) {
            fprintf(stderr, "cannot post the burst\n");
        }
    }
    return runtime;
}

static void reactors_stop(rx_runtime *runtime)
{
    rx_runtime_stop(runtime);
    rx_runtime_wait(runtime);
    rx_runtime_destroy(runtime);
}

static bool ops_on_their_reactor(unsigned count)
{
    bool right = true;
    for (unsigned i = 0; i < count; i++) {
        right = right && atomic_load(&reactors.ops[i].done) &&
                !atomic_load(&reactors.ops[i].wrong_thread);
    }
    return right;
}

#define GROUP_OPS_PER_REACTOR 200u

static void test_reactor_delivery_and_group_commit(void)
{
    CHECK(fixture->database_fresh());
    rx_runtime *runtime =
        reactors_start(NULL, BURST_CREATE_WITH_DUPLICATES, GROUP_OPS_PER_REACTOR, false);
    CHECK(runtime != NULL);
    if (runtime == NULL) {
        return;
    }
    unsigned total = 2 * GROUP_OPS_PER_REACTOR;
    CHECK(wait_until(&reactors.completed, total));
    CHECK(atomic_load(&reactors.refused) == 0);
    CHECK(ops_on_their_reactor(total));
    unsigned wrong_status = 0;
    for (unsigned i = 0; i < total; i++) {
        int expected = (i % GROUP_OPS_PER_REACTOR) % 10 == 9 ? STORAGE_CONFLICT : STORAGE_OK;
        wrong_status += atomic_load(&reactors.ops[i].status) != expected;
    }
    CHECK(wrong_status == 0);
    storage_stats stats;
    storage_get_stats(reactors.handle, &stats);
    fprintf(stderr, "%llu operations in %llu batches\n", (unsigned long long)stats.operations,
            (unsigned long long)stats.batches);
    CHECK(stats.operations == total);
    CHECK(stats.failed == total / 10);
    CHECK(stats.batches >= 1 && stats.batches < stats.operations);
    storage_close(reactors.handle);
    reactors_stop(runtime);
    CHECK(fixture->query_number("SELECT count(*) FROM users") == (int64_t)(total - total / 10));
}

#define MIXED_OPS 50u

static void test_failing_operation_in_batch(void)
{
    CHECK(fixture->database_fresh());
    rx_runtime *runtime = reactors_start(NULL, BURST_MIXED_FAILURES, MIXED_OPS, true);
    CHECK(runtime != NULL);
    if (runtime == NULL) {
        return;
    }
    CHECK(wait_until(&reactors.completed, MIXED_OPS));
    CHECK(ops_on_their_reactor(MIXED_OPS));
    /* x is created by op 0 only, y by op 2 only; every offline insert for x
     * lands, every one for nobody fails alone. */
    int expected[MIXED_OPS];
    for (unsigned i = 0; i < MIXED_OPS; i++) {
        static const int by_kind[5] = {STORAGE_CONFLICT, STORAGE_CONFLICT, STORAGE_CONFLICT,
                                       STORAGE_NOT_FOUND, STORAGE_OK};
        expected[i] = by_kind[i % 5];
    }
    expected[0] = STORAGE_OK;
    expected[2] = STORAGE_OK;
    unsigned wrong = 0;
    for (unsigned i = 0; i < MIXED_OPS; i++) {
        wrong += atomic_load(&reactors.ops[i].status) != expected[i];
    }
    CHECK(wrong == 0);
    storage_close(reactors.handle);
    reactors_stop(runtime);
    CHECK(fixture->query_number("SELECT count(*) FROM users") == 2);
    CHECK(fixture->query_number("SELECT count(*) FROM offline_messages") == MIXED_OPS / 5);
    CHECK(fixture->query_number("SELECT count(*) FROM credentials") == 2);
}

#define SHUTDOWN_OPS_PER_REACTOR 300u

static void test_shutdown_in_flight(void)
{
    CHECK(fixture->database_fresh());
    storage *setup = open_storage(NULL, NULL);
    CHECK(setup != NULL);
    if (setup == NULL) {
        return;
    }
    CHECK(user_create_wait(setup, DOMAIN, "alice") == STORAGE_OK);
    storage_close(setup);
    /* With the write lock held elsewhere nothing can complete: every
     * accepted operation is still in flight when the close starts. */
    CHECK(fixture->writes_block());
    rx_runtime *runtime =
        reactors_start(NULL, BURST_OFFLINE_INSERTS, SHUTDOWN_OPS_PER_REACTOR, false);
    CHECK(runtime != NULL);
    if (runtime == NULL) {
        fixture->writes_unblock();
        return;
    }
    CHECK(wait_until(&reactors.bursts_done, 2));
    unsigned submitted = atomic_load(&reactors.submitted);
    CHECK(atomic_load(&reactors.completed) == 0);
    fixture->writes_unblock();
    storage_close(reactors.handle);
    CHECK(wait_until(&reactors.completed, submitted));
    CHECK(atomic_load(&reactors.completed) == submitted);
    CHECK(submitted + atomic_load(&reactors.refused) == 2 * SHUTDOWN_OPS_PER_REACTOR);
    unsigned succeeded = 0;
    for (unsigned i = 0; i < 2 * SHUTDOWN_OPS_PER_REACTOR; i++) {
        succeeded += atomic_load(&reactors.ops[i].done) &&
                     atomic_load(&reactors.ops[i].status) == STORAGE_OK;
    }
    fprintf(stderr, "%u submitted, %u succeeded\n", submitted, succeeded);
    CHECK(submitted > 0);
    reactors_stop(runtime);
    CHECK(fixture->query_number("SELECT count(*) FROM offline_messages") == (int64_t)succeeded);
}

#define BUSY_CAPACITY 4u

static void test_queue_full_busy(void)
{
    CHECK(fixture->database_fresh());
    storage_option small = {"queue_requests", "4"};
    storage *handle = open_storage(&small, NULL);
    CHECK(handle != NULL);
    if (handle == NULL) {
        return;
    }
    CHECK(fixture->writes_block());
    /* The first request is taken by the driver, which then waits for the
     * lock; the next BUSY_CAPACITY fill the queue; one more is refused. */
    outcome outs[BUSY_CAPACITY + 2] = {0};
    CHECK(storage_user_count(handle, NULL, outcome_record, &outs[0]) == STORAGE_OK);
    storage_stats stats = {0};
    unsigned long long deadline = harness_now_ms() + WAIT_MS;
    for (storage_get_stats(handle, &stats); stats.queued != 0 && harness_now_ms() < deadline;
         storage_get_stats(handle, &stats)) {
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    CHECK(stats.queued == 0);
    for (unsigned i = 1; i <= BUSY_CAPACITY; i++) {
        CHECK(storage_user_count(handle, NULL, outcome_record, &outs[i]) == STORAGE_OK);
    }
    CHECK(storage_user_count(handle, NULL, outcome_record, &outs[BUSY_CAPACITY + 1]) ==
          STORAGE_BUSY);
    storage_get_stats(handle, &stats);
    CHECK(stats.busy_refusals == 1);
    CHECK(stats.queued == BUSY_CAPACITY);
    fixture->writes_unblock();
    for (unsigned i = 0; i <= BUSY_CAPACITY; i++) {
        CHECK(await(&outs[i]) == STORAGE_OK);
    }
    CHECK(!outs[BUSY_CAPACITY + 1].done);
    storage_close(handle);
}

/* A waiter holds at most LIMIT_STORAGE_WAITER_PENDING requests it has not
 * run: with the driver's queue empty, one more is refused as busy, and
 * once the waiter runs them submissions go through again. */
#define WAITER_ROUND 64u

static void count_done(void *context, const storage_result *result)
{
    unsigned *counts = context;
    counts[result->status == STORAGE_OK ? 0 : 1]++;
}

static void wait_queue_empty(storage *handle)
{
    storage_stats stats = {0};
    unsigned long long deadline = harness_now_ms() + WAIT_MS;
    for (storage_get_stats(handle, &stats); stats.queued != 0 && harness_now_ms() < deadline;
         storage_get_stats(handle, &stats)) {
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    CHECK(stats.queued == 0);
}

static void test_waiter_bound(void)
{
    CHECK(fixture->database_fresh());
    storage_option queue = {"queue_requests", "64"};
    storage *handle = open_storage(&queue, NULL);
    CHECK(handle != NULL);
    if (handle == NULL) {
        return;
    }
    unsigned counts[2] = {0, 0};
    unsigned submitted = 0;
    while (submitted < LIMIT_STORAGE_WAITER_PENDING) {
        for (unsigned i = 0; i < WAITER_ROUND && submitted < LIMIT_STORAGE_WAITER_PENDING; i++) {
            storage_status status = storage_user_count(handle, NULL, count_done, counts);
            CHECK(status == STORAGE_OK);
            if (status != STORAGE_OK)
                break;
            submitted++;
        }
        wait_queue_empty(handle);
        if (counts[0] + counts[1] != 0)
            break; /* nothing may run before storage_waiter_run */
    }
    CHECK(submitted == LIMIT_STORAGE_WAITER_PENDING);
    CHECK(counts[0] + counts[1] == 0);
    storage_stats before = {0}, after = {0};
    storage_get_stats(handle, &before);
    CHECK(storage_user_count(handle, NULL, count_done, counts) == STORAGE_BUSY);
    storage_get_stats(handle, &after);
    CHECK(after.queued == 0);
    unsigned long long deadline = harness_now_ms() + WAIT_MS;
    while (counts[0] + counts[1] < submitted && harness_now_ms() < deadline) {
        storage_waiter_run(waiter, 100);
    }
    CHECK(counts[0] == submitted && counts[1] == 0);
    outcome again = {0};
    CHECK(storage_user_count(handle, NULL, outcome_record, &again) == STORAGE_OK);
    CHECK(await(&again) == STORAGE_OK);
    storage_close(handle);
}

#define NO_GROUPING_OPS 20u

static void test_no_grouping(void)
{
    CHECK(fixture->database_fresh());
    storage_option off = {"group_commit", "off"};
    storage *handle = open_storage(&off, NULL);
    CHECK(handle != NULL);
    if (handle == NULL) {
        return;
    }
    outcome outs[NO_GROUPING_OPS] = {0};
    storage_credential credential = credential_make(SCRAM_HASH_SHA256, 2);
    for (unsigned i = 0; i < NO_GROUPING_OPS; i++) {
        char name[16];
        snprintf(name, sizeof name, "u%u", i);
        CHECK(storage_user_create(handle, DOMAIN, name, &credential, 1, outcome_record, &outs[i]) ==
              STORAGE_OK);
    }
    for (unsigned i = 0; i < NO_GROUPING_OPS; i++) {
        CHECK(await(&outs[i]) == STORAGE_OK);
    }
    storage_stats stats;
    storage_get_stats(handle, &stats);
    CHECK(stats.operations == NO_GROUPING_OPS);
    CHECK(stats.batches == NO_GROUPING_OPS);
    storage_close(handle);
}

int storage_suite_run(const storage_fixture *driver_fixture, const char *filter)
{
    fixture = driver_fixture;
    waiter = storage_waiter_create();
    if (waiter == NULL) {
        return 1;
    }
    storage_waiter_attach(waiter);
    harness_run("migrations_from_empty", test_migrations_from_empty, filter);
    harness_run("reopen_idempotent", test_reopen_idempotent, filter);
    harness_run("newer_schema_refused", test_newer_schema_refused, filter);
    harness_run("user_lifecycle", test_user_lifecycle, filter);
    harness_run("delete_cascades", test_delete_cascades, filter);
    harness_run("list_paging", test_list_paging, filter);
    harness_run("offline_insert_count", test_offline_insert_count, filter);
    harness_run("invalid_arguments", test_invalid_arguments, filter);
    harness_run("reactor_delivery_and_group_commit", test_reactor_delivery_and_group_commit,
                filter);
    harness_run("failing_operation_in_batch", test_failing_operation_in_batch, filter);
    harness_run("queue_full_busy", test_queue_full_busy, filter);
    harness_run("waiter_bound", test_waiter_bound, filter);
    harness_run("shutdown_in_flight", test_shutdown_in_flight, filter);
    harness_run("no_grouping", test_no_grouping, filter);
    storage_waiter_attach(NULL);
    storage_waiter_destroy(waiter);
    return harness_finish();
}
