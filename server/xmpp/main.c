/*
 * main.c: the starling binary. Parses the command line, builds the runtime
 * with one reactor per core (or --reactors N), adds the client listener and
 * runs until SIGTERM/SIGINT, whose graceful shutdown lets every stream say
 * goodbye with a system-shutdown stream error.
 *
 * With no arguments it runs on built-in defaults: domain localhost, client
 * port 5222 on 127.0.0.1. The YAML configuration (issue 4) will carry the
 * same keys; the command line stays as an override.
 */
#include "proto/limits.h"
#include "server/runtime/rx.h"
#include "server/xmpp/c2s.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STARLING_DEFAULT_ADDRESS "127.0.0.1"
#define STARLING_DEFAULT_PORT    5222u
#define STARLING_DEFAULT_DOMAIN  "localhost"

typedef struct starling_options {
    rx_options runtime;
    const char *address;
    unsigned port;
    const char *domain;
} starling_options;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: starling [options]\n"
            "  --reactors N                 reactor threads (default: one per core)\n"
            "  --address ADDR               client listener address (default %s)\n"
            "  --port PORT                  client listener port (default %u)\n"
            "  --domain NAME                served domain (default %s)\n"
            "  --grace-ms MS                graceful shutdown period (default %u)\n"
            "  --connections-per-reactor N  connection bound per reactor (default %u)\n"
            "  --handshake-timeout-ms MS    time to finish the handshake (default %u)\n"
            "  --idle-timeout-ms MS         silence before a stream is closed (default %u)\n"
            "  --help                       this text\n",
            STARLING_DEFAULT_ADDRESS, STARLING_DEFAULT_PORT, STARLING_DEFAULT_DOMAIN,
            LIMIT_SHUTDOWN_GRACE_MS, LIMIT_CONNECTIONS_PER_REACTOR, LIMIT_HANDSHAKE_TIMEOUT_MS,
            LIMIT_IDLE_TIMEOUT_MS);
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

static void parse_options(int argc, char **argv, starling_options *options)
{
    static const struct option long_options[] = {
        {"reactors", required_argument, NULL, 'r'},
        {"address", required_argument, NULL, 'a'},
        {"port", required_argument, NULL, 'p'},
        {"domain", required_argument, NULL, 'd'},
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
        case 'r':
            options->runtime.reactors = parse_unsigned(name, optarg, 1, LIMIT_REACTORS_MAX);
            break;
        case 'a':
            options->address = optarg;
            break;
        case 'p':
            options->port = parse_unsigned(name, optarg, 1, 65535);
            break;
        case 'd':
            options->domain = optarg;
            break;
        case 'g':
            options->runtime.shutdown_grace_ms = parse_unsigned(name, optarg, 0, 3600000);
            break;
        case 'c':
            options->runtime.connections_per_reactor =
                parse_unsigned(name, optarg, 1, LIMIT_CONNECTIONS_PER_REACTOR);
            break;
        case 't':
            options->runtime.handshake_timeout_ms = parse_unsigned(name, optarg, 100, 3600000);
            break;
        case 'i':
            options->runtime.idle_timeout_ms = parse_unsigned(name, optarg, 100, 86400000);
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

int main(int argc, char **argv)
{
    starling_options options = {
        .address = STARLING_DEFAULT_ADDRESS,
        .port = STARLING_DEFAULT_PORT,
        .domain = STARLING_DEFAULT_DOMAIN,
    };
    rx_options_init(&options.runtime);
    parse_options(argc, argv, &options);

    c2s_context context;
    if (c2s_context_init(&context, options.domain) != 0) {
        fprintf(stderr, "starling: '%s' is not a usable domain name\n", options.domain);
        return 2;
    }
    rx_runtime *runtime = rx_runtime_create(&options.runtime);
    if (runtime == NULL)
        return 1;
    rx_status status = rx_runtime_add_listener(runtime, options.address, (uint16_t)options.port,
                                               &c2s_listener_ops, &context, NULL);
    if (status != RX_OK) {
        fprintf(stderr, "starling: cannot listen on %s port %u\n", options.address, options.port);
        rx_runtime_destroy(runtime);
        return 1;
    }
    rx_log(RX_LOG_INFO, "starling %s serving %s on %s:%u with %u reactors", STARLING_VERSION,
           options.domain, options.address, options.port, rx_runtime_reactor_count(runtime));
    status = rx_runtime_run(runtime);
    rx_runtime_destroy(runtime);
    rx_log(RX_LOG_INFO, "starling stopped");
    return status == RX_OK ? 0 : 1;
}
