/*
 * xml_index.h: the index the tokenizer builds for one element, shared by
 * the tokenizer (which writes it) and the views (which read it). Private to
 * proto/.
 *
 * Offsets are relative to the element's first byte ('<'), so an index stays
 * valid when the element's bytes move from the caller's piece into the
 * assembly buffer. Entries are small and fixed-size so that an index of an
 * element in progress can be parked beside its bytes with one memcpy.
 */
#ifndef STARLING_PROTO_XML_INDEX_H
#define STARLING_PROTO_XML_INDEX_H

#include <stdint.h>

#include "proto/limits.h"
#include "proto/xml.h"

/* Where a node's resolved namespace name lives. */
enum xml_ns_source {
    XML_NS_NONE = 0, /* no namespace */
    XML_NS_ELEMENT,  /* ns_offset/ns_length index the element's bytes */
    XML_NS_HEADER,   /* they index the tokenizer's stream facts */
    XML_NS_XML,      /* the predefined xml prefix */
    XML_NS_DEFAULT,  /* unprefixed, bound by no check: resolved when asked */
};

enum xml_text_flag {
    XML_TEXT_NEEDS_UNESCAPE = 1u,
    XML_TEXT_CDATA = 2u,
};

struct xml_index_node {
    uint32_t start;         /* element: its '<'; text: its first byte */
    uint32_t end;           /* just after the element or the text */
    uint32_t start_tag_end; /* element: just after the start tag's '>' */
    uint32_t ns_offset, ns_length;
    uint16_t parent, first_child, next_sibling;
    uint16_t attribute_first;
    uint16_t name_length;   /* qualified name, starting at start + 1 */
    uint16_t prefix_length; /* 0 when unprefixed; the colon follows it */
    uint8_t attribute_count;
    uint8_t kind;       /* xml_node_kind */
    uint8_t ns_source;  /* enum xml_ns_source */
    uint8_t text_flags; /* enum xml_text_flag */
};

struct xml_index_attribute {
    uint32_t space_start; /* first whitespace byte before the name */
    uint32_t name_start;
    uint32_t value_start; /* just after the opening quote */
    uint32_t value_end;   /* the closing quote */
    uint16_t name_length;
    uint16_t prefix_length;
    uint8_t needs_unescape;
};

/* A namespace declaration in scope while its element is open. */
struct xml_index_declaration {
    uint32_t prefix_start; /* element offsets */
    uint32_t uri_start;
    uint32_t uri_length;
    uint16_t prefix_length; /* 0: the default namespace */
    uint8_t depth;          /* depth of the declaring element */
};

struct xml_scratch {
    struct xml_index_node nodes[LIMIT_STANZA_NODES_MAX];
    struct xml_index_attribute attributes[LIMIT_STANZA_ATTRIBUTES_MAX];
    struct xml_index_declaration declarations[LIMIT_NAMESPACE_DECLS_MAX];
};

/* The namespace name bound to the xml prefix (Namespaces in XML 1.0 3). */
#define XML_NS_XML_URI "http://www.w3.org/XML/1998/namespace"
/* RFC 6120 11.2.1: the stream namespace. */
#define XML_NS_STREAMS_URI "http://etherx.jabber.org/streams"

#endif
