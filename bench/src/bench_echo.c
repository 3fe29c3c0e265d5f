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
#include "bench/src/bench_server_cli.h"
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

/* clang-format off */
static const struct option long_options[] = {
    {"address", required_argument, NULL, 'a'},
    {"port", required_argument, NULL, 'p'},
    SERVER_CLI_RUNTIME_LONG_OPTIONS, /* --reactors to --no-pin */
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};
/* clang-format on */

static bool apply_option(int choice, const char *value, void *context)
{
    echo_options *options = context;
    switch (choice) {
    case 'a':
        options->address = value;
        return true;
    case 'p':
        return cli_parse_unsigned(ECHO_COMMAND, "port", value, 0, 65535, &options->port);
    default:
        return server_cli_apply_runtime_option(ECHO_COMMAND, long_options, choice, value,
                                               &options->runtime);
    }
}

int main(int argc, char **argv)
{
    echo_options options = {.address = ECHO_DEFAULT_ADDRESS, .port = ECHO_DEFAULT_PORT};
    server_cli_runtime_defaults(&options.runtime, ECHO_DEFAULT_TIMEOUT_MS);
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
