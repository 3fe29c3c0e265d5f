/*
 * bench_timeline.c: the per-second series of a run (see bench_timeline.h
 * for the two sides and their memory ordering). The main thread keeps one
 * histogram for the second being built, merges what the reactors hand
 * over into it, and at the close reads its percentiles and resets it. The
 * tool's CPU is read at every close: the process's from getrusage, each
 * thread's from /proc/self/task, so the busiest thread can be named (a
 * load generator is the bottleneck when one of its threads is saturated,
 * long before the process as a whole uses every core).
 */
#include "bench/src/bench_timeline.h"

#include "bench/src/bench_system.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TIMELINE_LATENCY_DIGITS 3u

/* A thread seen in /proc/self/task, with its CPU at the last close. */
typedef struct tracked_thread {
    int tid;
    char name[SYSTEM_THREAD_NAME_BYTES];
    uint64_t last_cpu_us;     /* at the last look */
    uint64_t interval_cpu_us; /* used in the second being built (seen so far) */
    uint64_t active_cpu_us;   /* over the seconds in which anything was counted */
} tracked_thread;

struct timeline {
    uint64_t start_us, last_close_us;
    timeline_sample *samples; /* owned, samples_max */
    size_t samples_max, length;
    bool truncated;
    timeline_sample latest; /* the last closed second, kept past truncation */
    histogram *second;      /* owned: the latencies of the second being built */
    uint64_t last_counts[TIMELINE_COUNTERS];
    bool cpu_available;
    uint64_t start_cpu_us, last_cpu_us, active_us;
    tracked_thread threads[TIMELINE_THREADS_MAX];
    size_t thread_count;
    system_thread scratch[TIMELINE_THREADS_MAX];
};

static histogram *latency_histogram(void)
{
    return histogram_create(1, TIMELINE_LATENCY_US_MAX, TIMELINE_LATENCY_DIGITS);
}

/* ------------------------------------------------------- reactor side */

bool timeline_meter_init(timeline_meter *meter)
{
    for (unsigned i = 0; i < TIMELINE_COUNTERS; i++)
        atomic_init(&meter->counts[i], 0);
    meter->active = latency_histogram();
    atomic_init(&meter->ready, NULL);
    atomic_init(&meter->spare, latency_histogram());
    meter->rotation_asked = false;
    meter->rotation_taken = false;
    return meter->active != NULL &&
           atomic_load_explicit(&meter->spare, memory_order_relaxed) != NULL;
}

void timeline_meter_fini(timeline_meter *meter)
{
    histogram_destroy(meter->active);
    histogram_destroy(atomic_exchange_explicit(&meter->ready, NULL, memory_order_acquire));
    histogram_destroy(atomic_exchange_explicit(&meter->spare, NULL, memory_order_acquire));
    meter->active = NULL;
}

void timeline_meter_latency(timeline_meter *meter, uint64_t latency_us)
{
    histogram_record(meter->active, latency_us);
}

void timeline_meter_rotate(timeline_meter *meter)
{
    histogram *empty = atomic_exchange_explicit(&meter->spare, NULL, memory_order_acquire);
    if (empty == NULL)
        return; /* the main thread still holds the other one: keep recording */
    /* With two histograms, spare held means ready is free (see the header). */
    histogram *previous =
        atomic_exchange_explicit(&meter->ready, meter->active, memory_order_release);
    if (previous != NULL)
        abort(); /* both histograms handed over at once: the protocol is broken */
    meter->active = empty;
}

/* ---------------------------------------------------- main thread side */

timeline *timeline_create(uint64_t start_us, size_t samples_max)
{
    if (samples_max == 0)
        return NULL;
    timeline *series = calloc(1, sizeof *series);
    if (series == NULL)
        return NULL;
    series->samples = calloc(samples_max, sizeof *series->samples);
    series->second = latency_histogram();
    if (series->samples == NULL || series->second == NULL) {
        timeline_destroy(series);
        return NULL;
    }
    series->samples_max = samples_max;
    series->start_us = start_us;
    series->last_close_us = start_us;
    series->cpu_available = system_process_cpu_us(&series->start_cpu_us);
    series->last_cpu_us = series->start_cpu_us;
    series->thread_count = system_thread_cpu(series->scratch, TIMELINE_THREADS_MAX);
    for (size_t i = 0; i < series->thread_count; i++) {
        series->threads[i].tid = series->scratch[i].tid;
        series->threads[i].last_cpu_us = series->scratch[i].cpu_us;
        memcpy(series->threads[i].name, series->scratch[i].name, SYSTEM_THREAD_NAME_BYTES);
    }
    return series;
}

void timeline_destroy(timeline *series)
{
    if (series == NULL)
        return;
    free(series->samples);
    histogram_destroy(series->second);
    free(series);
}

bool timeline_collect(timeline *series, timeline_meter *meter)
{
    histogram *filled = atomic_exchange_explicit(&meter->ready, NULL, memory_order_acquire);
    if (filled == NULL)
        return false;
    /* Same configuration on both sides: the merge cannot fail. */
    if (!histogram_merge(series->second, filled))
        abort();
    histogram_reset(filled);
    histogram *previous = atomic_exchange_explicit(&meter->spare, filled, memory_order_release);
    if (previous != NULL)
        abort(); /* three histograms where two exist: the protocol is broken */
    return true;
}

void timeline_collect_final(timeline *series, timeline_meter *meter)
{
    (void)timeline_collect(series, meter);
    if (!histogram_merge(series->second, meter->active))
        abort();
    histogram_reset(meter->active);
}

/* The thread tracked as tid, added when new; NULL when the table is full. */
static tracked_thread *tracked(timeline *series, const system_thread *seen)
{
    for (size_t i = 0; i < series->thread_count; i++)
        if (series->threads[i].tid == seen->tid)
            return &series->threads[i];
    if (series->thread_count == TIMELINE_THREADS_MAX)
        return NULL;
    tracked_thread *thread = &series->threads[series->thread_count++];
    *thread = (tracked_thread){.tid = seen->tid};
    memcpy(thread->name, seen->name, SYSTEM_THREAD_NAME_BYTES);
    return thread;
}

void timeline_sample_threads(timeline *series)
{
    size_t seen = system_thread_cpu(series->scratch, TIMELINE_THREADS_MAX);
    for (size_t i = 0; i < seen; i++) {
        tracked_thread *thread = tracked(series, &series->scratch[i]);
        if (thread == NULL || series->scratch[i].cpu_us < thread->last_cpu_us)
            continue;
        thread->interval_cpu_us += series->scratch[i].cpu_us - thread->last_cpu_us;
        thread->last_cpu_us = series->scratch[i].cpu_us;
    }
}

/* Reads the CPU of the process and of each thread over the closing second
 * into sample; active says whether the second counted anything. */
static void close_cpu(timeline *series, timeline_sample *sample, bool active)
{
    uint64_t cpu_us = 0;
    sample->cpu_percent = -1;
    sample->busiest_thread_percent = -1;
    if (series->cpu_available && system_process_cpu_us(&cpu_us) && sample->interval_us > 0) {
        sample->cpu_percent =
            (double)(cpu_us - series->last_cpu_us) * 100.0 / (double)sample->interval_us;
        series->last_cpu_us = cpu_us;
    }
    if (active)
        series->active_us += sample->interval_us;
    timeline_sample_threads(series);
    for (size_t i = 0; i < series->thread_count; i++) {
        tracked_thread *thread = &series->threads[i];
        if (active)
            thread->active_cpu_us += thread->interval_cpu_us;
        double percent = sample->interval_us > 0
                             ? (double)thread->interval_cpu_us * 100.0 / (double)sample->interval_us
                             : 0.0;
        if (percent > sample->busiest_thread_percent)
            sample->busiest_thread_percent = percent;
        thread->interval_cpu_us = 0;
    }
}

void timeline_meter_add_counts(const timeline_meter *meter, uint64_t totals[TIMELINE_COUNTERS])
{
    for (unsigned counter = 0; counter < TIMELINE_COUNTERS; counter++)
        totals[counter] += atomic_load_explicit(&meter->counts[counter], memory_order_relaxed);
}

void timeline_close(timeline *series, const uint64_t totals[TIMELINE_COUNTERS], uint64_t online,
                    uint64_t now_us)
{
    timeline_sample sample = {
        .end_us = now_us > series->start_us ? now_us - series->start_us : 0,
        .interval_us = now_us > series->last_close_us ? now_us - series->last_close_us : 0,
        .online = online,
    };
    series->last_close_us = now_us > series->last_close_us ? now_us : series->last_close_us;
    bool active = false;
    for (unsigned counter = 0; counter < TIMELINE_COUNTERS; counter++) {
        sample.counts[counter] = totals[counter] - series->last_counts[counter];
        series->last_counts[counter] = totals[counter];
        active = active || sample.counts[counter] > 0;
    }
    sample.latency_count = histogram_count(series->second);
    if (sample.latency_count > 0) {
        sample.latency_us_p50 = histogram_value_at_percentile(series->second, 50);
        sample.latency_us_p90 = histogram_value_at_percentile(series->second, 90);
        sample.latency_us_p99 = histogram_value_at_percentile(series->second, 99);
        sample.latency_us_max = histogram_max(series->second);
    }
    histogram_reset(series->second);
    close_cpu(series, &sample, active);
    series->latest = sample;
    if (series->length == series->samples_max) {
        series->truncated = true;
        return;
    }
    series->samples[series->length++] = sample;
}

size_t timeline_length(const timeline *series)
{
    return series->length;
}

const timeline_sample *timeline_at(const timeline *series, size_t index)
{
    return index < series->length ? &series->samples[index] : NULL;
}

bool timeline_truncated(const timeline *series)
{
    return series->truncated;
}

uint64_t timeline_total(const timeline *series, timeline_counter counter)
{
    return series->last_counts[counter];
}

double timeline_rate(const timeline_sample *sample, timeline_counter counter)
{
    if (sample->interval_us == 0)
        return 0.0;
    return (double)sample->counts[counter] * 1e6 / (double)sample->interval_us;
}

void timeline_cpu_report(const timeline *series, timeline_cpu *cpu)
{
    memset(cpu, 0, sizeof *cpu);
    cpu->available = series->cpu_available;
    cpu->cpu_us = series->last_cpu_us - series->start_cpu_us;
    cpu->elapsed_us = series->last_close_us - series->start_us;
    cpu->active_us = series->active_us;
    if (cpu->elapsed_us > 0)
        cpu->cpu_percent = (double)cpu->cpu_us * 100.0 / (double)cpu->elapsed_us;
    for (size_t i = 0; i < series->thread_count && series->active_us > 0; i++) {
        const tracked_thread *thread = &series->threads[i];
        double percent = (double)thread->active_cpu_us * 100.0 / (double)series->active_us;
        if (percent > cpu->busiest_thread_percent || cpu->busiest_thread[0] == '\0') {
            cpu->busiest_thread_percent = percent;
            /* The process's first thread is the main one: the pacer. */
            if (thread->tid == (int)getpid())
                snprintf(cpu->busiest_thread, sizeof cpu->busiest_thread, "main");
            else
                snprintf(cpu->busiest_thread, sizeof cpu->busiest_thread, "%s/%d", thread->name,
                         thread->tid);
        }
    }
}

void timeline_progress_line(const timeline *series, uint64_t target, char *line, size_t capacity)
{
    if (capacity == 0)
        return;
    line[0] = '\0';
    if (series->latest.end_us == 0)
        return;
    const timeline_sample *last = &series->latest;
    char p99[32] = "-";
    if (last->latency_count > 0)
        snprintf(p99, sizeof p99, "%.2f ms", (double)last->latency_us_p99 / 1000.0);
    char cpu[32] = "-";
    if (last->cpu_percent >= 0)
        snprintf(cpu, sizeof cpu, "%.0f%%", last->cpu_percent);
    snprintf(line, capacity,
             "%6.0f s  online %" PRIu64 "/%" PRIu64 "  logins/s %.0f  msgs/s %.0f  p99 %s  cpu %s",
             (double)last->end_us / 1e6, last->online, target, timeline_rate(last, TIMELINE_LOGINS),
             timeline_rate(last, TIMELINE_DELIVERED), p99, cpu);
}
