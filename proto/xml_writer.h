/*
 * xml_writer.h: writing XML into a caller's buffer, and stamping a new
 * 'from' on a received element without copying its body.
 *
 * The writer never allocates and never writes past its buffer: each call
 * either appends all of its output or none of it and marks the writer as
 * overflowed, after which every call is a no-op. Check xml_writer_failed
 * once at the end.
 *
 * Escaping follows XML 1.0: text escapes & < > (the '>' guards "]]>");
 * attribute values also escape both quotes. Values are bytes: the caller
 * passes valid UTF-8 without forbidden control characters (a JID, a body
 * read from a view), the writer does not check them.
 */
#ifndef STARLING_PROTO_XML_WRITER_H
#define STARLING_PROTO_XML_WRITER_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/xml.h"

typedef struct xml_writer {
    char *buffer; /* borrowed from the caller for the writer's life */
    size_t capacity;
    size_t length; /* bytes written */
    bool overflow;
} xml_writer;

/* buffer is borrowed; the writer fills it from its start. */
void xml_writer_init(xml_writer *writer, char *buffer, size_t capacity);

/* true when some output did not fit (and was left out). */
bool xml_writer_failed(const xml_writer *writer);

/* The bytes written so far (borrowed from the writer's buffer). */
xml_slice xml_writer_output(const xml_writer *writer);

/* Appends bytes as they are (already XML). */
void xml_write_raw(xml_writer *writer, const char *bytes, size_t length);

/* Appends character data, escaping & < >. */
void xml_write_text(xml_writer *writer, const char *text, size_t length);

/* "<name" (the caller then adds attributes and closes the start tag). */
void xml_write_start_tag(xml_writer *writer, const char *name, size_t name_length);

/* " name='value'" with the value escaped (& < > " '). */
void xml_write_attribute(xml_writer *writer, const char *name, size_t name_length,
                         const char *value, size_t value_length);

/* ">" after a start tag's attributes, or "/>" for an empty element. */
void xml_write_start_tag_end(xml_writer *writer);
void xml_write_empty_tag_end(xml_writer *writer);

/* "</name>". */
void xml_write_end_tag(xml_writer *writer, const char *name, size_t name_length);

/* Most slices xml_stamp_from returns. */
#define XML_STAMP_SLICES_MAX 4u

/*
 * Stamps 'from' on the root element of view (a stanza) without copying it:
 * fills slices with, in order, the bytes up to the end of the root's name,
 * " from='...'" (escaped into attribute_buffer, borrowed), and the rest of
 * the element, leaving out the root's existing from attribute (with the
 * whitespace before it) if there is one. Returns the number of slices
 * (2 to XML_STAMP_SLICES_MAX; empty slices are left out), or 0 when the new
 * attribute does not fit attribute_buffer. Slices borrow from view's bytes
 * and attribute_buffer.
 */
size_t xml_stamp_from(const xml_view *view, const char *from, size_t from_length,
                      char *attribute_buffer, size_t capacity,
                      xml_slice slices[XML_STAMP_SLICES_MAX]);

#endif
