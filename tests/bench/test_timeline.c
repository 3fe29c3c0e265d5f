/*
 * test_timeline.c: unit tests of the bench's per-second timeline
 * (bench/src/bench_timeline.h) and of the JSON array it is written as.
 *
 * Latencies below 2048 us are recorded exactly by a 3-digit histogram (one
 * bucket per microsecond up there), so the expected percentiles are worked
 * out by hand: 1..100 has p50 50, p90 90, p99 99, max 100. The threaded
 * test proves the hand-over loses and duplicates nothing while a reactor
 * thread records and rotates at full speed; run it under the sanitizers
 * (the Debug build) to check the memory ordering too.
 */
#include "bench/src/bench_json.h"
#include "bench/src/bench_timeline.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"

#define THREADED_RECORDS      200000u /* a reactor's worth of events, bounded */
#define THREADED_ROTATE_EVERY 997u
#define THREADED_CLOSES_MAX   20000u /* the main loop's bound */

static void record_range(timeline_meter *meter, uint64_t first, uint64_t last)
{
    for (uint64_t value = first; value <= last; value++)
        timeline_meter_latency(meter, value);
}

/* Closes a second of the one meter at now_us. */
static void close_one(timeline *series, const timeline_meter *meter, uint64_t online,
                      uint64_t now_us)
{
    uint64_t totals[TIMELINE_COUNTERS] = {0};
    timeline_meter_add_counts(meter, totals);
    timeline_close(series, totals, online, now_us);
}

static void test_one_second(void)
{
    timeline_meter meter;
    CHECK(timeline_meter_init(&meter));
    timeline *series = timeline_create(1000000u, 10);
    CHECK(series != NULL);
    if (series == NULL) {
        timeline_meter_fini(&meter);
        return;
    }
    timeline_meter_count(&meter, TIMELINE_LOGINS, 7);
    timeline_meter_count(&meter, TIMELINE_DELIVERED, 500);
    record_range(&meter, 1, 100);
    CHECK(!timeline_collect(series, &meter)); /* nothing handed over yet */
    timeline_meter_rotate(&meter);
    CHECK(timeline_collect(series, &meter));
    close_one(series, &meter, 42, 3000000u); /* two seconds after the start */
    CHECK(timeline_length(series) == 1);
    const timeline_sample *sample = timeline_at(series, 0);
    CHECK(sample != NULL && timeline_at(series, 1) == NULL);
    if (sample != NULL) {
        CHECK(sample->end_us == 2000000u && sample->interval_us == 2000000u);
        CHECK(sample->online == 42);
        CHECK(sample->counts[TIMELINE_LOGINS] == 7 && sample->counts[TIMELINE_FAILURES] == 0);
        CHECK(sample->counts[TIMELINE_DELIVERED] == 500);
        /* 500 in two seconds. */
        CHECK(timeline_rate(sample, TIMELINE_DELIVERED) == 250.0);
        CHECK(sample->latency_count == 100);
        CHECK(sample->latency_us_p50 == 50 && sample->latency_us_p90 == 90);
        CHECK(sample->latency_us_p99 == 99 && sample->latency_us_max == 100);
    }
    /* The next second counts only what came after. */
    timeline_meter_count(&meter, TIMELINE_DELIVERED, 3);
    close_one(series, &meter, 40, 4000000u);
    sample = timeline_at(series, 1);
    CHECK(sample != NULL);
    if (sample != NULL) {
        CHECK(sample->counts[TIMELINE_DELIVERED] == 3 && sample->counts[TIMELINE_LOGINS] == 0);
        CHECK(sample->latency_count == 0);
        CHECK(sample->interval_us == 1000000u);
    }
    CHECK(timeline_total(series, TIMELINE_DELIVERED) == 503);
    CHECK(!timeline_truncated(series));
    timeline_destroy(series);
    timeline_meter_fini(&meter);
}

/* A reactor asked to rotate twice before the main thread took the first
 * histogram keeps recording; nothing is lost, it arrives a second later. */
static void test_rotation_without_collect(void)
{
    timeline_meter meter;
    CHECK(timeline_meter_init(&meter));
    timeline *series = timeline_create(0, 10);
    CHECK(series != NULL);
    if (series == NULL) {
        timeline_meter_fini(&meter);
        return;
    }
    record_range(&meter, 1, 10);
    timeline_meter_rotate(&meter); /* hands 1..10 over */
    record_range(&meter, 11, 30);
    timeline_meter_rotate(&meter); /* the spare is still out: keeps 11..30 */
    CHECK(timeline_collect(series, &meter));
    CHECK(!timeline_collect(series, &meter));
    close_one(series, &meter, 0, 1000000u);
    timeline_meter_rotate(&meter); /* now hands 11..30 over */
    CHECK(timeline_collect(series, &meter));
    close_one(series, &meter, 0, 2000000u);
    record_range(&meter, 31, 35);
    timeline_collect_final(series, &meter); /* the reactor is gone: active too */
    close_one(series, &meter, 0, 2500000u);
    CHECK(timeline_length(series) == 3);
    if (timeline_length(series) == 3) {
        CHECK(timeline_at(series, 0)->latency_count == 10);
        CHECK(timeline_at(series, 0)->latency_us_max == 10);
        CHECK(timeline_at(series, 1)->latency_count == 20);
        CHECK(timeline_at(series, 1)->latency_us_p50 == 20); /* 10th of 11..30 */
        CHECK(timeline_at(series, 2)->latency_count == 5);
        CHECK(timeline_at(series, 2)->latency_us_max == 35);
    }
    timeline_destroy(series);
    timeline_meter_fini(&meter);
}

static void test_truncation(void)
{
    timeline_meter meter;
    CHECK(timeline_meter_init(&meter));
    CHECK(timeline_create(0, 0) == NULL);
    timeline *series = timeline_create(0, 3);
    CHECK(series != NULL);
    if (series == NULL) {
        timeline_meter_fini(&meter);
        return;
    }
    for (uint64_t second = 1; second <= 5; second++) {
        timeline_meter_count(&meter, TIMELINE_SENT, second);
        close_one(series, &meter, second, second * 1000000u);
    }
    CHECK(timeline_length(series) == 3);
    CHECK(timeline_truncated(series));
    CHECK(timeline_at(series, 2)->counts[TIMELINE_SENT] == 3);
    /* 1 + 2 + 3 + 4 + 5: the totals go on past the bound. */
    CHECK(timeline_total(series, TIMELINE_SENT) == 15);
    /* The progress line shows the last second, not the last kept. */
    char line[TIMELINE_LINE_BYTES];
    timeline_progress_line(series, 9, line, sizeof line);
    CHECK(strstr(line, "5 s  online 5/9  ") != NULL);
    timeline_destroy(series);
    timeline_meter_fini(&meter);
}

static void test_progress_line(void)
{
    timeline_meter meter;
    CHECK(timeline_meter_init(&meter));
    timeline *series = timeline_create(0, 10);
    CHECK(series != NULL);
    if (series == NULL) {
        timeline_meter_fini(&meter);
        return;
    }
    char line[TIMELINE_LINE_BYTES];
    timeline_progress_line(series, 100, line, sizeof line);
    CHECK(line[0] == '\0'); /* no second closed yet */
    timeline_meter_count(&meter, TIMELINE_LOGINS, 30);
    timeline_meter_count(&meter, TIMELINE_DELIVERED, 1200);
    timeline_meter_latency(&meter, 1500); /* 1.5 ms */
    timeline_meter_rotate(&meter);
    CHECK(timeline_collect(series, &meter));
    close_one(series, &meter, 30, 1000000u);
    timeline_progress_line(series, 100, line, sizeof line);
    CHECK(strstr(line, "1 s  online 30/100  logins/s 30  msgs/s 1200  p99 1.50 ms  cpu ") != NULL);
    CHECK(strchr(line, '%') != NULL); /* this process's CPU can be read */
    close_one(series, &meter, 30, 2000000u);
    timeline_progress_line(series, 100, line, sizeof line);
    CHECK(strstr(line, "msgs/s 0  p99 -  cpu ") != NULL);
    timeline_cpu cpu;
    timeline_cpu_report(series, &cpu);
    CHECK(cpu.available && cpu.elapsed_us == 2000000u);
    CHECK(cpu.active_us == 1000000u); /* the second second counted nothing */
    timeline_destroy(series);
    timeline_meter_fini(&meter);
}

/* The reactor of the threaded test: counts and records THREADED_RECORDS
 * events, rotating every THREADED_ROTATE_EVERY. */
static void *reactor_thread(void *argument)
{
    timeline_meter *meter = argument;
    for (uint64_t i = 1; i <= THREADED_RECORDS; i++) {
        timeline_meter_count(meter, TIMELINE_DELIVERED, 1);
        timeline_meter_latency(meter, i % 1000u + 1u);
        if (i % THREADED_ROTATE_EVERY == 0)
            timeline_meter_rotate(meter);
    }
    return NULL;
}

static void test_threaded_hand_over(void)
{
    timeline_meter meter;
    CHECK(timeline_meter_init(&meter));
    timeline *series = timeline_create(0, THREADED_CLOSES_MAX + 1);
    pthread_t reactor;
    bool started = series != NULL && pthread_create(&reactor, NULL, reactor_thread, &meter) == 0;
    CHECK(started);
    if (!started) {
        timeline_destroy(series);
        timeline_meter_fini(&meter);
        return;
    }
    /* The main thread takes and closes while the reactor runs; closes use
     * made-up times, the series does not care. */
    uint64_t closes = 0;
    while (closes < THREADED_CLOSES_MAX &&
           atomic_load_explicit(&meter.counts[TIMELINE_DELIVERED], memory_order_relaxed) <
               THREADED_RECORDS) {
        (void)timeline_collect(series, &meter);
        closes++;
        close_one(series, &meter, 0, closes * 1000u);
    }
    CHECK(pthread_join(reactor, NULL) == 0);
    timeline_collect_final(series, &meter);
    close_one(series, &meter, 0, (closes + 1) * 1000u);
    uint64_t delivered = 0, latencies = 0;
    for (size_t i = 0; i < timeline_length(series); i++) {
        delivered += timeline_at(series, i)->counts[TIMELINE_DELIVERED];
        latencies += timeline_at(series, i)->latency_count;
    }
    CHECK(delivered == THREADED_RECORDS);
    CHECK(latencies == THREADED_RECORDS);
    CHECK(!timeline_truncated(series));
    timeline_destroy(series);
    timeline_meter_fini(&meter);
}

/* The JSON writer's array of objects, as the timeline is written. */
static void test_json_array(void)
{
    char *text = NULL;
    size_t bytes = 0;
    FILE *file = open_memstream(&text, &bytes);
    CHECK(file != NULL);
    if (file == NULL)
        return;
    json_writer writer;
    json_start(&writer, file);
    json_array_begin(&writer, "timeline");
    for (unsigned second = 1; second <= 2; second++) {
        json_object_begin(&writer, NULL);
        json_unsigned(&writer, "second", second);
        json_object_end(&writer);
    }
    json_array_end(&writer);
    json_array_begin(&writer, "empty");
    json_array_end(&writer);
    CHECK(json_finish(&writer));
    CHECK(fclose(file) == 0);
    const char *expected = "{\n  \"timeline\": [\n    {\n      \"second\": 1\n    },\n"
                           "    {\n      \"second\": 2\n    }\n  ],\n  \"empty\": [\n  ]\n}\n";
    CHECK(text != NULL && strcmp(text, expected) == 0);
    /* An object closed as an array is a writer error. */
    file = fopen("/dev/null", "w");
    if (file != NULL) {
        json_start(&writer, file);
        json_object_begin(&writer, "object");
        json_array_end(&writer);
        CHECK(!json_finish(&writer));
        fclose(file);
    }
    free(text);
}

int main(void)
{
    harness_run("one_second", test_one_second, NULL);
    harness_run("rotation_without_collect", test_rotation_without_collect, NULL);
    harness_run("truncation", test_truncation, NULL);
    harness_run("progress_line", test_progress_line, NULL);
    harness_run("threaded_hand_over", test_threaded_hand_over, NULL);
    harness_run("json_array", test_json_array, NULL);
    return harness_finish();
}
