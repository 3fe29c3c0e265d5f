/*
 * bench_server_cli.h: the runtime options the bench's own servers
 * (starling-bench sink, starling-bench-echo) share: reactors, connections
 * per reactor, the handshake and idle timeouts and thread pinning, with
 * the same names, bounds and one-line errors (bench_cli.h).
 */
#ifndef STARLING_BENCH_SERVER_CLI_H
#define STARLING_BENCH_SERVER_CLI_H

#include "server/runtime/rx.h"

#include <getopt.h>
#include <stdbool.h>

/* The timeouts' bounds: 100 ms to a day. */
#define SERVER_CLI_TIMEOUT_MS_MIN 100u
#define SERVER_CLI_TIMEOUT_MS_MAX 86400000u

/* The long options the runtime options take, for a command's table. */
/* clang-format off */
#define SERVER_CLI_RUNTIME_LONG_OPTIONS                          \
    {"reactors", required_argument, NULL, 'r'},                  \
    {"connections-per-reactor", required_argument, NULL, 'c'},   \
    {"handshake-timeout-ms", required_argument, NULL, 't'},      \
    {"idle-timeout-ms", required_argument, NULL, 'i'},           \
    {"no-pin", no_argument, NULL, 'n'}
/* clang-format on */

/* The runtime's defaults (rx_options_init), with both timeouts timeout_ms. */
void server_cli_runtime_defaults(rx_options *runtime, unsigned timeout_ms);

/* Applies the runtime option whose getopt value is choice (named as in
 * long_options, borrowed) to runtime; false after a one-line error naming
 * command, and false for a choice that is not a runtime option. */
bool server_cli_apply_runtime_option(const char *command, const struct option *long_options,
                                     int choice, const char *value, rx_options *runtime);

#endif
