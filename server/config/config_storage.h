/*
 * config_storage.h: the storage the configuration names, opened.
 *
 * starling and starlingctl open the same database the same way: the
 * storage section's driver and options (the SQLite path resolved under
 * data_dir, whose directory is created when missing), then storage_open,
 * which applies the numbered migrations. One function, so the two cannot
 * disagree about where the accounts are.
 */
#ifndef STARLING_SERVER_CONFIG_CONFIG_STORAGE_H
#define STARLING_SERVER_CONFIG_CONFIG_STORAGE_H

#include <stddef.h>

#include "server/config/config.h"
#include "storage/storage.h"

/* Creates and opens the storage of settings->storage (settings borrowed;
 * runtime borrowed, may be NULL for a tool without reactors). Returns
 * STORAGE_OK with *out an owned, open handle (close it with
 * storage_close), or:
 *   STORAGE_INVALID      the driver or its options are refused (a path that
 *                        does not fit, an unknown driver);
 *   STORAGE_UNAVAILABLE  the database cannot be reached, created or opened;
 *   STORAGE_SCHEMA       its schema is newer than this binary, or a
 *                        migration failed;
 * or another status from storage_open, each with a one-line reason in
 * error (capacity error_size) and *out NULL. */
storage_status config_storage_open(const config *settings, rx_runtime *runtime, storage **out,
                                   char *error, size_t error_size);

#endif
