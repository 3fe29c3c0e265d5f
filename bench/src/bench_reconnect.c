/*
 * bench_reconnect.c: the reconnect scenario of starling-bench. N sessions
 * log in as in login, stay online for --hold seconds, then every reactor
 * aborts all its connections at once (as a crashed network or a restarted
 * client fleet would) and logs every session in again at once. It answers:
 * how long does the server take to recover from a drop, from the drop
 * until all N are online again, and at what rate does it take the second
 * wave of logins. The first wave's counters are kept apart (each reactor
 * swaps them out at the drop), so failures are reported per wave.
 */
#include "bench/src/bench_commands.h"
#include "bench/src/xmpp_session.h"

#include <inttypes.h>
#include <stdlib.h>

/* Runs on the reactor: swaps the first wave's counters out, then aborts
 * every connection; each is logged in again from its on_close (see
 * reconnect_on_dropped). A session without a connection (it failed, or
 * the server dropped it) is started again at once. message->pointer is the reactor. */
static void reactor_drop(const rx_message *message)
{
    xmpp_reactor *reactor = message->pointer;
    reactor->first_wave = reactor->counters;
    reactor->counters = (xmpp_counters){.latency_us = reactor->scenario_state};
    reactor->scenario_state = NULL; /* the spare histogram is in use now */
    for (uint64_t i = 0; i < reactor->share; i++) {
        xmpp_session *session = &reactor->sessions[i];
        if (session->conn != NULL) {
            session->dropping = true;
            rx_conn_abort(session->conn);
        } else if (session->state != STATE_CONNECTING) {
            xmpp_session_start(reactor, session); /* failed, or dropped by the server */
        }
    }
}

/* A dropped session closed: log it in again. */
static void reconnect_on_dropped(xmpp_session *session)
{
    xmpp_session_start(session->reactor, session);
}

/* Main thread: drops all sessions and waits for the second wave. */
static bool reconnect_phase(xmpp_run *run)
{
    run->first_wave_finished = atomic_load_explicit(&run->finished, memory_order_acquire);
    atomic_store_explicit(&run->finished, 0, memory_order_release);
    run->drop_us = system_now_us();
    if (!xmpp_post_to_reactors(run, reactor_drop))
        return false;
    xmpp_wait_for_logins(run, run->drop_us);
    return true;
}

/* The second wave's counters go into a histogram made before the start. */
static bool reconnect_reactor_prepare(xmpp_reactor *reactor)
{
    reactor->scenario_state = histogram_create(1, SESSION_LATENCY_US_MAX, 3);
    return reactor->scenario_state != NULL;
}

static void reconnect_reactor_free(xmpp_reactor *reactor)
{
    histogram_destroy(reactor->scenario_state);
    reactor->scenario_state = NULL;
}

static bool first_wave_results(const xmpp_run *run, xmpp_results *results)
{
    return xmpp_compute_results(run, true, run->start_us, run->first_wave_finished, results);
}

static void reconnect_report_human(const xmpp_run *run)
{
    xmpp_results results;
    if (first_wave_results(run, &results)) {
        printf("  first wave         %" PRIu64 " of %" PRIu64 " online, %" PRIu64
               " failed, all online after %.1f ms (%.1f logins/s)\n",
               results.online, run->options.count, results.failed, results.all_online_ms,
               results.logins_per_second);
        xmpp_print_failures(&results);
    }
    histogram_destroy(results.latency_us);
    if (run->drop_us != 0)
        printf("  (the lines above the first wave's are the second wave's, from the drop: "
               "all online after = time to recover)\n");
}

static void reconnect_report_json(json_writer *writer, const xmpp_run *run)
{
    xmpp_results results;
    bool computed = first_wave_results(run, &results);
    if (computed) {
        xmpp_json_sessions(writer, "first_wave", &results, run->options.count);
        json_object_begin(writer, "first_wave_timing");
        json_optional_number(writer, "all_online_ms", results.online > 0, results.all_online_ms);
        json_optional_number(writer, "logins_per_second", results.online > 0,
                             results.logins_per_second);
        json_object_end(writer);
    }
    histogram_destroy(results.latency_us);
    json_object_begin(writer, "reconnect");
    json_boolean(writer, "dropped", run->drop_us != 0);
    json_object_end(writer);
}

static bool reconnect_succeeded(const xmpp_run *run)
{
    xmpp_results results;
    bool computed = first_wave_results(run, &results);
    histogram_destroy(results.latency_us);
    return computed && run->drop_us != 0 && results.online == run->options.count &&
           results.failed == 0;
}

static const xmpp_scenario reconnect_scenario = {
    .command = "starling-bench reconnect",
    .name = "reconnect",
    .summary = "Logs N sessions in, holds --hold s, aborts all connections at once and logs\n"
               "them all in again; reports the time to recover (drop to all online), the\n"
               "second wave's logins/s and latency, and failures by reason of both waves.\n",
    .extra_usage =
        "The report's sessions and timing are the second wave's (all_online_ms is the\n"
        "time to recover); first_wave holds the first.\n"
        "Exit status: 0 when all N got online in both waves, 1 otherwise, 2 for usage.\n",
    .reactor_prepare = reconnect_reactor_prepare,
    .reactor_free = reconnect_reactor_free,
    .on_dropped = reconnect_on_dropped,
    .run_phase = reconnect_phase,
    .report_human = reconnect_report_human,
    .report_json = reconnect_report_json,
    .succeeded = reconnect_succeeded,
};

int bench_reconnect_main(int argc, char **argv)
{
    return xmpp_bench_main(argc, argv, &reconnect_scenario);
}
