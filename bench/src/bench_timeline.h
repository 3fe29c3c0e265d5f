/*
 * bench_timeline.h: the per-second time series of a starling-bench run, and
 * the tool's own CPU use over it.
 *
 * Two sides, two threads' worth of API:
 *
 *   A reactor owns one timeline_meter. It bumps monotonic counters
 *   (logins, failures, messages sent and delivered) and records latencies
 *   into the meter's active histogram. When the main thread asks (a
 *   message through the runtime), it rotates: hands the filled histogram
 *   over and takes an empty one.
 *
 *   The main thread owns the timeline. Once a second it collects the
 *   handed-over histograms of every meter, reads the counters, and closes
 *   the second into one timeline_sample: deltas of the counters, latency
 *   percentiles of that second alone, sessions online, the process's CPU
 *   and its busiest thread's.
 *
 * Memory ordering (no data race by construction):
 *   - counters: each is written by one reactor with a relaxed fetch_add and
 *     read by the main thread with a relaxed load. Each counter is an
 *     independent monotonic total; nothing else is published through it,
 *     so atomicity is all that is needed. After the reactor threads are
 *     joined (the join is the happens-before), the last reads are exact, so
 *     the per-second deltas add up to the totals.
 *   - histograms: each meter owns exactly two. One is the reactor's active
 *     one (only the reactor touches it); the other is in exactly one of
 *     three places: `spare` (empty, waiting for the reactor), `ready`
 *     (filled, waiting for the main thread) or in the main thread's hands
 *     while it merges and resets it. Both hand-overs are an atomic pointer
 *     exchange: the giving side stores with release after its last write,
 *     the taking side exchanges with acquire before its first read, so
 *     every write to a histogram happens before the other side reads it.
 *     A reactor asked to rotate while the main thread still holds the
 *     other histogram (spare is NULL) keeps recording into its active one:
 *     those samples land in a later second, none is lost.
 *
 * Bounds: at most samples_max seconds are kept (TIMELINE_SAMPLES_MAX for a
 * run); past it the series is truncated and says so (timeline_truncated),
 * while counters and CPU keep being read so the totals stay true.
 */
#ifndef STARLING_BENCH_TIMELINE_H
#define STARLING_BENCH_TIMELINE_H

#include "bench/src/histogram.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TIMELINE_SAMPLES_MAX  7200u    /* two hours of seconds, about 1 MiB of samples */
#define TIMELINE_INTERVAL_US  1000000u /* one sample per second */
#define TIMELINE_THREADS_MAX  256u     /* 64 reactors and the runtime's helpers, with room */
#define TIMELINE_BUSY_PERCENT 90.0     /* a thread this busy may have been the bottleneck */
#define TIMELINE_LINE_BYTES   160u     /* one progress line */
/* Latencies recorded per second: 1 us to SESSION_LATENCY_US_MAX (an hour), 3 digits. */
#define TIMELINE_LATENCY_US_MAX 3600000000ull

typedef enum timeline_counter {
    TIMELINE_LOGINS = 0, /* sessions that got online */
    TIMELINE_FAILURES,   /* sessions that failed, or were dropped once online */
    TIMELINE_SENT,       /* messages sent */
    TIMELINE_DELIVERED,  /* messages delivered (counted once) */
    TIMELINE_COUNTERS
} timeline_counter;

/* One reactor's side. The main thread initialises it before the reactor
 * starts and frees it after the reactor exited. */
typedef struct timeline_meter {
    _Atomic uint64_t counts[TIMELINE_COUNTERS]; /* reactor: relaxed add; main: relaxed load */
    histogram *active;                          /* the reactor's alone */
    _Atomic(histogram *) ready;                 /* filled: reactor -> main thread */
    _Atomic(histogram *) spare;                 /* emptied: main thread -> reactor */
    bool rotation_asked;                        /* main thread's alone: asked this second */
    bool rotation_taken;                        /* main thread's alone: took it this second */
} timeline_meter;

/* Main thread: allocates the meter's two histograms; false when out of
 * memory (timeline_meter_fini is still called). */
bool timeline_meter_init(timeline_meter *meter) __attribute__((warn_unused_result));
/* Frees the meter's histograms; only when no reactor uses it. */
void timeline_meter_fini(timeline_meter *meter);

/* Reactor thread: adds amount to counter. */
static inline void timeline_meter_count(timeline_meter *meter, timeline_counter counter,
                                        uint64_t amount)
{
    atomic_fetch_add_explicit(&meter->counts[counter], amount, memory_order_relaxed);
}
/* Reactor thread: records one latency of this second. */
void timeline_meter_latency(timeline_meter *meter, uint64_t latency_us);
/* Reactor thread: hands the active histogram over when the main thread
 * has returned the other one (else keeps recording into it). */
void timeline_meter_rotate(timeline_meter *meter);

/* One closed second. Latencies are of that second's samples only. */
typedef struct timeline_sample {
    uint64_t end_us;      /* since the start */
    uint64_t interval_us; /* the sample's own length (about a second) */
    uint64_t online;      /* sessions online at its end */
    uint64_t counts[TIMELINE_COUNTERS];
    uint64_t latency_count; /* 0: the percentiles are meaningless */
    uint64_t latency_us_p50, latency_us_p90, latency_us_p99, latency_us_max;
    double cpu_percent;            /* the process, % of one core; <0 unknown */
    double busiest_thread_percent; /* its busiest thread, % of one core; <0 unknown */
} timeline_sample;

typedef struct timeline timeline;

/* The tool's CPU over the whole series. */
typedef struct timeline_cpu {
    bool available;
    uint64_t cpu_us;               /* user + system of the process over the series */
    uint64_t elapsed_us;           /* wall time of the series */
    double cpu_percent;            /* cpu_us / elapsed_us, % of one core */
    uint64_t active_us;            /* wall time of the seconds in which anything was counted */
    double busiest_thread_percent; /* the busiest thread's CPU over those seconds */
    char busiest_thread[48];       /* "main", or its name (comm) "/" its tid */
} timeline_cpu;

/*
 * Main thread: a series that starts at start_us (system_now_us) and keeps
 * at most samples_max seconds. NULL when out of memory or samples_max is 0.
 * Owned by the caller, freed with timeline_destroy.
 */
timeline *timeline_create(uint64_t start_us, size_t samples_max)
    __attribute__((warn_unused_result));
void timeline_destroy(timeline *timeline);

/* Main thread: takes the meter's handed-over histogram, if there is one,
 * into the second being built; true when it took one. */
bool timeline_collect(timeline *timeline, timeline_meter *meter);
/* Main thread, after the meter's reactor exited: takes everything the
 * meter recorded, the active histogram too. */
void timeline_collect_final(timeline *timeline, timeline_meter *meter);
/* Main thread: adds the meter's counters (relaxed loads) into totals. */
void timeline_meter_add_counts(const timeline_meter *meter, uint64_t totals[TIMELINE_COUNTERS]);
/*
 * Main thread: closes the second ending at now_us: totals are the sums of
 * every meter's counters now (timeline_meter_add_counts), of which the
 * sample keeps the growth since the last close; with the latencies
 * collected since, the given sessions online and the CPU. Past
 * samples_max the sample is not kept and the series is truncated.
 */
void timeline_close(timeline *timeline, const uint64_t totals[TIMELINE_COUNTERS], uint64_t online,
                    uint64_t now_us);

/* Main thread: looks at every thread's CPU now and books it to the second
 * being built. timeline_close does it too; call it before threads exit
 * (the runtime stops) so their last part-second is not lost with them. */
void timeline_sample_threads(timeline *timeline);

/* The series (borrowed from timeline, valid until the next close). */
size_t timeline_length(const timeline *timeline);
const timeline_sample *timeline_at(const timeline *timeline, size_t index);
bool timeline_truncated(const timeline *timeline);
/* Totals of the counters over every close (kept past truncation). */
uint64_t timeline_total(const timeline *timeline, timeline_counter counter);
void timeline_cpu_report(const timeline *timeline, timeline_cpu *cpu);

/*
 * Formats the last sample as one progress line into line (capacity bytes,
 * TIMELINE_LINE_BYTES is enough): elapsed, online/target, logins/s,
 * msgs/s (delivered), p99 of the last second, tool CPU %. Empty when no
 * sample was closed yet.
 */
void timeline_progress_line(const timeline *timeline, uint64_t target, char *line, size_t capacity);

/* Per-second rate of a sample's counter. */
double timeline_rate(const timeline_sample *sample, timeline_counter counter);

#endif
