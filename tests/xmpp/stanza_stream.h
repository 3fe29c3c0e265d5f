/*
 * stanza_stream.h: the routing tests' way to get a real view of a stanza:
 * a tokenizer is fed a stream header, then the stanza, whole, and the
 * view of the stanza is returned. Also re-parses bytes the code under test
 * wrote, so assertions read them with the same tokenizer a peer would.
 */
#ifndef STARLING_TESTS_XMPP_STANZA_STREAM_H
#define STARLING_TESTS_XMPP_STANZA_STREAM_H

#include <stdbool.h>
#include <string.h>

#include "proto/xml.h"

#define STANZA_STREAM_HEADER                                                                       \
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "        \
    "to='example.com' version='1.0'>"

typedef struct stanza_stream {
    xml_tokenizer tokenizer;
    xml_scratch *scratch;
    xml_view view;
} stanza_stream;

/* Opens a stream with header (NULL: STANZA_STREAM_HEADER). */
static inline bool stanza_stream_open(stanza_stream *s, const char *header)
{
    if (header == NULL)
        header = STANZA_STREAM_HEADER;
    s->scratch = xml_scratch_create();
    if (s->scratch == NULL)
        return false;
    xml_tokenizer_init(&s->tokenizer);
    size_t used = 0;
    xml_event e =
        xml_tokenizer_feed(&s->tokenizer, s->scratch, header, strlen(header), &used, &s->view);
    return e == XML_EVENT_STREAM_OPEN && used == strlen(header);
}

/* Feeds one whole stanza (borrowed while the view is used); true when it
 * is exactly one element and s->view holds it. */
static inline bool stanza_stream_feed(stanza_stream *s, const char *bytes, size_t length)
{
    size_t used = 0;
    xml_event e = xml_tokenizer_feed(&s->tokenizer, s->scratch, bytes, length, &used, &s->view);
    return e == XML_EVENT_STANZA && used == length;
}

static inline void stanza_stream_close(stanza_stream *s)
{
    xml_tokenizer_fini(&s->tokenizer);
    xml_scratch_destroy(s->scratch);
}

/* The value of the root's attribute qname, unescaped into buffer. */
static inline bool stanza_attribute(const xml_view *view, const char *qname, char *buffer,
                                    size_t capacity, xml_slice *value)
{
    xml_attribute a;
    return xml_element_attribute(view, xml_view_root(view), qname, strlen(qname), &a) &&
           xml_attribute_value(&a, buffer, capacity, value);
}

static inline bool slice_equals(xml_slice slice, const char *text)
{
    return slice.len == strlen(text) && memcmp(slice.ptr, text, slice.len) == 0;
}

#endif
