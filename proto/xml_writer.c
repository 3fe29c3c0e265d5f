/*
 * xml_writer.c: escaping writer and the from-stamp.
 *
 * Each write first measures its whole output, then copies it or marks the
 * writer overflowed: a half-written attribute is worse than none, because
 * the caller would send broken XML if it forgot to check. Measuring costs a
 * second pass over short values only (names, JIDs, ids); bodies are
 * usually forwarded as received bytes, not rewritten.
 */
#include <assert.h>
#include <string.h>

#include "proto/xml_writer.h"

void xml_writer_init(xml_writer *w, char *buffer, size_t capacity)
{
    assert(buffer != NULL || capacity == 0);
    *w = (xml_writer){.buffer = buffer, .capacity = capacity};
}

bool xml_writer_failed(const xml_writer *w)
{
    return w->overflow;
}

xml_slice xml_writer_output(const xml_writer *w)
{
    return (xml_slice){w->buffer, w->length};
}

/* Reserves length bytes, or marks the writer overflowed. */
static char *reserve(xml_writer *w, size_t length)
{
    if (w->overflow || w->capacity - w->length < length) {
        w->overflow = true;
        return NULL;
    }
    char *at = w->buffer + w->length;
    w->length += length;
    return at;
}

void xml_write_raw(xml_writer *w, const char *bytes, size_t length)
{
    char *at = reserve(w, length);
    if (at != NULL && length > 0)
        memcpy(at, bytes, length);
}

static const char *escape_of(char c, bool attribute)
{
    switch (c) {
    case '&':
        return "&amp;";
    case '<':
        return "&lt;";
    case '>':
        return "&gt;";
    case '\'':
        return attribute ? "&apos;" : NULL;
    case '"':
        return attribute ? "&quot;" : NULL;
    default:
        return NULL;
    }
}

static void write_escaped(xml_writer *w, const char *text, size_t length, bool attribute)
{
    size_t escaped_length = 0;
    for (size_t i = 0; i < length; i++) {
        const char *escape = escape_of(text[i], attribute);
        escaped_length += escape ? strlen(escape) : 1;
    }
    char *at = reserve(w, escaped_length);
    if (at == NULL)
        return;
    for (size_t i = 0; i < length; i++) {
        const char *escape = escape_of(text[i], attribute);
        if (escape == NULL) {
            *at++ = text[i];
        } else {
            size_t n = strlen(escape);
            memcpy(at, escape, n);
            at += n;
        }
    }
    assert(at == w->buffer + w->length);
}

void xml_write_text(xml_writer *w, const char *text, size_t length)
{
    write_escaped(w, text, length, false);
}

void xml_write_start_tag(xml_writer *w, const char *name, size_t name_length)
{
    char *at = reserve(w, 1 + name_length);
    if (at == NULL)
        return;
    at[0] = '<';
    memcpy(at + 1, name, name_length);
}

void xml_write_attribute(xml_writer *w, const char *name, size_t name_length, const char *value,
                         size_t value_length)
{
    size_t before = w->length;
    char *at = reserve(w, name_length + 3);
    if (at != NULL) {
        at[0] = ' ';
        memcpy(at + 1, name, name_length);
        memcpy(at + 1 + name_length, "='", 2);
    }
    write_escaped(w, value, value_length, true);
    xml_write_raw(w, "'", 1);
    if (w->overflow)
        w->length = before; /* all or nothing */
}

void xml_write_start_tag_end(xml_writer *w)
{
    xml_write_raw(w, ">", 1);
}

void xml_write_empty_tag_end(xml_writer *w)
{
    xml_write_raw(w, "/>", 2);
}

void xml_write_end_tag(xml_writer *w, const char *name, size_t name_length)
{
    char *at = reserve(w, name_length + 3);
    if (at == NULL)
        return;
    memcpy(at, "</", 2);
    memcpy(at + 2, name, name_length);
    at[2 + name_length] = '>';
}

size_t xml_stamp_from(const xml_view *view, const char *from, size_t from_length,
                      char *attribute_buffer, size_t capacity,
                      xml_slice slices[XML_STAMP_SLICES_MAX])
{
    xml_node_id root = xml_view_root(view);
    assert(root != XML_NODE_NONE);
    xml_writer w;
    xml_writer_init(&w, attribute_buffer, capacity);
    xml_write_attribute(&w, "from", 4, from, from_length);
    if (xml_writer_failed(&w))
        return 0;
    uint32_t name_end = xml_element_name_end(view, root);
    uint32_t resume = name_end, skip_end = name_end;
    xml_attribute old;
    if (xml_element_attribute(view, root, "from", 4, &old)) {
        resume = old.whitespace_offset;
        skip_end = old.end_offset;
    }
    size_t count = 0;
    slices[count++] = (xml_slice){view->bytes, name_end};
    slices[count++] = xml_writer_output(&w);
    if (resume > name_end)
        slices[count++] = (xml_slice){view->bytes + name_end, resume - name_end};
    if (view->length > skip_end)
        slices[count++] = (xml_slice){view->bytes + skip_end, view->length - skip_end};
    assert(count <= XML_STAMP_SLICES_MAX);
    return count;
}
