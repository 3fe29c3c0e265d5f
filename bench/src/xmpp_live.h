/*
 * xmpp_live.h: what the session engine (xmpp_session.c) calls to watch a
 * run while it happens: the per-second timeline of bench_timeline.h fed by
 * every reactor's meter, the progress line on stderr, the timeline and the
 * tool's CPU in the reports, and --plot. Main thread only, except where a
 * function says it runs on a reactor.
 */
#ifndef STARLING_BENCH_XMPP_LIVE_H
#define STARLING_BENCH_XMPP_LIVE_H

#include "bench/src/xmpp_session.h"

/* How long a closing second waits for the reactors' latency histograms:
 * a reactor busier than that hands its histogram over a second later. */
#define LIVE_ROTATE_WAIT_US     200000u
#define LIVE_POLL_STEP_MS       10u /* a waiting main thread looks at the clock this often */
#define LIVE_PROGRESS_WIDTH_MAX 200u

/* Option values of the live options (past any character option). */
enum {
    LIVE_OPTION_PROGRESS = 0x1000,
    LIVE_OPTION_NO_PROGRESS,
    LIVE_OPTION_PLOT,
};

#define LIVE_USAGE                                                                                 \
    "  --progress          a progress line every second on stderr (default: if a tty)\n"           \
    "  --no-progress       no progress line\n"                                                     \
    "  --plot PREFIX       write PREFIX.dat, PREFIX.gp and render PREFIX-throughput and\n"         \
    "                      PREFIX-latency as .svg and .png with gnuplot (needs gnuplot)\n"

/* Applies --progress, --no-progress or --plot; false after a one-line error. */
bool xmpp_live_apply_option(int choice, const char *value, xmpp_options *options);
/* Settles the progress default and finds gnuplot for --plot; false after a
 * one-line error (a usage error). */
bool xmpp_live_options_check(const char *command, xmpp_options *options);
/* Before the reactors start: initialises every reactor's meter. */
bool xmpp_live_prepare(xmpp_run *run) __attribute__((warn_unused_result));
/* Right after run->start_us is set: starts the timeline (a run without
 * one, out of memory, says so once and goes on). */
void xmpp_live_start(xmpp_run *run);
/* Before the runtime stops: books the reactor threads' CPU so far (their
 * /proc entries go with them). */
void xmpp_live_before_stop(xmpp_run *run);
/* After the reactor threads exited: closes the last (partial) second and
 * ends the progress line. */
void xmpp_live_finish(xmpp_run *run);
/* The tool's CPU (and the warning), after the scenario's lines. */
void xmpp_live_report_human(const xmpp_run *run);
/* "timeline" (one object per second), "timeline_truncated", "tool_cpu". */
void xmpp_live_report_json(json_writer *writer, const xmpp_run *run);
/* --plot: true when not asked or rendered; false after one line. */
bool xmpp_live_plot(const xmpp_run *run) __attribute__((warn_unused_result));
/* Frees the timeline and the meters; after the runtime is destroyed. */
void xmpp_live_free(xmpp_run *run);

#endif
