/*
 * xml.h: the incremental, zero-copy tokenizer for XMPP's restricted XML
 * (RFC 6120 section 11) and the stanza views it yields.
 *
 * An XMPP stream is one long XML document: a stream header
 * (<stream:stream ...>), then top-level elements (stanzas and nonzas), then
 * </stream:stream>. The caller feeds the bytes as they arrive, in pieces of
 * any size; the tokenizer keeps its place between feeds and never rescans a
 * byte. Each feed call yields at most one event:
 *
 *   XML_EVENT_STREAM_OPEN   the header, as a view of one element (attributes
 *                           to, from, version, id, xml:lang, ...)
 *   XML_EVENT_STANZA        one complete top-level element, as a view
 *   XML_EVENT_STREAM_CLOSE  </stream:stream>
 *   XML_EVENT_NEED_MORE     every byte was consumed; feed the next piece
 *   XML_EVENT_ERROR         a stream error; xml_tokenizer_error() names it
 *
 * A caller loops until the piece is consumed:
 *
 *   size_t at = 0;
 *   while (at < length) {
 *       size_t used;
 *       xml_event e = xml_tokenizer_feed(&t, scratch, data + at, length - at, &used, &view);
 *       at += used;
 *       ... handle e (a view is valid until the next feed or reset) ...
 *   }
 *
 * Memory: a view's bytes lie in the caller's piece when the element lies
 * wholly in it (zero copy). Only an element that spans two pieces is copied,
 * into the tokenizer's assembly buffer, which is freed by the next feed
 * call. The index of an element (nodes and attributes) is built in an
 * xml_scratch that one thread shares between all its tokenizers; the index
 * of an element still in progress at the end of a feed is parked in the
 * assembly buffer beside its bytes. An idle tokenizer (between stanzas)
 * therefore owns no heap memory, only sizeof(xml_tokenizer) (304 bytes on
 * x86-64, including the copied stream header facts).
 *
 * Profile (RFC 6120 section 11.1 and XML 1.0 / Namespaces in XML 1.0):
 * comments, processing instructions, DTDs and entity references other than
 * the five predefined ones are restricted-xml; the XML declaration is
 * accepted only as the stream's first bytes. CDATA sections are not among
 * RFC 6120's restrictions and are accepted inside stanzas. Well-formedness
 * is checked as it goes: tags, attributes (duplicates by qualified name),
 * references, UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF) and XML characters (no C0 controls but tab, LF and CR; no
 * U+FFFE/U+FFFF). Names are checked for ASCII; a non-ASCII name character
 * is accepted if it is valid UTF-8 (XML's NameChar ranges are not checked).
 * Non-whitespace text between stanzas is bad-format. Values are returned as
 * written: attribute-value whitespace normalisation is not applied.
 */
#ifndef STARLING_PROTO_XML_H
#define STARLING_PROTO_XML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/limits.h"

/* RFC 6120 section 4.9.3 stream error conditions the tokenizer reports. */
typedef enum xml_error_condition {
    XML_ERR_NONE = 0,
    XML_ERR_BAD_FORMAT,          /* non-whitespace text between stanzas, empty header */
    XML_ERR_INVALID_NAMESPACE,   /* undeclared prefix, wrong stream namespace or name */
    XML_ERR_NOT_WELL_FORMED,     /* XML 1.0 / Namespaces well-formedness, UTF-8, chars */
    XML_ERR_POLICY_VIOLATION,    /* a bound of proto/limits.h was exceeded */
    XML_ERR_RESOURCE_CONSTRAINT, /* the assembly buffer could not be allocated */
    XML_ERR_RESTRICTED_XML,      /* DTD, entity declaration or reference, comment, PI */
} xml_error_condition;

/* The RFC 6120 element name of a condition ("restricted-xml", ...); a
 * static string. XML_ERR_NONE gives "". */
const char *xml_error_condition_name(xml_error_condition condition);

typedef enum xml_event {
    XML_EVENT_NEED_MORE = 0,
    XML_EVENT_STREAM_OPEN,
    XML_EVENT_STANZA,
    XML_EVENT_STREAM_CLOSE,
    XML_EVENT_ERROR,
} xml_event;

/* A run of bytes. Borrowed: it points into a view's bytes, the tokenizer's
 * stream facts, a static string or a caller's buffer, as each function says. */
typedef struct xml_slice {
    const char *ptr;
    size_t len;
} xml_slice;

/* The index of a node (element or text) in a view; 0 is the root element. */
typedef uint16_t xml_node_id;
#define XML_NODE_NONE ((xml_node_id)0xFFFFu)

typedef enum xml_node_kind {
    XML_NODE_ELEMENT = 1,
    XML_NODE_TEXT = 2, /* character data or a CDATA section's content */
} xml_node_kind;

/* The per-thread index workspace (about 220 KiB). Opaque. */
typedef struct xml_scratch xml_scratch;

/* Facts copied from the stream header, kept while the stream is open:
 * the default namespace and the prefix declarations stanzas may lean on.
 * Private to the tokenizer; read them through xml_stream_* below. */
struct xml_stream_facts {
    char strings[LIMIT_STREAM_HEADER_NAMESPACE_BYTES_MAX];
    uint8_t strings_used;
    uint8_t default_offset, default_length;
    uint8_t element_prefix_offset, element_prefix_length; /* "stream" of stream:stream */
    uint8_t prefix_count;
    struct {
        uint8_t prefix_offset, prefix_length, uri_offset, uri_length;
    } prefixes[LIMIT_STREAM_HEADER_PREFIXES_MAX];
};

/*
 * One stream's tokenizer. Embed it in a connection (it is small: see
 * sizeof) and treat every field as private. Owns its assembly buffer.
 */
typedef struct xml_tokenizer {
    char *assembly;             /* owned; NULL unless an element spans feeds */
    uint64_t attribute_names;   /* Bloom filter of the start tag's attribute names */
    uint32_t assembly_bytes;    /* bytes of the element in progress held there */
    uint32_t assembly_capacity; /* bytes allocated */
    uint32_t element_limit;     /* bytes the element in progress may take */
    uint32_t tag_start;         /* element offset of the last '<' */
    uint32_t token_start;       /* element offset of the text or name in progress */
    uint32_t space_start;       /* element offset where the whitespace in a tag began */
    uint32_t reference_value;   /* character reference value being accumulated */
    uint32_t declaration_bytes; /* bytes of the XML declaration seen */
    uint16_t node_count, attribute_count, declaration_count, element_count;
    uint16_t current;             /* open element being filled */
    uint16_t previous;            /* its last child so far, or XML_NODE_NONE */
    uint16_t default_declaration; /* 1 + the index of the start tag's xmlns attribute, or 0 */
    uint8_t phase, state, return_state, condition;
    uint8_t depth, quote, match, brackets;
    uint8_t reference_kind, reference_length, text_flags, header_prefixes_used;
    uint8_t in_element, release_pending, at_stream_start, utf8_pending_length;
    uint8_t name_classes;    /* character classes seen in the name in progress */
    uint8_t attribute_check; /* the start tag's attributes need the full check */
    char reference_name[4];
    unsigned char utf8_pending[3];
    struct xml_stream_facts facts;
} xml_tokenizer;

/*
 * A view of one element yielded by a feed: its bytes and its index.
 * Valid until the next xml_tokenizer_feed or xml_tokenizer_reset on the same
 * tokenizer, or the next feed with the same scratch, or until the caller's
 * piece is reused, whichever comes first. All pointers borrowed.
 */
typedef struct xml_view {
    const char *bytes; /* the whole element, '<' to '>' */
    uint32_t length;
    uint16_t node_count;          /* 0 for XML_EVENT_STREAM_CLOSE */
    uint8_t header_prefixes_used; /* bit i: stream header prefix i is used */
    const xml_scratch *scratch;
    const xml_tokenizer *tokenizer;
} xml_view;

/* ------------------------------------------------------------ tokenizer */

/* Allocates a scratch index (one per thread). Owned by the caller; free
 * with xml_scratch_destroy. NULL when out of memory. */
xml_scratch *xml_scratch_create(void) __attribute__((warn_unused_result));
void xml_scratch_destroy(xml_scratch *scratch);

/* Prepares a tokenizer to read a new stream (expects an optional XML
 * declaration, then the header). */
void xml_tokenizer_init(xml_tokenizer *tokenizer);

/* Stream restart (after STARTTLS or SASL): forgets the stream, frees the
 * assembly buffer, expects a new header. Views from before become invalid. */
void xml_tokenizer_reset(xml_tokenizer *tokenizer);

/* Frees what the tokenizer owns. It may be initialised again afterwards. */
void xml_tokenizer_fini(xml_tokenizer *tokenizer);

/*
 * Feeds bytes. data is borrowed for the call, and for as long as a view
 * pointing into it is used. scratch is borrowed for the call and holds the
 * index of the returned view. Sets *consumed to the bytes used (all of them
 * on XML_EVENT_NEED_MORE; up to the end of the element on the other events;
 * 0 on XML_EVENT_ERROR, after which every call returns XML_EVENT_ERROR until
 * a reset). Fills *view on STREAM_OPEN, STANZA and STREAM_CLOSE.
 */
xml_event xml_tokenizer_feed(xml_tokenizer *tokenizer, xml_scratch *scratch, const char *data,
                             size_t length, size_t *consumed, xml_view *view);

/* The condition of a tokenizer in the error state, else XML_ERR_NONE. */
xml_error_condition xml_tokenizer_error(const xml_tokenizer *tokenizer);

/* The stream header's default namespace ("jabber:client", ...). Borrowed
 * from the tokenizer; valid until reset. Empty before the header. */
xml_slice xml_stream_default_namespace(const xml_tokenizer *tokenizer);

/* Prefix declarations of the stream header (including the stream prefix).
 * index < xml_stream_prefix_count(); slices borrowed from the tokenizer. */
size_t xml_stream_prefix_count(const xml_tokenizer *tokenizer);
void xml_stream_prefix(const xml_tokenizer *tokenizer, size_t index, xml_slice *prefix,
                       xml_slice *uri);

/* ----------------------------------------------------------------- views */

/* The whole element's bytes (borrowed from the view). */
xml_slice xml_view_bytes(const xml_view *view);

/* The root element (0), or XML_NODE_NONE for a stream close. */
xml_node_id xml_view_root(const xml_view *view);

/* Bit i set when the element uses the stream header's prefix declaration i
 * (see xml_stream_prefix) without declaring it itself. A forwarder must then
 * carry the declaration inline. */
uint8_t xml_view_header_prefixes(const xml_view *view);

xml_node_kind xml_node_kind_of(const xml_view *view, xml_node_id node);
xml_node_id xml_node_parent(const xml_view *view, xml_node_id node);
/* Children in document order: elements and text nodes. */
xml_node_id xml_node_first_child(const xml_view *view, xml_node_id node);
xml_node_id xml_node_next_sibling(const xml_view *view, xml_node_id node);

/* Element names; slices borrowed from the view. */
xml_slice xml_element_name(const xml_view *view, xml_node_id element);   /* local */
xml_slice xml_element_prefix(const xml_view *view, xml_node_id element); /* may be empty */
xml_slice xml_element_qname(const xml_view *view, xml_node_id element);

/* The element's namespace name, resolved through the element's own and its
 * ancestors' declarations, then the stream header's. Borrowed from the view
 * or the tokenizer. Returned as written (a namespace name containing
 * references is not unescaped); empty for no namespace. */
xml_slice xml_element_namespace(const xml_view *view, xml_node_id element);

/* First child element with this local name and, when ns is not NULL, this
 * namespace; XML_NODE_NONE when absent. Arguments borrowed. */
xml_node_id xml_element_child(const xml_view *view, xml_node_id element, const char *name,
                              size_t name_length, const char *ns, size_t ns_length);

/* Byte offsets into xml_view_bytes for a writer: just after the start tag's
 * name, just after the start tag's '>', just after the element's end. */
uint32_t xml_element_name_end(const xml_view *view, xml_node_id element);
uint32_t xml_element_start_tag_end(const xml_view *view, xml_node_id element);
uint32_t xml_element_end(const xml_view *view, xml_node_id element);

/* One attribute. Slices borrowed from the view. */
typedef struct xml_attribute {
    xml_slice name;             /* qualified name as written */
    xml_slice raw_value;        /* between the quotes, references not resolved */
    uint32_t whitespace_offset; /* offset of the whitespace before the name */
    uint32_t end_offset;        /* offset just after the closing quote */
    bool needs_unescape;        /* raw_value contains a reference */
} xml_attribute;

size_t xml_element_attribute_count(const xml_view *view, xml_node_id element);
void xml_element_attribute_at(const xml_view *view, xml_node_id element, size_t index,
                              xml_attribute *attribute);
/* Finds an attribute by qualified name ("to", "xml:lang", "xmlns:foo"). */
bool xml_element_attribute(const xml_view *view, xml_node_id element, const char *qname,
                           size_t qname_length, xml_attribute *attribute);

/* The root attributes a router reads, found in one pass over a view with a
 * root (not a stream close). A has_* flag tells whether the attribute is
 * present; slices borrowed from the view. */
typedef struct xml_routing {
    xml_attribute to, from, type, id;
    bool has_to, has_from, has_type, has_id;
} xml_routing;

void xml_view_routing(const xml_view *view, xml_routing *routing);

/* An attribute's value with references resolved: raw_value itself when it
 * has none (zero copy), else written into buffer (borrowed). Same contract
 * as xml_unescape below. */
bool xml_attribute_value(const xml_attribute *attribute, char *buffer, size_t capacity,
                         xml_slice *value);

/* A text node's bytes as written (references unresolved; a CDATA
 * section's content is literal). Borrowed from the view. */
xml_slice xml_text_raw(const xml_view *view, xml_node_id text);

/*
 * Resolves references in raw (from a view) into buffer, borrowed. When raw
 * needs no unescaping, *value is raw itself and buffer is untouched (zero
 * copy). false when buffer is too small or raw holds a malformed reference.
 */
bool xml_unescape(xml_slice raw, char *buffer, size_t capacity, xml_slice *value);

/* The value of a text node (CDATA content is returned as is). Same
 * contract as xml_unescape. */
bool xml_text_value(const xml_view *view, xml_node_id text, char *buffer, size_t capacity,
                    xml_slice *value);

/* The concatenated values of an element's direct text children (for
 * <body/>). Zero copy when there is one text child needing no unescaping.
 * false when buffer is too small. */
bool xml_element_text(const xml_view *view, xml_node_id element, char *buffer, size_t capacity,
                      xml_slice *value);

#endif
