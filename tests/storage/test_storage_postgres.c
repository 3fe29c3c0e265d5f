/*
 * test_storage_postgres.c: the shared storage suite on the PostgreSQL
 * driver, each test on a new database of a private cluster that
 * tests/storage/pg_cluster.py started on loopback (STARLING_PG_HOST,
 * STARLING_PG_PORT, STARLING_PG_USER). The fixture's own connections (raw
 * SQL, holding the lock the driver's writes wait on) are plain libpq
 * connections to the same database.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/storage/storage_suite.h"

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
    PGconn *connection = PQconnectdbParams(keys, values, 0);
    if (PQstatus(connection) != CONNECTION_OK) {
        fprintf(stderr, "fixture: cannot connect to %s: %s", database, PQerrorMessage(connection));
        PQfinish(connection);
        return NULL;
    }
    PQsetNoticeProcessor(connection, notice_ignore, NULL);
    return connection;
}

static bool run_on(PGconn *connection, const char *sql)
{
    PGresult *result = connection != NULL ? PQexec(connection, sql) : NULL;
    bool ok = result != NULL && (PQresultStatus(result) == PGRES_COMMAND_OK ||
                                 PQresultStatus(result) == PGRES_TUPLES_OK);
    if (!ok) {
        fprintf(stderr, "fixture: %s: %s", sql,
                connection != NULL ? PQerrorMessage(connection) : "no connection\n");
    }
    PQclear(result);
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
    PQfinish(connection);
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
    if (extra != NULL && count < capacity) {
        out[count++] = *extra;
    }
    return count;
}

static bool execute(const char *sql)
{
    PGconn *connection = connect_to(dbname);
    bool ok = run_on(connection, sql);
    PQfinish(connection);
    return ok;
}

static int64_t query_number(const char *sql)
{
    PGconn *connection = connect_to(dbname);
    PGresult *result = connection != NULL ? PQexec(connection, sql) : NULL;
    int64_t value = -1;
    if (result != NULL && PQresultStatus(result) == PGRES_TUPLES_OK && PQntuples(result) == 1 &&
        !PQgetisnull(result, 0, 0)) {
        value = strtoll(PQgetvalue(result, 0, 0), NULL, 10);
    } else {
        fprintf(stderr, "fixture: %s failed\n", sql);
    }
    PQclear(result);
    PQfinish(connection);
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
    PQfinish(blocker);
    blocker = NULL;
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
    return storage_suite_run(&fixture, argc > 1 ? argv[1] : NULL);
}
