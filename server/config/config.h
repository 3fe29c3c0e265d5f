/*
 * config.h: Starling's configuration, its contract.
 *
 * One YAML file, read with libyaml, fills one typed struct. Every key is a
 * row of one schema table (config.c) holding its type, bounds, default and
 * meaning; parsing, environment overrides, defaults and the generated
 * reference (deploy/CONFIG.md) all read that table, so they cannot drift.
 *
 * Precedence, lowest first: built-in defaults < the file < STARLING_*
 * environment variables < the command line (applied by the caller). A load
 * either succeeds whole or fails with one message naming the place
 * (file:line:column, or the environment variable) and the key path, and
 * leaves the caller's struct untouched.
 */
#ifndef STARLING_SERVER_CONFIG_CONFIG_H
#define STARLING_SERVER_CONFIG_CONFIG_H

#include "proto/limits.h"

#include <stddef.h>
#include <stdio.h>

#define CONFIG_STRING_BYTES (LIMIT_CONFIG_STRING_BYTES_MAX + 1u)
#define CONFIG_SECRET_BYTES (LIMIT_CONFIG_SECRET_BYTES_MAX + 1u)
/* Room for an IPv6 literal with a zone, as inet_pton takes them. */
#define CONFIG_ADDRESS_BYTES 64u
/* One error line: a place, a key path and what was wrong. */
#define CONFIG_ERROR_BYTES 1536u

/* Enumerations. Each value's name in YAML is in the schema table. */
typedef enum config_listener_type {
    CONFIG_LISTENER_C2S = 0, /* clients */
    CONFIG_LISTENER_S2S,     /* other servers (federation, a later issue) */
} config_listener_type;

typedef enum config_tls_mode {
    CONFIG_TLS_STARTTLS = 0, /* plaintext start, STARTTLS required before auth */
    CONFIG_TLS_DIRECT,       /* TLS from the first byte (XEP-0368) */
    CONFIG_TLS_PLAINTEXT,    /* no TLS at all; loopback addresses only */
} config_tls_mode;

typedef enum config_storage_driver {
    CONFIG_STORAGE_SQLITE = 0,
    CONFIG_STORAGE_POSTGRESQL,
} config_storage_driver;

typedef enum config_cluster_driver {
    CONFIG_CLUSTER_LOCAL = 0,
} config_cluster_driver;

typedef enum config_log_level {
    CONFIG_LOG_DEBUG = 0,
    CONFIG_LOG_INFO,
    CONFIG_LOG_WARNING,
    CONFIG_LOG_ERROR,
} config_log_level;

typedef enum config_log_format {
    CONFIG_LOG_HUMAN = 0,
    CONFIG_LOG_JSON,
} config_log_format;

typedef enum config_sslmode {
    CONFIG_SSLMODE_DISABLE = 0,
    CONFIG_SSLMODE_ALLOW,
    CONFIG_SSLMODE_PREFER,
    CONFIG_SSLMODE_REQUIRE,
    CONFIG_SSLMODE_VERIFY_CA,
    CONFIG_SSLMODE_VERIFY_FULL,
} config_sslmode;

/* Enumerated fields are stored as unsigned so that one schema row type
 * fills them all; the comments name the enum each one holds. */
typedef struct config_listener {
    unsigned type; /* config_listener_type */
    char address[CONFIG_ADDRESS_BYTES];
    unsigned port;
    unsigned tls; /* config_tls_mode */
} config_listener;

typedef struct config_certificate {
    char domain[CONFIG_STRING_BYTES];
    char cert_file[CONFIG_STRING_BYTES];
    char key_file[CONFIG_STRING_BYTES];
} config_certificate;

typedef struct config {
    char data_dir[CONFIG_STRING_BYTES];
    unsigned reactors; /* 0 = one per online core */
    unsigned shutdown_grace_ms;
    char domains[LIMIT_CONFIG_DOMAINS_MAX][CONFIG_STRING_BYTES];
    unsigned domain_count;
    config_listener listeners[LIMIT_LISTENERS_PER_REACTOR];
    unsigned listener_count;
    config_certificate certificates[LIMIT_CONFIG_DOMAINS_MAX];
    unsigned certificate_count;
    struct {
        unsigned driver; /* config_storage_driver */
        struct {
            char path[CONFIG_STRING_BYTES]; /* relative: under data_dir */
        } sqlite;
        struct {
            char host[CONFIG_STRING_BYTES];
            unsigned port;
            char dbname[CONFIG_STRING_BYTES];
            char user[CONFIG_STRING_BYTES];
            char password[CONFIG_SECRET_BYTES];
            unsigned sslmode; /* config_sslmode */
            char sslrootcert[CONFIG_STRING_BYTES]; /* relative: under data_dir */
            char sslcert[CONFIG_STRING_BYTES];
            char sslkey[CONFIG_STRING_BYTES];
            unsigned reactor_connections; /* 0 on, 1 off (index in "on", "off") */
            unsigned pool_connections;
        } postgresql;
    } storage;
    struct {
        unsigned driver; /* config_cluster_driver */
    } cluster;
    struct {
        unsigned conflict; /* 0 replace, 1 refuse */
    } sessions;
    struct {
        char anonymous_domains[LIMIT_CONFIG_DOMAINS_MAX][CONFIG_STRING_BYTES];
        unsigned anonymous_domain_count;
    } auth;
    struct {
        unsigned connections_per_reactor;
    } limits;
    struct {
        unsigned handshake_ms;
        unsigned idle_ms;
        unsigned write_ms;
    } timeouts;
    struct {
        unsigned level;                        /* config_log_level */
        unsigned format;                       /* config_log_format */
        char destination[CONFIG_STRING_BYTES]; /* "stderr" or a file path */
    } logging;
} config;

typedef struct config_error {
    char message[CONFIG_ERROR_BYTES];
} config_error;

/* Fills out (borrowed) with the built-in defaults, the ones deploy/CONFIG.md
 * lists. */
void config_defaults(config *out);

/* Loads defaults, then the YAML file at path (borrowed; NULL = no file),
 * then the STARLING_* variables of environment (a NULL-terminated
 * "NAME=value" array, borrowed; NULL = none). Returns 0 and fills out, or
 * -1 with error->message set and out untouched. */
int config_load(config *out, const char *path, char *const *environment, config_error *error);

/* As config_load, with the YAML text given in memory (bytes borrowed, need
 * not be NUL-terminated); name is what error messages call it. */
int config_load_buffer(config *out, const char *name, const char *bytes, size_t length,
                       char *const *environment, config_error *error);

/* Resolves a path that a key documents as "under data_dir"
 * (storage.sqlite.path, certificates[].cert_file, ...): path itself when it
 * is absolute, else data_dir/path. settings and path are borrowed; out gets
 * the result. Returns 0, or -1 when it does not fit in size bytes. */
int config_data_path(const config *settings, const char *path, char *out, size_t size);

/* The YAML name of an enumerated value of the field at key_path (for
 * example "storage.driver"), or "?" when the path or value is unknown. */
const char *config_enum_name(const char *key_path, unsigned value);

/* Writes the reference of every key (Markdown) to out (borrowed): what
 * deploy/CONFIG.md holds. Returns 0, or -1 when a write failed. */
int config_write_reference(FILE *out);

#endif
