/*
 * histogram.c: log-linear buckets for latency values.
 *
 * A value's top set bit picks its bucket (a power of two) and the next bits
 * below it pick a linear sub-bucket. With 2^m sub-buckets per bucket, where
 * 2^m is the first power of two at or above 2 * 10^digits, every value in
 * the upper half of a bucket is at least 10^digits times the bucket's width,
 * which bounds the relative error by 10^-digits. The lower half of every
 * bucket but the first repeats the upper half of the bucket before it, so
 * only upper halves get counters: bucket 0 keeps all of its 2^m sub-buckets
 * and each later bucket adds 2^(m-1). The smallest width is the largest power
 * of two at or below the lowest discernible value (the "unit").
 *
 * The counts are one flat array sized once for the highest trackable value,
 * so recording is an index computation and an increment. Min, max and the
 * sum are kept exactly beside the buckets; the sum is 128 bits wide (two
 * words) because nanosecond latencies times billions of samples overflow 64.
 */
#include "bench/src/histogram.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* After this many halvings of the remaining distance every rank below 2^64
 * has been reached, so the percentile walk is bounded. */
#define HISTOGRAM_HALVINGS_MAX 66u

struct histogram {
    uint64_t lowest_discernible;
    uint64_t highest_trackable;
    unsigned significant_digits;
    unsigned unit_magnitude;            /* log2 of the narrowest bucket width */
    unsigned sub_bucket_half_magnitude; /* log2 of counters per later bucket */
    uint64_t sub_bucket_half_count;
    uint64_t sub_bucket_mask; /* every bit that lands in bucket 0 */
    size_t counts_length;
    uint64_t total_count;
    uint64_t overflow_count;
    uint64_t min; /* UINT64_MAX while empty */
    uint64_t max;
    uint64_t sum_low; /* the sum of recorded values is sum_high * 2^64 + sum_low */
    uint64_t sum_high;
    uint64_t counts[];
};

static unsigned bit_length(uint64_t value)
{
    return value == 0 ? 0u : 64u - (unsigned)__builtin_clzll(value);
}

static unsigned bucket_index_of(const histogram *histogram, uint64_t value)
{
    unsigned bits = bit_length(value | histogram->sub_bucket_mask);
    return bits - histogram->unit_magnitude - (histogram->sub_bucket_half_magnitude + 1u);
}

static size_t counts_index_of(const histogram *histogram, uint64_t value)
{
    unsigned bucket = bucket_index_of(histogram, value);
    uint64_t sub_bucket = value >> (bucket + histogram->unit_magnitude);
    assert(bucket == 0 || sub_bucket >= histogram->sub_bucket_half_count);
    assert(sub_bucket < 2u * histogram->sub_bucket_half_count);
    return ((size_t)(bucket + 1u) << histogram->sub_bucket_half_magnitude) +
           (size_t)(sub_bucket - histogram->sub_bucket_half_count);
}

/* log2 of the width of the bucket that holds value. */
static unsigned width_magnitude_of(const histogram *histogram, uint64_t value)
{
    return bucket_index_of(histogram, value) + histogram->unit_magnitude;
}

static uint64_t value_at_index(const histogram *histogram, size_t index)
{
    size_t bucket_plus_one = index >> histogram->sub_bucket_half_magnitude;
    uint64_t sub_bucket = (uint64_t)(index & (histogram->sub_bucket_half_count - 1u));
    if (bucket_plus_one == 0) {
        return sub_bucket << histogram->unit_magnitude;
    }
    sub_bucket += histogram->sub_bucket_half_count;
    return sub_bucket << (bucket_plus_one - 1u + histogram->unit_magnitude);
}

histogram *histogram_create(uint64_t lowest_discernible, uint64_t highest_trackable,
                            unsigned significant_digits)
{
    if (lowest_discernible == 0 || highest_trackable / 2u < lowest_discernible ||
        significant_digits < HISTOGRAM_DIGITS_MIN || significant_digits > HISTOGRAM_DIGITS_MAX) {
        return NULL;
    }
    uint64_t single_unit_resolution_max = 2u;
    for (unsigned digit = 0; digit < significant_digits; digit++) {
        single_unit_resolution_max *= 10u;
    }
    unsigned sub_bucket_magnitude = bit_length(single_unit_resolution_max - 1u);
    unsigned unit_magnitude = bit_length(lowest_discernible) - 1u;
    /* Keeps every shift below 64 bits: the bucket of UINT64_MAX still fits. */
    if (unit_magnitude + sub_bucket_magnitude > 63u) {
        return NULL;
    }
    histogram prototype = {
        .lowest_discernible = lowest_discernible,
        .highest_trackable = highest_trackable,
        .significant_digits = significant_digits,
        .unit_magnitude = unit_magnitude,
        .sub_bucket_half_magnitude = sub_bucket_magnitude - 1u,
        .sub_bucket_half_count = (uint64_t)1u << (sub_bucket_magnitude - 1u),
        .sub_bucket_mask = (((uint64_t)1u << sub_bucket_magnitude) - 1u) << unit_magnitude,
    };
    prototype.counts_length = counts_index_of(&prototype, highest_trackable) + 1u;
    histogram *created =
        malloc(sizeof(histogram) + prototype.counts_length * sizeof(prototype.counts[0]));
    if (created == NULL) {
        return NULL;
    }
    memcpy(created, &prototype, sizeof(histogram));
    histogram_reset(created);
    return created;
}

void histogram_destroy(histogram *histogram)
{
    free(histogram);
}

size_t histogram_memory_bytes(const histogram *histogram)
{
    return sizeof(*histogram) + histogram->counts_length * sizeof(histogram->counts[0]);
}

void histogram_reset(histogram *histogram)
{
    memset(histogram->counts, 0, histogram->counts_length * sizeof(histogram->counts[0]));
    histogram->total_count = 0;
    histogram->overflow_count = 0;
    histogram->min = UINT64_MAX;
    histogram->max = 0;
    histogram->sum_low = 0;
    histogram->sum_high = 0;
}

void histogram_record(histogram *histogram, uint64_t value)
{
    if (value > histogram->highest_trackable) {
        value = histogram->highest_trackable;
        histogram->overflow_count++;
    }
    size_t index = counts_index_of(histogram, value);
    assert(index < histogram->counts_length);
    histogram->counts[index]++;
    histogram->total_count++;
    if (value < histogram->min) {
        histogram->min = value;
    }
    if (value > histogram->max) {
        histogram->max = value;
    }
    histogram->sum_low += value;
    if (histogram->sum_low < value) {
        histogram->sum_high++;
    }
}

void histogram_record_corrected(histogram *histogram, uint64_t value, uint64_t expected_interval)
{
    histogram_record(histogram, value);
    if (expected_interval == 0) {
        return;
    }
    /* Back-fills from the clamped value, so the loop runs at most
     * highest_trackable / expected_interval times. */
    uint64_t clamped = value > histogram->highest_trackable ? histogram->highest_trackable : value;
    if (clamped <= expected_interval) {
        return;
    }
    for (uint64_t missing = clamped - expected_interval; missing >= expected_interval;
         missing -= expected_interval) {
        histogram_record(histogram, missing);
    }
}

bool histogram_merge(histogram *destination, const histogram *source)
{
    if (destination->lowest_discernible != source->lowest_discernible ||
        destination->highest_trackable != source->highest_trackable ||
        destination->significant_digits != source->significant_digits) {
        return false;
    }
    assert(destination->counts_length == source->counts_length);
    for (size_t index = 0; index < source->counts_length; index++) {
        destination->counts[index] += source->counts[index];
    }
    destination->total_count += source->total_count;
    destination->overflow_count += source->overflow_count;
    if (source->min < destination->min) {
        destination->min = source->min;
    }
    if (source->max > destination->max) {
        destination->max = source->max;
    }
    destination->sum_low += source->sum_low;
    destination->sum_high += source->sum_high + (destination->sum_low < source->sum_low ? 1u : 0u);
    return true;
}

uint64_t histogram_count(const histogram *histogram)
{
    return histogram->total_count;
}

uint64_t histogram_overflow_count(const histogram *histogram)
{
    return histogram->overflow_count;
}

uint64_t histogram_min(const histogram *histogram)
{
    return histogram->total_count == 0 ? 0u : histogram->min;
}

uint64_t histogram_max(const histogram *histogram)
{
    return histogram->max;
}

double histogram_mean(const histogram *histogram)
{
    if (histogram->total_count == 0) {
        return 0.0;
    }
    long double sum =
        ldexpl((long double)histogram->sum_high, 64) + (long double)histogram->sum_low;
    return (double)(sum / (long double)histogram->total_count);
}

uint64_t histogram_lowest_equivalent(const histogram *histogram, uint64_t value)
{
    uint64_t width = (uint64_t)1u << width_magnitude_of(histogram, value);
    return value & ~(width - 1u);
}

uint64_t histogram_highest_equivalent(const histogram *histogram, uint64_t value)
{
    uint64_t width = (uint64_t)1u << width_magnitude_of(histogram, value);
    return (value & ~(width - 1u)) + (width - 1u);
}

/* The rank (1..count) of the sample at percentile in a non-empty histogram. */
static uint64_t rank_at_percentile(const histogram *histogram, double percentile)
{
    long double rank = ceill((long double)percentile / 100.0L * histogram->total_count);
    if (rank < 1.0L) {
        return 1u;
    }
    if (rank >= (long double)histogram->total_count) {
        return histogram->total_count;
    }
    return (uint64_t)rank;
}

/* The reported value of the rank-th sample and how many samples share or
 * precede its bucket. */
static uint64_t value_at_rank(const histogram *histogram, uint64_t rank,
                              uint64_t *count_at_or_below)
{
    uint64_t cumulative = 0;
    for (size_t index = 0; index < histogram->counts_length; index++) {
        cumulative += histogram->counts[index];
        if (cumulative >= rank) {
            *count_at_or_below = cumulative;
            uint64_t value =
                histogram_highest_equivalent(histogram, value_at_index(histogram, index));
            return value < histogram->max ? value : histogram->max;
        }
    }
    assert(false && "rank beyond the total count");
    *count_at_or_below = cumulative;
    return histogram->max;
}

/* histogram_value_at_percentile that also gives the cumulative count. */
static uint64_t percentile_step(const histogram *histogram, double percentile,
                                uint64_t *count_at_or_below)
{
    if (histogram->total_count == 0) {
        *count_at_or_below = 0;
        return 0;
    }
    if (!(percentile < 100.0)) {
        *count_at_or_below = histogram->total_count;
        return histogram->max;
    }
    uint64_t rank = percentile > 0.0 ? rank_at_percentile(histogram, percentile) : 1u;
    uint64_t value = value_at_rank(histogram, rank, count_at_or_below);
    return percentile > 0.0 ? value : histogram->min;
}

uint64_t histogram_value_at_percentile(const histogram *histogram, double percentile)
{
    uint64_t count_at_or_below = 0;
    return percentile_step(histogram, percentile, &count_at_or_below);
}

void histogram_percentiles_begin(histogram_percentile_iterator *iterator,
                                 const histogram *histogram, unsigned ticks_per_half_distance)
{
    assert(ticks_per_half_distance >= 1u);
    *iterator = (histogram_percentile_iterator){
        .histogram = histogram,
        .ticks_per_half_distance = ticks_per_half_distance,
        .done = histogram->total_count == 0,
    };
}

bool histogram_percentiles_next(histogram_percentile_iterator *iterator)
{
    if (iterator->done) {
        return false;
    }
    const histogram *histogram = iterator->histogram;
    /* Level L spans [100 - 100 / 2^L, 100 - 100 / 2^(L+1)) in equal ticks. */
    double level_start = 100.0 - ldexp(100.0, -(int)iterator->level);
    double tick_width = ldexp(100.0, -(int)iterator->level - 1) / iterator->ticks_per_half_distance;
    double percentile = level_start + tick_width * iterator->tick;
    bool last = iterator->level >= HISTOGRAM_HALVINGS_MAX ||
                rank_at_percentile(histogram, percentile) >= histogram->total_count;
    iterator->percentile = last ? 100.0 : percentile;
    iterator->value =
        percentile_step(histogram, iterator->percentile, &iterator->count_at_or_below);
    iterator->done = last;
    iterator->tick++;
    if (iterator->tick == iterator->ticks_per_half_distance) {
        iterator->tick = 0;
        iterator->level++;
    }
    return true;
}
