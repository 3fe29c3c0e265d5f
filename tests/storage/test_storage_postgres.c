/*
 * test_storage_postgres.c: the shared storage suite on the PostgreSQL
 * driver, each test on a new database of a private cluster that
 * tests/storage/pg_cluster.py started on loopback (STARLING_PG_HOST,
 * STARLING_PG_PORT, STARLING_PG_USER). The fixture's own connections (raw
 * SQL, holding the lock the driver's writes wait on) are plain libpq
 * connections to the same database. STARLING_PG_REACTOR_CONNECTIONS=off
 * runs everything on the driver's thread pool instead of the reactors' own
 * connections. The case "error_isolated" checks that an unexpected SQL
 * error in a grouped pipeline fails that operation alone; the case "tls" (run with
 * pg_cluster.py --tls) checks that sslmode=require gives the driver's
 * connections TLS.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/harness.h"
#include "storage/pq.h"
#include "tests/storage/storage_suite.h"

/* libpq for the fixtures, through the same loader as the driver. */
static const pq_api *pq(void)
{
    char error[768];
    const pq_api *api = pq_load(error, sizeof error);
    if (api == NULL) {
        fprintf(stderr, "fixture: %s\n", error);
        exit(1);
    }
    return pq_here();
}

static const char *host, *port, *user;
static char dbname[64];
static unsigned databases;
static PGconn *blocker;

static void notice_ignore(void *argument, const char *message)
{
    (void)argument;
    (void)message;
}

static PGconn *connect_to(const char *database)
{
    const char *keys[] = {"host", "port", "user", "dbname", NULL};
    const char *values[] = {host, port, user, database, NULL};
    PGconn *connection = pq()->PQconnectdbParams(keys, values, 0);
    if (pq()->PQstatus(connection) != CONNECTION_OK) {
        fprintf(stderr, "fixture: cannot connect to %s: %s", database, pq()->PQerrorMessage(connection));
        pq()->PQfinish(connection);
        return NULL;
    }
    pq()->PQsetNoticeProcessor(connection, notice_ignore, NULL);
    return connection;
}

static bool run_on(PGconn *connection, const char *sql)
{
    PGresult *result = connection != NULL ? pq()->PQexec(connection, sql) : NULL;
    bool ok = result != NULL && (pq()->PQresultStatus(result) == PGRES_COMMAND_OK ||
                                 pq()->PQresultStatus(result) == PGRES_TUPLES_OK);
    if (!ok) {
        fprintf(stderr, "fixture: %s: %s", sql,
                connection != NULL ? pq()->PQerrorMessage(connection) : "no connection\n");
    }
    pq()->PQclear(result);
    return ok;
}

static bool database_fresh(void)
{
    databases++;
    snprintf(dbname, sizeof dbname, "starling_test_%u", databases);
    PGconn *connection = connect_to("postgres");
    char sql[128];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", dbname);
    bool ok = run_on(connection, sql);
    pq()->PQfinish(connection);
    return ok;
}

static size_t options(storage_option *out, size_t capacity, const storage_option *extra)
{
    size_t count = 0;
    out[count++] = (storage_option){"host", host};
    out[count++] = (storage_option){"port", port};
    out[count++] = (storage_option){"user", user};
    out[count++] = (storage_option){"dbname", dbname};
    out[count++] = (storage_option){"sslmode", "disable"};
    if (getenv("STARLING_PG_REACTOR_CONNECTIONS") != NULL && count < capacity) {
        out[count++] =
            (storage_option){"reactor_connections", getenv("STARLING_PG_REACTOR_CONNECTIONS")};
    }
    if (extra != NULL && count < capacity) {
        out[count++] = *extra;
    }
    return count;
}

static bool execute(const char *sql)
{
    PGconn *connection = connect_to(dbname);
    bool ok = run_on(connection, sql);
    pq()->PQfinish(connection);
    return ok;
}

static int64_t query_number(const char *sql)
{
    PGconn *connection = connect_to(dbname);
    PGresult *result = connection != NULL ? pq()->PQexec(connection, sql) : NULL;
    int64_t value = -1;
    if (result != NULL && pq()->PQresultStatus(result) == PGRES_TUPLES_OK && pq()->PQntuples(result) == 1 &&
        !pq()->PQgetisnull(result, 0, 0)) {
        value = strtoll(pq()->PQgetvalue(result, 0, 0), NULL, 10);
    } else {
        fprintf(stderr, "fixture: %s failed\n", sql);
    }
    pq()->PQclear(result);
    pq()->PQfinish(connection);
    return value;
}

/* Every operation touches users: an exclusive lock on it makes each wait. */
static bool writes_block(void)
{
    blocker = connect_to(dbname);
    return run_on(blocker, "BEGIN") && run_on(blocker, "LOCK TABLE users IN ACCESS EXCLUSIVE MODE");
}

static void writes_unblock(void)
{
    run_on(blocker, "ROLLBACK");
    pq()->PQfinish(blocker);
    blocker = NULL;
}

static void tls_done(void *context, const storage_result *result)
{
    *(int *)context = (int)result->status;
}

/* sslmode=require: an operation succeeds and every connection the
 * driver holds (application_name starling) is encrypted. */
static void test_tls(void)
{
    CHECK(database_fresh());
    storage_option list[8];
    size_t count = options(list, 8, NULL);
    for (size_t i = 0; i < count; i++) {
        if (strcmp(list[i].key, "sslmode") == 0) {
            list[i].value = "require";
        }
    }
    char error[256] = "";
    storage *handle = storage_create("postgresql", list, count, NULL, error, sizeof error);
    bool opened = handle != NULL && storage_open(handle, error, sizeof error) == STORAGE_OK;
    CHECK(opened);
    if (!opened) {
        fprintf(stderr, "tls: %s\n", error);
        storage_close(handle);
        return;
    }
    storage_waiter *waiter = storage_waiter_create();
    storage_waiter_attach(waiter);
    int status = -1;
    CHECK(storage_user_count(handle, NULL, tls_done, &status) == STORAGE_OK);
    CHECK(storage_waiter_run(waiter, 20000) == 1);
    CHECK(status == STORAGE_OK);
    CHECK(query_number("SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a "
                       "USING (pid) WHERE a.application_name = 'starling' AND s.ssl") == 1);
    CHECK(query_number("SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a "
                       "USING (pid) WHERE a.application_name = 'starling' AND NOT s.ssl") == 0);
    storage_close(handle);
    storage_waiter_attach(NULL);
    storage_waiter_destroy(waiter);
}

/* ------------------------------------------------------- error_isolated */

#define ISOLATED_OPS 9u

static atomic_int isolated_status[ISOLATED_OPS];
static atomic_uint isolated_done;

static void isolated_record(void *context, const storage_result *result)
{
    atomic_store(&isolated_status[(uintptr_t)context], (int)result->status);
    if (result->status != STORAGE_OK) {
        fprintf(stderr, "op %u: %s\n", (unsigned)(uintptr_t)context, result->reason);
    }
    atomic_fetch_add(&isolated_done, 1);
}

/* On the reactor: nine inserts in one iteration, every third with a
 * stanza PostgreSQL refuses (invalid UTF-8 in a TEXT column). */
static void isolated_submit(const rx_message *message)
{
    storage *handle = message->pointer;
    for (uintptr_t i = 0; i < ISOLATED_OPS; i++) {
        const char *stanza = i % 3 == 1 ? "<m>\xff</m>" : "<m>ok</m>";
        if (storage_offline_insert(handle, "example.org", "alice", 1, stanza, strlen(stanza),
                                   isolated_record, (void *)i) != STORAGE_OK) {
            atomic_store(&isolated_status[i], -2);
            atomic_fetch_add(&isolated_done, 1);
        }
    }
}

static void test_error_isolated(void)
{
    CHECK(database_fresh());
    rx_options rx;
    rx_options_init(&rx);
    rx.reactors = 1;
    rx.handle_signals = false;
    rx_runtime *runtime = rx_runtime_create(&rx);
    rx_producer *producer = runtime != NULL ? rx_producer_create(runtime) : NULL;
    storage_option list[8];
    size_t count = options(list, 8, NULL);
    char error[256] = "";
    storage *handle = producer != NULL
                          ? storage_create("postgresql", list, count, runtime, error, sizeof error)
                          : NULL;
    bool opened = handle != NULL && storage_open(handle, error, sizeof error) == STORAGE_OK;
    CHECK(opened);
    if (!opened) {
        fprintf(stderr, "error_isolated: %s\n", error);
        storage_close(handle);
        rx_runtime_destroy(runtime);
        return;
    }
    CHECK(execute("INSERT INTO users (domain, localpart, created_at_us) "
                  "VALUES ('example.org', 'alice', 0)"));
    CHECK(rx_runtime_start(runtime) == RX_OK);
    rx_message message = {.function = isolated_submit, .pointer = handle};
    CHECK(rx_producer_post(producer, 0, &message) == RX_OK);
    unsigned long long deadline = harness_now_ms() + 20000;
    while (atomic_load(&isolated_done) < ISOLATED_OPS && harness_now_ms() < deadline) {
        usleep(1000);
    }
    CHECK(atomic_load(&isolated_done) == ISOLATED_OPS);
    unsigned wrong = 0;
    for (unsigned i = 0; i < ISOLATED_OPS; i++) {
        int expected = i % 3 == 1 ? STORAGE_ERROR : STORAGE_OK;
        wrong += atomic_load(&isolated_status[i]) != expected;
    }
    CHECK(wrong == 0);
    storage_stats stats;
    storage_get_stats(handle, &stats);
    fprintf(stderr, "%llu operations, %llu failed, %llu transactions\n",
            (unsigned long long)stats.operations, (unsigned long long)stats.failed,
            (unsigned long long)stats.batches);
    CHECK(stats.failed == ISOLATED_OPS / 3);
    storage_close(handle);
    rx_runtime_stop(runtime);
    rx_runtime_wait(runtime);
    rx_runtime_destroy(runtime);
    CHECK(query_number("SELECT count(*) FROM offline_messages") == ISOLATED_OPS - ISOLATED_OPS / 3);
}

int main(int argc, char **argv)
{
    host = getenv("STARLING_PG_HOST");
    port = getenv("STARLING_PG_PORT");
    user = getenv("STARLING_PG_USER");
    if (host == NULL || port == NULL || user == NULL) {
        fprintf(stderr, "run me through tests/storage/pg_cluster.py (STARLING_PG_* unset)\n");
        return 1;
    }
    static const storage_fixture fixture = {
        .driver = "postgresql",
        .database_fresh = database_fresh,
        .options = options,
        .execute = execute,
        .query_number = query_number,
        .writes_block = writes_block,
        .writes_unblock = writes_unblock,
    };
    if (argc > 1 && strcmp(argv[1], "error_isolated") == 0) {
        harness_run("error_isolated", test_error_isolated, NULL);
        return harness_finish();
    }
    if (argc > 1 && strcmp(argv[1], "tls") == 0) {
        harness_run("tls", test_tls, NULL);
        return harness_finish();
    }
    return storage_suite_run(&fixture, argc > 1 ? argv[1] : NULL);
}
