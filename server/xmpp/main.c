/*
 * main.c: the starling binary. Reads the configuration (built-in defaults,
 * then --config FILE, then STARLING_* environment variables, then the
 * command-line options, each overriding the one before), builds the runtime
 * with one reactor per core (or what was configured), opens every client
 * listener (STARTTLS, direct TLS, plaintext on loopback) and runs until
 * SIGTERM/SIGINT, whose graceful shutdown lets every stream say goodbye
 * with a system-shutdown stream error.
 *
 * With no arguments it runs on built-in defaults: domain localhost, client
 * ports 5222 (STARTTLS) and 5223 (direct TLS) on 127.0.0.1, a self-signed
 * certificate for localhost made under data_dir at first start, SQLite
 * under data_dir. `--check-config FILE` validates a file (and the
 * environment) and exits without starting. Keys for what is not built yet
 * (federation) are validated and documented in deploy/CONFIG.md, and used
 * from their issues on.
 *
 * At start the configured storage is opened and its numbered migrations
 * applied (config_storage_open, as starlingctl does); a database that
 * cannot be opened, or whose schema is newer than this binary, stops the
 * start with the driver's message and exit status 2. The TLS context is
 * made from the certificates the configuration names (or self-signed
 * ones); a certificate that cannot be loaded stops the start the same way.
 */
#include "proto/limits.h"
#include "server/config/config.h"
#include "server/config/config_storage.h"
#include "server/runtime/rx.h"
#include "server/tls/cert.h"
#include "server/xmpp/c2s.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* jemalloc's options, read when it starts (it is the allocator of the
 * Release build; the sanitizer builds ignore this): freed pages decay back
 * to the kernel over a second. jemalloc decays as it is called, so a busy
 * reactor returns pages as it goes; an idle server with many sessions
 * allocates nothing and would hold every page a burst (a login storm, a
 * message flood) touched: 7.5 KB per idle session after a 10,000-login
 * storm (bench/RESULTS.md). The reactors' housekeeping (below) covers that.
 * Not jemalloc's background thread: it purged in batches that took the
 * reactor's core from it, p99.9 38 ms against 3.5 ms without it in an
 * open-loop chat at 123,000 messages/s on one core (bench/RESULTS.md). */
const char *malloc_conf = "dirty_decay_ms:1000,muzzy_decay_ms:1000";

/* jemalloc's control interface when the binary links jemalloc (Release);
 * the sanitizer builds have their own malloc and no mallctl. */
extern int mallctl(const char *name, void *old_value, size_t *old_length, void *new_value,
                   size_t new_length) __attribute__((weak));

/* jemalloc's "all arenas" index (MALLCTL_ARENAS_ALL in jemalloc.h). */
#define JEMALLOC_ARENAS_ALL 4096u

/* An option the command line did not give. No option's range reaches it. */
#define OPTION_UNSET UINT32_MAX

/* What the command line said; everything here overrides the configuration. */
typedef struct command_line {
    const char *config_path; /* --config, NULL: built-in defaults */
    const char *check_path;  /* --check-config */
    const char *address;
    const char *domain;
    const char *tls; /* --tls: the first client listener's TLS mode */
    unsigned port;
    unsigned reactors;
    unsigned grace_ms;
    unsigned connections_per_reactor;
    unsigned handshake_timeout_ms;
    unsigned idle_timeout_ms;
} command_line;

/* What the server runs with once every layer is applied. */
typedef struct starling_options {
    rx_options runtime;
} starling_options;

static void usage(FILE *out)
{
    config defaults;
    config_defaults(&defaults);
    fprintf(out,
            "usage: starling [options]\n"
            "  --config FILE                YAML configuration (default: none, built-in defaults;\n"
            "                               every key: deploy/CONFIG.md)\n"
            "  --check-config FILE          validate FILE and the STARLING_* environment, print\n"
            "                               'FILE: ok' or the error, exit 0 or 1 without starting\n"
            "  --reactors N                 reactor threads (default: one per core)\n"
            "  --address ADDR               first client listener's address (default %s)\n"
            "  --port PORT                  first client listener's port (default %u)\n"
            "  --tls MODE                   first client listener's TLS: starttls, direct, or\n"
            "                               plaintext (loopback only; default %s)\n"
            "  --domain NAME                the one served domain (default %s)\n"
            "  --grace-ms MS                graceful shutdown period (default %u)\n"
            "  --connections-per-reactor N  connection bound per reactor (default %u)\n"
            "  --handshake-timeout-ms MS    time to finish the handshake (default %u)\n"
            "  --idle-timeout-ms MS         silence before a stream is closed (default %u)\n"
            "  --help                       this text\n"
            "Precedence: built-in defaults < --config FILE < STARLING_* environment < options.\n",
            defaults.listeners[0].address, defaults.listeners[0].port,
            config_enum_name("listeners.tls", defaults.listeners[0].tls), defaults.domains[0],
            defaults.shutdown_grace_ms, defaults.limits.connections_per_reactor,
            defaults.timeouts.handshake_ms, defaults.timeouts.idle_ms);
}

/* Parses a decimal unsigned in [minimum, maximum]; exits with a one-line
 * error naming the option otherwise. */
static unsigned parse_unsigned(const char *option, const char *text, unsigned minimum,
                               unsigned maximum)
{
    char *end = NULL;
    errno = 0;
    unsigned long value = strtoul(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || value < minimum ||
        value > maximum) {
        fprintf(stderr, "starling: --%s wants a number from %u to %u, not '%s'\n", option, minimum,
                maximum, text);
        exit(2);
    }
    return (unsigned)value;
}

static void parse_options(int argc, char **argv, command_line *line)
{
    static const struct option long_options[] = {
        {"config", required_argument, NULL, 'f'},
        {"check-config", required_argument, NULL, 'k'},
        {"reactors", required_argument, NULL, 'r'},
        {"address", required_argument, NULL, 'a'},
        {"port", required_argument, NULL, 'p'},
        {"domain", required_argument, NULL, 'd'},
        {"tls", required_argument, NULL, 's'},
        {"grace-ms", required_argument, NULL, 'g'},
        {"connections-per-reactor", required_argument, NULL, 'c'},
        {"handshake-timeout-ms", required_argument, NULL, 't'},
        {"idle-timeout-ms", required_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int choice;
    while ((choice = getopt_long(argc, argv, "h", long_options, NULL)) != -1) {
        const char *name = choice == '?' ? "" : NULL;
        for (size_t i = 0; long_options[i].name != NULL; i++)
            if (long_options[i].val == choice)
                name = long_options[i].name;
        switch (choice) {
        case 'f':
            line->config_path = optarg;
            break;
        case 'k':
            line->check_path = optarg;
            break;
        case 'r':
            line->reactors = parse_unsigned(name, optarg, 1, LIMIT_REACTORS_MAX);
            break;
        case 'a':
            line->address = optarg;
            break;
        case 'p':
            line->port = parse_unsigned(name, optarg, 1, 65535);
            break;
        case 'd':
            line->domain = optarg;
            break;
        case 's':
            if (strcmp(optarg, "starttls") != 0 && strcmp(optarg, "direct") != 0 &&
                strcmp(optarg, "plaintext") != 0) {
                fprintf(stderr, "starling: --tls wants starttls, direct or plaintext, not '%s'\n",
                        optarg);
                exit(2);
            }
            line->tls = optarg;
            break;
        case 'g':
            line->grace_ms = parse_unsigned(name, optarg, 0, LIMIT_CONFIG_TIMEOUT_MS_MAX);
            break;
        case 'c':
            line->connections_per_reactor =
                parse_unsigned(name, optarg, 1, LIMIT_CONNECTIONS_PER_REACTOR);
            break;
        case 't':
            line->handshake_timeout_ms = parse_unsigned(name, optarg, LIMIT_CONFIG_TIMEOUT_MS_MIN,
                                                        LIMIT_CONFIG_TIMEOUT_MS_MAX);
            break;
        case 'i':
            line->idle_timeout_ms = parse_unsigned(name, optarg, LIMIT_CONFIG_TIMEOUT_MS_MIN,
                                                   LIMIT_CONFIG_TIMEOUT_MS_MAX);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            exit(2);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "starling: unexpected argument '%s' (see --help)\n", argv[optind]);
        exit(2);
    }
}

/* --------------------------------------------------------------- logging */

/* Where log lines go when the configuration asks for JSON or a file; the
 * default (human lines on stderr) is the runtime's own sink. */
typedef struct log_sink {
    FILE *file;
    bool json;
} log_sink;

static const char *const log_level_names[] = {"debug", "info", "warning", "error"};

/* Called by the runtime's logger thread and by the control thread: one
 * fputs per line, which stdio's lock keeps whole. */
static void log_to_sink(void *context, rx_log_level level, const char *message)
{
    const log_sink *sink = context;
    char line[2048];
    if (!sink->json) {
        snprintf(line, sizeof line, "starling rx %s: %s\n", log_level_names[level], message);
        fputs(line, sink->file);
        return;
    }
    struct timespec now;
    struct tm utc;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &utc);
    size_t used =
        (size_t)snprintf(line, sizeof line,
                         "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\","
                         "\"message\":\"",
                         utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min,
                         utc.tm_sec, now.tv_nsec / 1000000L, log_level_names[level]);
    /* A log line is at most 511 bytes; escaped it needs at most 6 per byte,
     * so stop early rather than cut an escape. */
    for (const char *byte = message; *byte != '\0' && used + 8 < sizeof line - 4; byte++) {
        unsigned char c = (unsigned char)*byte;
        if (c == '"' || c == '\\')
            used += (size_t)snprintf(line + used, sizeof line - used, "\\%c", c);
        else if (c < 0x20)
            used += (size_t)snprintf(line + used, sizeof line - used, "\\u%04x", c);
        else
            line[used++] = (char)c;
    }
    snprintf(line + used, sizeof line - used, "\"}\n");
    fputs(line, sink->file);
}

/* Applies logging.*: the level, and a sink for JSON or a file. Returns 0,
 * or -1 (reported) when the file cannot be opened. */
static int open_log(const config *settings, log_sink *sink)
{
    rx_log_set_level((rx_log_level)settings->logging.level);
    bool to_stderr = strcmp(settings->logging.destination, "stderr") == 0;
    if (to_stderr && settings->logging.format == CONFIG_LOG_HUMAN)
        return 0;
    sink->json = settings->logging.format == CONFIG_LOG_JSON;
    sink->file = to_stderr ? stderr : fopen(settings->logging.destination, "ae");
    if (sink->file == NULL) {
        fprintf(stderr, "starling: logging.destination: cannot open '%s': %s\n",
                settings->logging.destination, strerror(errno));
        return -1;
    }
    setvbuf(sink->file, NULL, _IOLBF, 0);
    rx_log_set_hook(log_to_sink, sink);
    return 0;
}

/* ------------------------------------------------------- configuration */

static bool loopback(const char *address)
{
    return strncmp(address, "127.", 4) == 0 || strcmp(address, "::1") == 0;
}

/* Layers the command line over the configuration: the runtime's options,
 * and the first client listener and the domain in *settings. Returns 0, or
 * -1 (reported) when nothing is left to listen on. */
static int apply_settings(config *settings, const command_line *line, starling_options *options)
{
    rx_options_init(&options->runtime);
    rx_options *runtime = &options->runtime;
    runtime->reactors = settings->reactors;
    runtime->shutdown_grace_ms = settings->shutdown_grace_ms;
    runtime->connections_per_reactor = settings->limits.connections_per_reactor;
    runtime->handshake_timeout_ms = settings->timeouts.handshake_ms;
    runtime->idle_timeout_ms = settings->timeouts.idle_ms;
    runtime->write_timeout_ms = settings->timeouts.write_ms;
    if (line->reactors != OPTION_UNSET)
        runtime->reactors = line->reactors;
    if (line->grace_ms != OPTION_UNSET)
        runtime->shutdown_grace_ms = line->grace_ms;
    if (line->connections_per_reactor != OPTION_UNSET)
        runtime->connections_per_reactor = line->connections_per_reactor;
    if (line->handshake_timeout_ms != OPTION_UNSET)
        runtime->handshake_timeout_ms = line->handshake_timeout_ms;
    if (line->idle_timeout_ms != OPTION_UNSET)
        runtime->idle_timeout_ms = line->idle_timeout_ms;

    if (line->domain != NULL) {
        if (strlen(line->domain) >= sizeof settings->domains[0]) {
            fprintf(stderr, "starling: --domain is too long\n");
            return -1;
        }
        snprintf(settings->domains[0], sizeof settings->domains[0], "%s", line->domain);
        settings->domain_count = 1;
    }
    config_listener *first = NULL;
    for (unsigned i = 0; i < settings->listener_count && first == NULL; i++)
        if (settings->listeners[i].type == CONFIG_LISTENER_C2S)
            first = &settings->listeners[i];
    if (first == NULL && (line->port != OPTION_UNSET || line->tls != NULL)) {
        if (settings->listener_count == LIMIT_LISTENERS_PER_REACTOR) {
            fprintf(stderr, "starling: no room for the listener of --port\n");
            return -1;
        }
        first = &settings->listeners[settings->listener_count++];
        memset(first, 0, sizeof *first);
        first->type = CONFIG_LISTENER_C2S;
        snprintf(first->address, sizeof first->address, "127.0.0.1");
        first->port = 5222;
        first->tls = CONFIG_TLS_STARTTLS;
    }
    if (first == NULL) {
        fprintf(stderr, "starling: no client listener configured\n");
        return -1;
    }
    if (line->address != NULL)
        snprintf(first->address, sizeof first->address, "%s", line->address);
    if (line->port != OPTION_UNSET)
        first->port = line->port;
    if (line->tls != NULL)
        first->tls = strcmp(line->tls, "direct") == 0      ? CONFIG_TLS_DIRECT
                     : strcmp(line->tls, "plaintext") == 0 ? CONFIG_TLS_PLAINTEXT
                                                           : CONFIG_TLS_STARTTLS;
    if (first->tls == CONFIG_TLS_PLAINTEXT && !loopback(first->address)) {
        fprintf(stderr, "starling: a plaintext listener is allowed on loopback only, not %s\n",
                first->address);
        return -1;
    }
    /* --port replaces the configured listeners with the first one alone
     * (tests and benchmarks run many servers side by side). */
    if (line->port != OPTION_UNSET) {
        config_listener kept = *first;
        settings->listeners[0] = kept;
        settings->listener_count = 1;
    }
    return 0;
}

static bool needs_tls(const config *settings)
{
    for (unsigned i = 0; i < settings->listener_count; i++)
        if (settings->listeners[i].type == CONFIG_LISTENER_C2S &&
            settings->listeners[i].tls != CONFIG_TLS_PLAINTEXT)
            return true;
    return false;
}

/* The node, for the runtime's iteration hook (set before the runtime
 * starts, read by the reactors after). */
static c2s_node *the_node;

static void iteration(void *context, unsigned reactor_index)
{
    (void)context;
    c2s_node_iteration(the_node, reactor_index);
}

/* The runtime's housekeeping (rx_options.on_housekeeping), on a reactor's
 * thread. Busy: the decay jemalloc owes this thread's arena, a small step
 * it would otherwise take on some later allocation. Idle after work: the
 * thread's cache flushed and every arena's unused pages returned at once,
 * so that sessions left idle after a burst hold only what they use. */
static void housekeeping(void *context, unsigned reactor_index, bool idle)
{
    (void)context;
    (void)reactor_index;
    if (mallctl == NULL)
        return;
    char name[48];
    if (idle) {
        (void)mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
        snprintf(name, sizeof name, "arena.%u.purge", JEMALLOC_ARENAS_ALL);
    } else {
        unsigned arena = 0;
        size_t length = sizeof arena;
        if (mallctl("thread.arena", &arena, &length, NULL, 0) != 0)
            return;
        snprintf(name, sizeof name, "arena.%u.decay", arena);
    }
    (void)mallctl(name, NULL, NULL, NULL, 0);
}

/* --check-config: the file and the environment, as a start would load them. */
static int check_config(const char *path)
{
    static config settings;
    config_error error;
    if (config_load(&settings, path, environ, &error) != 0) {
        fprintf(stderr, "%s\n", error.message);
        return 1;
    }
    printf("%s: ok\n", path);
    return 0;
}

int main(int argc, char **argv)
{
    command_line line = {
        .port = OPTION_UNSET,
        .reactors = OPTION_UNSET,
        .grace_ms = OPTION_UNSET,
        .connections_per_reactor = OPTION_UNSET,
        .handshake_timeout_ms = OPTION_UNSET,
        .idle_timeout_ms = OPTION_UNSET,
    };
    parse_options(argc, argv, &line);
    if (line.check_path != NULL)
        return check_config(line.check_path);

    /* Static: the configuration holds fixed-size slots for every domain and
     * certificate, too large for the stack. */
    static config settings;
    config_error error;
    if (config_load(&settings, line.config_path, environ, &error) != 0) {
        fprintf(stderr, "starling: %s\n", error.message);
        return 2;
    }
    static log_sink sink;
    if (open_log(&settings, &sink) != 0)
        return 2;
    starling_options options;
    if (apply_settings(&settings, &line, &options) != 0)
        return 2;

    options.runtime.on_iteration = iteration;
    options.runtime.on_housekeeping = housekeeping;
    rx_runtime *runtime = rx_runtime_create(&options.runtime);
    if (runtime == NULL)
        return 1;
    /* Block SIGTERM and SIGINT now, as the runtime does when it starts, so
     * that they wait for the runtime's signalfd from here on. The storage's
     * threads (started in config_storage_open) also block every signal
     * themselves (storage_thread_block_signals). */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    if (pthread_sigmask(SIG_BLOCK, &signals, NULL) != 0) {
        fprintf(stderr, "starling: cannot block SIGTERM and SIGINT\n");
        rx_runtime_destroy(runtime);
        return 1;
    }
    storage *accounts = NULL;
    char reason[LIMIT_STORAGE_REASON_BYTES + 256];
    if (config_storage_open(&settings, runtime, &accounts, reason, sizeof reason) != STORAGE_OK) {
        fprintf(stderr, "starling: storage (%s): %s\n",
                config_enum_name("storage.driver", settings.storage.driver), reason);
        rx_runtime_destroy(runtime);
        return 2;
    }
    rx_log(RX_LOG_INFO, "storage %s open at schema version %u",
           config_enum_name("storage.driver", settings.storage.driver),
           storage_schema_version(accounts));
    tls_context *tls = NULL;
    if (needs_tls(&settings)) {
        char tls_error[TLS_ERROR_BYTES];
        tls = tls_context_from_config(&settings, tls_error, sizeof tls_error);
        if (tls == NULL) {
            fprintf(stderr, "starling: TLS: %s\n", tls_error);
            storage_close(accounts);
            rx_runtime_destroy(runtime);
            return 2;
        }
    }
    char node_error[512];
    the_node = c2s_node_create(&settings, rx_runtime_reactor_count(runtime), accounts, tls,
                               node_error, sizeof node_error);
    if (the_node == NULL) {
        fprintf(stderr, "starling: %s\n", node_error);
        tls_context_destroy(tls);
        storage_close(accounts);
        rx_runtime_destroy(runtime);
        return 2;
    }
    static c2s_listener listeners[LIMIT_LISTENERS_PER_REACTOR];
    rx_status status = RX_OK;
    for (unsigned i = 0; i < settings.listener_count && status == RX_OK; i++) {
        const config_listener *listener = &settings.listeners[i];
        if (listener->type != CONFIG_LISTENER_C2S) {
            rx_log(RX_LOG_INFO, "listener %s port %u (%s) is not opened: federation comes later",
                   listener->address, listener->port,
                   config_enum_name("listeners.type", listener->type));
            continue;
        }
        listeners[i] = (c2s_listener){.node = the_node, .tls = listener->tls};
        status = rx_runtime_add_listener(runtime, listener->address, (uint16_t)listener->port,
                                         &c2s_listener_ops, &listeners[i], NULL);
        if (status != RX_OK)
            fprintf(stderr, "starling: cannot listen on %s port %u\n", listener->address,
                    listener->port);
        else
            rx_log(RX_LOG_INFO, "listening on %s port %u (c2s, tls %s)", listener->address,
                   listener->port, config_enum_name("listeners.tls", listener->tls));
    }
    if (status != RX_OK) {
        c2s_node_destroy(the_node);
        tls_context_destroy(tls);
        storage_close(accounts);
        rx_runtime_destroy(runtime);
        return 1;
    }
    rx_log(RX_LOG_INFO, "starling %s serving %s on %s:%u with %u reactors", STARLING_VERSION,
           settings.domains[0], settings.listeners[0].address, settings.listeners[0].port,
           rx_runtime_reactor_count(runtime));
    status = rx_runtime_run(runtime);
    storage_close(accounts); /* before the runtime goes: completions need it */
    rx_runtime_destroy(runtime);
    c2s_node_destroy(the_node);
    tls_context_destroy(tls);
    rx_log(RX_LOG_INFO, "starling stopped");
    return status == RX_OK ? 0 : 1;
}
