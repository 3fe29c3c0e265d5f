/*
 * storage_suite.h: the storage test suite every driver passes, written
 * against storage.h only. A driver's test program supplies a fixture (how
 * to make a fresh database and the few things the interface cannot do:
 * run raw SQL, hold the write lock) and calls storage_suite_run.
 */
#ifndef STARLING_TESTS_STORAGE_SUITE_H
#define STARLING_TESTS_STORAGE_SUITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/storage.h"

typedef struct storage_fixture {
    const char *driver;
    /* Points the fixture at a new, empty database. */
    bool (*database_fresh)(void);
    /* Fills out (capacity entries) with the options of the current
     * database plus extra (may be NULL); returns how many. */
    size_t (*options)(storage_option *out, size_t capacity, const storage_option *extra);
    /* Runs SQL (portable) on its own connection; false on error. */
    bool (*execute)(const char *sql);
    /* Runs a single-value query on its own connection; -1 on error. */
    int64_t (*query_number)(const char *sql);
    /* Holds, then releases, the database's write lock from another
     * connection, so the driver's writes wait. */
    bool (*writes_block)(void);
    void (*writes_unblock)(void);
} storage_fixture;

/* Runs every test (or the one named by filter); returns the exit status. */
int storage_suite_run(const storage_fixture *fixture, const char *filter);

#endif
