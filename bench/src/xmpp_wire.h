/*
 * xmpp_wire.h: what starling-bench's XMPP client engine (xmpp_session.c,
 * its scenarios) and its sink server (bench_sink.c) both read off the wire:
 * the namespaces they share, element names, the SASL payload of an
 * element's text (RFC 6120 6.4.2: base64, "=" for an empty message), and
 * the whole numbers a scenario writes into a child element's text.
 */
#ifndef STARLING_BENCH_XMPP_WIRE_H
#define STARLING_BENCH_XMPP_WIRE_H

#include "proto/xml.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STREAM_NAMESPACE "http://etherx.jabber.org/streams"
#define SASL_NAMESPACE   "urn:ietf:params:xml:ns:xmpp-sasl"
#define BIND_NAMESPACE   "urn:ietf:params:xml:ns:xmpp-bind"

/* The text of one SASL element we read: a SASL message of 1024 bytes is
 * 1368 in base64, with room for white space around it. */
#define XMPP_WIRE_TEXT_BYTES_MAX 2048u
/* The longest child text xmpp_child_numbers reads (a few numbers). */
#define XMPP_WIRE_NUMBERS_BYTES_MAX 128u

/* Whether slice holds exactly text. */
bool xmpp_slice_is(xml_slice slice, const char *text);
/* Whether element is named name in namespace ns. */
bool xmpp_named(const xml_view *view, xml_node_id element, const char *name, const char *ns);
/* The first child element of element, or XML_NODE_NONE. */
xml_node_id xmpp_first_child_element(const xml_view *view, xml_node_id element);

/* Decodes the base64 text of the view's root into out (capacity bytes);
 * false on nonsense or too long. "=" and empty text are an empty message.
 * *out_bytes is 0 unless a message was decoded. */
bool xmpp_sasl_decode(const xml_view *view, char *out, size_t capacity, size_t *out_bytes);

/* Reads count whole numbers separated by white space from the text of the
 * root's first child named child (any namespace) into numbers; false when
 * it is missing, its text is text_bytes_max bytes or longer (at most
 * XMPP_WIRE_NUMBERS_BYTES_MAX), or it holds anything else. */
bool xmpp_child_numbers(const xml_view *view, const char *child, size_t text_bytes_max,
                        uint64_t *numbers, unsigned count);

#endif
