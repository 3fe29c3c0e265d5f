/*
 * bench_chat.c: the chat scenario of starling-bench. N users log in as in
 * login, paired user 2k+1 <-> 2k+2 (sessions 2k and 2k+1, which always
 * share a reactor, so every count is one reactor's and needs no atomics).
 * Then both users of every pair send 1:1 chat messages to each other:
 *
 *   open loop (default): --rate messages per second in all, spread over the
 *   reactors by their share of the sessions; message k of a reactor is
 *   SCHEDULED at start + k / rate and sent by the reactor's session
 *   k mod share at the first tick (every CHAT_TICK_US, see pace_until)
 *   that finds it due. Latency runs from
 *   the scheduled time, so a server (or tool) that stalls sees the stall
 *   in every message that should have gone out meanwhile: no coordinated
 *   omission.
 *
 *   closed loop (--window W): each sender keeps W messages outstanding to
 *   its partner; latency runs from the actual send.
 *
 * The body is "sender sequence scheduled_us" (CLOCK_MONOTONIC; both ends
 * are this process). The receiver checks the sender is its partner, keeps
 * a bitmap of the partner's sequence numbers (duplicates) and the highest
 * seen (out of order). Sending stops after --duration s; --drain s later
 * the run ends: lost = sent - delivered.
 */
#include "bench/src/bench_commands.h"
#include "bench/src/xmpp_session.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#define CHAT_TICK_US            100u
#define CHAT_PACE_LATE_US       1000u      /* a tick woken this late counts as late */
#define CHAT_TIMER_SLACK_NS     1000ul     /* the pacing thread's timer slack */
#define CHAT_SENDS_PER_TICK_MAX 100000u    /* a bound on one tick's catch-up */
#define CHAT_SEQUENCE_MAX       (1u << 26) /* per flow: bitmap bound, 8 MiB */
#define CHAT_MESSAGE_BYTES_MAX  1024u
#define CHAT_BODY_BYTES_MAX     128u
#define CLIENT_NAMESPACE        "jabber:client"

/* One session's two flows: what it sends to its partner, and what it
 * receives from its partner. */
typedef struct chat_flow {
    uint64_t next_sequence;    /* sender: the next sequence number */
    uint64_t *seen;            /* receiver: owned bitmap of the partner's sequences */
    uint64_t seen_words;       /* bitmap capacity in 64-bit words */
    uint64_t highest_plus_one; /* receiver: highest sequence seen + 1 */
} chat_flow;

/* A reactor's chat state (xmpp_reactor.scenario_state). */
typedef struct chat_reactor {
    chat_flow *flows;       /* owned, one per session of the share */
    histogram *latency_us;  /* owned */
    double rate_per_second; /* this reactor's part of --rate */
    uint64_t start_us, end_us, scheduled, scheduled_total;
    uint64_t sent, unsent, delivered, duplicates, out_of_order, errors, malformed;
    uint64_t last_delivery_us;
} chat_reactor;

/* ------------------------------------------------------------- sending */

/* Sends the session's next message to its partner, stamped scheduled_us. */
static void chat_send(xmpp_session *session, uint64_t scheduled_us)
{
    xmpp_reactor *reactor = session->reactor;
    chat_reactor *chat = reactor->scenario_state;
    chat_flow *flow = &chat->flows[session->index - reactor->first_index];
    char partner[SESSION_NAME_BYTES_MAX];
    char text[CHAT_MESSAGE_BYTES_MAX];
    int length = -1;
    if (xmpp_user_name(reactor->run, session->index ^ 1u, partner) > 0)
        length = snprintf(text, sizeof text,
                          "<message to='%s@%s/bench' type='chat' id='c%" PRIu64 "'><body>%" PRIu64
                          " %" PRIu64 " %" PRIu64 "</body></message>",
                          partner, reactor->run->options.domain, flow->next_sequence,
                          session->index, flow->next_sequence, scheduled_us);
    if (session->state != STATE_ONLINE || session->conn == NULL || session->closing || length < 0 ||
        (size_t)length >= sizeof text || !xmpp_session_write(session, text, (size_t)length)) {
        chat->unsent++;
        return;
    }
    flow->next_sequence++;
    chat->sent++;
    timeline_meter_count(&reactor->meter, TIMELINE_SENT, 1);
}

/* Open loop, on the reactor: sends every message scheduled by now
 * (bounded per tick). message->pointer is the xmpp_reactor. */
static void chat_tick(const rx_message *message)
{
    xmpp_reactor *reactor = message->pointer;
    chat_reactor *chat = reactor->scenario_state;
    if (chat->rate_per_second <= 0)
        return;
    uint64_t now_us = system_now_us();
    double elapsed_s = (double)(now_us - chat->start_us) / 1e6;
    uint64_t due = (uint64_t)(elapsed_s * chat->rate_per_second) + 1u;
    if (due > chat->scheduled_total)
        due = chat->scheduled_total;
    for (unsigned sends = 0; chat->scheduled < due && sends < CHAT_SENDS_PER_TICK_MAX; sends++) {
        uint64_t scheduled_us =
            chat->start_us + (uint64_t)((double)chat->scheduled * 1e6 / chat->rate_per_second);
        chat_send(&reactor->sessions[chat->scheduled % reactor->share], scheduled_us);
        chat->scheduled++;
    }
}

/* Runs on the reactor: message->pointer is its xmpp_reactor. */
static void chat_start(const rx_message *message)
{
    xmpp_reactor *reactor = message->pointer;
    chat_reactor *chat = reactor->scenario_state;
    const xmpp_options *options = &reactor->run->options;
    chat->start_us = system_now_us();
    chat->end_us = chat->start_us + options->duration_s * 1000000u;
    if (reactor->share == 0)
        return;
    if (options->window > 0) {
        for (uint64_t i = 0; i < reactor->share; i++)
            for (uint64_t k = 0; k < options->window; k++)
                chat_send(&reactor->sessions[i], system_now_us());
        return;
    }
    chat->rate_per_second =
        (double)options->message_rate_per_second * (double)reactor->share / (double)options->count;
    chat->scheduled_total = (uint64_t)(chat->rate_per_second * (double)options->duration_s);
    chat_tick(message);
}

/* ----------------------------------------------------------- receiving */

/* Marks sequence seen in the flow's bitmap; false when it was already. */
static bool flow_mark(chat_flow *flow, uint64_t sequence)
{
    uint64_t word = sequence / 64u;
    if (word >= flow->seen_words) {
        uint64_t words = flow->seen_words == 0 ? 16u : flow->seen_words;
        while (words <= word)
            words *= 2u;
        uint64_t *grown = realloc(flow->seen, words * sizeof *grown);
        if (grown == NULL)
            return true; /* counted as delivered, unchecked: the run is out of memory anyway */
        memset(grown + flow->seen_words, 0, (words - flow->seen_words) * sizeof *grown);
        flow->seen = grown;
        flow->seen_words = words;
    }
    uint64_t bit = (uint64_t)1 << (sequence % 64u);
    if (flow->seen[word] & bit)
        return false;
    flow->seen[word] |= bit;
    return true;
}

/* A stanza for an online session: count chat messages from its partner. */
static void chat_on_stanza(xmpp_session *session, const xml_view *view)
{
    xmpp_reactor *reactor = session->reactor;
    chat_reactor *chat = reactor->scenario_state;
    if (!xmpp_named(view, xml_view_root(view), "message", CLIENT_NAMESPACE))
        return; /* presence and the like */
    if (xmpp_attribute_is(view, "type", "error")) {
        chat->errors++;
        return;
    }
    uint64_t numbers[3];
    if (!xmpp_child_numbers(view, "body", CHAT_BODY_BYTES_MAX, numbers, 3) ||
        numbers[0] != (session->index ^ 1u) || numbers[1] >= CHAT_SEQUENCE_MAX) {
        chat->malformed++;
        return;
    }
    uint64_t now_us = system_now_us();
    chat_flow *flow = &chat->flows[session->index - reactor->first_index];
    if (!flow_mark(flow, numbers[1])) {
        chat->duplicates++;
        return;
    }
    chat->delivered++;
    chat->last_delivery_us = now_us;
    histogram_record(chat->latency_us, now_us > numbers[2] ? now_us - numbers[2] : 1u);
    timeline_meter_count(&reactor->meter, TIMELINE_DELIVERED, 1);
    timeline_meter_latency(&reactor->meter, now_us > numbers[2] ? now_us - numbers[2] : 1u);
    if (numbers[1] + 1u < flow->highest_plus_one)
        chat->out_of_order++;
    else
        flow->highest_plus_one = numbers[1] + 1u;
    if (reactor->run->options.window > 0 && now_us < chat->end_us)
        chat_send(&reactor->sessions[(session->index ^ 1u) - reactor->first_index], now_us);
}

/* ------------------------------------------------------------- the run */

static bool chat_options_check(xmpp_options *options)
{
    if (options->count % 2u != 0) {
        fprintf(stderr, "starling-bench chat: --count must be even (users come in pairs)\n");
        return false;
    }
    if (options->window == 0 && options->message_rate_per_second == 0) {
        fprintf(stderr, "starling-bench chat: --rate 0 needs --window (closed loop)\n");
        return false;
    }
    return true;
}

static bool chat_reactor_prepare(xmpp_reactor *reactor)
{
    chat_reactor *chat = calloc(1, sizeof *chat);
    reactor->scenario_state = chat;
    if (chat == NULL)
        return false;
    chat->flows = calloc(reactor->share + 1, sizeof *chat->flows);
    chat->latency_us = histogram_create(1, SESSION_LATENCY_US_MAX, 3);
    return chat->flows != NULL && chat->latency_us != NULL;
}

static void chat_reactor_free(xmpp_reactor *reactor)
{
    chat_reactor *chat = reactor->scenario_state;
    if (chat == NULL)
        return;
    for (uint64_t i = 0; chat->flows != NULL && i < reactor->share; i++)
        free(chat->flows[i].seen);
    free(chat->flows);
    histogram_destroy(chat->latency_us);
    free(chat);
    reactor->scenario_state = NULL;
}

/* Main thread, open loop: the runtime's timers tick in LIMIT_TIMER_SLOT_MS
 * slots, far too coarse to pace messages, so the main thread is the clock:
 * every CHAT_TICK_US it posts a tick to each reactor, which sends what is
 * due by then. The ticks are absolute deadlines (a late wake-up does not
 * push the later ones back) and the thread's timer slack is cut from the
 * default 50 us, so a message waits at most about one tick for its send and
 * the tool's own share of the measured latency stays well under the 2 ms
 * that servers are judged by. A tick refused (mailbox full) is skipped: the
 * next one sends what it would have, and latency (from the scheduled time)
 * shows the delay. Each wake-up's lateness is counted (run->pace_*) and
 * reported as "pacing": a late tick is a stall of the tool's own core,
 * which the latency includes. */
static void pace_until(xmpp_run *run, uint64_t end_us)
{
    (void)prctl(PR_SET_TIMERSLACK, CHAT_TIMER_SLACK_NS, 0, 0, 0);
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    for (uint64_t now_us = system_now_us(); now_us < end_us + CHAT_TICK_US;
         now_us = system_now_us()) {
        deadline.tv_nsec += (long)CHAT_TICK_US * 1000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_nsec -= 1000000000L;
            deadline.tv_sec++;
        }
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, NULL) == EINTR)
            continue;
        uint64_t woke_us = system_now_us();
        uint64_t due_us = (uint64_t)deadline.tv_sec * 1000000u + (uint64_t)deadline.tv_nsec / 1000u;
        uint64_t late_us = woke_us > due_us ? woke_us - due_us : 0;
        run->pace_ticks++;
        run->pace_late_ticks += late_us > CHAT_PACE_LATE_US;
        if (late_us > run->pace_late_max_us)
            run->pace_late_max_us = late_us;
        xmpp_timeline_poll(run);
        for (unsigned i = 0; i < run->reactor_count; i++) {
            rx_message message = {.function = chat_tick, .pointer = &run->reactors[i]};
            rx_status status = rx_producer_post(run->producer, i, &message);
            if (status != RX_OK && status != RX_ERR_FULL)
                return; /* the runtime is stopping */
        }
    }
}

/* Main thread: when everyone is online, chat for --duration, then drain. */
static bool chat_phase(xmpp_run *run)
{
    if (atomic_load_explicit(&run->online_now, memory_order_relaxed) < run->options.count) {
        fprintf(stderr, "starling-bench chat: not all users online, no messages sent\n");
        return true; /* the report says who failed */
    }
    if (!xmpp_post_to_reactors(run, chat_start))
        return false;
    uint64_t end_us = system_now_us() + run->options.duration_s * 1000000u;
    if (run->options.window == 0)
        pace_until(run, end_us);
    else
        xmpp_wait_ms(run, run->options.duration_s * 1000u);
    xmpp_wait_ms(run, run->options.drain_s * 1000u);
    return true;
}

/* ---------------------------------------------------------- the report */

typedef struct chat_results {
    uint64_t sent, unsent, delivered, duplicates, out_of_order, errors, malformed;
    double delivered_per_second;
    histogram *latency_us; /* owned */
} chat_results;

/* Merges the reactors' chat counters; only after the reactor threads
 * exited. false when out of memory (results->latency_us may be NULL). */
static bool chat_compute(const xmpp_run *run, chat_results *results)
{
    memset(results, 0, sizeof *results);
    results->latency_us = histogram_create(1, SESSION_LATENCY_US_MAX, 3);
    uint64_t start_us = UINT64_MAX, last_us = 0;
    for (unsigned i = 0; i < run->reactor_count; i++) {
        const chat_reactor *chat = run->reactors[i].scenario_state;
        results->sent += chat->sent;
        results->unsent += chat->unsent;
        results->delivered += chat->delivered;
        results->duplicates += chat->duplicates;
        results->out_of_order += chat->out_of_order;
        results->errors += chat->errors;
        results->malformed += chat->malformed;
        if (chat->start_us != 0 && chat->start_us < start_us)
            start_us = chat->start_us;
        if (chat->last_delivery_us > last_us)
            last_us = chat->last_delivery_us;
        if (results->latency_us != NULL && !histogram_merge(results->latency_us, chat->latency_us))
            return false;
    }
    if (results->delivered > 0 && last_us > start_us)
        results->delivered_per_second =
            (double)results->delivered * 1e6 / (double)(last_us - start_us);
    return results->latency_us != NULL;
}

static double chat_latency_ms(const chat_results *results, double percentile)
{
    return (double)histogram_value_at_percentile(results->latency_us, percentile) / 1000.0;
}

static void chat_report_human(const xmpp_run *run)
{
    chat_results results;
    if (chat_compute(run, &results)) {
        const xmpp_options *options = &run->options;
        printf("  chat (%s)   sent %" PRIu64 "  delivered %" PRIu64 "  lost %" PRIu64
               "  duplicates %" PRIu64 "  out of order %" PRIu64 "\n",
               options->window > 0 ? "closed loop" : "open loop", results.sent, results.delivered,
               results.sent - results.delivered, results.duplicates, results.out_of_order);
        printf("  delivered/s        %10.1f   (unsent %" PRIu64 ", error replies %" PRIu64
               ", malformed %" PRIu64 ")\n",
               results.delivered_per_second, results.unsent, results.errors, results.malformed);
        if (histogram_count(results.latency_us) > 0)
            printf("  message latency ms p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f\n",
                   chat_latency_ms(&results, 50), chat_latency_ms(&results, 90),
                   chat_latency_ms(&results, 99), chat_latency_ms(&results, 99.9),
                   chat_latency_ms(&results, 100));
        if (options->window == 0)
            printf("  pacing             %" PRIu64 " ticks, %" PRIu64 " over %.0f ms late, latest "
                   "%.2f ms (the tool's own stalls, inside the latency above)\n",
                   run->pace_ticks, run->pace_late_ticks, CHAT_PACE_LATE_US / 1000.0,
                   (double)run->pace_late_max_us / 1000.0);
    }
    histogram_destroy(results.latency_us);
}

static void chat_json_latency(json_writer *writer, const chat_results *results)
{
    bool measured = histogram_count(results->latency_us) > 0;
    static const double percentiles[] = {50, 90, 99, 99.9, 100};
    static const char *const names[] = {"p50", "p90", "p99", "p99_9", "max"};
    json_object_begin(writer, "latency_ms");
    for (size_t i = 0; i < sizeof percentiles / sizeof percentiles[0]; i++)
        json_optional_number(writer, names[i], measured,
                             measured ? chat_latency_ms(results, percentiles[i]) : 0);
    json_object_end(writer);
}

static void chat_report_json(json_writer *writer, const xmpp_run *run)
{
    chat_results results;
    bool computed = chat_compute(run, &results);
    const xmpp_options *options = &run->options;
    json_object_begin(writer, "chat");
    json_string(writer, "mode", options->window > 0 ? "closed" : "open");
    json_unsigned(writer, "rate_per_second", options->message_rate_per_second);
    json_unsigned(writer, "window", options->window);
    json_unsigned(writer, "duration_s", options->duration_s);
    json_unsigned(writer, "drain_s", options->drain_s);
    json_unsigned(writer, "sent", results.sent);
    json_unsigned(writer, "unsent", results.unsent);
    json_unsigned(writer, "delivered", results.delivered);
    json_unsigned(writer, "lost", results.sent - results.delivered);
    json_unsigned(writer, "duplicates", results.duplicates);
    json_unsigned(writer, "out_of_order", results.out_of_order);
    json_unsigned(writer, "error_replies", results.errors);
    json_unsigned(writer, "malformed", results.malformed);
    json_optional_number(writer, "delivered_per_second", results.delivered > 0,
                         results.delivered_per_second);
    if (computed)
        chat_json_latency(writer, &results);
    if (options->window == 0) {
        json_object_begin(writer, "pacing");
        json_unsigned(writer, "ticks", run->pace_ticks);
        json_unsigned(writer, "late_ticks", run->pace_late_ticks);
        json_number(writer, "late_threshold_ms", CHAT_PACE_LATE_US / 1000.0);
        json_number(writer, "late_max_ms", (double)run->pace_late_max_us / 1000.0);
        json_object_end(writer);
    }
    json_object_end(writer);
    histogram_destroy(results.latency_us);
}

static bool chat_succeeded(const xmpp_run *run)
{
    chat_results results;
    bool computed = chat_compute(run, &results);
    histogram_destroy(results.latency_us);
    return computed && results.sent > 0 && results.delivered == results.sent &&
           results.unsent == 0 && results.duplicates == 0 && results.errors == 0 &&
           results.malformed == 0;
}

static const xmpp_scenario chat_scenario = {
    .command = "starling-bench chat",
    .name = "chat",
    .summary = "Logs N users in (pairs user 2k+1 <-> 2k+2), then both of each pair send 1:1\n"
               "chat messages to each other; reports sent, delivered, delivered/s, latency\n"
               "p50..max (open loop: from the scheduled send time), lost, duplicates and\n"
               "out of order.\n",
    .extra_usage =
        "  --rate MSGS_PER_S   chat: messages per second in all, open loop (default 1000)\n"
        "  --window W          chat: closed loop instead, W outstanding per sender\n"
        "  --duration S        chat: seconds of sending (default 10)\n"
        "  --drain S           chat: seconds to wait for deliveries after (default 2)\n"
        "  (logins start all at once; --count must be even)\n"
        "Exit status: 0 when all N got online and every message sent arrived once, 1\n"
        "otherwise, 2 for usage.\n",
    .pairs = true,
    .options_check = chat_options_check,
    .reactor_prepare = chat_reactor_prepare,
    .reactor_free = chat_reactor_free,
    .on_online_stanza = chat_on_stanza,
    .run_phase = chat_phase,
    .report_human = chat_report_human,
    .report_json = chat_report_json,
    .succeeded = chat_succeeded,
    .timeline_own_latency = true,
};

int bench_chat_main(int argc, char **argv)
{
    return xmpp_bench_main(argc, argv, &chat_scenario);
}
