/*
 * bench_echo.c: starling-bench-echo, the smallest server the runtime can
 * run: one listener whose connections echo what they receive and do
 * nothing else. Holding N idle connections on it and on starling separates
 * what the runtime costs per connection (slab slot, descriptor, timers)
 * from what the XMPP layer adds (stream state, tokenizer). Its handshake
 * and idle timeouts default to an hour so idle connections stay put.
 * SIGTERM or SIGINT shut it down gracefully.
 */
#include "bench/src/bench_cli.h"
#include "proto/limits.h"
#include "server/runtime/rx.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define ECHO_COMMAND            "starling-bench-echo"
#define ECHO_DEFAULT_ADDRESS    "127.0.0.1"
#define ECHO_DEFAULT_PORT       5299u
#define ECHO_DEFAULT_TIMEOUT_MS 3600000u

typedef struct echo_options {
    rx_options runtime;
    const char *address;
    uint64_t port;
} echo_options;

static void on_open(rx_conn *conn, void *listener_context)
{
    /* Nothing to set up: an idle echo connection is the runtime's alone. */
    (void)conn;
    (void)listener_context;
}

static void on_data(rx_conn *conn, const uint8_t *bytes, size_t len)
{
    /* On RX_ERR_FULL the runtime has already aborted the connection, and on
     * RX_ERR_CLOSED it is going; either way there is nothing left to do. */
    rx_status status = rx_conn_send(conn, bytes, len);
    if (status != RX_OK && status != RX_ERR_FULL && status != RX_ERR_CLOSED)
        rx_conn_abort(conn);
}

static void on_close(rx_conn *conn, rx_close_reason reason)
{
    (void)conn;
    (void)reason;
}

static const rx_listener_ops echo_ops = {
    .on_open = on_open,
    .on_data = on_data,
    .on_close = on_close,
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: " ECHO_COMMAND " [options]\n"
            "A bare runtime server: every connection echoes its bytes back.\n"
            "  --address ADDR               listener address (default %s)\n"
            "  --port PORT                  listener port (default %u; 0 picks a free one)\n"
            "  --reactors N                 reactor threads (default: one per core)\n"
            "  --connections-per-reactor N  connection bound per reactor (default: runtime's)\n"
            "  --handshake-timeout-ms MS    handshake timeout (default %u)\n"
            "  --idle-timeout-ms MS         idle timeout (default %u)\n"
            "  --no-pin                     do not pin reactor threads to cores\n"
            "  --help                       this text\n",
            ECHO_DEFAULT_ADDRESS, ECHO_DEFAULT_PORT, ECHO_DEFAULT_TIMEOUT_MS,
            ECHO_DEFAULT_TIMEOUT_MS);
}

static const struct option long_options[] = {
    {"address", required_argument, NULL, 'a'},
    {"port", required_argument, NULL, 'p'},
    {"reactors", required_argument, NULL, 'r'},
    {"connections-per-reactor", required_argument, NULL, 'c'},
    {"handshake-timeout-ms", required_argument, NULL, 't'},
    {"idle-timeout-ms", required_argument, NULL, 'i'},
    {"no-pin", no_argument, NULL, 'n'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Parses value into an unsigned field; false after a one-line error. */
static bool parse_field(int choice, const char *value, uint64_t minimum, uint64_t maximum,
                        unsigned *field)
{
    const char *name = cli_option_name(long_options, choice);
    uint64_t parsed = 0;
    if (!cli_parse_unsigned(ECHO_COMMAND, name, value, minimum, maximum, &parsed))
        return false;
    *field = (unsigned)parsed;
    return true;
}

static bool apply_option(int choice, const char *value, void *context)
{
    echo_options *options = context;
    rx_options *runtime = &options->runtime;
    unsigned port = 0;
    switch (choice) {
    case 'a':
        options->address = value;
        return true;
    case 'p':
        if (!parse_field(choice, value, 0, 65535, &port))
            return false;
        options->port = port;
        return true;
    case 'r':
        return parse_field(choice, value, 1, LIMIT_REACTORS_MAX, &runtime->reactors);
    case 'c':
        return parse_field(choice, value, 1, LIMIT_CONNECTIONS_PER_REACTOR,
                           &runtime->connections_per_reactor);
    case 't':
        return parse_field(choice, value, 100, 86400000, &runtime->handshake_timeout_ms);
    case 'i':
        return parse_field(choice, value, 100, 86400000, &runtime->idle_timeout_ms);
    case 'n':
        runtime->pin_threads = false;
        return true;
    default:
        return false;
    }
}

int main(int argc, char **argv)
{
    echo_options options = {.address = ECHO_DEFAULT_ADDRESS, .port = ECHO_DEFAULT_PORT};
    rx_options_init(&options.runtime);
    options.runtime.handshake_timeout_ms = ECHO_DEFAULT_TIMEOUT_MS;
    options.runtime.idle_timeout_ms = ECHO_DEFAULT_TIMEOUT_MS;
    int status =
        cli_parse_options(ECHO_COMMAND, argc, argv, long_options, usage, apply_option, &options);
    if (status != CLI_EXIT_OK)
        return status == CLI_EXIT_HELP ? CLI_EXIT_OK : status;

    rx_runtime *runtime = rx_runtime_create(&options.runtime);
    if (runtime == NULL)
        return CLI_EXIT_FAILED;
    rx_listener *listener = NULL;
    if (rx_runtime_add_listener(runtime, options.address, (uint16_t)options.port, &echo_ops, NULL,
                                &listener) != RX_OK) {
        fprintf(stderr, ECHO_COMMAND ": cannot listen on %s port %" PRIu64 "\n", options.address,
                options.port);
        rx_runtime_destroy(runtime);
        return CLI_EXIT_FAILED;
    }
    rx_log(RX_LOG_INFO, ECHO_COMMAND " %s listening on %s:%u with %u reactors", STARLING_VERSION,
           options.address, (unsigned)rx_listener_port(listener),
           rx_runtime_reactor_count(runtime));
    rx_status run_status = rx_runtime_run(runtime);
    rx_runtime_destroy(runtime);
    rx_log(RX_LOG_INFO, ECHO_COMMAND " stopped");
    return run_status == RX_OK ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}
