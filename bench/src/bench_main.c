/*
 * bench_main.c: starling-bench, the bundled load generator. The first
 * argument names a scenario (a subcommand); everything after it belongs to
 * that scenario, which has its own --help. Scenarios grow here one table
 * row at a time (presence comes with a later issue).
 */
#include "bench/src/bench_cli.h"
#include "bench/src/bench_commands.h"

#include <stdio.h>
#include <string.h>

typedef struct bench_command {
    const char *name;
    const char *summary;
    int (*main)(int argc, char **argv);
} bench_command;

static const bench_command commands[] = {
    {"idle",
     "open N connections (XMPP streams or raw TCP; logged-in sessions with --login), "
     "hold them idle, report connects/s and server memory per connection",
     bench_idle_main},
    {"login",
     "log N sessions in (SASL, bind, presence) on Starling's runtime, report logins/s, "
     "login latency and failures by reason",
     bench_login_main},
    {"reconnect",
     "log N sessions in, drop them all at once, log them in again; report the time to "
     "recover and the second wave's logins/s",
     bench_reconnect_main},
    {"chat",
     "N users in pairs send 1:1 messages at a fixed rate; report delivered/s, latency "
     "p50..p99.9, lost and duplicates",
     bench_chat_main},
    {"presence",
     "users with rosters of R contacts log in; report presence stanzas delivered/s and the "
     "time for a login's presence to reach all online contacts",
     bench_presence_main},
    {"sink",
     "the cheapest XMPP server (SASL, bind, 1:1 routing) on Starling's runtime: run a "
     "scenario against it to measure the tool's own ceiling",
     bench_sink_main},
};

#define COMMAND_COUNT (sizeof commands / sizeof commands[0])

static void usage(FILE *out)
{
    fprintf(out, "usage: starling-bench COMMAND [options]   (starling-bench COMMAND --help)\n"
                 "\ncommands:\n");
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n  --help     this text\n  --version  print the version\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "starling-bench: missing COMMAND (see starling-bench --help)\n");
        return CLI_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(name, "--version") == 0) {
        printf("starling-bench %s\n", STARLING_VERSION);
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        if (strcmp(name, commands[i].name) == 0)
            return commands[i].main(argc - 1, argv + 1);
    fprintf(stderr, "starling-bench: unknown command '%s' (see starling-bench --help)\n", name);
    return CLI_EXIT_USAGE;
}
