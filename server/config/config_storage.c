/*
 * config_storage.c: from the configuration's storage section to an open
 * storage handle.
 *
 * The options each driver takes are spelled here once: SQLite's "path"
 * (storage.sqlite.path, under data_dir unless absolute) and PostgreSQL's
 * libpq-style "host", "port", "dbname", "user", "password", "sslmode",
 * "sslrootcert", "sslcert", "sslkey" (files under data_dir unless
 * absolute; left out when empty), and its "reactor_connections" and
 * "connections" (from pool_connections).
 * SQLite creates the database file but not its directory, so the
 * directory is made here (mode 0700: it holds credentials), with its
 * parents, the way `mkdir -p` would.
 */
#include "server/config/config_storage.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* Creates directory path and its missing parents. Returns 0, or -1 with
 * errno set. path is borrowed; a copy is cut at each '/'. */
static int make_directories(const char *path)
{
    char copy[CONFIG_STRING_BYTES * 2];
    size_t length = strlen(path);
    if (length == 0 || length >= sizeof copy) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(copy, path, length + 1);
    for (size_t i = 1; i <= length; i++) {
        if (copy[i] != '/' && copy[i] != '\0')
            continue;
        char saved = copy[i];
        copy[i] = '\0';
        if (mkdir(copy, 0700) != 0 && errno != EEXIST)
            return -1;
        copy[i] = saved;
    }
    return 0;
}

/* The SQLite option: the resolved path, its directory created. Returns
 * STORAGE_OK, or INVALID / UNAVAILABLE with error set. */
static storage_status sqlite_path(const config *settings, char *path, size_t size, char *error,
                                  size_t error_size)
{
    if (config_data_path(settings, settings->storage.sqlite.path, path, size) != 0) {
        snprintf(error, error_size, "storage.sqlite.path: the path under data_dir is too long");
        return STORAGE_INVALID;
    }
    char directory[CONFIG_STRING_BYTES * 2];
    snprintf(directory, sizeof directory, "%s", path);
    char *slash = strrchr(directory, '/');
    if (slash == NULL || slash == directory)
        return STORAGE_OK;
    *slash = '\0';
    if (make_directories(directory) != 0) {
        snprintf(error, error_size, "cannot create the database directory '%s': %s", directory,
                 strerror(errno));
        return STORAGE_UNAVAILABLE;
    }
    return STORAGE_OK;
}

storage_status config_storage_open(const config *settings, rx_runtime *runtime, storage **out,
                                   char *error, size_t error_size)
{
    *out = NULL;
    char path[CONFIG_STRING_BYTES * 2];
    char port[16], pool[16];
    char files[3][CONFIG_STRING_BYTES * 2];
    storage_option options[12];
    size_t count = 0;
    const char *driver = config_enum_name("storage.driver", settings->storage.driver);
    if (settings->storage.driver == CONFIG_STORAGE_SQLITE) {
        storage_status status = sqlite_path(settings, path, sizeof path, error, error_size);
        if (status != STORAGE_OK)
            return status;
        options[count++] = (storage_option){"path", path};
    } else {
        snprintf(port, sizeof port, "%u", settings->storage.postgresql.port);
        options[count++] = (storage_option){"host", settings->storage.postgresql.host};
        options[count++] = (storage_option){"port", port};
        options[count++] = (storage_option){"dbname", settings->storage.postgresql.dbname};
        options[count++] = (storage_option){"user", settings->storage.postgresql.user};
        options[count++] = (storage_option){"password", settings->storage.postgresql.password};
        options[count++] =
            (storage_option){"sslmode", config_enum_name("storage.postgresql.sslmode",
                                                         settings->storage.postgresql.sslmode)};
        const struct {
            const char *key;
            const char *value;
        } file_options[3] = {{"sslrootcert", settings->storage.postgresql.sslrootcert},
                             {"sslcert", settings->storage.postgresql.sslcert},
                             {"sslkey", settings->storage.postgresql.sslkey}};
        for (size_t i = 0; i < 3; i++) {
            if (file_options[i].value[0] == '\0')
                continue;
            if (config_data_path(settings, file_options[i].value, files[i], sizeof files[i]) != 0) {
                snprintf(error, error_size,
                         "storage.postgresql.%s: the path under data_dir is too long",
                         file_options[i].key);
                return STORAGE_INVALID;
            }
            options[count++] = (storage_option){file_options[i].key, files[i]};
        }
        options[count++] = (storage_option){
            "reactor_connections",
            config_enum_name("storage.postgresql.reactor_connections",
                             settings->storage.postgresql.reactor_connections)};
        snprintf(pool, sizeof pool, "%u", settings->storage.postgresql.pool_connections);
        options[count++] = (storage_option){"connections", pool};
    }
    storage *handle = storage_create(driver, options, count, runtime, error, error_size);
    if (handle == NULL)
        return STORAGE_INVALID;
    storage_status status = storage_open(handle, error, error_size);
    if (status != STORAGE_OK) {
        storage_close(handle);
        return status;
    }
    *out = handle;
    return STORAGE_OK;
}
