/*
 * bench_json.c: the report writer behind --json. Output is indented two
 * spaces per level so a report reads well in a diff and parses anywhere.
 */
#include "bench/src/bench_json.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

static void write_text(json_writer *writer, const char *text)
{
    if (fputs(text, writer->file) == EOF)
        writer->failed = true;
}

static void write_indent(json_writer *writer)
{
    for (unsigned level = 0; level < writer->depth; level++)
        write_text(writer, "  ");
}

static void write_quoted(json_writer *writer, const char *text)
{
    write_text(writer, "\"");
    for (const unsigned char *at = (const unsigned char *)text; *at != '\0'; at++) {
        int written;
        if (*at == '"' || *at == '\\')
            written = fprintf(writer->file, "\\%c", *at);
        else if (*at < 0x20)
            written = fprintf(writer->file, "\\u%04x", *at);
        else
            written = fputc(*at, writer->file) == EOF ? -1 : 1;
        if (written < 0)
            writer->failed = true;
    }
    write_text(writer, "\"");
}

/* Writes the separator, indentation and "key": of a new member. */
static void write_key(json_writer *writer, const char *key)
{
    if (writer->depth == 0 || writer->depth > JSON_DEPTH_MAX) {
        writer->failed = true;
        return;
    }
    write_text(writer, writer->need_comma[writer->depth - 1] ? ",\n" : "\n");
    writer->need_comma[writer->depth - 1] = true;
    write_indent(writer);
    if (writer->in_array[writer->depth - 1])
        return; /* an array's member has no key */
    write_quoted(writer, key);
    write_text(writer, ": ");
}

void json_start(json_writer *writer, FILE *file)
{
    writer->file = file;
    writer->depth = 1;
    writer->need_comma[0] = false;
    writer->in_array[0] = false;
    writer->failed = false;
    write_text(writer, "{");
}

bool json_finish(json_writer *writer)
{
    if (writer->depth != 1)
        writer->failed = true;
    writer->depth = 0;
    write_text(writer, "\n}\n");
    return !writer->failed;
}

void json_object_begin(json_writer *writer, const char *key)
{
    write_key(writer, key);
    write_text(writer, "{");
    if (writer->depth >= JSON_DEPTH_MAX) {
        writer->failed = true;
        return;
    }
    writer->need_comma[writer->depth] = false;
    writer->in_array[writer->depth] = false;
    writer->depth++;
}

/* Closes the innermost object or array with closer, which must match. */
static void close_level(json_writer *writer, bool array, const char *closer)
{
    if (writer->depth <= 1 || writer->in_array[writer->depth - 1] != array) {
        writer->failed = true;
        return;
    }
    writer->depth--;
    write_text(writer, "\n");
    write_indent(writer);
    write_text(writer, closer);
}

void json_object_end(json_writer *writer)
{
    close_level(writer, false, "}");
}

void json_array_begin(json_writer *writer, const char *key)
{
    write_key(writer, key);
    write_text(writer, "[");
    if (writer->depth >= JSON_DEPTH_MAX) {
        writer->failed = true;
        return;
    }
    writer->need_comma[writer->depth] = false;
    writer->in_array[writer->depth] = true;
    writer->depth++;
}

void json_array_end(json_writer *writer)
{
    close_level(writer, true, "]");
}

void json_unsigned(json_writer *writer, const char *key, uint64_t value)
{
    write_key(writer, key);
    if (fprintf(writer->file, "%" PRIu64, value) < 0)
        writer->failed = true;
}

void json_number(json_writer *writer, const char *key, double value)
{
    if (!isfinite(value)) {
        json_null(writer, key);
        return;
    }
    write_key(writer, key);
    if (fprintf(writer->file, "%.3f", value) < 0)
        writer->failed = true;
}

void json_string(json_writer *writer, const char *key, const char *value)
{
    write_key(writer, key);
    write_quoted(writer, value);
}

void json_boolean(json_writer *writer, const char *key, bool value)
{
    write_key(writer, key);
    write_text(writer, value ? "true" : "false");
}

void json_null(json_writer *writer, const char *key)
{
    write_key(writer, key);
    write_text(writer, "null");
}

void json_optional_unsigned(json_writer *writer, const char *key, bool available, uint64_t value)
{
    if (available)
        json_unsigned(writer, key, value);
    else
        json_null(writer, key);
}

void json_optional_number(json_writer *writer, const char *key, bool available, double value)
{
    if (available)
        json_number(writer, key, value);
    else
        json_null(writer, key);
}

bool json_write_report(const char *command, const char *path, const char *version,
                       const char *scenario, json_report_body *body, const void *context)
{
    FILE *file = fopen(path, "we");
    if (file == NULL) {
        fprintf(stderr, "%s: cannot write %s: %s\n", command, path, strerror(errno));
        return false;
    }
    json_writer writer;
    json_start(&writer, file);
    json_string(&writer, "tool", "starling-bench");
    json_string(&writer, "version", version);
    json_string(&writer, "scenario", scenario);
    body(&writer, context);
    bool written = json_finish(&writer);
    if (fclose(file) != 0)
        written = false;
    if (!written)
        fprintf(stderr, "%s: writing %s failed\n", command, path);
    return written;
}
