/*
 * test_config.c: the configuration loader. Every refusal class (unknown
 * key, wrong type, out of range, bad enum, duplicate key, malformed YAML,
 * unreadable file, unreadable password_file, bad environment variable) with
 * the place and key path its message must name; that a failed load leaves
 * the caller's struct untouched; the defaults; password_file; and the
 * precedence of the environment over the file.
 *
 * argv[1] is deploy/starling.example.yaml, which must load.
 */
#include "server/config/config.h"
#include "tests/proto/check.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static config loaded;
static config_error error;

static int load_text(const char *text, char *const *environment)
{
    return config_load_buffer(&loaded, "t.yaml", text, strlen(text), environment, &error);
}

/* The load must fail, leave the struct as it was, and say expected. */
static void expect_refusal(const char *label, const char *text, char *const *environment,
                           const char *expected)
{
    check_label = label;
    config before;
    memset(&loaded, 0x5a, sizeof loaded);
    memcpy(&before, &loaded, sizeof before);
    CHECK(load_text(text, environment) == -1);
    CHECK(memcmp(&before, &loaded, sizeof before) == 0);
    if (strstr(error.message, expected) == NULL) {
        fprintf(stderr, "[%s] message '%s' lacks '%s'\n", label, error.message, expected);
        CHECK(!"message names the place and key");
    }
}

static void expect_ok(const char *label, const char *text, char *const *environment)
{
    check_label = label;
    int result = load_text(text, environment);
    if (result != 0)
        fprintf(stderr, "[%s] unexpected: %s\n", label, error.message);
    CHECK(result == 0);
}

/* Writes content to a fresh temporary file; returns its path (static). */
static const char *temporary_file(const char *content, size_t length)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/starling-config-test-XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, content, length) == (ssize_t)length);
    close(fd);
    return path;
}

static void test_defaults(void)
{
    check_label = "defaults";
    config defaults;
    config_defaults(&defaults);
    CHECK(strcmp(defaults.data_dir, "./data") == 0);
    CHECK(defaults.reactors == 0);
    CHECK(defaults.shutdown_grace_ms == LIMIT_SHUTDOWN_GRACE_MS);
    CHECK(defaults.domain_count == 1 && strcmp(defaults.domains[0], "localhost") == 0);
    CHECK(defaults.listener_count == 2);
    CHECK(defaults.listeners[0].type == CONFIG_LISTENER_C2S);
    CHECK(strcmp(defaults.listeners[0].address, "127.0.0.1") == 0);
    CHECK(defaults.listeners[0].port == 5222 && defaults.listeners[0].tls == CONFIG_TLS_STARTTLS);
    CHECK(defaults.listeners[1].port == 5223 && defaults.listeners[1].tls == CONFIG_TLS_DIRECT);
    CHECK(defaults.certificate_count == 0);
    CHECK(defaults.storage.driver == CONFIG_STORAGE_SQLITE);
    CHECK(strcmp(defaults.storage.sqlite.path, "starling.db") == 0);
    CHECK(strcmp(defaults.storage.postgresql.host, "localhost") == 0);
    CHECK(defaults.storage.postgresql.port == 5432);
    CHECK(defaults.storage.postgresql.password[0] == '\0');
    CHECK(defaults.storage.postgresql.sslmode == CONFIG_SSLMODE_PREFER);
    CHECK(defaults.storage.postgresql.reactor_connections == 0); /* on */
    CHECK(defaults.storage.postgresql.pool_connections == 1);
    CHECK(defaults.sessions.conflict == 0);
    CHECK(defaults.auth.anonymous_domain_count == 0);
    CHECK(defaults.storage.postgresql.sslrootcert[0] == '\0');
    CHECK(defaults.storage.postgresql.sslcert[0] == '\0');
    CHECK(defaults.storage.postgresql.sslkey[0] == '\0');
    CHECK(defaults.cluster.driver == CONFIG_CLUSTER_LOCAL);
    CHECK(defaults.limits.connections_per_reactor == LIMIT_CONNECTIONS_PER_REACTOR);
    CHECK(defaults.timeouts.handshake_ms == LIMIT_HANDSHAKE_TIMEOUT_MS);
    CHECK(defaults.timeouts.idle_ms == LIMIT_IDLE_TIMEOUT_MS);
    CHECK(defaults.timeouts.write_ms == LIMIT_WRITE_TIMEOUT_MS);
    CHECK(defaults.logging.level == CONFIG_LOG_INFO);
    CHECK(defaults.logging.format == CONFIG_LOG_HUMAN);
    CHECK(strcmp(defaults.logging.destination, "stderr") == 0);

    /* No file, no environment, and an empty file: the defaults. */
    check_label = "no file";
    CHECK(config_load(&loaded, NULL, NULL, &error) == 0);
    CHECK(memcmp(&loaded, &defaults, sizeof defaults) == 0);
    expect_ok("empty file", "", NULL);
    CHECK(memcmp(&loaded, &defaults, sizeof defaults) == 0);
    expect_ok("comments only", "# nothing\n", NULL);
    CHECK(memcmp(&loaded, &defaults, sizeof defaults) == 0);
}

static void test_values(void)
{
    expect_ok("full file",
              "data_dir: /var/lib/starling\n"
              "reactors: 4\n"
              "domains: [example.org, chat.example.org]\n"
              "listeners:\n"
              "  - {port: 5222}\n"
              "  - {type: c2s, address: '::1', port: 5280, tls: plaintext}\n"
              "  - {type: s2s, address: 0.0.0.0, port: 5269, tls: direct}\n"
              "certificates:\n"
              "  - domain: example.org\n"
              "    cert_file: certs/example.org.pem\n"
              "    key_file: certs/example.org.key\n"
              "storage:\n"
              "  driver: postgresql\n"
              "  postgresql: {host: db, port: 6432, password: 's3cret', sslmode: verify-full,\n"
              "               sslrootcert: ca.pem, reactor_connections: off, pool_connections: 3}\n"
              "sessions: {conflict: refuse}\n"
              "auth: {anonymous_domains: [chat.example.org]}\n"
              "limits: {connections_per_reactor: 1000}\n"
              "timeouts: {handshake_ms: 5000, idle_ms: 100, write_ms: 86400000}\n"
              "logging: {level: debug, format: json, destination: /tmp/x.log}\n",
              NULL);
    CHECK(strcmp(loaded.data_dir, "/var/lib/starling") == 0);
    CHECK(loaded.reactors == 4);
    CHECK(loaded.domain_count == 2 && strcmp(loaded.domains[1], "chat.example.org") == 0);
    CHECK(loaded.listener_count == 3);
    CHECK(loaded.listeners[0].port == 5222 && loaded.listeners[0].tls == CONFIG_TLS_STARTTLS);
    CHECK(strcmp(loaded.listeners[0].address, "127.0.0.1") == 0);
    CHECK(strcmp(loaded.listeners[1].address, "::1") == 0);
    CHECK(loaded.listeners[1].tls == CONFIG_TLS_PLAINTEXT);
    CHECK(loaded.listeners[2].type == CONFIG_LISTENER_S2S);
    CHECK(loaded.certificate_count == 1);
    CHECK(strcmp(loaded.certificates[0].key_file, "certs/example.org.key") == 0);
    CHECK(loaded.storage.driver == CONFIG_STORAGE_POSTGRESQL);
    CHECK(loaded.storage.postgresql.port == 6432);
    CHECK(strcmp(loaded.storage.postgresql.password, "s3cret") == 0);
    CHECK(strcmp(loaded.storage.postgresql.user, "starling") == 0);
    CHECK(loaded.storage.postgresql.sslmode == CONFIG_SSLMODE_VERIFY_FULL);
    CHECK(strcmp(loaded.storage.postgresql.sslrootcert, "ca.pem") == 0);
    CHECK(strcmp(config_enum_name("storage.postgresql.reactor_connections",
                                  loaded.storage.postgresql.reactor_connections), "off") == 0);
    CHECK(loaded.storage.postgresql.pool_connections == 3);
    CHECK(loaded.sessions.conflict == 1);
    CHECK(loaded.auth.anonymous_domain_count == 1 &&
          strcmp(loaded.auth.anonymous_domains[0], "chat.example.org") == 0);
    CHECK(loaded.limits.connections_per_reactor == 1000);
    CHECK(loaded.timeouts.idle_ms == 100 && loaded.timeouts.write_ms == 86400000);
    CHECK(loaded.logging.level == CONFIG_LOG_DEBUG && loaded.logging.format == CONFIG_LOG_JSON);
    CHECK(strcmp(config_enum_name("storage.driver", loaded.storage.driver), "postgresql") == 0);
    CHECK(strcmp(config_enum_name("listeners.tls", CONFIG_TLS_DIRECT), "direct") == 0);
    CHECK(strcmp(config_enum_name("storage.nothing", 0), "?") == 0);
    CHECK(strcmp(config_enum_name("storage.driver", 9), "?") == 0);

    expect_ok("empty lists", "listeners: []\ncertificates: []\n", NULL);
    CHECK(loaded.listener_count == 0);
}

/* Refusals of one value: unknown key, wrong type, out of range, bad enum. */
static void test_value_refusals(void)
{
    expect_refusal("unknown top key", "reactors: 2\nreactorz: 3\n", NULL,
                   "t.yaml:2:1: reactorz: unknown key (see deploy/CONFIG.md)");
    expect_refusal("unknown nested key", "storage:\n  drvier: sqlite\n", NULL,
                   "t.yaml:2:3: storage.drvier: unknown key");
    expect_refusal("unknown element key", "listeners:\n  - {port: 1, prot: 2}\n", NULL,
                   "t.yaml:2:15: listeners[0].prot: unknown key");
    expect_refusal("wrong type list", "reactors: [1]\n", NULL,
                   "t.yaml:1:11: reactors: wants an integer 0..256, not a list");
    expect_refusal("wrong type section", "storage: sqlite\n", NULL,
                   "t.yaml:1:10: storage: wants a mapping, not \"sqlite\"");
    expect_refusal("quoted integer", "reactors: \"4\"\n", NULL,
                   "reactors: wants an integer 0..256, not \"4\"");
    expect_refusal("string wants scalar", "data_dir: {a: 1}\n", NULL,
                   "t.yaml:1:11: data_dir: wants a string of at most 1023 bytes, not a mapping");
    expect_refusal("not a number", "storage:\n  postgresql:\n    port: abc\n", NULL,
                   "t.yaml:3:11: storage.postgresql.port: wants an integer 1..65535, not \"abc\"");
    expect_refusal("negative", "reactors: -1\n", NULL, "reactors: wants an integer 0..256");
    expect_refusal("out of range", "reactors: 257\n", NULL,
                   "t.yaml:1:11: reactors: wants an integer 0..256, not \"257\"");
    expect_refusal("port zero", "listeners: [{port: 0}]\n", NULL,
                   "listeners[0].port: wants an integer 1..65535, not \"0\"");
    expect_refusal("leading zero", "reactors: 010\n", NULL,
                   "reactors: wants an integer 0..256, not \"010\"");
    expect_refusal("hexadecimal", "reactors: 0x10\n", NULL, "not \"0x10\"");
    expect_refusal("huge number", "reactors: 99999999999\n", NULL, "not \"99999999999\"");
    expect_refusal("timeout too short", "timeouts: {idle_ms: 99}\n", NULL,
                   "timeouts.idle_ms: wants an integer 100..86400000");
    expect_refusal("bad enum", "storage:\n  driver: mysql\n", NULL,
                   "t.yaml:2:11: storage.driver: wants one of sqlite, postgresql, not \"mysql\"");
    expect_refusal("bad log level", "logging: {level: loud}\n", NULL,
                   "logging.level: wants one of debug, info, warning, error, not \"loud\"");
    expect_refusal("pool too large", "storage:\n  postgresql: {pool_connections: 17}\n", NULL,
                   "storage.postgresql.pool_connections: wants an integer 1..16, not \"17\"");
    expect_refusal("switch", "storage:\n  postgresql: {reactor_connections: yes}\n", NULL,
                   "storage.postgresql.reactor_connections: wants one of on, off, not \"yes\"");
}

/* Refusals of the document's shape: duplicates, bad YAML, lists, files. */
static void test_structure_refusals(void)
{
    expect_refusal("duplicate key", "reactors: 1\nstorage: {}\nreactors: 2\n", NULL,
                   "t.yaml:3:1: reactors: set twice (first at line 1)");
    expect_refusal("duplicate nested", "storage:\n  driver: sqlite\n  driver: sqlite\n", NULL,
                   "t.yaml:3:3: storage.driver: set twice (first at line 2)");
    expect_refusal("secret and file",
                   "storage:\n  postgresql:\n    password: a\n    password_file: /etc/hostname\n",
                   NULL, "t.yaml:4:5: storage.postgresql.password_file: set twice");
    expect_refusal("malformed", "reactors: [1,\n", NULL, "t.yaml:2:1: malformed YAML");
    expect_refusal("bad indentation", "storage:\n  driver: sqlite\n bad: 1\n", NULL,
                   "t.yaml:3:2: malformed YAML");
    expect_refusal("tab", "storage:\n\tdriver: sqlite\n", NULL, "malformed YAML");
    expect_refusal("top level list", "- a\n- b\n", NULL,
                   "t.yaml:1:1: the top level wants a mapping of keys, not a list");
    expect_refusal("two documents", "reactors: 1\n---\nreactors: 2\n", NULL,
                   "t.yaml:3:1: a second YAML document");
    expect_refusal("key not a name", "? [a]\n: 1\n", NULL, "wants a key name, not a list");
    expect_refusal("plaintext off loopback",
                   "listeners:\n  - {address: 0.0.0.0, port: 5222, "
                   "tls: plaintext}\n",
                   NULL, "t.yaml:2:5: listeners[0]: tls: plaintext is allowed on loopback");
    expect_refusal("same port twice", "listeners: [{port: 5222}, {port: 5222, tls: direct}]\n",
                   NULL, "listeners[1]: port: 127.0.0.1 port 5222 is already listener 0's");
    expect_refusal("missing port", "listeners:\n  - {tls: direct}\n", NULL,
                   "t.yaml:2:5: listeners[0]: lacks the required key port");
    expect_refusal("element not a mapping", "listeners: [5222]\n", NULL,
                   "listeners[0]: wants a mapping, not a scalar");
    expect_refusal("bad address", "listeners: [{port: 1, address: localhost}]\n", NULL,
                   "listeners[0].address: wants an IPv4 or IPv6 address literal, not "
                   "\"localhost\"");
    expect_refusal("bad domain", "domains: [\"exa mple.org\"]\n", NULL,
                   "domains[0]: wants a domain name");
    expect_refusal("empty domain list", "domains: []\n", NULL,
                   "t.yaml:1:10: domains: wants at least 1 entries");
    expect_refusal("domain twice", "domains: [a.example, b.example, a.example]\n", NULL,
                   "domains[2]: is listed twice (also entry 0)");
    expect_refusal("certificate twice",
                   "certificates:\n"
                   "  - {domain: a.example, cert_file: a, key_file: b}\n"
                   "  - {domain: a.example, cert_file: c, key_file: d}\n",
                   NULL, "t.yaml:3:5: certificates[1]: domain: a.example already has");
    expect_refusal("empty string", "data_dir: ''\n", NULL, "data_dir: must not be empty");
    expect_refusal("NUL in string", "data_dir: \"a\\0b\"\n", NULL, "data_dir: holds a NUL byte");

    char many[4096] = "domains: [";
    for (unsigned i = 0; i <= LIMIT_CONFIG_DOMAINS_MAX; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%sd%u.example",
                 i > 0 ? ", " : "", i);
    strcat(many, "]\n");
    expect_refusal("too many domains", many, NULL, "domains[32]: a list of at most 32 entries");

    char *long_value = malloc(LIMIT_CONFIG_STRING_BYTES_MAX + 32);
    strcpy(long_value, "data_dir: ");
    memset(long_value + 10, 'a', LIMIT_CONFIG_STRING_BYTES_MAX + 1);
    strcpy(long_value + 10 + LIMIT_CONFIG_STRING_BYTES_MAX + 1, "\n");
    expect_refusal("string too long", long_value, NULL, "data_dir: is longer than 1023 bytes");
    free(long_value);

    check_label = "file too large";
    size_t large = LIMIT_CONFIG_FILE_BYTES_MAX + 1;
    char *big = malloc(large);
    memset(big, '#', large);
    CHECK(config_load_buffer(&loaded, "t.yaml", big, large, NULL, &error) == -1);
    CHECK(strstr(error.message, "t.yaml: is larger than 1048576 bytes") != NULL);
    free(big);

    check_label = "unreadable file";
    CHECK(config_load(&loaded, "/nonexistent/starling.yaml", NULL, &error) == -1);
    CHECK(strstr(error.message, "/nonexistent/starling.yaml: cannot read: No such file") != NULL);
    check_label = "directory";
    CHECK(config_load(&loaded, "/tmp", NULL, &error) == -1);
    CHECK(strstr(error.message, "/tmp: cannot read: Is a directory") != NULL);
}

static void test_password_file(void)
{
    const char *path = temporary_file("hunter2\n", 8);
    char text[256];
    snprintf(text, sizeof text, "storage:\n  postgresql:\n    password_file: %s\n", path);
    expect_ok("password_file", text, NULL);
    CHECK(strcmp(loaded.storage.postgresql.password, "hunter2") == 0);
    unlink(path);

    expect_refusal("unreadable password_file",
                   "storage:\n  postgresql:\n    password_file: /nonexistent/secret\n", NULL,
                   "t.yaml:3:20: storage.postgresql.password_file: cannot read "
                   "\"/nonexistent/secret\": No such file or directory");
    expect_refusal("password_file a directory",
                   "storage:\n  postgresql:\n    password_file: /tmp\n", NULL,
                   "storage.postgresql.password_file: cannot read \"/tmp\": not a regular file");
    expect_refusal("password_file a device",
                   "storage:\n  postgresql:\n    password_file: /dev/zero\n", NULL,
                   "cannot read \"/dev/zero\": not a regular file");
    expect_refusal("password_file not a path", "storage:\n  postgresql:\n    password_file: [a]\n",
                   NULL, "storage.postgresql.password_file: password_file wants a file path");

    char *large = malloc(LIMIT_CONFIG_SECRET_BYTES_MAX + 2);
    memset(large, 'x', LIMIT_CONFIG_SECRET_BYTES_MAX + 1);
    path = temporary_file(large, LIMIT_CONFIG_SECRET_BYTES_MAX + 1);
    free(large);
    snprintf(text, sizeof text, "storage: {postgresql: {password_file: %s}}\n", path);
    expect_refusal("password_file too large", text, NULL, "holds more than 4096 bytes");
    unlink(path);

    path = temporary_file("from-env\r\n\n", 11);
    char variable[128];
    snprintf(variable, sizeof variable, "STARLING_STORAGE_POSTGRESQL_PASSWORD_FILE=%s", path);
    char *environment[] = {variable, NULL};
    expect_ok("password_file from environment", "storage: {postgresql: {password: file}}\n",
              environment);
    CHECK(strcmp(loaded.storage.postgresql.password, "from-env") == 0);
    unlink(path);
    path = temporary_file("pw\n", 3);
    snprintf(variable, sizeof variable, "STARLING_STORAGE_POSTGRESQL_PASSWORD_FILE=%s", path);
    char *both[] = {"STARLING_STORAGE_POSTGRESQL_PASSWORD=a", variable, NULL};
    expect_refusal("secret and file in the environment", "", both,
                   "environment STARLING_STORAGE_POSTGRESQL_PASSWORD_FILE: "
                   "storage.postgresql.password_file: set twice in the environment");
    unlink(path);
    char *missing[] = {"STARLING_STORAGE_POSTGRESQL_PASSWORD_FILE=/nonexistent/p", NULL};
    expect_refusal("unreadable password_file from environment", "", missing,
                   "environment STARLING_STORAGE_POSTGRESQL_PASSWORD_FILE: "
                   "storage.postgresql.password_file: cannot read");
}

static void test_environment(void)
{
    char *environment[] = {
        "HOME=/root",
        "STARLING_FUZZ_SECONDS=5",
        "STARLING_STORAGE_DRIVER=postgresql",
        "STARLING_LOGGING_LEVEL=warning",
        "STARLING_DATA_DIR=/srv/starling",
        "STARLING_DOMAINS=a.example,b.example",
        "STARLING_LISTENERS_1_PORT=6000",
        "STARLING_STORAGE_POSTGRESQL_PORT=7000",
        "STARLING_STORAGE_POSTGRESQL_PASSWORD=pw",
        "STARLING_REACTORS=3",
        "STARLING_TIMEOUTS_IDLE_MS=1000",
        NULL,
    };
    expect_ok("environment over file",
              "storage: {driver: sqlite}\nreactors: 8\nlogging: {level: debug}\n"
              "listeners: [{port: 5222}, {port: 5223, tls: direct}]\n",
              environment);
    CHECK(loaded.storage.driver == CONFIG_STORAGE_POSTGRESQL);
    CHECK(loaded.logging.level == CONFIG_LOG_WARNING);
    CHECK(strcmp(loaded.data_dir, "/srv/starling") == 0);
    CHECK(loaded.domain_count == 2 && strcmp(loaded.domains[1], "b.example") == 0);
    CHECK(loaded.listeners[0].port == 5222 && loaded.listeners[1].port == 6000);
    CHECK(loaded.storage.postgresql.port == 7000);
    CHECK(strcmp(loaded.storage.postgresql.password, "pw") == 0);
    CHECK(loaded.reactors == 3);
    CHECK(loaded.timeouts.idle_ms == 1000);

    expect_ok("environment over defaults", "", environment);
    CHECK(loaded.listeners[1].port == 6000 && loaded.reactors == 3);

    char *unknown[] = {"STARLING_STORAGE_DRIVR=sqlite", NULL};
    expect_refusal("unknown variable", "", unknown,
                   "environment STARLING_STORAGE_DRIVR: no such configuration key");
    char *section[] = {"STARLING_STORAGE=sqlite", NULL};
    expect_refusal("section variable", "", section,
                   "environment STARLING_STORAGE: no such configuration key");
    char *bare[] = {"STARLING_=1", NULL};
    expect_refusal("bare prefix", "", bare, "environment STARLING_: no such configuration key");
    char *lower[] = {"STARLING_storage_driver=sqlite", NULL};
    expect_refusal("lower case", "", lower, "no such configuration key");
    char *bad_value[] = {"STARLING_STORAGE_POSTGRESQL_PORT=abc", NULL};
    expect_refusal("bad value", "", bad_value,
                   "environment STARLING_STORAGE_POSTGRESQL_PORT: storage.postgresql.port: "
                   "wants an integer 1..65535, not \"abc\"");
    char *bad_enum[] = {"STARLING_LOGGING_LEVEL=loud", NULL};
    expect_refusal("bad enum value", "", bad_enum,
                   "environment STARLING_LOGGING_LEVEL: logging.level: wants one of");
    char *no_entry[] = {"STARLING_LISTENERS_2_PORT=1", NULL};
    expect_refusal("no such entry", "", no_entry,
                   "environment STARLING_LISTENERS_2_PORT: listeners[2]: no such entry: the "
                   "list has 2");
    char *element_check[] = {"STARLING_LISTENERS_1_PORT=5222", NULL};
    expect_refusal("entry checked again", "", element_check,
                   "listeners[1]: port: 127.0.0.1 port 5222 is already listener 0's");
    char *plaintext[] = {"STARLING_LISTENERS_0_ADDRESS=0.0.0.0",
                         "STARLING_LISTENERS_0_TLS=plaintext", NULL};
    expect_refusal("plaintext off loopback", "", plaintext, "plaintext is allowed on loopback");
    char *empty_domain[] = {"STARLING_DOMAINS=a.example,", NULL};
    expect_refusal("empty list entry", "", empty_domain, "domains[1]: must not be empty");
    char *element_key[] = {"STARLING_LISTENERS_0_PROT=1", NULL};
    expect_refusal("unknown element key", "", element_key, "no such configuration key");
    char *value_with_equals[] = {"STARLING_DATA_DIR=/a=b", NULL};
    expect_ok("value with =", "", value_with_equals);
    CHECK(strcmp(loaded.data_dir, "/a=b") == 0);
}

/* Every key has its own environment variable: no two key paths may map to
 * one STARLING_ name (data_dir and a section "data" with a key "dir" would),
 * and each documented scalar variable is accepted with its default. */
static void test_environment_names(void)
{
    check_label = "environment names";
    char *reference = NULL;
    size_t length = 0;
    FILE *memory = open_memstream(&reference, &length);
    CHECK(memory != NULL && config_write_reference(memory) == 0);
    fclose(memory);
    char names[128][80];
    unsigned count = 0;
    for (const char *line = strstr(reference, "\n| `"); line != NULL;
         line = strstr(line + 1, "\n| `")) {
        const char *name = strstr(line, "| `STARLING_");
        const char *next = strchr(line + 1, '\n');
        if (name == NULL || (next != NULL && name > next))
            continue;
        name += 3;
        size_t name_length = strcspn(name, "`");
        CHECK(name_length < sizeof names[0] && count < 128);
        memcpy(names[count], name, name_length);
        names[count][name_length] = '\0';
        for (unsigned i = 0; i < count; i++)
            CHECK(strcmp(names[i], names[count]) != 0);
        count++;
    }
    CHECK(count >= 25); /* 29 when this was written */
    free(reference);

    config defaults;
    config_defaults(&defaults);
    char assignment[160];
    char *environment[] = {assignment, NULL};
    static const char *const settable[] = {
        "STARLING_REACTORS=0",
        "STARLING_DATA_DIR=./data",
        "STARLING_LISTENERS_0_TLS=starttls",
        "STARLING_STORAGE_SQLITE_PATH=starling.db",
        "STARLING_CLUSTER_DRIVER=local",
        "STARLING_LIMITS_CONNECTIONS_PER_REACTOR=65536",
        "STARLING_SHUTDOWN_GRACE_MS=10000",
        "STARLING_TIMEOUTS_WRITE_MS=30000",
        "STARLING_LOGGING_DESTINATION=stderr",
        "STARLING_STORAGE_POSTGRESQL_SSLMODE=prefer",
        "STARLING_STORAGE_POSTGRESQL_POOL_CONNECTIONS=1",
        "STARLING_STORAGE_POSTGRESQL_REACTOR_CONNECTIONS=on",
        "STARLING_STORAGE_POSTGRESQL_SSLROOTCERT=",
    };
    for (size_t i = 0; i < sizeof settable / sizeof settable[0]; i++) {
        snprintf(assignment, sizeof assignment, "%s", settable[i]);
        expect_ok(settable[i], "", environment);
        CHECK(memcmp(&loaded, &defaults, sizeof defaults) == 0);
    }
}

static void test_data_path(void)
{
    check_label = "data path";
    config settings;
    config_defaults(&settings);
    char out[64];
    CHECK(config_data_path(&settings, settings.storage.sqlite.path, out, sizeof out) == 0);
    CHECK(strcmp(out, "./data/starling.db") == 0);
    CHECK(config_data_path(&settings, "/var/lib/x.db", out, sizeof out) == 0);
    CHECK(strcmp(out, "/var/lib/x.db") == 0);
    CHECK(config_data_path(&settings, "starling.db", out, 18) == -1);
    CHECK(config_data_path(&settings, "starling.db", out, 19) == 0);
}

static void test_example(const char *path)
{
    check_label = "example file";
    int result = config_load(&loaded, path, NULL, &error);
    if (result != 0)
        fprintf(stderr, "example: %s\n", error.message);
    CHECK(result == 0);
}

int main(int argc, char **argv)
{
    test_defaults();
    test_values();
    test_value_refusals();
    test_structure_refusals();
    test_password_file();
    test_environment();
    test_environment_names();
    test_data_path();
    if (argc > 1)
        test_example(argv[1]);
    return check_finish();
}
