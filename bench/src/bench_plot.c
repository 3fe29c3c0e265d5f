/*
 * bench_plot.c: renders a run's series with gnuplot (see bench_plot.h).
 * The data and the script are plain files next to the plots, so a plot
 * can be restyled and rendered again by hand (gnuplot PREFIX.gp) without
 * running the benchmark again. gnuplot is a child process with a bounded
 * life: fork, exec, poll waitpid, SIGKILL on overrun. The fork happens
 * after the runtime's threads have exited, and the child calls only
 * execv and _exit.
 */
#include "bench/src/bench_plot.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PLOT_SIZE "1024,576"

bool plot_find_gnuplot(char *path, size_t capacity)
{
    const char *search = getenv("PATH");
    if (search == NULL || *search == '\0')
        search = "/usr/local/bin:/usr/bin:/bin";
    while (*search != '\0') {
        size_t length = strcspn(search, ":");
        const char *directory = length == 0 ? "." : search;
        int directory_length = length == 0 ? 1 : (int)length;
        int written = snprintf(path, capacity, "%.*s/gnuplot", directory_length, directory);
        struct stat status;
        if (written > 0 && (size_t)written < capacity && stat(path, &status) == 0 &&
            S_ISREG(status.st_mode) && access(path, X_OK) == 0)
            return true;
        search += length;
        if (*search == ':')
            search++;
    }
    return false;
}

bool plot_prefix_valid(const char *prefix)
{
    size_t length = strlen(prefix);
    if (length == 0 || length > PLOT_PREFIX_BYTES_MAX)
        return false;
    for (const unsigned char *at = (const unsigned char *)prefix; *at != '\0'; at++)
        if (*at < 0x20 || *at == 0x7f || *at == '\'' || *at == '"' || *at == '\\')
            return false;
    return true;
}

bool plot_directory_writable(const char *prefix)
{
    char directory[PLOT_PATH_BYTES_MAX];
    const char *slash = strrchr(prefix, '/');
    if (slash == NULL)
        snprintf(directory, sizeof directory, ".");
    else if (slash == prefix)
        snprintf(directory, sizeof directory, "/");
    else
        snprintf(directory, sizeof directory, "%.*s", (int)(slash - prefix), prefix);
    struct stat status;
    return stat(directory, &status) == 0 && S_ISDIR(status.st_mode) &&
           access(directory, W_OK | X_OK) == 0;
}

/* ---------------------------------------------------------- the files */

/* Writes a latency in ms, or '-' (missing) for a second without samples. */
static void write_latency(FILE *file, const timeline_sample *sample, uint64_t latency_us)
{
    if (sample->latency_count == 0)
        fputs(" -", file);
    else
        fprintf(file, " %.3f", (double)latency_us / 1000.0);
}

static void write_percent(FILE *file, double percent)
{
    if (percent < 0)
        fputs(" -", file);
    else
        fprintf(file, " %.1f", percent);
}

static bool write_data(const char *path, const timeline *series)
{
    FILE *file = fopen(path, "we");
    if (file == NULL)
        return false;
    fprintf(file, "# second elapsed_s online logins_per_s failures_per_s sent_per_s "
                  "delivered_per_s p50_ms p90_ms p99_ms max_ms cpu_percent "
                  "busiest_thread_percent\n");
    for (size_t i = 0; i < timeline_length(series); i++) {
        const timeline_sample *sample = timeline_at(series, i);
        fprintf(file, "%zu %.3f %" PRIu64 " %.1f %.1f %.1f %.1f", i + 1,
                (double)sample->end_us / 1e6, sample->online,
                timeline_rate(sample, TIMELINE_LOGINS), timeline_rate(sample, TIMELINE_FAILURES),
                timeline_rate(sample, TIMELINE_SENT), timeline_rate(sample, TIMELINE_DELIVERED));
        write_latency(file, sample, sample->latency_us_p50);
        write_latency(file, sample, sample->latency_us_p90);
        write_latency(file, sample, sample->latency_us_p99);
        write_latency(file, sample, sample->latency_us_max);
        write_percent(file, sample->cpu_percent);
        write_percent(file, sample->busiest_thread_percent);
        fputc('\n', file);
    }
    bool failed = ferror(file) != 0;
    return fclose(file) == 0 && !failed;
}

/* The top of each axis, so that gnuplot never meets an empty range (it
 * warns, and a log axis has no room for 0). */
typedef struct plot_ranges {
    double rate_max, online_max;
    double latency_ms_min, latency_ms_max; /* latency_ms_max 0: no latency sample */
} plot_ranges;

static double larger(double a, double b)
{
    return a > b ? a : b;
}

static plot_ranges ranges_of(const timeline *series, bool messages)
{
    plot_ranges ranges = {.rate_max = 1.0, .online_max = 1.0, .latency_ms_min = 1e300};
    for (size_t i = 0; i < timeline_length(series); i++) {
        const timeline_sample *sample = timeline_at(series, i);
        timeline_counter first = messages ? TIMELINE_SENT : TIMELINE_LOGINS;
        timeline_counter second = messages ? TIMELINE_DELIVERED : TIMELINE_FAILURES;
        ranges.rate_max = larger(ranges.rate_max, timeline_rate(sample, first));
        ranges.rate_max = larger(ranges.rate_max, timeline_rate(sample, second));
        ranges.online_max = larger(ranges.online_max, (double)sample->online);
        if (sample->latency_count == 0)
            continue;
        double low_ms = (double)sample->latency_us_p50 / 1000.0;
        if (low_ms < ranges.latency_ms_min)
            ranges.latency_ms_min = low_ms;
        ranges.latency_ms_max =
            larger(ranges.latency_ms_max, (double)sample->latency_us_max / 1000.0);
    }
    return ranges;
}

/* The plot commands of both plots, for the terminal set before them. */
static void write_plots(FILE *file, const plot_request *request, const char *extension,
                        const plot_ranges *ranges)
{
    const char *prefix = request->prefix;
    fprintf(file, "set output '%s-throughput.%s'\n", prefix, extension);
    fprintf(file, "set title '%s: throughput per second'\n", request->title);
    fprintf(file, "set ylabel '%s per second'\nset y2label 'sessions online'\n",
            request->messages ? "messages" : "logins");
    fprintf(file, "set ytics nomirror\nset y2tics\nset yrange [0:%.3f]\nset y2range [0:%.3f]\n",
            ranges->rate_max * 1.1, ranges->online_max * 1.1);
    if (request->messages)
        fprintf(file, "plot DATA using 2:6 with lines lw 2 title 'sent/s', "
                      "DATA using 2:7 with lines lw 2 title 'delivered/s', "
                      "DATA using 2:3 axes x1y2 with lines dt 2 title 'online'\n");
    else
        fprintf(file, "plot DATA using 2:4 with lines lw 2 title 'logins/s', "
                      "DATA using 2:5 with lines lw 2 title 'failures/s', "
                      "DATA using 2:3 axes x1y2 with lines dt 2 title 'online'\n");
    fprintf(file, "unset y2tics\nunset y2label\nset ytics mirror\n");
    fprintf(file, "set output '%s-latency.%s'\n", prefix, extension);
    fprintf(file, "set title '%s: %s latency of each second'\n", request->title, request->latency);
    fprintf(file, "set ylabel 'ms'\n");
    if (ranges->latency_ms_max > 0)
        fprintf(file,
                "set logscale y\nset yrange [%.6f:%.6f]\n"
                "plot DATA using 2:8 with linespoints title 'p50', "
                "DATA using 2:9 with linespoints title 'p90', "
                "DATA using 2:10 with linespoints title 'p99', "
                "DATA using 2:11 with linespoints title 'max'\n"
                "unset logscale y\n",
                ranges->latency_ms_min / 2.0, ranges->latency_ms_max * 2.0);
    else
        fprintf(file, "set yrange [0:1]\nset label 1 'no latency samples' at graph 0.5,0.5 "
                      "center\nplot -1 notitle\nunset label 1\n");
}

static bool write_script(const char *path, const char *data_path, const plot_request *request,
                         const timeline *series)
{
    FILE *file = fopen(path, "we");
    if (file == NULL)
        return false;
    double end_s = 1.0;
    if (timeline_length(series) > 0)
        end_s =
            larger(end_s, (double)timeline_at(series, timeline_length(series) - 1)->end_us / 1e6);
    plot_ranges ranges = ranges_of(series, request->messages);
    fprintf(file, "# Written by %s --plot; render again with: gnuplot '%s'\n", request->command,
            path);
    fprintf(file,
            "DATA = '%s'\nset datafile missing '-'\nset grid\nset key outside right top vertical\n",
            data_path);
    fprintf(file, "set xlabel 'seconds since start'\nset xrange [0:%.3f]\n", end_s);
    fprintf(file, "set terminal svg size " PLOT_SIZE " dynamic\n");
    write_plots(file, request, "svg", &ranges);
    fprintf(file, "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
                  "    set terminal pngcairo size " PLOT_SIZE "\n"
                  "} else {\n"
                  "    set terminal png size " PLOT_SIZE "\n"
                  "}\n");
    write_plots(file, request, "png", &ranges);
    fprintf(file, "set output\n");
    bool failed = ferror(file) != 0;
    return fclose(file) == 0 && !failed;
}

/* --------------------------------------------------------- the process */

/* Runs gnuplot on script, bounded by PLOT_TIMEOUT_MS; its exit status, or
 * -1 when it could not run or was killed. */
static int run_gnuplot(const char *gnuplot, const char *script)
{
    pid_t child = fork();
    if (child < 0)
        return -1;
    if (child == 0) {
        char *const arguments[] = {(char *)"gnuplot", (char *)script, NULL};
        execv(gnuplot, arguments);
        _exit(127);
    }
    int status = 0;
    for (unsigned waited_ms = 0; waited_ms < PLOT_TIMEOUT_MS; waited_ms += PLOT_WAIT_STEP_MS) {
        pid_t done = waitpid(child, &status, WNOHANG);
        if (done == child)
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        if (done < 0 && errno != EINTR)
            return -1;
        nanosleep(&(struct timespec){.tv_nsec = PLOT_WAIT_STEP_MS * 1000000L}, NULL);
    }
    kill(child, SIGKILL);
    while (waitpid(child, &status, 0) < 0 && errno == EINTR)
        continue;
    return -1;
}

/* True when path exists and holds at least one byte. */
static bool written(const char *path)
{
    struct stat status;
    return stat(path, &status) == 0 && S_ISREG(status.st_mode) && status.st_size > 0;
}

bool plot_render(const plot_request *request, const timeline *series)
{
    static const char *const outputs[] = {"-throughput.svg", "-throughput.png", "-latency.svg",
                                          "-latency.png"};
    char data_path[PLOT_PATH_BYTES_MAX], script_path[PLOT_PATH_BYTES_MAX];
    snprintf(data_path, sizeof data_path, "%s.dat", request->prefix);
    snprintf(script_path, sizeof script_path, "%s.gp", request->prefix);
    if (!write_data(data_path, series) || !write_script(script_path, data_path, request, series)) {
        fprintf(stderr, "%s: --plot cannot write %s.dat or .gp: %s\n", request->command,
                request->prefix, strerror(errno));
        return false;
    }
    for (size_t i = 0; i < sizeof outputs / sizeof outputs[0]; i++) {
        char path[PLOT_PATH_BYTES_MAX];
        snprintf(path, sizeof path, "%s%s", request->prefix, outputs[i]);
        if (unlink(path) != 0 && errno != ENOENT) {
            fprintf(stderr, "%s: --plot cannot replace %s: %s\n", request->command, path,
                    strerror(errno));
            return false;
        }
    }
    int status = run_gnuplot(request->gnuplot, script_path);
    if (status != 0) {
        fprintf(stderr, "%s: --plot: %s %s %s\n", request->command, request->gnuplot, script_path,
                status < 0 ? "did not finish" : "failed");
        return false;
    }
    for (size_t i = 0; i < sizeof outputs / sizeof outputs[0]; i++) {
        char path[PLOT_PATH_BYTES_MAX];
        snprintf(path, sizeof path, "%s%s", request->prefix, outputs[i]);
        if (!written(path)) {
            fprintf(stderr, "%s: --plot: gnuplot did not write %s\n", request->command, path);
            return false;
        }
    }
    return true;
}
