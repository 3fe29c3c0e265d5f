/*
 * test_storage_sqlite.c: the shared storage suite on the SQLite driver,
 * each test on a new database file in a private temporary directory. The
 * fixture's own connection (raw SQL, holding the write lock) is a plain
 * sqlite3 handle on the same file.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/storage/storage_suite.h"

static char directory[256];
static char path[320];
static unsigned databases;
static sqlite3 *blocker;

static bool database_fresh(void)
{
    databases++;
    snprintf(path, sizeof path, "%s/test-%u.db", directory, databases);
    return true;
}

static size_t options(storage_option *out, size_t capacity, const storage_option *extra)
{
    size_t count = 0;
    out[count++] = (storage_option){"path", path};
    if (extra != NULL && count < capacity) {
        out[count++] = *extra;
    }
    return count;
}

static sqlite3 *connect(void)
{
    sqlite3 *database = NULL;
    if (sqlite3_open_v2(path, &database, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        fprintf(stderr, "fixture: cannot open %s\n", path);
        sqlite3_close(database);
        return NULL;
    }
    sqlite3_busy_timeout(database, 5000);
    return database;
}

static bool execute(const char *sql)
{
    sqlite3 *database = connect();
    char *message = NULL;
    bool ok = database != NULL && sqlite3_exec(database, sql, NULL, NULL, &message) == SQLITE_OK;
    if (!ok) {
        fprintf(stderr, "fixture: %s: %s\n", sql, message != NULL ? message : "?");
    }
    sqlite3_free(message);
    sqlite3_close(database);
    return ok;
}

static int64_t query_number(const char *sql)
{
    sqlite3 *database = connect();
    sqlite3_stmt *statement = NULL;
    int64_t value = -1;
    if (database != NULL && sqlite3_prepare_v2(database, sql, -1, &statement, NULL) == SQLITE_OK &&
        sqlite3_step(statement) == SQLITE_ROW) {
        value = sqlite3_column_int64(statement, 0);
    } else {
        fprintf(stderr, "fixture: %s failed\n", sql);
    }
    sqlite3_finalize(statement);
    sqlite3_close(database);
    return value;
}

static bool writes_block(void)
{
    blocker = connect();
    return blocker != NULL &&
           sqlite3_exec(blocker, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK;
}

static void writes_unblock(void)
{
    sqlite3_exec(blocker, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(blocker);
    blocker = NULL;
}

static void directory_remove(void)
{
    for (unsigned i = 1; i <= databases; i++) {
        static const char *const suffixes[] = {"", "-wal", "-shm"};
        for (int s = 0; s < 3; s++) {
            char file[400];
            snprintf(file, sizeof file, "%s/test-%u.db%s", directory, i, suffixes[s]);
            unlink(file);
        }
    }
    rmdir(directory);
}

int main(int argc, char **argv)
{
    const char *base = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
    snprintf(directory, sizeof directory, "%s/starling-storage-XXXXXX", base);
    if (mkdtemp(directory) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    static const storage_fixture fixture = {
        .driver = "sqlite",
        .database_fresh = database_fresh,
        .options = options,
        .execute = execute,
        .query_number = query_number,
        .writes_block = writes_block,
        .writes_unblock = writes_unblock,
    };
    int status = storage_suite_run(&fixture, argc > 1 ? argv[1] : NULL);
    directory_remove();
    return status;
}
