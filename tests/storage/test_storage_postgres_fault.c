/*
 * test_storage_postgres_fault.c: PostgreSQL goes away in the middle of a
 * stream of operations and comes back (label integration).
 *
 * Run through tests/storage/pg_cluster.py, which gives the cluster's
 * address and the shell commands that stop (pg_ctl stop -m fast) and start
 * it. Two reactors each submit a burst of offline inserts every tick; a
 * controller thread stops the cluster once some have succeeded, waits, and
 * starts it again. The stream goes on throughout. Then probes wait
 * (bounded) until an insert from each reactor succeeds again, and a final
 * burst from both reactors must succeed entirely. Asserted: every accepted operation
 * completed exactly once, with OK or UNAVAILABLE, within a bounded wait
 * (none hung, none lost); some failed while the database was down; what
 * the database holds lies between what was acknowledged and what was
 * submitted (a batch whose COMMIT answer was lost may have committed).
 * An optional argument N runs the stream on the driver's thread pool of N
 * connections (reactor_connections=off) instead of the reactors' own
 * connections.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/harness.h"
#include "storage/pq.h"
#include "storage/storage.h"

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

#define OPS_MAX           40000u /* bounds the stream: ticks x burst x reactors */
#define BURST             4u     /* operations per reactor per tick */
#define TICK_MS           2u
#define OK_BEFORE_STOP    400u   /* successes before the controller stops the cluster */
#define DOWN_MS           300u   /* how long the cluster stays down */
#define TICKS_AFTER_START 100u   /* the stream goes on this long after the restart */
#define RECOVERY_WAIT_MS  30000u /* > LIMIT_STORAGE_POSTGRESQL_RECONNECT_MAX_MS, with margin */
#define DRAIN_WAIT_MS     60000u /* > LIMIT_STORAGE_POSTGRESQL_BATCH_MS, with margin */
#define FINAL_OPS         100u   /* per reactor, after recovery: all must succeed */

typedef struct op {
    atomic_uint calls;
    atomic_int status;
} op;

static op ops[OPS_MAX];
static atomic_uint next_op;
static atomic_uint submitted;
static atomic_uint completed;
static atomic_uint succeeded;
static atomic_uint refused;
static atomic_bool restarted;
static storage *handle;
static const char *connections = "1";
static const char *reactor_connections = "on";

static void notice_ignore(void *argument, const char *message)
{
    (void)argument;
    (void)message;
}

static void op_done(void *context, const storage_result *result)
{
    op *record = context;
    atomic_store(&record->status, (int)result->status);
    atomic_fetch_add(&record->calls, 1);
    if (result->status == STORAGE_OK) {
        atomic_fetch_add(&succeeded, 1);
    }
    atomic_fetch_add(&completed, 1);
}

/* On a reactor: submits words[0] inserts. */
static void burst_run(const rx_message *message)
{
    for (unsigned i = 0; i < message->words[0]; i++) {
        unsigned index = atomic_fetch_add(&next_op, 1);
        if (index >= OPS_MAX) {
            return;
        }
        atomic_store(&ops[index].status, -1);
        if (storage_offline_insert(handle, "example.org", "alice", index, "<message/>", 10, op_done,
                                   &ops[index]) == STORAGE_OK) {
            atomic_fetch_add(&submitted, 1);
        } else {
            atomic_fetch_add(&refused, 1);
            atomic_store(&ops[index].status, -2);
        }
    }
}

static void *controller(void *argument)
{
    (void)argument;
    unsigned long long deadline = harness_now_ms() + RECOVERY_WAIT_MS;
    while (atomic_load(&succeeded) < OK_BEFORE_STOP && harness_now_ms() < deadline) {
        usleep(1000);
    }
    fprintf(stderr, "stopping postgres after %u successes\n", atomic_load(&succeeded));
    if (system(getenv("STARLING_PG_STOP")) != 0) {
        fprintf(stderr, "pg_ctl stop failed\n");
    }
    usleep(DOWN_MS * 1000);
    fprintf(stderr, "starting postgres again\n");
    if (system(getenv("STARLING_PG_START")) != 0) {
        fprintf(stderr, "pg_ctl start failed\n");
    }
    atomic_store(&restarted, true);
    return NULL;
}

static void tick_sleep(void)
{
    struct timespec pause = {0, TICK_MS * 1000000L};
    nanosleep(&pause, NULL);
}

/* Posts a burst to each reactor and waits (bounded) until both ran. */
static void post_bursts(rx_producer *producer, unsigned per_reactor)
{
    unsigned target_op = atomic_load(&next_op) + 2 * per_reactor;
    for (unsigned target = 0; target < 2; target++) {
        rx_message message = {.function = burst_run, .words = {per_reactor, 0}};
        if (rx_producer_post(producer, target, &message) != RX_OK) {
            fprintf(stderr, "a burst could not be posted\n");
            return;
        }
    }
    unsigned long long deadline = harness_now_ms() + DRAIN_WAIT_MS;
    while (atomic_load(&next_op) < target_op && harness_now_ms() < deadline) {
        usleep(100);
    }
}

static bool wait_completed(unsigned long long wait_ms)
{
    unsigned long long deadline = harness_now_ms() + wait_ms;
    while (atomic_load(&completed) < atomic_load(&submitted) && harness_now_ms() < deadline) {
        usleep(1000);
    }
    return atomic_load(&completed) == atomic_load(&submitted);
}

static int64_t offline_rows(void)
{
    const char *keys[] = {"host", "port", "user", "dbname", NULL};
    const char *values[] = {getenv("STARLING_PG_HOST"), getenv("STARLING_PG_PORT"),
                            getenv("STARLING_PG_USER"), "postgres", NULL};
    PGconn *connection = pq()->PQconnectdbParams(keys, values, 0);
    pq()->PQsetNoticeProcessor(connection, notice_ignore, NULL);
    PGresult *result = pq()->PQexec(connection, "SELECT count(*) FROM offline_messages");
    int64_t rows = pq()->PQresultStatus(result) == PGRES_TUPLES_OK
                       ? strtoll(pq()->PQgetvalue(result, 0, 0), NULL, 10)
                       : -1;
    pq()->PQclear(result);
    pq()->PQfinish(connection);
    return rows;
}

static void setup_done(void *context, const storage_result *result)
{
    *(int *)context = (int)result->status;
}

/* Creates alice through a waiter (the control thread is not a reactor). */
static bool user_create(void)
{
    storage_waiter *waiter = storage_waiter_create();
    if (waiter == NULL) {
        return false;
    }
    storage_waiter_attach(waiter);
    storage_credential credential = {
        .hash = SCRAM_HASH_SHA256, .iterations = 4096, .salt_len = 16, .key_len = 32};
    memset(credential.salt, 1, sizeof credential.salt);
    int status = -1;
    if (storage_user_create(handle, "example.org", "alice", &credential, 1, setup_done, &status) ==
        STORAGE_OK) {
        storage_waiter_run(waiter, DRAIN_WAIT_MS);
    }
    storage_waiter_attach(NULL);
    storage_waiter_destroy(waiter);
    return status == STORAGE_OK;
}

/* After the restart: one insert on each reactor per round until a round
 * where both succeed (bounded). */
static bool recovered(rx_producer *producer)
{
    unsigned long long deadline = harness_now_ms() + RECOVERY_WAIT_MS;
    while (harness_now_ms() < deadline) {
        unsigned before = atomic_load(&succeeded);
        post_bursts(producer, 1);
        if (!wait_completed(DRAIN_WAIT_MS)) {
            return false;
        }
        if (atomic_load(&succeeded) == before + 2) {
            return true;
        }
        usleep(20000);
    }
    return false;
}

static void test_restart_mid_stream(void)
{
    storage_option options[] = {
        {"host", getenv("STARLING_PG_HOST")},
        {"port", getenv("STARLING_PG_PORT")},
        {"user", getenv("STARLING_PG_USER")},
        {"dbname", "postgres"},
        {"sslmode", "disable"},
        {"connections", connections},
        {"reactor_connections", reactor_connections},
    };
    rx_options rx;
    rx_options_init(&rx);
    rx.reactors = 2;
    rx.handle_signals = false;
    rx_runtime *runtime = rx_runtime_create(&rx);
    rx_producer *producer = runtime != NULL ? rx_producer_create(runtime) : NULL;
    char error[256] = "";
    handle = producer != NULL
                 ? storage_create("postgresql", options, 7, runtime, error, sizeof error)
                 : NULL;
    CHECK(handle != NULL);
    if (handle == NULL || storage_open(handle, error, sizeof error) != STORAGE_OK) {
        fprintf(stderr, "open: %s\n", error);
        CHECK(false);
        storage_close(handle);
        rx_runtime_destroy(runtime);
        return;
    }
    CHECK(user_create());
    CHECK(rx_runtime_start(runtime) == RX_OK);
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, controller, NULL) == 0);

    unsigned after_start = 0;
    unsigned long long deadline = harness_now_ms() + DRAIN_WAIT_MS;
    while (after_start < TICKS_AFTER_START &&
           atomic_load(&next_op) < OPS_MAX - 2 * BURST - 4 * FINAL_OPS &&
           harness_now_ms() < deadline) {
        post_bursts(producer, BURST);
        tick_sleep();
        after_start += atomic_load(&restarted);
    }
    pthread_join(thread, NULL);
    CHECK(wait_completed(DRAIN_WAIT_MS));
    unsigned failed_in_stream = atomic_load(&completed) - atomic_load(&succeeded);
    fprintf(stderr, "stream: %u submitted, %u succeeded, %u failed, %u refused\n",
            atomic_load(&submitted), atomic_load(&succeeded), failed_in_stream,
            atomic_load(&refused));
    CHECK(failed_in_stream > 0);

    CHECK(recovered(producer));
    unsigned final_first = atomic_load(&next_op);
    post_bursts(producer, FINAL_OPS);
    CHECK(wait_completed(DRAIN_WAIT_MS));
    unsigned final_last = atomic_load(&next_op);
    CHECK(final_last - final_first == 2 * FINAL_OPS);
    unsigned final_ok = 0;
    for (unsigned i = final_first; i < final_last && i < OPS_MAX; i++) {
        final_ok += atomic_load(&ops[i].status) == STORAGE_OK;
    }
    fprintf(stderr, "after recovery: %u of %u succeeded\n", final_ok, 2 * FINAL_OPS);
    CHECK(final_ok == 2 * FINAL_OPS);

    /* Every accepted operation completed exactly once, with OK or UNAVAILABLE. */
    unsigned wrong = 0;
    unsigned total = atomic_load(&next_op) < OPS_MAX ? atomic_load(&next_op) : OPS_MAX;
    for (unsigned i = 0; i < total; i++) {
        int status = atomic_load(&ops[i].status);
        unsigned calls = atomic_load(&ops[i].calls);
        bool accepted = status != -2;
        wrong += accepted ? calls != 1 || (status != STORAGE_OK && status != STORAGE_UNAVAILABLE)
                          : calls != 0;
    }
    CHECK(wrong == 0);
    CHECK(atomic_load(&completed) == atomic_load(&submitted));
    storage_close(handle);
    rx_runtime_stop(runtime);
    rx_runtime_wait(runtime);
    rx_runtime_destroy(runtime);
    int64_t rows = offline_rows();
    fprintf(stderr, "%lld rows stored, %u acknowledged, %u submitted\n", (long long)rows,
            atomic_load(&succeeded), atomic_load(&submitted));
    CHECK(rows >= (int64_t)atomic_load(&succeeded));
    CHECK(rows <= (int64_t)atomic_load(&submitted));
}

int main(int argc, char **argv)
{
    if (getenv("STARLING_PG_HOST") == NULL || getenv("STARLING_PG_STOP") == NULL ||
        getenv("STARLING_PG_START") == NULL) {
        fprintf(stderr, "run me through tests/storage/pg_cluster.py (STARLING_PG_* unset)\n");
        return 1;
    }
    if (argc > 1) {
        connections = argv[1];
        reactor_connections = "off";
    }
    fprintf(stderr, "reactor connections %s, pool %s\n", reactor_connections, connections);
    harness_run("restart_mid_stream", test_restart_mid_stream, NULL);
    return harness_finish();
}
