/*
 * bench_plot.h: --plot PREFIX for starling-bench. Writes the run's
 * per-second series as PREFIX.dat (whitespace columns, '-' where a second
 * has no latency sample) and a gnuplot script PREFIX.gp, then runs
 * gnuplot on it (bounded) to render
 *
 *   PREFIX-throughput.svg/.png  logins/s and failures/s, or messages
 *                               sent/s and delivered/s, with sessions
 *                               online on the right axis;
 *   PREFIX-latency.svg/.png     p50, p90, p99 and max of each second.
 *
 * PNGs use the pngcairo terminal when gnuplot has it, else png. gnuplot is
 * looked for on PATH when the options are checked, so a missing gnuplot
 * is a usage error before the run, not a failure after it.
 */
#ifndef STARLING_BENCH_PLOT_H
#define STARLING_BENCH_PLOT_H

#include "bench/src/bench_timeline.h"

#include <stdbool.h>
#include <stddef.h>

#define PLOT_PATH_BYTES_MAX   4096u  /* PATH_MAX: gnuplot's path and each output's */
#define PLOT_PREFIX_BYTES_MAX 1024u  /* leaves room for "-throughput.svg" in a path */
#define PLOT_TIMEOUT_MS       60000u /* gnuplot renders four small plots in well under that */
#define PLOT_WAIT_STEP_MS     10u

/* Finds an executable "gnuplot" in PATH; its path into path (capacity
 * bytes). false when there is none. */
bool plot_find_gnuplot(char *path, size_t capacity) __attribute__((warn_unused_result));

/* A prefix goes into the gnuplot script in single quotes and gets
 * suffixes: it must be short and free of quotes and control bytes. */
bool plot_prefix_valid(const char *prefix);

/* True when the directory the prefix names files in (".", without a
 * slash) exists and may be written: checked with the options, so that a
 * bad prefix fails before the run, not after it. */
bool plot_directory_writable(const char *prefix);

/* What the plots show. All strings borrowed. */
typedef struct plot_request {
    const char *command; /* "starling-bench chat", for messages */
    const char *gnuplot; /* from plot_find_gnuplot */
    const char *prefix;  /* --plot */
    const char *title;   /* first words of each plot's title */
    const char *latency; /* "login" or "message" */
    bool messages;       /* plot messages/s rather than logins/s */
} plot_request;

/*
 * Writes PREFIX.dat and PREFIX.gp from series (borrowed) and runs gnuplot
 * (killed after PLOT_TIMEOUT_MS). false after one line on stderr naming
 * what failed; true when gnuplot exited 0 and wrote all four files.
 */
bool plot_render(const plot_request *request, const timeline *series)
    __attribute__((warn_unused_result));

#endif
