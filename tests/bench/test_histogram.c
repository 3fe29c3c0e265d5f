/*
 * test_histogram.c: unit tests of the bench latency histogram.
 *
 * Expected numbers are worked out by hand in the comments beside them, not
 * read back from the code under test. The harness is tests/harness.h.
 */
#include "bench/src/histogram.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tests/harness.h"

#define MICROSECONDS_PER_MINUTE 60000000u
#define MICROSECONDS_PER_HOUR   3600000000u

/* Creates a histogram or fails the test; callers still check for NULL. */
static histogram *create(uint64_t lowest, uint64_t highest, unsigned digits)
{
    histogram *created = histogram_create(lowest, highest, digits);
    CHECK(created != NULL);
    return created;
}

/* True when actual is at or above expected and within 10^-digits of it. */
static bool within_relative_error(uint64_t actual, uint64_t expected, unsigned digits)
{
    double error = (double)expected * pow(10.0, -(double)digits);
    return actual >= expected && (double)(actual - expected) <= error;
}

static void test_create_rejects_bad_configurations(void)
{
    CHECK(histogram_create(0, 1000, 3) == NULL);
    CHECK(histogram_create(1000, 1999, 3) == NULL);
    CHECK(histogram_create(1, 1000, 0) == NULL);
    CHECK(histogram_create(1, 1000, 6) == NULL);
    /* A unit of 2^50 leaves too few bits for 2^18 sub-buckets (5 digits). */
    CHECK(histogram_create((uint64_t)1 << 50, UINT64_MAX, 5) == NULL);
    histogram *widest = create(1, UINT64_MAX, 3);
    if (widest != NULL) {
        histogram_record(widest, UINT64_MAX);
        CHECK(histogram_max(widest) == UINT64_MAX);
        CHECK(histogram_value_at_percentile(widest, 50.0) == UINT64_MAX);
        histogram_destroy(widest);
    }
    histogram_destroy(NULL);
}

static void test_memory_for_one_minute_in_microseconds(void)
{
    histogram *latency = create(1, MICROSECONDS_PER_MINUTE, 3);
    if (latency == NULL) {
        return;
    }
    /* 2048 sub-buckets per power of two (the first power of two >= 2000);
     * 60,000,000 has 26 bits, so bucket 15 with sub-bucket 60e6 >> 15 =
     * 1831: counts index 16 * 1024 + (1831 - 1024) = 17191, 17192 counters. */
    size_t bytes = histogram_memory_bytes(latency);
    fprintf(stderr, "memory for 1 us..60 s at 3 digits: %zu bytes\n", bytes);
    CHECK(bytes >= 17192u * sizeof(uint64_t));
    CHECK(bytes < 17192u * sizeof(uint64_t) + 256u);
    CHECK(bytes < 200u * 1024u);
    histogram_destroy(latency);
}

static void test_empty(void)
{
    histogram *latency = create(1, MICROSECONDS_PER_MINUTE, 3);
    if (latency == NULL) {
        return;
    }
    CHECK(histogram_count(latency) == 0);
    CHECK(histogram_overflow_count(latency) == 0);
    CHECK(histogram_min(latency) == 0);
    CHECK(histogram_max(latency) == 0);
    CHECK(histogram_mean(latency) == 0.0);
    CHECK(histogram_value_at_percentile(latency, 0.0) == 0);
    CHECK(histogram_value_at_percentile(latency, 50.0) == 0);
    CHECK(histogram_value_at_percentile(latency, 100.0) == 0);
    histogram_percentile_iterator iterator;
    histogram_percentiles_begin(&iterator, latency, 5);
    CHECK(!histogram_percentiles_next(&iterator));
    histogram_destroy(latency);
}

static void test_single_value(void)
{
    histogram *latency = create(1, MICROSECONDS_PER_MINUTE, 3);
    if (latency == NULL) {
        return;
    }
    histogram_record(latency, 12345);
    CHECK(histogram_count(latency) == 1);
    CHECK(histogram_min(latency) == 12345);
    CHECK(histogram_max(latency) == 12345);
    CHECK(histogram_mean(latency) == 12345.0);
    /* 12345 >> 3 = 1543 lies in [1024, 2048), so its bucket is 8 wide:
     * 12344..12351. Percentiles report at most the max, hence 12345. */
    CHECK(histogram_highest_equivalent(latency, 12345) == 12351);
    CHECK(histogram_value_at_percentile(latency, 0.0) == 12345);
    CHECK(histogram_value_at_percentile(latency, 50.0) == 12345);
    CHECK(histogram_value_at_percentile(latency, 99.9) == 12345);
    CHECK(histogram_value_at_percentile(latency, 100.0) == 12345);
    histogram_destroy(latency);
}

/* Records 1..1,000,000 once each: the p-th percentile is exactly p * 10^4. */
static void check_uniform(unsigned digits)
{
    histogram *latency = create(1, 10u * 1000u * 1000u, digits);
    if (latency == NULL) {
        return;
    }
    for (uint64_t value = 1; value <= 1000000u; value++) {
        histogram_record(latency, value);
    }
    CHECK(histogram_count(latency) == 1000000u);
    CHECK(histogram_min(latency) == 1);
    CHECK(histogram_max(latency) == 1000000u);
    CHECK(histogram_mean(latency) == 500000.5);
    CHECK(within_relative_error(histogram_value_at_percentile(latency, 50.0), 500000u, digits));
    CHECK(within_relative_error(histogram_value_at_percentile(latency, 90.0), 900000u, digits));
    CHECK(within_relative_error(histogram_value_at_percentile(latency, 99.0), 990000u, digits));
    CHECK(within_relative_error(histogram_value_at_percentile(latency, 99.9), 999000u, digits));
    CHECK(histogram_value_at_percentile(latency, 100.0) == 1000000u);
    CHECK(histogram_value_at_percentile(latency, 0.0) == 1);
    histogram_destroy(latency);
}

static void test_uniform_three_digits(void)
{
    histogram *latency = create(1, MICROSECONDS_PER_HOUR, 3);
    if (latency == NULL) {
        return;
    }
    for (uint64_t value = 1; value <= 1000000u; value++) {
        histogram_record(latency, value);
    }
    uint64_t median = histogram_value_at_percentile(latency, 50.0);
    /* 500,000 has 19 bits, so its bucket is 2^(19 - 11) = 256 wide:
     * 500,000 >> 8 = 1953, 1953 * 256 = 499,968..500,223. p50 reads the top,
     * 500,223, which is 0.045% high. */
    CHECK(median == 500223u);
    CHECK(median >= 500000u && median <= 500500u);
    histogram_destroy(latency);
    for (unsigned digits = HISTOGRAM_DIGITS_MIN; digits <= HISTOGRAM_DIGITS_MAX; digits++) {
        check_uniform(digits);
    }
}

static void test_bucket_boundaries(void)
{
    histogram *latency = create(1, MICROSECONDS_PER_MINUTE, 3);
    if (latency == NULL) {
        return;
    }
    /* Below 2048 every value has its own counter; from 2048 to 4095 counters
     * are 2 wide, from 4096 to 8191 4 wide. */
    static const uint64_t cases[][3] = {
        {0, 0, 0},          {1, 1, 1},          {2047, 2047, 2047},
        {2048, 2048, 2049}, {2049, 2048, 2049}, {4095, 4094, 4095},
        {4096, 4096, 4099}, {8191, 8188, 8191}, {8192, 8192, 8199},
    };
    for (size_t index = 0; index < sizeof(cases) / sizeof(cases[0]); index++) {
        CHECK(histogram_lowest_equivalent(latency, cases[index][0]) == cases[index][1]);
        CHECK(histogram_highest_equivalent(latency, cases[index][0]) == cases[index][2]);
    }
    /* Buckets tile the line without gaps and stay within 10^-3 of a value. */
    for (uint64_t value = 1; value < ((uint64_t)1 << 21); value++) {
        uint64_t lowest = histogram_lowest_equivalent(latency, value);
        uint64_t highest = histogram_highest_equivalent(latency, value);
        if (lowest > value || highest < value || (highest - lowest) * 1000u > lowest ||
            histogram_lowest_equivalent(latency, highest + 1u) != highest + 1u) {
            CHECK(!"bucket tiling broken");
            fprintf(stderr, "at value %llu\n", (unsigned long long)value);
            break;
        }
    }
    histogram_record(latency, 2048);
    histogram_record(latency, 2050);
    /* Rank 1 is 2048, reported as its bucket's top, 2049. */
    CHECK(histogram_value_at_percentile(latency, 50.0) == 2049);
    CHECK(histogram_value_at_percentile(latency, 100.0) == 2050);
    histogram_destroy(latency);

    /* A lowest discernible value of 1000 gives a unit of 512. */
    histogram *coarse = create(1000, MICROSECONDS_PER_MINUTE, 3);
    if (coarse == NULL) {
        return;
    }
    CHECK(histogram_lowest_equivalent(coarse, 511) == 0);
    CHECK(histogram_highest_equivalent(coarse, 0) == 511);
    CHECK(histogram_lowest_equivalent(coarse, 1000) == 512);
    CHECK(histogram_highest_equivalent(coarse, 1000) == 1023);
    histogram_destroy(coarse);
}

static void test_clamping(void)
{
    histogram *latency = create(1, 1000000u, 3);
    if (latency == NULL) {
        return;
    }
    histogram_record(latency, 10);
    histogram_record(latency, 5000000u);
    histogram_record(latency, UINT64_MAX);
    histogram_record(latency, 1000000u);
    CHECK(histogram_count(latency) == 4);
    CHECK(histogram_overflow_count(latency) == 2);
    CHECK(histogram_min(latency) == 10);
    CHECK(histogram_max(latency) == 1000000u);
    CHECK(histogram_value_at_percentile(latency, 100.0) == 1000000u);
    CHECK(histogram_value_at_percentile(latency, 75.0) == 1000000u);
    /* (10 + 3 * 1,000,000) / 4 */
    CHECK(histogram_mean(latency) == 750002.5);
    /* A clamped corrected value back-fills from the clamp: 750,000,
     * 500,000 and 250,000 below 1,000,000 in steps of 250,000. */
    histogram_record_corrected(latency, 9000000u, 250000u);
    CHECK(histogram_count(latency) == 8);
    CHECK(histogram_overflow_count(latency) == 3);
    histogram_destroy(latency);
}

static void test_min_max_mean_exact(void)
{
    histogram *latency = create(1, MICROSECONDS_PER_HOUR, 3);
    if (latency == NULL) {
        return;
    }
    histogram_record(latency, 7);
    histogram_record(latency, 1000003u);
    histogram_record(latency, 123456789u);
    histogram_record(latency, 42);
    CHECK(histogram_min(latency) == 7);
    CHECK(histogram_max(latency) == 123456789u);
    /* (7 + 1,000,003 + 123,456,789 + 42) / 4 = 124,456,841 / 4 */
    CHECK(histogram_mean(latency) == 31114210.25);
    histogram_destroy(latency);

    /* Four UINT64_MAX samples overflow a 64-bit sum; the mean stays exact. */
    histogram *wide = create(1, UINT64_MAX, 3);
    if (wide == NULL) {
        return;
    }
    for (unsigned sample = 0; sample < 4; sample++) {
        histogram_record(wide, UINT64_MAX);
    }
    CHECK(histogram_mean(wide) == (double)UINT64_MAX);
    histogram_destroy(wide);
}

static uint64_t next_random(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

static void check_same_distribution(const histogram *left, const histogram *right)
{
    CHECK(histogram_count(left) == histogram_count(right));
    CHECK(histogram_overflow_count(left) == histogram_overflow_count(right));
    CHECK(histogram_min(left) == histogram_min(right));
    CHECK(histogram_max(left) == histogram_max(right));
    CHECK(histogram_mean(left) == histogram_mean(right));
    for (unsigned step = 0; step <= 1000u; step++) {
        double percentile = step / 10.0;
        CHECK(histogram_value_at_percentile(left, percentile) ==
              histogram_value_at_percentile(right, percentile));
    }
}

static void test_merge_equals_single_recording(void)
{
    histogram *first = create(1, MICROSECONDS_PER_MINUTE, 3);
    histogram *second = create(1, MICROSECONDS_PER_MINUTE, 3);
    histogram *combined = create(1, MICROSECONDS_PER_MINUTE, 3);
    histogram *other = create(1, MICROSECONDS_PER_HOUR, 3);
    if (first != NULL && second != NULL && combined != NULL && other != NULL) {
        uint64_t state = 0x9e3779b97f4a7c15u;
        for (unsigned sample = 0; sample < 100000u; sample++) {
            uint64_t value = next_random(&state) % (2u * MICROSECONDS_PER_MINUTE);
            histogram_record(sample % 3u == 0 ? first : second, value);
            histogram_record(combined, value);
        }
        CHECK(histogram_merge(first, second));
        check_same_distribution(first, combined);
        CHECK(histogram_overflow_count(first) > 0);
        /* Different configurations are refused and change nothing. */
        histogram_record(other, 5);
        CHECK(!histogram_merge(first, other));
        check_same_distribution(first, combined);
        /* Merging an empty histogram changes nothing either. */
        histogram_reset(second);
        CHECK(histogram_merge(first, second));
        check_same_distribution(first, combined);
    }
    histogram_destroy(first);
    histogram_destroy(second);
    histogram_destroy(combined);
    histogram_destroy(other);
}

static void test_coordinated_omission_correction(void)
{
    histogram *corrected = create(1, MICROSECONDS_PER_HOUR, 3);
    histogram *raw = create(1, MICROSECONDS_PER_HOUR, 3);
    if (corrected != NULL && raw != NULL) {
        for (unsigned sample = 0; sample < 10000u; sample++) {
            histogram_record_corrected(corrected, 1000, 10000);
            histogram_record(raw, 1000);
        }
        CHECK(histogram_count(corrected) == 10000u);
        histogram_record_corrected(corrected, 100000000u, 10000);
        histogram_record(raw, 100000000u);
        /* The stall back-fills 1e8 - k * 1e4 for k = 1..9,999 (down to
         * 10,000): 10,000 + 1 + 9,999 = 20,000 samples, the upper half a ramp
         * 10,000, 20,000, ..., 100,000,000. */
        CHECK(histogram_count(corrected) == 20000u);
        CHECK(histogram_count(raw) == 10001u);
        CHECK(histogram_max(corrected) == 100000000u);
        CHECK(histogram_min(corrected) == 1000u);
        /* Rank 10,000 is the last 1,000. */
        CHECK(histogram_value_at_percentile(corrected, 50.0) == 1000u);
        /* p75 is rank 15,000: ramp step 5,000, 50,000,000; 50e6 >> 15 = 1525
         * so its bucket is 49,971,200..50,003,967. */
        CHECK(histogram_value_at_percentile(corrected, 75.0) == 50003967u);
        /* p99 is rank 19,800: ramp step 9,800, 98,000,000; 98e6 >> 16 = 1495
         * so its bucket is 97,976,320..98,041,855 (within 0.05%). */
        CHECK(histogram_value_at_percentile(corrected, 99.0) == 98041855u);
        /* Uncorrected, rank ceil(0.99 * 10,001) = 9,901 is still 1,000. */
        CHECK(histogram_value_at_percentile(raw, 99.0) == 1000u);
        /* (10,000 * 1,000 + 10^4 * 10,000 * 10,001 / 2) / 20,000 */
        CHECK(histogram_mean(corrected) == 25003000.0);
        /* An interval of 0 records the value alone. */
        histogram_record_corrected(raw, 5000, 0);
        CHECK(histogram_count(raw) == 10002u);
    }
    histogram_destroy(corrected);
    histogram_destroy(raw);
}

static void test_reset(void)
{
    histogram *latency = create(1, 1000u, 2);
    if (latency == NULL) {
        return;
    }
    size_t bytes = histogram_memory_bytes(latency);
    histogram_record(latency, 5);
    histogram_record(latency, 50000);
    histogram_reset(latency);
    CHECK(histogram_count(latency) == 0);
    CHECK(histogram_overflow_count(latency) == 0);
    CHECK(histogram_min(latency) == 0);
    CHECK(histogram_max(latency) == 0);
    CHECK(histogram_mean(latency) == 0.0);
    CHECK(histogram_value_at_percentile(latency, 50.0) == 0);
    CHECK(histogram_memory_bytes(latency) == bytes);
    histogram_record(latency, 9);
    CHECK(histogram_count(latency) == 1);
    CHECK(histogram_min(latency) == 9);
    CHECK(histogram_max(latency) == 9);
    histogram_destroy(latency);
}

static void check_walk(const histogram *latency, unsigned ticks)
{
    histogram_percentile_iterator iterator;
    histogram_percentiles_begin(&iterator, latency, ticks);
    unsigned steps = 0;
    double percentile = -1.0;
    uint64_t value = 0;
    uint64_t count = 0;
    while (histogram_percentiles_next(&iterator)) {
        if (steps == 0) {
            CHECK(iterator.value == histogram_min(latency));
        }
        CHECK(iterator.percentile > percentile);
        CHECK(iterator.value >= value);
        CHECK(iterator.count_at_or_below >= count);
        CHECK(iterator.value <= histogram_max(latency));
        percentile = iterator.percentile;
        value = iterator.value;
        count = iterator.count_at_or_below;
        steps++;
        if (steps > 1000u) {
            CHECK(!"percentile walk does not end");
            return;
        }
    }
    CHECK(percentile == 100.0);
    CHECK(value == histogram_max(latency));
    CHECK(count == histogram_count(latency));
    CHECK(!histogram_percentiles_next(&iterator));
    fprintf(stderr, "%u ticks per half: %u steps\n", ticks, steps);
}

static void test_percentile_iterator(void)
{
    histogram *latency = create(1, MICROSECONDS_PER_MINUTE, 3);
    if (latency == NULL) {
        return;
    }
    uint64_t state = 0x2545f4914f6cdd1du;
    for (unsigned sample = 0; sample < 200000u; sample++) {
        histogram_record(latency, 100u + next_random(&state) % 1000000u);
    }
    check_walk(latency, 1);
    check_walk(latency, 5);
    /* The first ticks of 5 per half: 0, 10, 20, 30, 40, 50, 55, ... */
    histogram_percentile_iterator iterator;
    histogram_percentiles_begin(&iterator, latency, 5);
    static const double expected[] = {0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 55.0, 60.0};
    for (size_t index = 0; index < sizeof(expected) / sizeof(expected[0]); index++) {
        CHECK(histogram_percentiles_next(&iterator));
        CHECK(fabs(iterator.percentile - expected[index]) < 1e-9);
        CHECK(iterator.value == histogram_value_at_percentile(latency, expected[index]));
    }
    histogram_reset(latency);
    histogram_record(latency, 777);
    check_walk(latency, 5);
    histogram_destroy(latency);
}

int main(void)
{
    harness_run("create_rejects_bad_configurations", test_create_rejects_bad_configurations, NULL);
    harness_run("memory_for_one_minute_in_microseconds", test_memory_for_one_minute_in_microseconds,
                NULL);
    harness_run("empty", test_empty, NULL);
    harness_run("single_value", test_single_value, NULL);
    harness_run("uniform_three_digits", test_uniform_three_digits, NULL);
    harness_run("bucket_boundaries", test_bucket_boundaries, NULL);
    harness_run("clamping", test_clamping, NULL);
    harness_run("min_max_mean_exact", test_min_max_mean_exact, NULL);
    harness_run("merge_equals_single_recording", test_merge_equals_single_recording, NULL);
    harness_run("coordinated_omission_correction", test_coordinated_omission_correction, NULL);
    harness_run("reset", test_reset, NULL);
    harness_run("percentile_iterator", test_percentile_iterator, NULL);
    return harness_finish();
}
