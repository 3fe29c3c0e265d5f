/*
 * xmpp_live.c: the live view of an XMPP run (see xmpp_live.h). The main
 * thread is the clock: every wait of the engine and the scenarios goes
 * through xmpp_wait_ms or calls xmpp_timeline_poll, which closes a second
 * when one is due. Closing is a small exchange with the reactors: the
 * main thread posts each a rotate message through the runtime, the
 * reactor hands its latency histogram over (bench_timeline.h has the
 * memory ordering), and the main thread takes them as they come without
 * blocking its own pacing work, closing the second once every reactor
 * answered or LIVE_ROTATE_WAIT_US passed. Counters need no exchange: they
 * are atomics, read when the second closes.
 */
#include "bench/src/xmpp_live.h"

#include "bench/src/bench_cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool xmpp_live_apply_option(int choice, const char *value, xmpp_options *options)
{
    switch (choice) {
    case LIVE_OPTION_PROGRESS:
        options->progress = 1;
        return true;
    case LIVE_OPTION_NO_PROGRESS:
        options->progress = 0;
        return true;
    case LIVE_OPTION_PLOT:
        options->plot_prefix = value;
        return true;
    default:
        return false;
    }
}

bool xmpp_live_options_check(const char *command, xmpp_options *options)
{
    if (options->progress < 0)
        options->progress = isatty(STDERR_FILENO) ? 1 : 0;
    if (options->plot_prefix == NULL)
        return true;
    if (!plot_prefix_valid(options->plot_prefix)) {
        fprintf(stderr,
                "%s: --plot wants a path prefix of 1 to %u bytes without quotes, "
                "backslashes or control characters\n",
                command, PLOT_PREFIX_BYTES_MAX);
        return false;
    }
    if (!plot_directory_writable(options->plot_prefix)) {
        fprintf(stderr, "%s: --plot %s: its directory does not exist or is not writable\n", command,
                options->plot_prefix);
        return false;
    }
    if (!plot_find_gnuplot(options->gnuplot, sizeof options->gnuplot)) {
        fprintf(stderr, "%s: --plot needs gnuplot on PATH (apt-get install gnuplot-nox)\n",
                command);
        return false;
    }
    return true;
}

bool xmpp_live_prepare(xmpp_run *run)
{
    for (unsigned i = 0; i < run->reactor_count; i++)
        if (!timeline_meter_init(&run->reactors[i].meter))
            return false;
    return true;
}

void xmpp_live_start(xmpp_run *run)
{
    run->timeline = timeline_create(run->start_us, TIMELINE_SAMPLES_MAX);
    run->timeline_next_us = run->start_us + TIMELINE_INTERVAL_US;
    run->timeline_asked_us = 0;
    if (run->timeline == NULL)
        fprintf(stderr, "%s: out of memory for the timeline; the run goes on without it\n",
                run->options.scenario->command);
}

/* ------------------------------------------------------- each second */

/* Runs on the reactor: message->pointer is its xmpp_reactor. */
static void rotate_on_reactor(const rx_message *message)
{
    xmpp_reactor *reactor = message->pointer;
    timeline_meter_rotate(&reactor->meter);
}

static void print_progress(xmpp_run *run, bool last)
{
    if (run->options.progress != 1 || run->timeline == NULL)
        return;
    char line[TIMELINE_LINE_BYTES];
    timeline_progress_line(run->timeline, run->options.count, line, sizeof line);
    size_t length = strlen(line);
    if (length > run->progress_width && length <= LIVE_PROGRESS_WIDTH_MAX)
        run->progress_width = length;
    /* Padding to the widest line so far erases a longer previous one. */
    fprintf(stderr, "\r%-*s%s", (int)run->progress_width, line, last ? "\n" : "");
    fflush(stderr);
}

/* Asks every reactor not yet asked this second to rotate, and takes what
 * has been handed over; true when every reactor's histogram was taken. */
static bool gather(xmpp_run *run)
{
    bool all = true;
    for (unsigned i = 0; i < run->reactor_count; i++) {
        timeline_meter *meter = &run->reactors[i].meter;
        if (!meter->rotation_asked) {
            rx_message message = {.function = rotate_on_reactor, .pointer = &run->reactors[i]};
            /* A full mailbox is asked again at the next poll. */
            meter->rotation_asked = rx_producer_post(run->producer, i, &message) == RX_OK;
        }
        if (meter->rotation_asked && !meter->rotation_taken)
            meter->rotation_taken = timeline_collect(run->timeline, meter);
        all = all && meter->rotation_taken;
    }
    return all;
}

static void close_second(xmpp_run *run, uint64_t now_us)
{
    uint64_t totals[TIMELINE_COUNTERS] = {0};
    for (unsigned i = 0; i < run->reactor_count; i++) {
        timeline_meter *meter = &run->reactors[i].meter;
        meter->rotation_asked = false;
        meter->rotation_taken = false;
        timeline_meter_add_counts(meter, totals);
    }
    uint64_t online = atomic_load_explicit(&run->online_now, memory_order_relaxed);
    timeline_close(run->timeline, totals, online, now_us);
}

void xmpp_timeline_poll(xmpp_run *run)
{
    if (run->timeline == NULL)
        return;
    uint64_t now_us = system_now_us();
    if (run->timeline_asked_us == 0) {
        if (now_us < run->timeline_next_us)
            return;
        run->timeline_asked_us = now_us;
    }
    if (!gather(run) && now_us - run->timeline_asked_us < LIVE_ROTATE_WAIT_US)
        return;
    close_second(run, now_us);
    print_progress(run, false);
    run->timeline_asked_us = 0;
    run->timeline_next_us += TIMELINE_INTERVAL_US;
    if (run->timeline_next_us <= now_us) /* the main thread was held up: skip ahead */
        run->timeline_next_us = now_us + TIMELINE_INTERVAL_US;
}

void xmpp_wait_ms(xmpp_run *run, uint64_t milliseconds)
{
    uint64_t end_us = system_now_us() + milliseconds * 1000u;
    for (uint64_t now_us = system_now_us(); now_us < end_us; now_us = system_now_us()) {
        uint64_t left_ms = (end_us - now_us + 999u) / 1000u;
        xmpp_sleep_ms(left_ms < LIVE_POLL_STEP_MS ? left_ms : LIVE_POLL_STEP_MS);
        xmpp_timeline_poll(run);
    }
}

void xmpp_live_before_stop(xmpp_run *run)
{
    if (run->timeline != NULL)
        timeline_sample_threads(run->timeline);
}

void xmpp_live_finish(xmpp_run *run)
{
    if (run->timeline == NULL)
        return;
    /* The reactor threads have exited (joined): everything they wrote is
     * visible, and their active histograms are free to read. */
    for (unsigned i = 0; i < run->reactor_count; i++)
        timeline_collect_final(run->timeline, &run->reactors[i].meter);
    close_second(run, system_now_us());
    print_progress(run, true);
}

/* ------------------------------------------------------------ reports */

void xmpp_live_report_human(const xmpp_run *run)
{
    if (run->timeline == NULL)
        return;
    timeline_cpu cpu;
    timeline_cpu_report(run->timeline, &cpu);
    if (cpu.available) {
        printf("  tool cpu/s         %.1f%% of one core, %.1f%% of %u reactor core%s",
               cpu.cpu_percent, cpu.cpu_percent / run->reactor_count, run->reactor_count,
               run->reactor_count == 1 ? "" : "s");
        if (cpu.active_us > 0)
            printf("; busiest thread %s %.1f%% while load ran", cpu.busiest_thread,
                   cpu.busiest_thread_percent);
        printf("\n");
        if (cpu.active_us > 0 && cpu.busiest_thread_percent > TIMELINE_BUSY_PERCENT)
            printf("  WARNING: the tool's thread %s used %.0f%% of a core while load ran: "
                   "the generator may have been the bottleneck\n",
                   cpu.busiest_thread, cpu.busiest_thread_percent);
    }
    printf("  timeline           %zu seconds%s\n", timeline_length(run->timeline),
           timeline_truncated(run->timeline) ? " (truncated: the run outlasted the series)" : "");
}

static void json_latency(json_writer *writer, const timeline_sample *sample)
{
    bool measured = sample->latency_count > 0;
    json_object_begin(writer, "latency_ms");
    json_unsigned(writer, "count", sample->latency_count);
    json_optional_number(writer, "p50", measured, (double)sample->latency_us_p50 / 1000.0);
    json_optional_number(writer, "p90", measured, (double)sample->latency_us_p90 / 1000.0);
    json_optional_number(writer, "p99", measured, (double)sample->latency_us_p99 / 1000.0);
    json_optional_number(writer, "max", measured, (double)sample->latency_us_max / 1000.0);
    json_object_end(writer);
}

static void json_sample(json_writer *writer, size_t index, const timeline_sample *sample)
{
    json_object_begin(writer, NULL);
    json_unsigned(writer, "second", index + 1);
    json_number(writer, "elapsed_s", (double)sample->end_us / 1e6);
    json_number(writer, "interval_s", (double)sample->interval_us / 1e6);
    json_unsigned(writer, "online", sample->online);
    json_unsigned(writer, "logins", sample->counts[TIMELINE_LOGINS]);
    json_unsigned(writer, "failures", sample->counts[TIMELINE_FAILURES]);
    json_unsigned(writer, "sent", sample->counts[TIMELINE_SENT]);
    json_unsigned(writer, "delivered", sample->counts[TIMELINE_DELIVERED]);
    json_latency(writer, sample);
    json_optional_number(writer, "cpu_percent", sample->cpu_percent >= 0, sample->cpu_percent);
    json_optional_number(writer, "busiest_thread_percent", sample->busiest_thread_percent >= 0,
                         sample->busiest_thread_percent);
    json_object_end(writer);
}

static void json_tool_cpu(json_writer *writer, const xmpp_run *run)
{
    timeline_cpu cpu;
    timeline_cpu_report(run->timeline, &cpu);
    bool busy = cpu.active_us > 0;
    json_object_begin(writer, "tool_cpu");
    json_optional_unsigned(writer, "cpu_us", cpu.available, cpu.cpu_us);
    json_unsigned(writer, "elapsed_us", cpu.elapsed_us);
    json_optional_number(writer, "percent_of_one_core", cpu.available, cpu.cpu_percent);
    json_optional_number(writer, "percent_of_reactor_cores", cpu.available,
                         cpu.cpu_percent / run->reactor_count);
    json_unsigned(writer, "load_us", cpu.active_us);
    if (busy)
        json_string(writer, "busiest_thread", cpu.busiest_thread);
    else
        json_null(writer, "busiest_thread");
    json_optional_number(writer, "busiest_thread_percent", busy, cpu.busiest_thread_percent);
    json_boolean(writer, "generator_may_be_bottleneck",
                 busy && cpu.busiest_thread_percent > TIMELINE_BUSY_PERCENT);
    json_object_end(writer);
}

void xmpp_live_report_json(json_writer *writer, const xmpp_run *run)
{
    if (run->timeline == NULL) {
        json_null(writer, "timeline");
        return;
    }
    json_string(writer, "timeline_latency",
                run->options.scenario->timeline_own_latency ? "message" : "login");
    json_boolean(writer, "timeline_truncated", timeline_truncated(run->timeline));
    json_array_begin(writer, "timeline");
    for (size_t i = 0; i < timeline_length(run->timeline); i++)
        json_sample(writer, i, timeline_at(run->timeline, i));
    json_array_end(writer);
    json_tool_cpu(writer, run);
}

bool xmpp_live_plot(const xmpp_run *run)
{
    if (run->options.plot_prefix == NULL)
        return true;
    if (run->timeline == NULL) {
        fprintf(stderr, "%s: --plot: no timeline to plot\n", run->options.scenario->command);
        return false;
    }
    const xmpp_scenario *scenario = run->options.scenario;
    plot_request request = {
        .command = scenario->command,
        .gnuplot = run->options.gnuplot,
        .prefix = run->options.plot_prefix,
        .title = scenario->command,
        .latency = scenario->timeline_own_latency ? "message" : "login",
        .messages = scenario->timeline_own_latency,
    };
    return plot_render(&request, run->timeline);
}

void xmpp_live_free(xmpp_run *run)
{
    timeline_destroy(run->timeline);
    run->timeline = NULL;
    for (unsigned i = 0; run->reactors != NULL && i < run->reactor_count; i++)
        timeline_meter_fini(&run->reactors[i].meter);
}
