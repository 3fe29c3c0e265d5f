/*
 * bench_json.h: a tiny streaming JSON writer for bench reports. Reports are
 * nested objects of numbers and strings, and arrays of objects (a time
 * series), so that is all it writes: no parsing. Errors are sticky and
 * reported once, by json_finish.
 */
#ifndef STARLING_BENCH_JSON_H
#define STARLING_BENCH_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_DEPTH_MAX 8u

typedef struct json_writer {
    FILE *file; /* borrowed */
    unsigned depth;
    bool need_comma[JSON_DEPTH_MAX];
    bool in_array[JSON_DEPTH_MAX]; /* members at that depth have no keys */
    bool failed;                   /* a write failed or the nesting bound was passed */
} json_writer;

/* Starts the root object on file (borrowed for the writer's life). */
void json_start(json_writer *writer, FILE *file);
/* Closes the root object; false when any write failed. */
bool json_finish(json_writer *writer) __attribute__((warn_unused_result));

/* Writes the body of a report (everything after tool, version, scenario). */
typedef void json_report_body(json_writer *writer, const void *context);

/*
 * Writes a whole result file at path: {"tool": "starling-bench", "version",
 * "scenario", then body(writer, context)}. A failure to open, write or close
 * is reported as one line "COMMAND: ..." on stderr and returns false. All
 * arguments borrowed.
 */
bool json_write_report(const char *command, const char *path, const char *version,
                       const char *scenario, json_report_body *body, const void *context)
    __attribute__((warn_unused_result));

/* Members of the current object. Keys and strings are borrowed. */
void json_object_begin(json_writer *writer, const char *key);
void json_object_end(json_writer *writer);
/* An array of objects under key: its members are json_object_begin(writer,
 * NULL) ... json_object_end; json_array_end closes it. */
void json_array_begin(json_writer *writer, const char *key);
void json_array_end(json_writer *writer);
void json_unsigned(json_writer *writer, const char *key, uint64_t value);
void json_number(json_writer *writer, const char *key, double value);
void json_string(json_writer *writer, const char *key, const char *value);
void json_boolean(json_writer *writer, const char *key, bool value);
void json_null(json_writer *writer, const char *key);
/* value when available, else null. */
void json_optional_unsigned(json_writer *writer, const char *key, bool available, uint64_t value);
void json_optional_number(json_writer *writer, const char *key, bool available, double value);

#endif
