/*
 * config.c: the configuration loader, driven by one schema table.
 *
 * Each key of the YAML file is a row below: its name, kind, where it lands
 * in struct config, its bounds, its default (as text, parsed by the same
 * code that parses the file) and its meaning. The YAML walker, the
 * environment overrides, the defaults and the generated reference all read
 * these rows, so a key cannot be parsed one way and documented another.
 *
 * The walk follows the schema, never the document: a document can only
 * lead the loader as deep as the schema goes (three levels), and every list
 * has a maximum length, so aliases and anchors cannot make the walk large.
 * libyaml's document API is used because it keeps each node's line and
 * column for the messages.
 *
 * A load works on a private copy and copies it out only when everything
 * passed: a failed load leaves the caller's struct as it was.
 */
#include "server/config/config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

/* ------------------------------------------------------------------ schema */

typedef enum key_kind {
    KEY_UINT,        /* unsigned integer in [minimum, maximum] */
    KEY_STRING,      /* text of at most size - 1 bytes, at least minimum */
    KEY_SECRET,      /* a string that may come from NAME_file instead */
    KEY_ENUM,        /* one of choices, stored as its index */
    KEY_SECTION,     /* a mapping of the rows in children */
    KEY_STRING_LIST, /* a list of strings, at most maximum */
    KEY_TABLE_LIST,  /* a list of mappings of children, at most maximum */
} key_kind;

/* Extra checks on a string's content. */
enum {
    ROW_DOMAIN = 1u << 0,  /* an ASCII domain name */
    ROW_ADDRESS = 1u << 1, /* an IPv4 or IPv6 literal */
};

typedef struct key_table key_table;

/* A check over element index of a table list (elements is the array); it
 * may compare with the elements before it. Returns 0, or -1 with why set. */
typedef int element_check(const void *elements, unsigned index, char *why, size_t why_size);

typedef struct key_row {
    const char *name;
    key_kind kind;
    size_t offset; /* of the field within the struct its table describes */
    size_t size;   /* strings: capacity with the NUL; lists: element size */
    unsigned long minimum;
    unsigned long maximum; /* integers: highest value; lists: most elements */
    unsigned flags;
    const char *const *choices; /* KEY_ENUM, NULL-terminated */
    const key_table *children;  /* KEY_SECTION, KEY_TABLE_LIST */
    size_t count_offset;        /* lists: their unsigned element count */
    element_check *check;       /* KEY_TABLE_LIST, optional */
    const char *default_text;   /* NULL: none (required in list elements) */
    const char *doc;
} key_row;

struct key_table {
    const key_row *rows;
    size_t count;
};

#define TABLE(rows)                                                                                \
    {                                                                                              \
        rows, sizeof rows / sizeof rows[0]                                                         \
    }
#define FIELD_SIZE(type, member) sizeof(((type *)0)->member)

static const char *const listener_types[] = {"c2s", "s2s", NULL};
static const char *const tls_modes[] = {"starttls", "direct", "plaintext", NULL};
static const char *const storage_drivers[] = {"sqlite", "postgresql", NULL};
static const char *const cluster_drivers[] = {"local", NULL};
static const char *const conflict_policies[] = {"replace", "refuse", NULL};
static const char *const log_levels[] = {"debug", "info", "warning", "error", NULL};
static const char *const log_formats[] = {"human", "json", NULL};
static const char *const switches[] = {"on", "off", NULL};
static const char *const sslmodes[] = {"disable",   "allow",       "prefer", "require",
                                       "verify-ca", "verify-full", NULL};

static element_check listener_check;
static element_check certificate_check;

#define STRING_ROW(name_, type, member, min, flags_, default_, doc_)                               \
    {                                                                                              \
        name_, KEY_STRING, offsetof(type, member), FIELD_SIZE(type, member), min, 0, flags_, NULL, \
            NULL, 0, NULL, default_, doc_                                                          \
    }
#define UINT_ROW(name_, type, member, min, max, default_, doc_)                                    \
    {                                                                                              \
        name_, KEY_UINT, offsetof(type, member), 0, min, max, 0, NULL, NULL, 0, NULL, default_,    \
            doc_                                                                                   \
    }
#define ENUM_ROW(name_, type, member, choices_, default_, doc_)                                    \
    {                                                                                              \
        name_, KEY_ENUM, offsetof(type, member), 0, 0, 0, 0, choices_, NULL, 0, NULL, default_,    \
            doc_                                                                                   \
    }

static const key_row listener_rows[] = {
    ENUM_ROW("type", config_listener, type, listener_types, "c2s",
             "Who connects: `c2s` clients; `s2s` servers (federation, used from a later "
             "issue: validated, not yet served)."),
    STRING_ROW("address", config_listener, address, 1, ROW_ADDRESS, "127.0.0.1",
               "IPv4 or IPv6 address literal to bind; `0.0.0.0` or `::` for every "
               "interface. The default keeps a fresh server off the network."),
    UINT_ROW("port", config_listener, port, 1, 65535, NULL, "TCP port (required)."),
    ENUM_ROW("tls", config_listener, tls, tls_modes, "starttls",
             "`starttls`: STARTTLS required before authentication; `direct`: TLS from the "
             "first byte (XEP-0368); `plaintext`: no TLS, allowed on loopback addresses "
             "only (benchmarks, tests)."),
};
static const key_table listener_table = TABLE(listener_rows);

static const key_row certificate_rows[] = {
    STRING_ROW("domain", config_certificate, domain, 1, ROW_DOMAIN, NULL,
               "Domain the certificate is for (required)."),
    STRING_ROW("cert_file", config_certificate, cert_file, 1, 0, NULL,
               "PEM certificate chain; relative paths are under `data_dir` (required)."),
    STRING_ROW("key_file", config_certificate, key_file, 1, 0, NULL,
               "PEM private key; relative paths are under `data_dir` (required)."),
};
static const key_table certificate_table = TABLE(certificate_rows);

static const key_row sqlite_rows[] = {
    STRING_ROW("path", config, storage.sqlite.path, 1, 0, "starling.db",
               "Database file; a relative path is under `data_dir`. Created when first "
               "opened."),
};
static const key_row postgresql_rows[] = {
    STRING_ROW("host", config, storage.postgresql.host, 1, 0, "localhost",
               "Server host name, address, or Unix socket directory."),
    UINT_ROW("port", config, storage.postgresql.port, 1, 65535, "5432", "Server port."),
    STRING_ROW("dbname", config, storage.postgresql.dbname, 1, 0, "starling", "Database name."),
    STRING_ROW("user", config, storage.postgresql.user, 1, 0, "starling", "Role to log in as."),
    {"password", KEY_SECRET, offsetof(config, storage.postgresql.password),
     FIELD_SIZE(config, storage.postgresql.password), 0, 0, 0, NULL, NULL, 0, NULL, "",
     "Password of `user` (empty: none, e.g. peer or certificate authentication)."},
    ENUM_ROW("sslmode", config, storage.postgresql.sslmode, sslmodes, "prefer",
             "libpq `sslmode`: disable, allow, prefer, require, verify-ca, verify-full."),
    STRING_ROW("sslrootcert", config, storage.postgresql.sslrootcert, 0, 0, "",
               "libpq `sslrootcert`: CA certificates (PEM) that `verify-ca` and `verify-full` "
               "check the server's certificate against; relative paths are under `data_dir`. "
               "Empty: libpq's default (`~/.postgresql/root.crt`)."),
    STRING_ROW("sslcert", config, storage.postgresql.sslcert, 0, 0, "",
               "libpq `sslcert`: client certificate (PEM) for certificate authentication; "
               "relative paths are under `data_dir`. Empty: none."),
    STRING_ROW("sslkey", config, storage.postgresql.sslkey, 0, 0, "",
               "libpq `sslkey`: the client certificate's private key; relative paths are "
               "under `data_dir`. Empty: none."),
    ENUM_ROW("reactor_connections", config, storage.postgresql.reactor_connections, switches,
             "on",
             "`on`: each reactor opens its own connection (when it first needs one) and sends "
             "what it asks for in one loop iteration as one pipeline, polled on its own "
             "io_uring ring; `off`: reactors' operations go to the pool below too."),
    UINT_ROW("pool_connections", config, storage.postgresql.pool_connections, 1,
             LIMIT_STORAGE_POSTGRESQL_CONNECTIONS_MAX, "1",
             "Connections of the thread pool that serves whatever does not run on a "
             "reactor (start-up, starlingctl) and, with `reactor_connections: off`, "
             "everything."),
};
static const key_table sqlite_table = TABLE(sqlite_rows);
static const key_table postgresql_table = TABLE(postgresql_rows);

#define SECTION_ROW(name_, children_, doc_)                                                        \
    {                                                                                              \
        name_, KEY_SECTION, 0, 0, 0, 0, 0, NULL, children_, 0, NULL, NULL, doc_                    \
    }

static const key_row storage_rows[] = {
    ENUM_ROW("driver", config, storage.driver, storage_drivers, "sqlite",
             "`sqlite` (embedded, nothing to install) or `postgresql`. Used from issue 4's "
             "storage layer."),
    SECTION_ROW("sqlite", &sqlite_table, "Settings of the `sqlite` driver."),
    SECTION_ROW("postgresql", &postgresql_table, "Settings of the `postgresql` driver."),
};
static const key_table storage_table = TABLE(storage_rows);

static const key_row cluster_rows[] = {
    ENUM_ROW("driver", config, cluster.driver, cluster_drivers, "local",
             "`local`: one node, nothing shared. Redis and Kafka drivers come with the "
             "cluster issue."),
};
static const key_table cluster_table = TABLE(cluster_rows);

static const key_row sessions_rows[] = {
    ENUM_ROW("conflict", config, sessions.conflict, conflict_policies, "replace",
             "A bind of a resource the user already has bound: `replace` ends the older "
             "session with a `conflict` stream error (RFC 6120 section 7.7.2.2); `refuse` "
             "answers the new bind with a `conflict` error."),
};
static const key_table sessions_table = TABLE(sessions_rows);

static const key_row auth_rows[] = {
    {"anonymous_domains", KEY_STRING_LIST, offsetof(config, auth.anonymous_domains),
     FIELD_SIZE(config, auth.anonymous_domains[0]), 0, LIMIT_CONFIG_DOMAINS_MAX, ROW_DOMAIN, NULL,
     NULL, offsetof(config, auth.anonymous_domain_count), NULL, "",
     "Served domains where SASL ANONYMOUS (RFC 4505) logs in a temporary user with a "
     "random name. Empty: none."},
};
static const key_table auth_table = TABLE(auth_rows);

static const key_row limits_rows[] = {
    UINT_ROW("connections_per_reactor", config, limits.connections_per_reactor, 1,
             LIMIT_CONNECTIONS_PER_REACTOR, "65536",
             "Connections one reactor holds (effective: at most RLIMIT_NOFILE); more are "
             "closed at accept."),
};
static const key_table limits_table = TABLE(limits_rows);

static const key_row timeouts_rows[] = {
    UINT_ROW("handshake_ms", config, timeouts.handshake_ms, LIMIT_CONFIG_TIMEOUT_MS_MIN,
             LIMIT_CONFIG_TIMEOUT_MS_MAX, "30000",
             "Time from accept until the session is bound; then the stream is closed."),
    UINT_ROW("idle_ms", config, timeouts.idle_ms, LIMIT_CONFIG_TIMEOUT_MS_MIN,
             LIMIT_CONFIG_TIMEOUT_MS_MAX, "600000", "Silence after which a stream is closed."),
    UINT_ROW("write_ms", config, timeouts.write_ms, LIMIT_CONFIG_TIMEOUT_MS_MIN,
             LIMIT_CONFIG_TIMEOUT_MS_MAX, "30000",
             "Time queued bytes may wait without the peer reading any before the "
             "connection is closed."),
};
static const key_table timeouts_table = TABLE(timeouts_rows);

static const key_row logging_rows[] = {
    ENUM_ROW("level", config, logging.level, log_levels, "info",
             "Lowest level written: debug, info, warning, error."),
    ENUM_ROW("format", config, logging.format, log_formats, "human",
             "`human`: one plain line per event; `json`: one JSON object per line."),
    STRING_ROW("destination", config, logging.destination, 1, 0, "stderr",
               "`stderr`, or a file path (appended to; relative paths are under the "
               "working directory)."),
};
static const key_table logging_table = TABLE(logging_rows);

static const key_row root_rows[] = {
    STRING_ROW("data_dir", config, data_dir, 1, 0, "./data",
               "Directory for state (SQLite database, generated certificates); relative to "
               "the working directory; needs no root. Created when something is first stored "
               "there."),
    UINT_ROW("reactors", config, reactors, 0, LIMIT_REACTORS_MAX, "0",
             "Reactor threads, each with its own io_uring ring; 0 = one per online core."),
    UINT_ROW("shutdown_grace_ms", config, shutdown_grace_ms, 0, LIMIT_CONFIG_TIMEOUT_MS_MAX,
             "10000",
             "After SIGTERM/SIGINT, time streams get to close cleanly before the rest are "
             "cut."),
    {"domains", KEY_STRING_LIST, offsetof(config, domains), FIELD_SIZE(config, domains[0]), 1,
     LIMIT_CONFIG_DOMAINS_MAX, ROW_DOMAIN, NULL, NULL, offsetof(config, domain_count), NULL,
     "localhost",
     "Domains served; a stream's `to` must name one of them (else `host-unknown`). "
     "Compared in their prepared form (RFC 7622: IDNA2008 U-labels, lower case)."},
    {"listeners", KEY_TABLE_LIST, offsetof(config, listeners), sizeof(config_listener), 0,
     LIMIT_LISTENERS_PER_REACTOR, 0, NULL, &listener_table, offsetof(config, listener_count),
     listener_check, "[{port: 5222, tls: starttls}, {port: 5223, tls: direct}]",
     "Sockets to accept on (each on every reactor). Every `c2s` listener is opened; "
     "`s2s` ones wait for federation."},
    {"certificates", KEY_TABLE_LIST, offsetof(config, certificates), sizeof(config_certificate), 0,
     LIMIT_CONFIG_DOMAINS_MAX, 0, NULL, &certificate_table, offsetof(config, certificate_count),
     certificate_check, "[]",
     "Certificate and key per domain. A domain without one gets a self-signed certificate "
     "generated into `data_dir` at first start (from issue 5)."},
    SECTION_ROW("storage", &storage_table, "Where accounts, rosters and archives live."),
    SECTION_ROW("cluster", &cluster_table, "How nodes share sessions and routes."),
    SECTION_ROW("sessions", &sessions_table, "Client sessions."),
    SECTION_ROW("auth", &auth_table, "Authentication (SASL)."),
    SECTION_ROW("limits", &limits_table, "Bounds an operator may tune (proto/limits.h)."),
    SECTION_ROW("timeouts", &timeouts_table, "Connection timeouts."),
    SECTION_ROW("logging", &logging_table, "Log lines."),
};
static const key_table root_table = TABLE(root_rows);

/* ------------------------------------------------------------------ errors */

/* The state of one load: the place being read (for messages) and the key
 * path under it. */
typedef struct load {
    const char *name; /* file name, or "environment" */
    char place[320];  /* "file:line:column" or "environment NAME" */
    char path[256];   /* dotted key path, e.g. storage.postgresql.port */
    size_t path_length;
    config_error *error;
    /* Secret rows the environment has set (as KEY or KEY_FILE), to refuse
     * both; the schema has few secrets. */
    const key_row *environment_secrets[8];
    unsigned environment_secret_count;
} load;

static void set_place_mark(load *state, yaml_mark_t mark)
{
    snprintf(state->place, sizeof state->place, "%s:%zu:%zu", state->name, mark.line + 1,
             mark.column + 1);
}

static int fail(load *state, const char *format, ...) __attribute__((format(printf, 2, 3)));
static int fail(load *state, const char *format, ...)
{
    char why[CONFIG_ERROR_BYTES / 2];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(why, sizeof why, format, arguments);
    va_end(arguments);
    if (state->path_length > 0)
        snprintf(state->error->message, sizeof state->error->message, "%s: %s: %s", state->place,
                 state->path, why);
    else
        snprintf(state->error->message, sizeof state->error->message, "%s: %s", state->place, why);
    return -1;
}

/* Appends ".name" (or "name" at the top, or "[index]" when name is NULL)
 * to the key path; returns the length to restore with path_pop. */
static size_t path_push(load *state, const char *name, unsigned index)
{
    size_t saved = state->path_length;
    size_t room = sizeof state->path - saved;
    int written;
    if (name == NULL)
        written = snprintf(state->path + saved, room, "[%u]", index);
    else
        written = snprintf(state->path + saved, room, "%s%s", saved > 0 ? "." : "", name);
    if (written > 0)
        state->path_length = (size_t)written >= room ? sizeof state->path - 1 : saved + written;
    return saved;
}

static void path_pop(load *state, size_t saved)
{
    state->path_length = saved;
    state->path[saved] = '\0';
}

/* A value quoted for a message: printable ASCII kept, other bytes shown as
 * '?', long values cut, so that a message stays one readable line. */
static const char *quoted(const char *text, size_t length, char *buffer, size_t size)
{
    size_t shown = length < size - 6 ? length : size - 6;
    size_t used = 0;
    buffer[used++] = '"';
    for (size_t i = 0; i < shown; i++)
        buffer[used++] = (text[i] >= 0x20 && text[i] < 0x7f) ? text[i] : '?';
    if (shown < length) {
        memcpy(buffer + used, "...", 3);
        used += 3;
    }
    buffer[used++] = '"';
    buffer[used] = '\0';
    return buffer;
}

/* What a row wants, for messages and the reference. */
static void describe(const key_row *row, char *buffer, size_t size)
{
    switch (row->kind) {
    case KEY_UINT:
        snprintf(buffer, size, "an integer %lu..%lu", row->minimum, row->maximum);
        return;
    case KEY_STRING:
    case KEY_SECRET:
        snprintf(buffer, size, "%s of at most %zu bytes",
                 row->flags & ROW_DOMAIN    ? "a domain name"
                 : row->flags & ROW_ADDRESS ? "an IP address"
                                            : "a string",
                 row->size - 1);
        return;
    case KEY_ENUM: {
        size_t used = (size_t)snprintf(buffer, size, "one of");
        for (size_t i = 0; row->choices[i] != NULL && used < size; i++)
            used += (size_t)snprintf(buffer + used, size - used, "%s %s", i > 0 ? "," : "",
                                     row->choices[i]);
        return;
    }
    case KEY_SECTION:
        snprintf(buffer, size, "a mapping");
        return;
    case KEY_STRING_LIST:
        snprintf(buffer, size, "a list of %lu..%lu %s", row->minimum, row->maximum,
                 row->flags & ROW_DOMAIN ? "domain names" : "strings");
        return;
    case KEY_TABLE_LIST:
        snprintf(buffer, size, "a list of at most %lu mappings", row->maximum);
        return;
    }
}

static int fail_wants(load *state, const key_row *row, const char *text, size_t length)
{
    char wants[256];
    char shown[80];
    describe(row, wants, sizeof wants);
    return fail(state, "wants %s, not %s", wants, quoted(text, length, shown, sizeof shown));
}

/* ------------------------------------------------------------ scalar values */

static bool domain_is_valid(const char *text, size_t length)
{
    if (length == 0 || text[0] == '.' || text[length - 1] == '.')
        return false;
    for (size_t i = 0; i < length; i++) {
        unsigned char byte = (unsigned char)text[i];
        if (!(isalnum(byte) || byte == '-' || byte == '.'))
            return false;
        if (byte == '.' && text[i + 1] == '.')
            return false;
    }
    return true;
}

static bool address_is_valid(const char *text)
{
    unsigned char scratch[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, text, scratch) == 1 || inet_pton(AF_INET6, text, scratch) == 1;
}

/* Stores text (length bytes, not NUL-terminated) into the string field. */
static int store_string(load *state, const key_row *row, char *field, const char *text,
                        size_t length)
{
    char shown[80];
    if (memchr(text, '\0', length) != NULL)
        return fail(state, "holds a NUL byte");
    if (length > row->size - 1)
        return fail(state, "is longer than %zu bytes", row->size - 1);
    if (length < row->minimum)
        return fail(state, "must not be empty");
    memcpy(field, text, length);
    field[length] = '\0';
    if ((row->flags & ROW_DOMAIN) && !domain_is_valid(field, length))
        return fail(state, "wants a domain name (ASCII letters, digits, '-' and '.'), not %s",
                    quoted(text, length, shown, sizeof shown));
    if ((row->flags & ROW_ADDRESS) && !address_is_valid(field))
        return fail(state, "wants an IPv4 or IPv6 address literal, not %s",
                    quoted(text, length, shown, sizeof shown));
    return 0;
}

static int store_uint(load *state, const key_row *row, unsigned *field, const char *text,
                      size_t length)
{
    unsigned long value = 0;
    /* A leading zero is refused: YAML 1.1 reads 010 as octal 8, and no
     * reader of the file should have to know which YAML is meant. */
    if (length == 0 || length > 10 || (length > 1 && text[0] == '0'))
        return fail_wants(state, row, text, length);
    for (size_t i = 0; i < length; i++) {
        if (text[i] < '0' || text[i] > '9')
            return fail_wants(state, row, text, length);
        value = value * 10u + (unsigned long)(text[i] - '0');
    }
    if (value < row->minimum || value > row->maximum)
        return fail_wants(state, row, text, length);
    *field = (unsigned)value;
    return 0;
}

static int store_enum(load *state, const key_row *row, unsigned *field, const char *text,
                      size_t length)
{
    for (unsigned i = 0; row->choices[i] != NULL; i++) {
        if (strlen(row->choices[i]) == length && memcmp(row->choices[i], text, length) == 0) {
            *field = i;
            return 0;
        }
    }
    return fail_wants(state, row, text, length);
}

/* Applies a scalar's text to a scalar row of the struct at base. */
static int apply_text(load *state, const key_row *row, char *base, const char *text, size_t length)
{
    switch (row->kind) {
    case KEY_UINT:
        return store_uint(state, row, (unsigned *)(base + row->offset), text, length);
    case KEY_STRING:
    case KEY_SECRET:
        return store_string(state, row, base + row->offset, text, length);
    case KEY_ENUM:
        return store_enum(state, row, (unsigned *)(base + row->offset), text, length);
    case KEY_SECTION:
    case KEY_STRING_LIST:
    case KEY_TABLE_LIST:
        break;
    }
    return fail_wants(state, row, text, length);
}

/* Reads a secret from the file named by path_text: the content with its
 * trailing newlines trimmed, at most the secret bound. */
static int apply_secret_file(load *state, const key_row *row, char *base, const char *path_text,
                             size_t path_length)
{
    char path[CONFIG_STRING_BYTES];
    char shown[80];
    if (path_length == 0 || path_length >= sizeof path || memchr(path_text, '\0', path_length))
        return fail(state, "wants a file path, not %s",
                    quoted(path_text, path_length, shown, sizeof shown));
    memcpy(path, path_text, path_length);
    path[path_length] = '\0';
    /* A secret is a regular file (Kubernetes mounts them so); anything else,
     * a FIFO or a terminal, could block the start forever. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return fail(state, "cannot read %s: %s", quoted(path, path_length, shown, sizeof shown),
                    strerror(errno));
    struct stat status;
    if (fstat(fd, &status) != 0 || !S_ISREG(status.st_mode)) {
        close(fd);
        return fail(state, "cannot read %s: not a regular file",
                    quoted(path, path_length, shown, sizeof shown));
    }
    char secret[CONFIG_SECRET_BYTES + 1];
    size_t length = 0;
    while (length < sizeof secret) {
        ssize_t got = read(fd, secret + length, sizeof secret - length);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            int error = errno;
            close(fd);
            return fail(state, "cannot read %s: %s", quoted(path, path_length, shown, sizeof shown),
                        strerror(error));
        }
        if (got == 0)
            break;
        length += (size_t)got;
    }
    close(fd);
    while (length > 0 && (secret[length - 1] == '\n' || secret[length - 1] == '\r'))
        length--;
    if (length > LIMIT_CONFIG_SECRET_BYTES_MAX)
        return fail(state, "%s holds more than %u bytes",
                    quoted(path, path_length, shown, sizeof shown), LIMIT_CONFIG_SECRET_BYTES_MAX);
    int result = store_string(state, row, base + row->offset, secret, length);
    memset(secret, 0, sizeof secret);
    return result;
}

/* --------------------------------------------------------------- YAML walk */

static int apply_node(load *state, yaml_document_t *document, const key_row *row, char *base,
                      yaml_node_t *node);

static const char *node_kind_name(const yaml_node_t *node)
{
    return node->type == YAML_MAPPING_NODE ? "a mapping" : "a list";
}

static int fail_node_wants(load *state, const key_row *row, const yaml_node_t *node)
{
    if (node->type == YAML_SCALAR_NODE)
        return fail_wants(state, row, (const char *)node->data.scalar.value,
                          node->data.scalar.length);
    char wants[256];
    describe(row, wants, sizeof wants);
    return fail(state, "wants %s, not %s", wants, node_kind_name(node));
}

/* Finds the row a mapping key names; *from_file is set when the key is the
 * NAME_file form of a secret row. */
static const key_row *find_row(const key_table *table, const char *name, size_t length,
                               bool *from_file)
{
    static const char suffix[] = "_file";
    *from_file = false;
    for (size_t i = 0; i < table->count; i++) {
        const key_row *row = &table->rows[i];
        size_t name_length = strlen(row->name);
        if (name_length == length && memcmp(row->name, name, length) == 0)
            return row;
        if (row->kind == KEY_SECRET && length == name_length + sizeof suffix - 1 &&
            memcmp(row->name, name, name_length) == 0 &&
            memcmp(name + name_length, suffix, sizeof suffix - 1) == 0) {
            *from_file = true;
            return row;
        }
    }
    return NULL;
}

/* Fills the rows of table at base from a mapping node. *seen gets one bit
 * per row that the mapping set. */
static int apply_mapping(load *state, yaml_document_t *document, const key_table *table, char *base,
                         yaml_node_t *node, uint64_t *seen)
{
    size_t first_line[64] = {0};
    assert(table->count <= 64);
    *seen = 0;
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *key = yaml_document_get_node(document, pair->key);
        yaml_node_t *value = yaml_document_get_node(document, pair->value);
        assert(key != NULL && value != NULL);
        set_place_mark(state, key->start_mark);
        if (key->type != YAML_SCALAR_NODE)
            return fail(state, "wants a key name, not %s", node_kind_name(key));
        const char *name = (const char *)key->data.scalar.value;
        size_t length = key->data.scalar.length;
        bool from_file;
        const key_row *row = find_row(table, name, length, &from_file);
        char shown[80];
        if (row == NULL) {
            /* The key as written, made printable, ends the path. */
            quoted(name, length, shown, sizeof shown);
            shown[strlen(shown) - 1] = '\0';
            path_push(state, shown + 1, 0);
            return fail(state, "unknown key (see deploy/CONFIG.md)");
        }
        size_t index = (size_t)(row - table->rows);
        /* libyaml NUL-terminates scalars; the name is a known key here. */
        size_t saved = path_push(state, name, 0);
        if (*seen & (UINT64_C(1) << index)) {
            int result =
                fail(state, "set twice (first at line %zu)%s", first_line[index],
                     row->kind == KEY_SECRET ? "; a secret and its _file count as one" : "");
            path_pop(state, saved);
            return result;
        }
        *seen |= UINT64_C(1) << index;
        first_line[index] = key->start_mark.line + 1;
        set_place_mark(state, value->start_mark);
        int result;
        if (from_file) {
            if (value->type != YAML_SCALAR_NODE) {
                result = fail(state, "%s_file wants a file path, not %s", row->name,
                              node_kind_name(value));
            } else {
                result = apply_secret_file(state, row, base, (const char *)value->data.scalar.value,
                                           value->data.scalar.length);
            }
        } else {
            result = apply_node(state, document, row, base, value);
        }
        path_pop(state, saved);
        if (result != 0)
            return result;
    }
    return 0;
}

static int apply_string_list(load *state, yaml_document_t *document, const key_row *row, char *base,
                             yaml_node_t *node)
{
    unsigned *count = (unsigned *)(base + row->count_offset);
    *count = 0;
    for (yaml_node_item_t *item = node->data.sequence.items.start;
         item < node->data.sequence.items.top; item++) {
        yaml_node_t *element = yaml_document_get_node(document, *item);
        assert(element != NULL);
        set_place_mark(state, element->start_mark);
        size_t saved = path_push(state, NULL, *count);
        if (*count >= row->maximum) {
            int result = fail(state, "a list of at most %lu entries", row->maximum);
            path_pop(state, saved);
            return result;
        }
        if (element->type != YAML_SCALAR_NODE) {
            int result = fail_node_wants(state, row, element);
            path_pop(state, saved);
            return result;
        }
        char *field = base + row->offset + (size_t)*count * row->size;
        key_row scalar = *row;
        scalar.kind = KEY_STRING;
        scalar.offset = 0;
        int result = store_string(state, &scalar, field, (const char *)element->data.scalar.value,
                                  element->data.scalar.length);
        for (unsigned i = 0; result == 0 && i < *count; i++)
            if (strcmp(base + row->offset + (size_t)i * row->size, field) == 0)
                result = fail(state, "is listed twice (also entry %u)", i);
        path_pop(state, saved);
        if (result != 0)
            return result;
        (*count)++;
    }
    if (*count < row->minimum) {
        set_place_mark(state, node->start_mark);
        return fail(state, "wants at least %lu entries", row->minimum);
    }
    return 0;
}

static void apply_scalar_defaults(const key_table *table, char *base);

static int apply_table_list(load *state, yaml_document_t *document, const key_row *row, char *base,
                            yaml_node_t *node)
{
    unsigned *count = (unsigned *)(base + row->count_offset);
    *count = 0;
    for (yaml_node_item_t *item = node->data.sequence.items.start;
         item < node->data.sequence.items.top; item++) {
        yaml_node_t *element = yaml_document_get_node(document, *item);
        assert(element != NULL);
        set_place_mark(state, element->start_mark);
        size_t saved = path_push(state, NULL, *count);
        int result = 0;
        char *slot = base + row->offset + (size_t)*count * row->size;
        uint64_t seen = 0;
        if (*count >= row->maximum)
            result = fail(state, "a list of at most %lu entries", row->maximum);
        else if (element->type != YAML_MAPPING_NODE)
            result = fail(state, "wants a mapping, not %s",
                          element->type == YAML_SCALAR_NODE ? "a scalar" : "a list");
        if (result == 0) {
            memset(slot, 0, row->size);
            apply_scalar_defaults(row->children, slot);
            result = apply_mapping(state, document, row->children, slot, element, &seen);
        }
        for (size_t i = 0; result == 0 && i < row->children->count; i++) {
            const key_row *child = &row->children->rows[i];
            if (child->default_text == NULL && !(seen & (UINT64_C(1) << i))) {
                set_place_mark(state, element->start_mark);
                result = fail(state, "lacks the required key %s", child->name);
            }
        }
        if (result == 0 && row->check != NULL) {
            char why[512];
            set_place_mark(state, element->start_mark);
            if (row->check(base + row->offset, *count, why, sizeof why) != 0)
                result = fail(state, "%s", why);
        }
        path_pop(state, saved);
        if (result != 0)
            return result;
        (*count)++;
    }
    return 0;
}

static int apply_node(load *state, yaml_document_t *document, const key_row *row, char *base,
                      yaml_node_t *node)
{
    switch (row->kind) {
    case KEY_SECTION: {
        if (node->type != YAML_MAPPING_NODE)
            return fail_node_wants(state, row, node);
        uint64_t seen;
        return apply_mapping(state, document, row->children, base, node, &seen);
    }
    case KEY_STRING_LIST:
        if (node->type != YAML_SEQUENCE_NODE)
            return fail_node_wants(state, row, node);
        return apply_string_list(state, document, row, base, node);
    case KEY_TABLE_LIST:
        if (node->type != YAML_SEQUENCE_NODE)
            return fail_node_wants(state, row, node);
        return apply_table_list(state, document, row, base, node);
    case KEY_UINT:
        /* A quoted "5222" is a string in YAML; integers are plain. */
        if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
            return fail_node_wants(state, row, node);
        break;
    case KEY_STRING:
    case KEY_SECRET:
    case KEY_ENUM:
        if (node->type != YAML_SCALAR_NODE)
            return fail_node_wants(state, row, node);
        break;
    }
    return apply_text(state, row, base, (const char *)node->data.scalar.value,
                      node->data.scalar.length);
}

/* Parses one YAML text and applies its top-level mapping over cfg. An
 * empty text changes nothing. */
static int apply_yaml(load *state, config *cfg, const char *bytes, size_t length)
{
    snprintf(state->place, sizeof state->place, "%s", state->name);
    if (length > LIMIT_CONFIG_FILE_BYTES_MAX)
        return fail(state, "is larger than %u bytes", LIMIT_CONFIG_FILE_BYTES_MAX);
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return fail(state, "out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)bytes, length);
    yaml_document_t document;
    int result = 0;
    if (!yaml_parser_load(&parser, &document)) {
        set_place_mark(state, parser.problem_mark);
        result = fail(state, "malformed YAML: %s%s%s", parser.problem ? parser.problem : "error",
                      parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return result;
    }
    yaml_node_t *root = yaml_document_get_root_node(&document);
    if (root != NULL && root->type != YAML_MAPPING_NODE) {
        set_place_mark(state, root->start_mark);
        result = fail(state, "the top level wants a mapping of keys, not %s",
                      root->type == YAML_SCALAR_NODE ? "a scalar" : "a list");
    } else if (root != NULL) {
        uint64_t seen;
        result = apply_mapping(state, &document, &root_table, (char *)cfg, root, &seen);
    }
    yaml_document_delete(&document);
    if (result == 0 && root != NULL) {
        yaml_document_t next;
        if (!yaml_parser_load(&parser, &next)) {
            set_place_mark(state, parser.problem_mark);
            result = fail(state, "malformed YAML: %s", parser.problem ? parser.problem : "error");
        } else {
            yaml_node_t *second = yaml_document_get_root_node(&next);
            if (second != NULL) {
                set_place_mark(state, second->start_mark);
                result = fail(state, "a second YAML document; the file holds one");
            }
            yaml_document_delete(&next);
        }
    }
    yaml_parser_delete(&parser);
    return result;
}

/* ---------------------------------------------------------------- defaults */

/* Applies every scalar default of table at base (lists and sections are
 * left alone: apply_defaults handles them). Defaults are known good; a bad
 * one is a programming error that the unit tests catch. */
static void apply_scalar_defaults(const key_table *table, char *base)
{
    config_error error;
    load state = {.name = "built-in default", .error = &error};
    for (size_t i = 0; i < table->count; i++) {
        const key_row *row = &table->rows[i];
        if (row->default_text == NULL || row->kind == KEY_SECTION || row->kind == KEY_STRING_LIST ||
            row->kind == KEY_TABLE_LIST)
            continue;
        int result = apply_text(&state, row, base, row->default_text, strlen(row->default_text));
        assert(result == 0);
        (void)result;
    }
}

static int apply_string_list_text(load *state, const key_row *row, char *base, const char *text);

static void apply_defaults(const key_table *table, char *base)
{
    config_error error;
    load state = {.name = "built-in default", .error = &error};
    apply_scalar_defaults(table, base);
    for (size_t i = 0; i < table->count; i++) {
        const key_row *row = &table->rows[i];
        int result = 0;
        if (row->kind == KEY_SECTION) {
            apply_defaults(row->children, base);
        } else if (row->kind == KEY_STRING_LIST) {
            result = apply_string_list_text(&state, row, base, row->default_text);
        } else if (row->kind == KEY_TABLE_LIST) {
            /* The default is YAML flow text under the key's name, applied by
             * the same walk as a file. */
            char text[512];
            snprintf(text, sizeof text, "%s: %s", row->name, row->default_text);
            result = apply_yaml(&state, (config *)base, text, strlen(text));
        }
        assert(result == 0);
        (void)result;
    }
}

void config_defaults(config *out)
{
    memset(out, 0, sizeof *out);
    apply_defaults(&root_table, (char *)out);
}

/* ------------------------------------------------------------- environment */

/* A comma-separated list replaces a string list: "a.example,b.example". */
static int apply_string_list_text(load *state, const key_row *row, char *base, const char *text)
{
    unsigned *count = (unsigned *)(base + row->count_offset);
    *count = 0;
    key_row scalar = *row;
    scalar.kind = KEY_STRING;
    scalar.offset = 0;
    const char *start = text;
    if (text[0] == '\0' && row->minimum == 0)
        return 0; /* the empty list */
    for (;;) {
        const char *end = strchr(start, ',');
        size_t length = end != NULL ? (size_t)(end - start) : strlen(start);
        size_t saved = path_push(state, NULL, *count);
        if (*count >= row->maximum) {
            int result = fail(state, "a list of at most %lu entries", row->maximum);
            path_pop(state, saved);
            return result;
        }
        char *field = base + row->offset + (size_t)*count * row->size;
        int result = store_string(state, &scalar, field, start, length);
        for (unsigned i = 0; result == 0 && i < *count; i++)
            if (strcmp(base + row->offset + (size_t)i * row->size, field) == 0)
                result = fail(state, "is listed twice (also entry %u)", i);
        path_pop(state, saved);
        if (result != 0)
            return result;
        (*count)++;
        if (end == NULL)
            break;
        start = end + 1;
    }
    return 0;
}

/* Does rest start with name in upper case, followed by '_' or the end?
 * Returns the length matched, or 0. */
static size_t match_upper(const char *rest, const char *name)
{
    size_t i = 0;
    for (; name[i] != '\0'; i++)
        if (rest[i] != (char)toupper((unsigned char)name[i]))
            return 0;
    return (rest[i] == '\0' || rest[i] == '_') ? i : 0;
}

/* Applies one variable (rest: the name after STARLING_ and the sections
 * matched so far) under table at base. Returns 1 when applied, 0 when no
 * key has this name, -1 on a bad value. Names are matched by trying each
 * row, so keys with underscores (data_dir) need no escaping. */
static int apply_element_variable(load *state, const key_row *row, char *base, const char *rest,
                                  const char *value);

/* Records that the environment set the secret row; true when it already
 * had (a secret and its _FILE are one key, set once). */
static bool environment_secret_seen(load *state, const key_row *row)
{
    for (unsigned i = 0; i < state->environment_secret_count; i++)
        if (state->environment_secrets[i] == row)
            return true;
    assert(state->environment_secret_count < 8);
    state->environment_secrets[state->environment_secret_count++] = row;
    return false;
}

static int apply_variable(load *state, const key_table *table, char *base, const char *rest,
                          const char *value)
{
    for (size_t i = 0; i < table->count; i++) {
        const key_row *row = &table->rows[i];
        size_t matched = match_upper(rest, row->name);
        if (matched == 0)
            continue;
        const char *after = rest + matched;
        bool secret_value = row->kind == KEY_SECRET && *after == '\0';
        bool secret_file = row->kind == KEY_SECRET && strcmp(after, "_FILE") == 0;
        char file_key[64];
        snprintf(file_key, sizeof file_key, "%s_file", row->name);
        size_t saved = path_push(state, secret_file ? file_key : row->name, 0);
        int result = 0;
        if ((secret_value || secret_file) && environment_secret_seen(state, row)) {
            result = fail(state, "set twice in the environment; a secret and its _FILE count "
                                 "as one");
        } else if (*after == '\0') {
            if (row->kind == KEY_STRING_LIST)
                result = apply_string_list_text(state, row, base, value) == 0 ? 1 : -1;
            else if (row->kind != KEY_SECTION && row->kind != KEY_TABLE_LIST)
                result = apply_text(state, row, base, value, strlen(value)) == 0 ? 1 : -1;
        } else if (secret_file) {
            result = apply_secret_file(state, row, base, value, strlen(value)) == 0 ? 1 : -1;
        } else if (row->kind == KEY_SECTION) {
            result = apply_variable(state, row->children, base, after + 1, value);
        } else if (row->kind == KEY_TABLE_LIST) {
            result = apply_element_variable(state, row, base, after + 1, value);
        }
        path_pop(state, saved);
        if (result != 0)
            return result;
    }
    return 0;
}

/* STARLING_LISTENERS_<index>_<KEY>: one key of an element the file (or the
 * defaults) already has; the element is checked again afterwards. */
static int apply_element_variable(load *state, const key_row *row, char *base, const char *rest,
                                  const char *value)
{
    unsigned index = 0;
    size_t digits = 0;
    while (rest[digits] >= '0' && rest[digits] <= '9' && digits < 3)
        index = index * 10u + (unsigned)(rest[digits++] - '0');
    if (digits == 0 || rest[digits] != '_')
        return 0;
    unsigned count = *(const unsigned *)(base + row->count_offset);
    size_t saved = path_push(state, NULL, index);
    int result;
    if (index >= count) {
        result = fail(state,
                      "no such entry: the list has %u (the environment sets keys of "
                      "existing entries only)",
                      count);
    } else {
        char *elements = base + row->offset;
        result = apply_variable(state, row->children, elements + (size_t)index * row->size,
                                rest + digits + 1, value);
        char why[512];
        if (result == 1 && row->check != NULL && row->check(elements, index, why, sizeof why))
            result = fail(state, "%s", why);
    }
    path_pop(state, saved);
    return result;
}

/* STARLING_ variables that belong to the build and test scripts, not to
 * the server (tests/run exports STARLING_FUZZ_SECONDS to every test it
 * starts, servers included); they are not configuration and not errors. */
static const char *const reserved_variables[] = {"STARLING_FUZZ_SECONDS", NULL};

static bool variable_is_reserved(const char *name)
{
    for (size_t i = 0; reserved_variables[i] != NULL; i++)
        if (strcmp(reserved_variables[i], name) == 0)
            return true;
    return false;
}

static int apply_environment(load *state, config *cfg, char *const *environment)
{
    static const char prefix[] = "STARLING_";
    for (size_t i = 0; environment != NULL && environment[i] != NULL; i++) {
        const char *entry = environment[i];
        const char *equals = strchr(entry, '=');
        if (strncmp(entry, prefix, sizeof prefix - 1) != 0 || equals == NULL)
            continue;
        char name[256];
        size_t name_length = (size_t)(equals - entry);
        snprintf(state->place, sizeof state->place, "environment %.*s", (int)name_length, entry);
        state->path_length = 0;
        state->path[0] = '\0';
        if (name_length >= sizeof name)
            return fail(state, "no such configuration key (see deploy/CONFIG.md)");
        memcpy(name, entry, name_length);
        name[name_length] = '\0';
        if (variable_is_reserved(name))
            continue;
        int result =
            apply_variable(state, &root_table, (char *)cfg, name + sizeof prefix - 1, equals + 1);
        if (result < 0)
            return -1;
        if (result == 0) {
            state->path_length = 0;
            state->path[0] = '\0';
            return fail(state, "no such configuration key (see deploy/CONFIG.md)");
        }
    }
    return 0;
}

/* ------------------------------------------------------------ cross checks */

static bool address_is_loopback(const char *address)
{
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, address, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127u;
    return inet_pton(AF_INET6, address, &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

static int listener_check(const void *elements, unsigned index, char *why, size_t why_size)
{
    const config_listener *listeners = elements;
    const config_listener *listener = &listeners[index];
    if (listener->tls == CONFIG_TLS_PLAINTEXT && !address_is_loopback(listener->address)) {
        snprintf(why, why_size,
                 "tls: plaintext is allowed on loopback addresses only (127.0.0.0/8, ::1), "
                 "not on %s",
                 listener->address);
        return -1;
    }
    for (unsigned i = 0; i < index; i++) {
        if (listeners[i].port == listener->port &&
            strcmp(listeners[i].address, listener->address) == 0) {
            snprintf(why, why_size, "port: %s port %u is already listener %u's", listener->address,
                     listener->port, i);
            return -1;
        }
    }
    return 0;
}

static int certificate_check(const void *elements, unsigned index, char *why, size_t why_size)
{
    const config_certificate *certificates = elements;
    for (unsigned i = 0; i < index; i++) {
        if (strcmp(certificates[i].domain, certificates[index].domain) == 0) {
            snprintf(why, why_size, "domain: %s already has a certificate (entry %u)",
                     certificates[index].domain, i);
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ loading */

int config_load_buffer(config *out, const char *name, const char *bytes, size_t length,
                       char *const *environment, config_error *error)
{
    config *candidate = malloc(sizeof *candidate);
    if (candidate == NULL) {
        snprintf(error->message, sizeof error->message, "%s: out of memory", name);
        return -1;
    }
    config_defaults(candidate);
    load state = {.name = name, .error = error};
    int result = bytes != NULL ? apply_yaml(&state, candidate, bytes, length) : 0;
    if (result == 0)
        result = apply_environment(&state, candidate, environment);
    if (result == 0)
        memcpy(out, candidate, sizeof *candidate);
    memset(candidate, 0, sizeof *candidate); /* it may hold a password */
    free(candidate);
    return result;
}

int config_load(config *out, const char *path, char *const *environment, config_error *error)
{
    if (path == NULL)
        return config_load_buffer(out, "defaults", NULL, 0, environment, error);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(error->message, sizeof error->message, "%s: cannot read: %s", path,
                 strerror(errno));
        return -1;
    }
    /* One byte more than the bound tells a file at the bound from a larger
     * one; apply_yaml refuses the latter. */
    size_t capacity = LIMIT_CONFIG_FILE_BYTES_MAX + 1u;
    char *bytes = malloc(capacity);
    size_t length = 0;
    int read_error = bytes == NULL ? ENOMEM : 0;
    while (read_error == 0 && length < capacity) {
        ssize_t got = read(fd, bytes + length, capacity - length);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            read_error = errno;
        else if (got == 0)
            break;
        else
            length += (size_t)got;
    }
    close(fd);
    int result;
    if (read_error != 0) {
        snprintf(error->message, sizeof error->message, "%s: cannot read: %s", path,
                 strerror(read_error));
        result = -1;
    } else {
        result = config_load_buffer(out, path, bytes, length, environment, error);
    }
    free(bytes);
    return result;
}

int config_data_path(const config *settings, const char *path, char *out, size_t size)
{
    int written = path[0] == '/' ? snprintf(out, size, "%s", path)
                                 : snprintf(out, size, "%s/%s", settings->data_dir, path);
    return written >= 0 && (size_t)written < size ? 0 : -1;
}

/* ---------------------------------------------------------------- reference */

static const key_row *find_path(const key_table *table, const char *path)
{
    const char *dot = strchr(path, '.');
    size_t length = dot != NULL ? (size_t)(dot - path) : strlen(path);
    for (size_t i = 0; i < table->count; i++) {
        const key_row *row = &table->rows[i];
        if (strlen(row->name) != length || memcmp(row->name, path, length) != 0)
            continue;
        if (dot == NULL)
            return row;
        return row->children != NULL ? find_path(row->children, dot + 1) : NULL;
    }
    return NULL;
}

const char *config_enum_name(const char *key_path, unsigned value)
{
    const key_row *row = find_path(&root_table, key_path);
    if (row == NULL || row->kind != KEY_ENUM)
        return "?";
    for (unsigned i = 0; row->choices[i] != NULL; i++)
        if (i == value)
            return row->choices[i];
    return "?";
}

static const char reference_head[] =
    "# Starling configuration reference\n"
    "\n"
    "Generated from the schema table in `server/config/config.c` by\n"
    "`starling-config-doc`; a test fails when this file differs from its output.\n"
    "Do not edit by hand: change the table and run\n"
    "`build/release/server/config/starling-config-doc > deploy/CONFIG.md`.\n"
    "\n"
    "## Where settings come from\n"
    "\n"
    "Lowest first; each layer overrides the ones before it:\n"
    "\n"
    "1. built-in defaults (the Default column): they work on one machine with\n"
    "   nothing else installed;\n"
    "2. the YAML file given with `starling --config FILE` (there is no default\n"
    "   path: without `--config` no file is read);\n"
    "3. `STARLING_*` environment variables;\n"
    "4. the command-line options (`starling --help`).\n"
    "\n"
    "`starling --check-config FILE` loads the file and the environment, prints\n"
    "`FILE: ok` or the error, and exits 0 or 1 without starting. A bad\n"
    "configuration stops `starling` at start with the same message and exit\n"
    "status 2.\n"
    "\n"
    "## Rules\n"
    "\n"
    "- Unknown keys, wrong types, out-of-range or unknown values, keys set twice,\n"
    "  malformed YAML, an unreadable file and an unreadable `password_file` all\n"
    "  stop the load with one message naming the file, line, column and key\n"
    "  path, e.g. `starling.yaml:12:11: storage.postgresql.port: wants an\n"
    "  integer 1..65535, not \"abc\"`. Nothing of a failed load is used.\n"
    "- Integers are plain decimal YAML scalars without a leading zero (`5222`,\n"
    "  not `\"5222\"` or `05222`).\n"
    "- A list in the file replaces the default list; it is not merged.\n"
    "- A secret key (marked *secret*) may instead be given as `KEY_file: PATH`:\n"
    "  the file's content, trailing newlines trimmed, at most\n"
    "  `LIMIT_CONFIG_SECRET_BYTES_MAX` bytes, read at load (the way Kubernetes\n"
    "  mounts secrets). Setting both `KEY` and `KEY_file` in the file, or both\n"
    "  `STARLING_..._KEY` and `STARLING_..._KEY_FILE`, is an error; the\n"
    "  environment's one overrides the file's either way.\n"
    "- Relative paths are relative to the working directory, except where a key\n"
    "  says they are under `data_dir`.\n"
    "- The file is at most `LIMIT_CONFIG_FILE_BYTES_MAX` bytes and holds one\n"
    "  YAML document.\n"
    "\n"
    "## Environment variables\n"
    "\n"
    "`STARLING_` followed by the key path in upper case with `_` between the\n"
    "parts: `storage.driver` is `STARLING_STORAGE_DRIVER`,\n"
    "`storage.postgresql.password_file` is\n"
    "`STARLING_STORAGE_POSTGRESQL_PASSWORD_FILE`, the top-level `data_dir` is\n"
    "`STARLING_DATA_DIR`.\n"
    "\n"
    "- A list of strings is one comma-separated value that replaces the list:\n"
    "  `STARLING_DOMAINS=a.example,b.example`.\n"
    "- A key of a list of mappings is addressed by the entry's index, from 0, and\n"
    "  only an entry the file (or the defaults) has can be set:\n"
    "  `STARLING_LISTENERS_0_PORT=5322`.\n"
    "- Values are taken as they are (no YAML quoting).\n"
    "- Any other variable whose name starts with `STARLING_` is refused at start,\n"
    "  naming the variable, so that a typo cannot go unnoticed. The one exception\n"
    "  is `STARLING_FUZZ_SECONDS`, which belongs to `tests/run`.\n"
    "\n"
    "## Keys\n"
    "\n"
    "| Key | Type | Default | Environment | Meaning |\n"
    "|-----|------|---------|-------------|---------|\n";

static int write_rows(FILE *out, const key_table *table, const char *key_prefix,
                      const char *env_prefix)
{
    for (size_t i = 0; i < table->count; i++) {
        const key_row *row = &table->rows[i];
        char key[160], env[200], type[256], upper[64];
        size_t j = 0;
        for (; row->name[j] != '\0' && j + 1 < sizeof upper; j++)
            upper[j] = (char)toupper((unsigned char)row->name[j]);
        upper[j] = '\0';
        snprintf(key, sizeof key, "%s%s", key_prefix, row->name);
        snprintf(env, sizeof env, "%s%s", env_prefix, upper);
        if (row->kind == KEY_SECTION) {
            char next_key[200], next_env[240];
            snprintf(next_key, sizeof next_key, "%s.", key);
            snprintf(next_env, sizeof next_env, "%s_", env);
            if (fprintf(out, "| `%s` | mapping | | | %s |\n", key, row->doc) < 0 ||
                write_rows(out, row->children, next_key, next_env) != 0)
                return -1;
            continue;
        }
        describe(row, type, sizeof type);
        const char *fallback = row->default_text;
        char shown[600];
        if (fallback == NULL)
            snprintf(shown, sizeof shown, "(required)");
        else if (fallback[0] == '\0')
            snprintf(shown, sizeof shown, "`\"\"`");
        else
            snprintf(shown, sizeof shown, "`%s`", fallback);
        char env_shown[240];
        snprintf(env_shown, sizeof env_shown, row->kind == KEY_TABLE_LIST ? "(per entry)" : "`%s`",
                 env);
        if (fprintf(out, "| `%s` | %s%s | %s | %s | %s |\n", key, type,
                    row->kind == KEY_SECRET ? " (*secret*)" : "", shown, env_shown, row->doc) < 0)
            return -1;
        if (row->kind == KEY_SECRET &&
            fprintf(out, "| `%s_file` | a file path | | `%s_FILE` | File holding `%s`. |\n", key,
                    env, row->name) < 0)
            return -1;
        if (row->kind == KEY_TABLE_LIST) {
            char next_key[200], next_env[240];
            snprintf(next_key, sizeof next_key, "%s[].", key);
            snprintf(next_env, sizeof next_env, "%s_<i>_", env);
            if (write_rows(out, row->children, next_key, next_env) != 0)
                return -1;
        }
    }
    return 0;
}

int config_write_reference(FILE *out)
{
    if (fputs(reference_head, out) < 0 || write_rows(out, &root_table, "", "STARLING_") != 0)
        return -1;
    return 0;
}
