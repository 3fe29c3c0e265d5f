/*
 * bench_server_cli.c: the runtime options of the bench's own servers (see
 * bench_server_cli.h).
 */
#include "bench/src/bench_server_cli.h"

#include "bench/src/bench_cli.h"
#include "proto/limits.h"

void server_cli_runtime_defaults(rx_options *runtime, unsigned timeout_ms)
{
    rx_options_init(runtime);
    runtime->handshake_timeout_ms = timeout_ms;
    runtime->idle_timeout_ms = timeout_ms;
}

/* Parses value into an unsigned field; false after a one-line error. */
static bool parse_field(const char *command, const struct option *long_options, int choice,
                        const char *value, uint64_t minimum, uint64_t maximum, unsigned *field)
{
    uint64_t parsed = 0;
    if (!cli_parse_unsigned(command, cli_option_name(long_options, choice), value, minimum, maximum,
                            &parsed))
        return false;
    *field = (unsigned)parsed;
    return true;
}

bool server_cli_apply_runtime_option(const char *command, const struct option *long_options,
                                     int choice, const char *value, rx_options *runtime)
{
    switch (choice) {
    case 'r':
        return parse_field(command, long_options, choice, value, 1, LIMIT_REACTORS_MAX,
                           &runtime->reactors);
    case 'c':
        return parse_field(command, long_options, choice, value, 1, LIMIT_CONNECTIONS_PER_REACTOR,
                           &runtime->connections_per_reactor);
    case 't':
        return parse_field(command, long_options, choice, value, SERVER_CLI_TIMEOUT_MS_MIN,
                           SERVER_CLI_TIMEOUT_MS_MAX, &runtime->handshake_timeout_ms);
    case 'i':
        return parse_field(command, long_options, choice, value, SERVER_CLI_TIMEOUT_MS_MIN,
                           SERVER_CLI_TIMEOUT_MS_MAX, &runtime->idle_timeout_ms);
    case 'n':
        runtime->pin_threads = false;
        return true;
    default:
        return false;
    }
}
