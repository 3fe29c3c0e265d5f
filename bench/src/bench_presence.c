/*
 * bench_presence.c: the presence scenario of starling-bench. N users with
 * provisioned rosters log in; it answers: how many presence stanzas per
 * second does the server deliver, and how long does one login's presence
 * take to reach all of the user's online contacts.
 *
 * The rosters are a ring the tool knows without asking: user i (session
 * index i, 0..N-1) has the R contacts i+1..i+R/2 and i-1..i-R/2 (mod N),
 * every subscription "both" (bench/servers/provision.py writes exactly
 * these). M of the users are "measured", spread evenly (index k*N/M), and
 * far enough apart that no two are contacts of each other, so every
 * contact of a measured user is a background user.
 *
 *   Phase 1: the N-M background users log in at once as login does (or
 *   about --background-rate per second: the engine's pacing counts the
 *   places of the measured users it skips), and the run waits until each
 *   has heard the available presence of each of its background contacts
 *   (a probe answer or a broadcast): from then on they are "online
 *   contacts".
 *   Phase 2: the measured users log in at --rate. Each initial presence
 *   carries <status>INDEX SENT_US</status> (CLOCK_MONOTONIC; both ends are
 *   this process). Every receiving session records, per contact, the
 *   first arrival and the number of arrivals (per reactor: no sharing).
 *
 * After the reactors exited, the main thread computes per measured login:
 * how many of its online contacts (online when phase 2 began) got its
 * presence, when the last one did (time to all contacts), how many of its
 * probes were answered with a contact's presence, lost and duplicates;
 * and for the whole phase: presence stanzas received per second (every
 * presence, probe answers included). In the per-second timeline, "sent"
 * counts initial presences and "delivered" every presence received.
 */
#include "bench/src/bench_commands.h"
#include "bench/src/xmpp_session.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* count x roster slots of 10 bytes each: 2^25 is ~330 MB of tool memory. */
#define PRESENCE_SLOTS_MAX        (1u << 25)
#define PRESENCE_STATUS_BYTES_MAX 64u
/* A duplicate would follow its original closely; wait this long for one
 * after the last expected presence arrived. */
#define PRESENCE_DUPLICATE_WAIT_MS 500u
#define CLIENT_NAMESPACE           "jabber:client"

/* What a reactor counts of the presence stanzas of one phase. */
typedef struct presence_counts {
    uint64_t presences;   /* every <presence/> received */
    uint64_t unavailable; /* type='unavailable' (probe answers for offline contacts) */
    uint64_t other_types; /* any other type (error, subscribe, ...) */
    uint64_t self;        /* our own presence echoed back */
    uint64_t strangers;   /* from a user who is not a contact */
    uint64_t malformed;   /* available, without our INDEX SENT_US status */
} presence_counts;

/* A reactor's presence state (xmpp_reactor.scenario_state). */
typedef struct presence_reactor {
    uint64_t *arrival_us;    /* owned, share x roster: first available presence per contact */
    uint16_t *received;      /* owned, share x roster: available presences per contact */
    uint64_t *sent_us;       /* owned, share: when the initial presence went out, 0 not yet */
    bool *online_at_phase;   /* owned, share: online when the measured logins began */
    xmpp_session **measured; /* owned: this reactor's measured sessions, in order */
    uint64_t measured_share; /* entries of measured */
    uint64_t measured_started;
    double rate_per_second;   /* this reactor's part of --rate; 0: all at once */
    uint64_t phase_start_us;  /* 0 until the measured logins begin on this reactor */
    uint64_t last_arrival_us; /* of the last presence of phase 2 */
    rx_timer pace_timer;
    presence_counts counts[2]; /* [0] phase 1, [1] phase 2 */
    _Atomic uint64_t heard;    /* distinct (receiver, contact) pairs heard; one writer */
} presence_reactor;

/* The main thread's record of the phases (one run per process). */
static struct {
    bool background_online, settled;
    uint64_t settle_ms;
    uint64_t phase_start_us;
} phases;

/* ------------------------------------------------------------- the ring */

/* True when session index is one of the --measured users, k*N/M. */
static bool is_measured(const xmpp_options *options, uint64_t index)
{
    uint64_t k = (index * options->measured + options->count - 1) / options->count;
    return k < options->measured && k * options->count / options->measured == index;
}

static bool presence_start_later(const xmpp_run *run, uint64_t index)
{
    return is_measured(&run->options, index);
}

/* The slot of contact in owner's roster: 0..R/2-1 for owner+1..owner+R/2,
 * R/2..R-1 for owner-1..owner-R/2; -1 when it is not a contact. */
static int64_t contact_slot(const xmpp_options *options, uint64_t owner, uint64_t contact)
{
    uint64_t count = options->count, half = options->roster / 2u;
    uint64_t ahead = (contact + count - owner) % count;
    if (ahead >= 1 && ahead <= half)
        return (int64_t)(ahead - 1);
    uint64_t behind = count - ahead;
    if (ahead != 0 && behind >= 1 && behind <= half)
        return (int64_t)(half + behind - 1);
    return -1;
}

/* The contact in owner's roster slot (the inverse of contact_slot). */
static uint64_t contact_at(const xmpp_options *options, uint64_t owner, uint64_t slot)
{
    uint64_t count = options->count, half = options->roster / 2u;
    if (slot < half)
        return (owner + slot + 1) % count;
    return (owner + count - (slot - half + 1)) % count;
}

/* --------------------------------------------------------- the reactor */

static size_t presence_initial(xmpp_session *session, char *text, size_t capacity)
{
    xmpp_reactor *reactor = session->reactor;
    presence_reactor *state = reactor->scenario_state;
    uint64_t now_us = system_now_us();
    state->sent_us[session->index - reactor->first_index] = now_us;
    timeline_meter_count(&reactor->meter, TIMELINE_SENT, 1);
    int length =
        snprintf(text, capacity, "<presence><status>%" PRIu64 " %" PRIu64 "</status></presence>",
                 session->index, now_us);
    return length > 0 && (size_t)length < capacity ? (size_t)length : 0;
}

/* Records an available presence from sender for session. */
static void record_available(xmpp_session *session, uint64_t sender, presence_counts *counts,
                             uint64_t now_us)
{
    xmpp_reactor *reactor = session->reactor;
    presence_reactor *state = reactor->scenario_state;
    const xmpp_options *options = &reactor->run->options;
    if (sender == session->index) {
        counts->self++;
        return;
    }
    int64_t slot = contact_slot(options, session->index, sender);
    if (slot < 0) {
        counts->strangers++;
        return;
    }
    uint64_t at = (session->index - reactor->first_index) * options->roster + (uint64_t)slot;
    if (state->received[at] == 0) {
        state->arrival_us[at] = now_us;
        atomic_store_explicit(&state->heard,
                              atomic_load_explicit(&state->heard, memory_order_relaxed) + 1u,
                              memory_order_relaxed);
    }
    if (state->received[at] < UINT16_MAX)
        state->received[at]++;
}

/* A stanza for an online session: count presence, record who it is from. */
static void presence_on_stanza(xmpp_session *session, const xml_view *view)
{
    xml_node_id root = xml_view_root(view);
    if (!xmpp_named(view, root, "presence", CLIENT_NAMESPACE))
        return;
    presence_reactor *state = session->reactor->scenario_state;
    uint64_t now_us = system_now_us();
    bool measuring = state->phase_start_us != 0;
    presence_counts *counts = &state->counts[measuring];
    counts->presences++;
    timeline_meter_count(&session->reactor->meter, TIMELINE_DELIVERED, 1);
    if (measuring)
        state->last_arrival_us = now_us;
    xml_attribute type;
    if (xml_element_attribute(view, root, "type", 4, &type)) {
        if (xmpp_attribute_is(view, "type", "unavailable"))
            counts->unavailable++;
        else
            counts->other_types++;
        return;
    }
    uint64_t numbers[2];
    if (!xmpp_child_numbers(view, "status", PRESENCE_STATUS_BYTES_MAX, numbers, 2) ||
        numbers[0] >= session->reactor->run->options.count) {
        counts->malformed++;
        return;
    }
    record_available(session, numbers[0], counts, now_us);
}

/* Starts the measured sessions due by now at this reactor's rate. */
static void start_due_measured(xmpp_reactor *reactor)
{
    presence_reactor *state = reactor->scenario_state;
    uint64_t due = state->measured_share;
    if (state->rate_per_second > 0) {
        double elapsed_s = (double)(system_now_us() - state->phase_start_us) / 1e6;
        double wanted = elapsed_s * state->rate_per_second + 1.0;
        if (wanted < (double)state->measured_share)
            due = (uint64_t)wanted;
    }
    while (state->measured_started < due)
        xmpp_session_start(reactor, state->measured[state->measured_started++]);
}

static void on_measured_timer(rx_timer *timer, void *argument)
{
    (void)timer;
    xmpp_reactor *reactor = argument;
    presence_reactor *state = reactor->scenario_state;
    start_due_measured(reactor);
    if (state->measured_started < state->measured_share)
        rx_timer_arm(&state->pace_timer, SESSION_PACE_INTERVAL_MS);
}

/* Runs on the reactor: notes who is online, then starts the measured
 * logins. message->pointer is its xmpp_reactor. */
static void start_measured(const rx_message *message)
{
    xmpp_reactor *reactor = message->pointer;
    presence_reactor *state = reactor->scenario_state;
    state->phase_start_us = system_now_us();
    for (uint64_t i = 0; i < reactor->share; i++) {
        const xmpp_session *session = &reactor->sessions[i];
        state->online_at_phase[i] = session->state == STATE_ONLINE && session->conn != NULL;
    }
    rx_timer_init(&state->pace_timer, on_measured_timer, reactor);
    on_measured_timer(&state->pace_timer, reactor);
}

/* ------------------------------------------------------------- the run */

static bool presence_options_check(xmpp_options *options)
{
    if (options->roster % 2u != 0 || options->roster >= options->count) {
        fprintf(stderr, "starling-bench presence: --roster must be even and below --count\n");
        return false;
    }
    if (options->measured * (options->roster / 2u + 1u) > options->count) {
        fprintf(stderr, "starling-bench presence: --measured x (--roster/2 + 1) must not pass "
                        "--count (measured users may not be contacts of each other)\n");
        return false;
    }
    if (options->count * options->roster > PRESENCE_SLOTS_MAX) {
        fprintf(stderr, "starling-bench presence: --count x --roster passes %u\n",
                PRESENCE_SLOTS_MAX);
        return false;
    }
    return true;
}

static bool presence_reactor_prepare(xmpp_reactor *reactor)
{
    presence_reactor *state = calloc(1, sizeof *state);
    reactor->scenario_state = state;
    if (state == NULL)
        return false;
    const xmpp_options *options = &reactor->run->options;
    uint64_t slots = reactor->share * options->roster + 1u;
    state->arrival_us = calloc(slots, sizeof *state->arrival_us);
    state->received = calloc(slots, sizeof *state->received);
    state->sent_us = calloc(reactor->share + 1u, sizeof *state->sent_us);
    state->online_at_phase = calloc(reactor->share + 1u, sizeof *state->online_at_phase);
    state->measured = calloc(reactor->share + 1u, sizeof *state->measured);
    if (state->arrival_us == NULL || state->received == NULL || state->sent_us == NULL ||
        state->online_at_phase == NULL || state->measured == NULL)
        return false;
    for (uint64_t i = 0; i < reactor->share; i++)
        if (is_measured(options, reactor->sessions[i].index))
            state->measured[state->measured_share++] = &reactor->sessions[i];
    state->rate_per_second = (double)options->measured_rate_per_second *
                             (double)state->measured_share / (double)options->measured;
    return true;
}

static void presence_reactor_free(xmpp_reactor *reactor)
{
    presence_reactor *state = reactor->scenario_state;
    if (state == NULL)
        return;
    free(state->arrival_us);
    free(state->received);
    free(state->sent_us);
    free(state->online_at_phase);
    free(state->measured);
    free(state);
    reactor->scenario_state = NULL;
}

static uint64_t heard_total(const xmpp_run *run)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < run->reactor_count; i++) {
        presence_reactor *state = run->reactors[i].scenario_state;
        total += atomic_load_explicit(&state->heard, memory_order_relaxed);
    }
    return total;
}

/* Waits until the reactors heard wanted (receiver, contact) pairs, or
 * until deadline_us; true when they did. */
static bool wait_heard(xmpp_run *run, uint64_t wanted, uint64_t deadline_us)
{
    while (heard_total(run) < wanted) {
        if (system_now_us() >= deadline_us)
            return false;
        xmpp_wait_ms(run, SESSION_WAIT_STEP_MS);
    }
    return true;
}

/* Waits until every session is online or failed, bounded by the time the
 * last measured start is due plus --timeout-s and a second. */
static void wait_measured_logins(xmpp_run *run)
{
    const xmpp_options *options = &run->options;
    uint64_t spread_us = options->measured_rate_per_second == 0
                             ? 0
                             : options->measured * 1000000u / options->measured_rate_per_second;
    uint64_t deadline_us = phases.phase_start_us + spread_us + (options->timeout_s + 1) * 1000000u;
    while (atomic_load_explicit(&run->finished, memory_order_acquire) < options->count &&
           system_now_us() < deadline_us)
        xmpp_wait_ms(run, SESSION_WAIT_STEP_MS);
}

/* Main thread, after the background logins: let them settle, then log the
 * measured users in and wait for their presence to spread. */
static bool presence_phase(xmpp_run *run)
{
    const xmpp_options *options = &run->options;
    uint64_t background = options->count - run->deferred;
    phases.background_online =
        atomic_load_explicit(&run->online_now, memory_order_relaxed) == background;
    if (!phases.background_online) {
        fprintf(stderr, "starling-bench presence: not all background users online, no "
                        "measured logins\n");
        return true; /* the report says who failed */
    }
    /* Every pair of background users hears each other; pairs with a measured
     * user (R per measured user each way) are not heard yet. */
    uint64_t pairs = options->count * options->roster;
    uint64_t settle_start_us = system_now_us();
    phases.settled = wait_heard(run, pairs - 2u * options->measured * options->roster,
                                settle_start_us + options->timeout_s * 1000000u);
    phases.settle_ms = (system_now_us() - settle_start_us) / 1000u;
    run->deferred = 0;
    phases.phase_start_us = system_now_us();
    if (!xmpp_post_to_reactors(run, start_measured))
        return false;
    wait_measured_logins(run);
    if (wait_heard(run, pairs, system_now_us() + options->timeout_s * 1000000u))
        xmpp_wait_ms(run, PRESENCE_DUPLICATE_WAIT_MS);
    return true;
}

/* ---------------------------------------------------------- the report */

typedef struct presence_results {
    uint64_t measured_online; /* measured users whose presence went out */
    uint64_t online_contacts; /* their online contacts: the expected fan-out */
    uint64_t fanout;          /* online contacts that got the presence */
    uint64_t lost;            /* online contacts that never got it */
    uint64_t probe_answers;   /* online contacts whose presence the measured user got */
    uint64_t probe_missing;   /* online contacts whose presence it never got */
    uint64_t duplicates;      /* extra copies, both directions */
    uint64_t incomplete;      /* measured logins with a contact lost */
    presence_counts counts;   /* phase 2 */
    double phase_ms, presences_per_second;
    histogram *to_all_us; /* owned: time for a login's presence to reach all */
    histogram *probes_us; /* owned: time until all its probes were answered */
} presence_results;

/* The reactor and share offset of session index. */
static const xmpp_reactor *reactor_of(const xmpp_run *run, uint64_t index, uint64_t *offset)
{
    for (unsigned i = 0; i < run->reactor_count; i++) {
        const xmpp_reactor *reactor = &run->reactors[i];
        if (index >= reactor->first_index && index < reactor->first_index + reactor->share) {
            *offset = index - reactor->first_index;
            return reactor;
        }
    }
    return NULL;
}

/* What receiver recorded of sender: the arrival count and first arrival. */
static uint16_t received_from(const xmpp_run *run, uint64_t receiver, uint64_t sender,
                              uint64_t *arrival_us)
{
    uint64_t offset = 0;
    const xmpp_reactor *reactor = reactor_of(run, receiver, &offset);
    int64_t slot = contact_slot(&run->options, receiver, sender);
    if (reactor == NULL || slot < 0)
        return 0;
    const presence_reactor *state = reactor->scenario_state;
    uint64_t at = offset * run->options.roster + (uint64_t)slot;
    *arrival_us = state->arrival_us[at];
    return state->received[at];
}

static bool online_at_phase(const xmpp_run *run, uint64_t index)
{
    uint64_t offset = 0;
    const xmpp_reactor *reactor = reactor_of(run, index, &offset);
    return reactor != NULL &&
           ((const presence_reactor *)reactor->scenario_state)->online_at_phase[offset];
}

/* Adds one measured login (sender, presence sent at sent_us). */
static void add_measured(const xmpp_run *run, uint64_t sender, uint64_t sent_us,
                         presence_results *results)
{
    uint64_t last_us = sent_us, last_probe_us = sent_us, reached = 0, answered = 0, online = 0;
    for (uint64_t slot = 0; slot < run->options.roster; slot++) {
        uint64_t contact = contact_at(&run->options, sender, slot);
        if (!online_at_phase(run, contact))
            continue;
        online++;
        uint64_t arrival_us = 0;
        uint16_t count = received_from(run, contact, sender, &arrival_us);
        if (count > 0) {
            reached++;
            results->duplicates += count - 1u;
            last_us = arrival_us > last_us ? arrival_us : last_us;
        }
        count = received_from(run, sender, contact, &arrival_us);
        if (count > 0) {
            answered++;
            results->duplicates += count - 1u;
            last_probe_us = arrival_us > last_probe_us ? arrival_us : last_probe_us;
        }
    }
    results->online_contacts += online;
    results->fanout += reached;
    results->lost += online - reached;
    results->probe_answers += answered;
    results->probe_missing += online - answered;
    if (reached < online)
        results->incomplete++;
    else if (online > 0)
        histogram_record(results->to_all_us, last_us - sent_us + 1u);
    if (answered == online && online > 0)
        histogram_record(results->probes_us, last_probe_us - sent_us + 1u);
}

static void counts_add(presence_counts *total, const presence_counts *counts)
{
    total->presences += counts->presences;
    total->unavailable += counts->unavailable;
    total->other_types += counts->other_types;
    total->self += counts->self;
    total->strangers += counts->strangers;
    total->malformed += counts->malformed;
}

/* Computes the results; only after the reactor threads exited. false when
 * out of memory (the histograms may be NULL). */
static bool presence_compute(const xmpp_run *run, presence_results *results)
{
    memset(results, 0, sizeof *results);
    results->to_all_us = histogram_create(1, SESSION_LATENCY_US_MAX, 3);
    results->probes_us = histogram_create(1, SESSION_LATENCY_US_MAX, 3);
    if (results->to_all_us == NULL || results->probes_us == NULL)
        return false;
    uint64_t last_us = 0;
    for (unsigned i = 0; i < run->reactor_count; i++) {
        const xmpp_reactor *reactor = &run->reactors[i];
        const presence_reactor *state = reactor->scenario_state;
        counts_add(&results->counts, &state->counts[1]);
        last_us = state->last_arrival_us > last_us ? state->last_arrival_us : last_us;
        for (uint64_t k = 0; k < state->measured_share; k++) {
            const xmpp_session *session = state->measured[k];
            uint64_t sent_us = state->sent_us[session->index - reactor->first_index];
            if (sent_us == 0)
                continue;
            results->measured_online++;
            add_measured(run, session->index, sent_us, results);
        }
    }
    if (phases.phase_start_us != 0 && last_us > phases.phase_start_us) {
        results->phase_ms = (double)(last_us - phases.phase_start_us) / 1000.0;
        results->presences_per_second =
            (double)results->counts.presences * 1000.0 / results->phase_ms;
    }
    return true;
}

static void presence_results_free(presence_results *results)
{
    histogram_destroy(results->to_all_us);
    histogram_destroy(results->probes_us);
}

static double percentile_ms(const histogram *histogram, double percentile)
{
    return (double)histogram_value_at_percentile(histogram, percentile) / 1000.0;
}

static void print_percentiles(const char *label, const histogram *histogram)
{
    if (histogram_count(histogram) == 0)
        return;
    printf("  %-18s p50 %.2f  p90 %.2f  p99 %.2f  max %.2f  (%" PRIu64 " logins)\n", label,
           percentile_ms(histogram, 50), percentile_ms(histogram, 90), percentile_ms(histogram, 99),
           percentile_ms(histogram, 100), histogram_count(histogram));
}

static void presence_report_human(const xmpp_run *run)
{
    presence_results results;
    if (presence_compute(run, &results)) {
        const xmpp_options *options = &run->options;
        printf("  presence           roster %" PRIu64 ", %" PRIu64 " of %" PRIu64
               " measured logins sent presence; background %s (%" PRIu64 " ms)\n",
               options->roster, results.measured_online, options->measured,
               phases.settled ? "settled" : "NOT settled", phases.settle_ms);
        printf("  fan-out            %" PRIu64 " of %" PRIu64
               " online contacts reached, lost %" PRIu64 ", duplicates %" PRIu64
               ", probe answers %" PRIu64 " (missing %" PRIu64 ")\n",
               results.fanout, results.online_contacts, results.lost, results.duplicates,
               results.probe_answers, results.probe_missing);
        printf("  presences/s        %10.1f   (%" PRIu64 " in %.1f ms; unavailable %" PRIu64
               ", other types %" PRIu64 ", self %" PRIu64 ", strangers %" PRIu64
               ", malformed %" PRIu64 ")\n",
               results.presences_per_second, results.counts.presences, results.phase_ms,
               results.counts.unavailable, results.counts.other_types, results.counts.self,
               results.counts.strangers, results.counts.malformed);
        print_percentiles("to all contacts ms", results.to_all_us);
        print_percentiles("probes answered ms", results.probes_us);
    }
    presence_results_free(&results);
}

static void json_percentiles(json_writer *writer, const char *key, const histogram *histogram)
{
    bool measured = histogram != NULL && histogram_count(histogram) > 0;
    static const double percentiles[] = {50, 90, 99, 100};
    static const char *const names[] = {"p50", "p90", "p99", "max"};
    json_object_begin(writer, key);
    for (size_t i = 0; i < sizeof percentiles / sizeof percentiles[0]; i++)
        json_optional_number(writer, names[i], measured,
                             measured ? percentile_ms(histogram, percentiles[i]) : 0);
    json_object_end(writer);
}

static void json_counts(json_writer *writer, const presence_results *results)
{
    json_unsigned(writer, "presences", results->counts.presences);
    json_optional_number(writer, "phase_ms", results->phase_ms > 0, results->phase_ms);
    json_optional_number(writer, "presences_per_second", results->phase_ms > 0,
                         results->presences_per_second);
    json_unsigned(writer, "unavailable", results->counts.unavailable);
    json_unsigned(writer, "other_types", results->counts.other_types);
    json_unsigned(writer, "self", results->counts.self);
    json_unsigned(writer, "strangers", results->counts.strangers);
    json_unsigned(writer, "malformed", results->counts.malformed);
}

static void presence_report_json(json_writer *writer, const xmpp_run *run)
{
    presence_results results;
    bool computed = presence_compute(run, &results);
    const xmpp_options *options = &run->options;
    json_object_begin(writer, "presence");
    json_unsigned(writer, "roster", options->roster);
    json_unsigned(writer, "measured", options->measured);
    json_unsigned(writer, "rate_per_second", options->measured_rate_per_second);
    json_boolean(writer, "background_online", phases.background_online);
    json_boolean(writer, "background_settled", phases.settled);
    json_unsigned(writer, "settle_ms", phases.settle_ms);
    json_unsigned(writer, "measured_online", results.measured_online);
    json_unsigned(writer, "online_contacts", results.online_contacts);
    json_unsigned(writer, "delivered", results.fanout);
    json_unsigned(writer, "lost", results.lost);
    json_unsigned(writer, "probe_answers", results.probe_answers);
    json_unsigned(writer, "probe_answers_missing", results.probe_missing);
    json_unsigned(writer, "duplicates", results.duplicates);
    json_unsigned(writer, "incomplete_logins", results.incomplete);
    json_counts(writer, &results);
    json_percentiles(writer, "time_to_all_contacts_ms", computed ? results.to_all_us : NULL);
    json_percentiles(writer, "time_to_probe_answers_ms", computed ? results.probes_us : NULL);
    json_object_end(writer);
    presence_results_free(&results);
}

static bool presence_succeeded(const xmpp_run *run)
{
    presence_results results;
    bool computed = presence_compute(run, &results);
    presence_results_free(&results);
    return computed && phases.settled && results.measured_online == run->options.measured &&
           results.lost == 0 && results.probe_missing == 0;
}

static const xmpp_scenario presence_scenario = {
    .command = "starling-bench presence",
    .name = "presence",
    .summary = "Users with provisioned rosters log in: user i's contacts are i+1..i+R/2 and\n"
               "i-1..i-R/2 (mod N, subscription both; bench/servers/provision.py writes them).\n"
               "The background users log in at once and exchange presence; then --measured\n"
               "users, spread over the ring, log in at --rate. Reports presence stanzas\n"
               "received/s during that phase and, per measured login, the time for its\n"
               "presence to reach all its online contacts (p50..max), lost and duplicates.\n",
    .extra_usage =
        "  --roster R          presence: contacts per user, even, below --count (default 20)\n"
        "  --measured M        presence: measured logins; M x (R/2 + 1) <= --count\n"
        "                      (default 50)\n"
        "  --rate R            presence: measured logins per second (default 100, 0: at once)\n"
        "  --background-rate B presence: about B background logins per second (default 0:\n"
        "                      at once)\n"
        "  (--users, --first and --count must match the provisioned ring)\n"
        "Exit status: 0 when all N got online and every measured presence reached all\n"
        "its online contacts (and every probe was answered), 1 otherwise, 2 for usage.\n",
    .options_check = presence_options_check,
    .reactor_prepare = presence_reactor_prepare,
    .reactor_free = presence_reactor_free,
    .start_later = presence_start_later,
    .initial_presence = presence_initial,
    .on_online_stanza = presence_on_stanza,
    .run_phase = presence_phase,
    .report_human = presence_report_human,
    .report_json = presence_report_json,
    .succeeded = presence_succeeded,
};

int bench_presence_main(int argc, char **argv)
{
    return xmpp_bench_main(argc, argv, &presence_scenario);
}
