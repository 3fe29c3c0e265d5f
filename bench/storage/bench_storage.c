/*
 * bench_storage.c: starling-bench-storage, the storage layer's throughput.
 *
 * A runtime of --reactors reactors, each keeping --in-flight operations
 * outstanding on one storage handle (each completion submits the next),
 * until --ops operations have completed. Workloads: credential lookups
 * (the login path) and offline-message inserts (a write per message), on a
 * database of --users users made beforehand. --group off runs one
 * operation per transaction, the baseline group commit is measured
 * against. Every wait is bounded by --timeout-s.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "storage/storage.h"

#define USAGE                                                                                      \
    "usage: starling-bench-storage [--workload lookups|inserts] [--ops N] [--users N]\n"           \
    "         [--reactors N] [--in-flight N] [--group on|off] [--dir DIR] [--timeout-s S]\n"       \
    "         [--driver sqlite|postgresql] [--pg-host H] [--pg-port P] [--pg-user U]\n"            \
    "         [--pg-dbname D] [--pg-connections N] [--pg-reactor-connections on|off]\n"

/* Reactors the benchmark runs at most; two or four are typical. */
#define BENCH_REACTORS_MAX 64u

typedef struct bench_options {
    bool inserts;
    unsigned long ops;
    unsigned long users;
    unsigned long reactors;
    unsigned long in_flight;
    bool group;
    const char *dir;
    unsigned long timeout_s;
    bool postgresql;
    const char *pg_host, *pg_port, *pg_user, *pg_dbname, *pg_connections, *pg_reactor_connections;
} bench_options;

typedef struct reactor_state {
    unsigned long issued;
    unsigned long target;
} reactor_state;

static struct {
    bench_options options;
    storage *handle;
    reactor_state reactors[BENCH_REACTORS_MAX];
    atomic_ulong completed;
    atomic_ulong failed;
} bench;

static unsigned long long now_us(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (unsigned long long)now.tv_sec * 1000000ull + (unsigned long long)now.tv_nsec / 1000u;
}

static bool parse_number(const char *text, unsigned long minimum, unsigned long maximum,
                         unsigned long *out)
{
    char *end = NULL;
    unsigned long value = strtoul(text, &end, 10);
    if (end == text || *end != '\0' || text[0] == '-' || value < minimum || value > maximum) {
        return false;
    }
    *out = value;
    return true;
}

static int parse(int argc, char **argv, bench_options *options)
{
    *options = (bench_options){.ops = 20000,
                               .users = 1000,
                               .reactors = 2,
                               .in_flight = 256,
                               .group = true,
                               .dir = "/tmp",
                               .timeout_s = 120,
                               .pg_host = getenv("STARLING_PG_HOST"),
                               .pg_port = getenv("STARLING_PG_PORT"),
                               .pg_user = getenv("STARLING_PG_USER"),
                               .pg_dbname = "postgres",
                               .pg_connections = "1",
                               .pg_reactor_connections = "on"};
    for (int i = 1; i < argc; i += 2) { /* every option takes one value */
        if (strcmp(argv[i], "--help") == 0) {
            fputs(USAGE, stdout);
            exit(0);
        }
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (value == NULL) {
            ok = false;
        } else if (strcmp(argv[i], "--workload") == 0) {
            ok = strcmp(value, "lookups") == 0 || strcmp(value, "inserts") == 0;
            options->inserts = strcmp(value, "inserts") == 0;
        } else if (strcmp(argv[i], "--group") == 0) {
            ok = strcmp(value, "on") == 0 || strcmp(value, "off") == 0;
            options->group = strcmp(value, "on") == 0;
        } else if (strcmp(argv[i], "--driver") == 0) {
            ok = strcmp(value, "sqlite") == 0 || strcmp(value, "postgresql") == 0;
            options->postgresql = strcmp(value, "postgresql") == 0;
        } else if (strcmp(argv[i], "--pg-host") == 0) {
            options->pg_host = value;
        } else if (strcmp(argv[i], "--pg-port") == 0) {
            options->pg_port = value;
        } else if (strcmp(argv[i], "--pg-user") == 0) {
            options->pg_user = value;
        } else if (strcmp(argv[i], "--pg-reactor-connections") == 0) {
            ok = strcmp(value, "on") == 0 || strcmp(value, "off") == 0;
            options->pg_reactor_connections = value;
        } else if (strcmp(argv[i], "--pg-connections") == 0) {
            unsigned long connections = 0;
            ok = parse_number(value, 1, LIMIT_STORAGE_POSTGRESQL_CONNECTIONS_MAX, &connections);
            options->pg_connections = value;
        } else if (strcmp(argv[i], "--pg-dbname") == 0) {
            options->pg_dbname = value;
        } else if (strcmp(argv[i], "--dir") == 0) {
            options->dir = value;
        } else if (strcmp(argv[i], "--ops") == 0) {
            ok = parse_number(value, 1, 100000000, &options->ops);
        } else if (strcmp(argv[i], "--users") == 0) {
            ok = parse_number(value, 1, 10000000, &options->users);
        } else if (strcmp(argv[i], "--reactors") == 0) {
            ok = parse_number(value, 1, BENCH_REACTORS_MAX, &options->reactors);
        } else if (strcmp(argv[i], "--in-flight") == 0) {
            ok = parse_number(value, 1, LIMIT_STORAGE_QUEUE_REQUESTS, &options->in_flight);
        } else if (strcmp(argv[i], "--timeout-s") == 0) {
            ok = parse_number(value, 1, 3600, &options->timeout_s);
        } else {
            ok = false;
        }
        if (!ok) {
            fprintf(stderr, "starling-bench-storage: bad option or value: %s %s\n", argv[i],
                    value != NULL ? value : "");
            return -1;
        }
    }
    /* Outstanding operations never pass the queue, so BUSY means a bug. */
    if (options->reactors * options->in_flight > LIMIT_STORAGE_QUEUE_REQUESTS) {
        fprintf(stderr, "starling-bench-storage: --reactors x --in-flight exceeds the queue (%u)\n",
                LIMIT_STORAGE_QUEUE_REQUESTS);
        return -1;
    }
    return 0;
}

static void user_name(unsigned long number, char *out, size_t size)
{
    snprintf(out, size, "user%lu", number);
}

static void submit_next(unsigned reactor);

/* Runs on the reactor that submitted. */
static void operation_done(void *context, const storage_result *result)
{
    unsigned reactor = (unsigned)(uintptr_t)context;
    if (result->status != STORAGE_OK) {
        atomic_fetch_add(&bench.failed, 1);
    }
    atomic_fetch_add(&bench.completed, 1);
    submit_next(reactor);
}

static void submit_next(unsigned reactor)
{
    static const char stanza[] = "<message to='user@bench.example' from='peer@bench.example/r' "
                                 "type='chat' id='m'><body>an offline message of ordinary "
                                 "length for the storage benchmark</body></message>";
    reactor_state *state = &bench.reactors[reactor];
    if (state->issued >= state->target) {
        return;
    }
    unsigned long number = (state->issued * 7919u + reactor * 104729u) % bench.options.users;
    state->issued++;
    char name[32];
    user_name(number, name, sizeof name);
    void *context = (void *)(uintptr_t)reactor;
    storage_status status =
        bench.options.inserts
            ? storage_offline_insert(bench.handle, "bench.example", name, (int64_t)now_us(), stanza,
                                     sizeof stanza - 1, operation_done, context)
            : storage_user_credential_fetch(bench.handle, "bench.example", name, SCRAM_HASH_SHA256,
                                            operation_done, context);
    if (status != STORAGE_OK) {
        atomic_fetch_add(&bench.failed, 1);
        atomic_fetch_add(&bench.completed, 1);
    }
}

static void start_on_reactor(const rx_message *message)
{
    unsigned reactor = rx_reactor_index(rx_reactor_current());
    for (uint64_t i = 0; i < message->words[0]; i++) {
        submit_next(reactor);
    }
}

static void setup_done(void *context, const storage_result *result)
{
    unsigned long *left = context;
    (*left)--;
    if (result->status != STORAGE_OK && result->status != STORAGE_CONFLICT) {
        fprintf(stderr, "starling-bench-storage: user create: %s\n", result->reason);
    }
}

/* Creates the users from this thread through a waiter, a queue's worth
 * at a time. */
static bool users_create(storage *handle, unsigned long users, unsigned long long deadline_us)
{
    storage_waiter *waiter = storage_waiter_create();
    if (waiter == NULL) {
        return false;
    }
    storage_waiter_attach(waiter);
    storage_credential credential = {
        .hash = SCRAM_HASH_SHA256, .iterations = 4096, .salt_len = 16, .key_len = 32};
    unsigned long next = 0, outstanding = 0;
    while ((next < users || outstanding > 0) && now_us() < deadline_us) {
        while (next < users && outstanding < 1024) {
            char name[32];
            user_name(next, name, sizeof name);
            credential.stored_key[0] = (uint8_t)next;
            if (storage_user_create(handle, "bench.example", name, &credential, 1, setup_done,
                                    &outstanding) != STORAGE_OK) {
                break;
            }
            outstanding++;
            next++;
        }
        storage_waiter_run(waiter, 100);
    }
    storage_waiter_attach(NULL);
    storage_waiter_destroy(waiter);
    return next == users && outstanding == 0;
}

int main(int argc, char **argv)
{
    if (parse(argc, argv, &bench.options) != 0) {
        return 2;
    }
    const bench_options *options = &bench.options;
    char directory[512];
    snprintf(directory, sizeof directory, "%s/starling-bench-storage-XXXXXX", options->dir);
    if (mkdtemp(directory) == NULL) {
        fprintf(stderr, "starling-bench-storage: cannot create a directory in %s\n", options->dir);
        return 2;
    }
    char path[600];
    snprintf(path, sizeof path, "%s/bench.db", directory);
    rx_options runtime_options;
    rx_options_init(&runtime_options);
    runtime_options.reactors = (unsigned)options->reactors;
    runtime_options.handle_signals = false;
    rx_runtime *runtime = rx_runtime_create(&runtime_options);
    rx_producer *producer = runtime != NULL ? rx_producer_create(runtime) : NULL;
    /* PostgreSQL: libpq's defaults (PGHOST, ...) for what is not given. */
    storage_option storage_options[8] = {{"group_commit", options->group ? "on" : "off"},
                                         {"path", path}};
    size_t option_count = 2;
    if (options->postgresql) {
        const char *keys[] = {"host",   "port",        "user",
                              "dbname", "connections", "reactor_connections"};
        const char *values[] = {options->pg_host,        options->pg_port,
                                options->pg_user,        options->pg_dbname,
                                options->pg_connections, options->pg_reactor_connections};
        option_count = 1;
        for (size_t i = 0; i < 6; i++) {
            if (values[i] != NULL) {
                storage_options[option_count++] = (storage_option){keys[i], values[i]};
            }
        }
    }
    char error[512] = "";
    bench.handle = producer != NULL
                       ? storage_create(options->postgresql ? "postgresql" : "sqlite",
                                        storage_options, option_count, runtime, error, sizeof error)
                       : NULL;
    unsigned long long deadline_us = now_us() + options->timeout_s * 1000000ull;
    int result = 1;
    if (bench.handle == NULL || storage_open(bench.handle, error, sizeof error) != STORAGE_OK ||
        !users_create(bench.handle, options->users, deadline_us) ||
        rx_runtime_start(runtime) != RX_OK) {
        fprintf(stderr, "starling-bench-storage: setup failed: %s\n", error);
        goto done;
    }
    storage_stats before;
    storage_get_stats(bench.handle, &before);
    unsigned long long started_us = now_us();
    for (unsigned r = 0; r < options->reactors; r++) {
        bench.reactors[r].target =
            options->ops / options->reactors + (r < options->ops % options->reactors ? 1 : 0);
        rx_message message = {.function = start_on_reactor, .words = {options->in_flight, 0}};
        if (rx_producer_post(producer, r, &message) != RX_OK) {
            fprintf(stderr, "starling-bench-storage: cannot start reactor %u\n", r);
        }
    }
    while (atomic_load(&bench.completed) < options->ops && now_us() < deadline_us) {
        usleep(1000);
    }
    unsigned long long elapsed_us = now_us() - started_us;
    storage_stats after;
    storage_get_stats(bench.handle, &after);
    unsigned long completed = atomic_load(&bench.completed);
    unsigned long batches = (unsigned long)(after.batches - before.batches);
    printf("driver %s, workload %s, group %s, %lu reactors x %lu in flight, %lu users\n",
           options->postgresql ? "postgresql" : "sqlite", options->inserts ? "inserts" : "lookups",
           options->group ? "on" : "off", options->reactors, options->in_flight, options->users);
    printf("operations %lu of %lu, failed %lu, %.3f s, %.0f operations/s, %lu transactions "
           "(%.1f operations each)\n",
           completed, options->ops, atomic_load(&bench.failed), (double)elapsed_us / 1e6,
           (double)completed * 1e6 / (double)(elapsed_us > 0 ? elapsed_us : 1), batches,
           batches > 0 ? (double)completed / (double)batches : 0.0);
    result = completed == options->ops && atomic_load(&bench.failed) == 0 ? 0 : 1;
done:
    storage_close(bench.handle);
    if (runtime != NULL) {
        rx_runtime_stop(runtime);
        rx_runtime_wait(runtime);
        rx_runtime_destroy(runtime);
    }
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        char file[640];
        snprintf(file, sizeof file, "%s%s", path, suffixes[i]);
        unlink(file);
    }
    rmdir(directory);
    return result;
}
