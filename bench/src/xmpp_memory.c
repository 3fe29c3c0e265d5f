/*
 * xmpp_memory.c: the server's memory per online session for the session
 * engine's scenarios (see xmpp_memory.h). The second sample is taken by
 * the main thread while the reactors still hold every session, so the
 * divisor is the count of sessions online at that moment (run->online_now),
 * not --count: a run where some failed still reports what the others cost.
 */
#include "bench/src/xmpp_memory.h"

#include "bench/src/bench_cli.h"
#include "bench/src/bench_memory.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>

bool xmpp_memory_apply_option(const char *command, const char *value, xmpp_options *options)
{
    return cli_parse_unsigned(command, "server-pid", value, 1, MEMORY_SERVER_PID_MAX,
                              &options->server_pid);
}

bool xmpp_memory_options_check(const char *command, const xmpp_options *options)
{
    if (options->server_pid != 0 && kill((pid_t)options->server_pid, 0) != 0 && errno == ESRCH) {
        fprintf(stderr, "%s: --server-pid %" PRIu64 ": no such process\n", command,
                options->server_pid);
        return false;
    }
    return true;
}

void xmpp_memory_before(xmpp_run *run)
{
    memory_sample_take(run->options.scenario->command, run->options.server_pid,
                       &run->memory_before);
}

void xmpp_memory_after(xmpp_run *run)
{
    run->memory_online = atomic_load(&run->online_now);
    run->memory_sampled_us = system_now_us();
    memory_sample_take(run->options.scenario->command, run->options.server_pid, &run->memory_after);
}

void xmpp_memory_report_human(const xmpp_run *run)
{
    if (run->options.server_pid == 0)
        return;
    if (run->memory_sampled_us == 0) {
        printf("  server memory      not sampled (the sessions never started)\n");
        return;
    }
    printf("  memory sampled     pid %" PRIu64 ", %" PRIu64 " sessions online at the end of"
           " the hold\n",
           run->options.server_pid, run->memory_online);
    memory_results results =
        memory_compute(&run->memory_before, &run->memory_after, run->memory_online);
    memory_print(&results, "session");
}

void xmpp_memory_report_json(json_writer *writer, const xmpp_run *run)
{
    bool sampled = run->memory_sampled_us != 0;
    json_object_begin(writer, "memory_sample");
    json_optional_unsigned(writer, "online", sampled, run->memory_online);
    json_optional_number(writer, "at_ms", sampled && run->memory_sampled_us >= run->start_us,
                         (double)(run->memory_sampled_us - run->start_us) / 1000.0);
    json_object_end(writer);
    memory_sample none = {0};
    const memory_sample *after = sampled ? &run->memory_after : &none;
    memory_results results = memory_compute(&run->memory_before, after, run->memory_online);
    memory_json(writer, run->options.server_pid, &run->memory_before, after, &results);
}
