/*
 * histogram.h: a high-dynamic-range latency histogram for starling-bench.
 *
 * Values are unsigned 64-bit integers in whatever unit the caller picks
 * (microseconds or nanoseconds). Buckets are log-linear: each power of two
 * is split into enough linear sub-buckets that any recorded value is known
 * to within 10^-digits of itself, so a 3-digit histogram reports 1.000 s as
 * somewhere in [1.000 s, 1.001 s). All memory is allocated by
 * histogram_create; recording never allocates and never fails.
 *
 * A histogram belongs to one thread. Workers keep their own and the
 * reporter merges them at the end (histogram_merge).
 */
#ifndef STARLING_BENCH_HISTOGRAM_H
#define STARLING_BENCH_HISTOGRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HISTOGRAM_DIGITS_MIN 1u
#define HISTOGRAM_DIGITS_MAX 5u

typedef struct histogram histogram;

/*
 * Creates a histogram that tells apart values down to lowest_discernible
 * (at least 1), tracks values up to highest_trackable (at least twice
 * lowest_discernible) and keeps significant_digits (1..5) decimal digits.
 * Returns NULL when the configuration is invalid or memory is short; the
 * histogram is owned by the caller and freed with histogram_destroy.
 */
histogram *histogram_create(uint64_t lowest_discernible, uint64_t highest_trackable,
                            unsigned significant_digits) __attribute__((warn_unused_result));
/* Frees a histogram (transferred); NULL is allowed. */
void histogram_destroy(histogram *histogram);
/* Bytes held by histogram (borrowed), the struct and its counts together. */
size_t histogram_memory_bytes(const histogram *histogram);

/*
 * Records one value into histogram (borrowed). A value above the highest
 * trackable value is recorded as that value and counted as an overflow.
 */
void histogram_record(histogram *histogram, uint64_t value);
/*
 * Records value and corrects for coordinated omission: a load generator
 * that waited value for a reply did not send the requests it meant to send
 * every expected_interval meanwhile, so value - interval, value - 2 *
 * interval, ... down to interval are recorded too. expected_interval 0
 * records value alone.
 */
void histogram_record_corrected(histogram *histogram, uint64_t value, uint64_t expected_interval);
/*
 * Adds every sample of source (borrowed) into destination (borrowed).
 * Returns false, leaving destination unchanged, when the two were created
 * with different configurations.
 */
bool histogram_merge(histogram *destination, const histogram *source)
    __attribute__((warn_unused_result));
/* Forgets every sample; the configuration and memory stay. */
void histogram_reset(histogram *histogram);

/* Statistics of histogram (borrowed); all are 0 when it is empty. */
uint64_t histogram_count(const histogram *histogram);
/* Samples that were above the highest trackable value and were clamped. */
uint64_t histogram_overflow_count(const histogram *histogram);
/* Exact smallest and largest recorded values (after clamping). */
uint64_t histogram_min(const histogram *histogram);
uint64_t histogram_max(const histogram *histogram);
/* Exact arithmetic mean of the recorded values (after clamping). */
double histogram_mean(const histogram *histogram);

/*
 * The value at percentile (0..100; outside is clamped): the highest value
 * equivalent to the bucket holding the percentile-th sample, never above
 * the max. Percentile 0 gives the exact min and 100 the exact max.
 */
uint64_t histogram_value_at_percentile(const histogram *histogram, double percentile);
/* Bounds of the bucket holding value: every value in it reads the same. */
uint64_t histogram_lowest_equivalent(const histogram *histogram, uint64_t value);
uint64_t histogram_highest_equivalent(const histogram *histogram, uint64_t value);

/*
 * Walks the percentile distribution for a plot: ticks_per_half_distance
 * ticks from 0 to 50, as many from 50 to 75, from 75 to 87.5 and so on,
 * halving the remaining distance each time, until every sample is covered;
 * the last step is percentile 100 with the max. The histogram is borrowed
 * for the iterator's life and must not change meanwhile.
 */
typedef struct histogram_percentile_iterator {
    const histogram *histogram; /* borrowed */
    unsigned ticks_per_half_distance;
    unsigned level; /* halvings so far */
    unsigned tick;  /* within the level */
    bool done;
    /* The current step, valid after histogram_percentiles_next returns true. */
    double percentile;
    uint64_t value;
    uint64_t count_at_or_below; /* samples at or below value's bucket */
} histogram_percentile_iterator;

/* Starts iterator over histogram (borrowed); ticks_per_half_distance >= 1. */
void histogram_percentiles_begin(histogram_percentile_iterator *iterator,
                                 const histogram *histogram, unsigned ticks_per_half_distance);
/* Moves to the next step; false once the walk is over (at once if empty). */
bool histogram_percentiles_next(histogram_percentile_iterator *iterator)
    __attribute__((warn_unused_result));

#endif
