/*
 * bench_idle_login.c: `starling-bench idle --login`, the idle scenario with
 * authenticated sessions. Where idle's own modes only open streams (or
 * connect), this one logs every session in on the session engine
 * (xmpp_session.h: SASL, bind, initial presence; over TLS with --tls),
 * holds them all for --hold seconds (10 unless given) and, with
 * --server-pid, reports the server's memory per online session
 * (xmpp_memory.h). It answers: what does an idle authenticated session
 * cost the server, plaintext and over TLS. It passes when every session
 * got online and was still online at the end of the hold (none dropped).
 */
#include "bench/src/bench_cli.h"
#include "bench/src/bench_commands.h"
#include "bench/src/xmpp_session.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The hold when none is given: long enough for the server to settle after
 * the logins (buffers shrunk, timers armed) before memory is sampled, and
 * short enough for a smoke run. */
#define IDLE_LOGIN_HOLD_DEFAULT "10"

static uint64_t dropped_sessions(const xmpp_run *run)
{
    uint64_t dropped = 0;
    for (unsigned i = 0; i < run->reactor_count; i++)
        dropped += run->reactors[i].counters.dropped;
    return dropped;
}

static void report_human(const xmpp_run *run)
{
    printf("  held               %" PRIu64 " of %" PRIu64
           " sessions online at the end of the %" PRIu64 " s hold, %" PRIu64 " dropped\n",
           run->memory_online, run->options.count, run->options.hold_s, dropped_sessions(run));
}

static void report_json(json_writer *writer, const xmpp_run *run)
{
    json_object_begin(writer, "idle");
    json_string(writer, "mode", "login");
    json_optional_unsigned(writer, "online_at_end_of_hold", run->memory_sampled_us != 0,
                           run->memory_online);
    json_unsigned(writer, "dropped", dropped_sessions(run));
    json_object_end(writer);
}

/* Every session was online when the hold ended (drops are failures too). */
static bool succeeded(const xmpp_run *run)
{
    return run->memory_sampled_us != 0 && run->memory_online == run->options.count;
}

static const xmpp_scenario idle_login_scenario = {
    .command = "starling-bench idle --login",
    .name = "idle",
    .summary = "Logs N sessions in (connect, stream, SASL, stream restart, bind, presence) on\n"
               "Starling's runtime, holds them idle and, with --server-pid, reports the\n"
               "server's memory per online session. Without --login, idle only opens streams\n"
               "(see starling-bench idle --help).\n",
    .extra_usage = "Here --hold defaults to " IDLE_LOGIN_HOLD_DEFAULT " s, not 0.\n"
                   "Exit status: 0 when all N got online and were still online at the end of\n"
                   "the hold (none dropped), 1 otherwise, 2 for usage.\n",
    .report_human = report_human,
    .report_json = report_json,
    .succeeded = succeeded,
};

bool bench_idle_wants_login(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--login") == 0)
            return true;
    return false;
}

int bench_idle_login_main(int argc, char **argv)
{
    /* argv without --login, behind "--hold 10" that a later --hold overrides
     * (getopt_long keeps the last value); getopt permutes the pointers only,
     * so the strings may stay where they are. */
    static char hold_option[] = "--hold", hold_default[] = IDLE_LOGIN_HOLD_DEFAULT;
    char **arguments = calloc((size_t)argc + 3, sizeof *arguments);
    if (arguments == NULL) {
        fprintf(stderr, "%s: out of memory\n", idle_login_scenario.command);
        return CLI_EXIT_FAILED;
    }
    int used = 0;
    arguments[used++] = argv[0];
    arguments[used++] = hold_option;
    arguments[used++] = hold_default;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--login") != 0)
            arguments[used++] = argv[i];
    arguments[used] = NULL;
    int status = xmpp_bench_main(used, arguments, &idle_login_scenario);
    free(arguments);
    return status;
}
