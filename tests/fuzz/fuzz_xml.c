/*
 * fuzz_xml.c: libFuzzer target for the XML tokenizer and views.
 *
 * Input: one byte choosing how to cut the stream into pieces, then the
 * stream. The stream is fed whole and cut; both runs must report the same
 * events over the same bytes and end in the same condition, which checks
 * that no state is lost at a piece boundary. Every yielded view is walked
 * completely (names, namespaces, attributes, unescaped values, the
 * from-stamp), so AddressSanitizer sees every index entry used.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/xml.h"
#include "proto/xml_writer.h"

static uint64_t mix(uint64_t hash, const void *bytes, size_t length)
{
    const unsigned char *p = bytes;
    for (size_t i = 0; i < length; i++)
        hash = (hash ^ p[i]) * 0x100000001b3ull;
    return hash;
}

static uint64_t walk(const xml_view *v, xml_node_id n, char *buffer, size_t capacity, uint64_t hash)
{
    xml_slice value;
    if (xml_node_kind_of(v, n) == XML_NODE_TEXT) {
        /* Resolving references never lengthens a value. */
        if (!xml_text_value(v, n, buffer, capacity, &value))
            abort();
        return mix(hash, value.ptr, value.len);
    }
    xml_slice name = xml_element_qname(v, n), ns = xml_element_namespace(v, n);
    hash = mix(mix(hash, name.ptr, name.len), ns.ptr, ns.len);
    for (size_t i = 0; i < xml_element_attribute_count(v, n); i++) {
        xml_attribute a;
        xml_element_attribute_at(v, n, i, &a);
        if (!xml_unescape(a.raw_value, buffer, capacity, &value))
            abort();
        hash = mix(mix(hash, a.name.ptr, a.name.len), value.ptr, value.len);
    }
    for (xml_node_id c = xml_node_first_child(v, n); c != XML_NODE_NONE;
         c = xml_node_next_sibling(v, c))
        hash = walk(v, c, buffer, capacity, hash);
    return hash;
}

static uint64_t visit(const xml_view *v, xml_event e)
{
    static char buffer[LIMIT_STANZA_BYTES_MAX], attribute[64];
    xml_slice bytes = xml_view_bytes(v), slices[XML_STAMP_SLICES_MAX];
    uint64_t hash = mix(mix(0xcbf29ce484222325ull, &e, sizeof e), bytes.ptr, bytes.len);
    if (xml_view_root(v) == XML_NODE_NONE)
        return hash;
    hash = walk(v, xml_view_root(v), buffer, sizeof buffer, hash);
    if (e == XML_EVENT_STANZA) {
        xml_routing routing;
        xml_view_routing(v, &routing);
        hash = mix(hash, &routing.has_to, 1);
        if (routing.has_from)
            hash = mix(hash, routing.from.raw_value.ptr, routing.from.raw_value.len);
        size_t count = xml_stamp_from(v, "a@b/c", 5, attribute, sizeof attribute, slices);
        for (size_t i = 0; i < count; i++)
            hash = mix(hash, slices[i].ptr, slices[i].len);
    }
    return hash;
}

struct summary {
    uint64_t hash;
    xml_error_condition error;
};

static struct summary feed(xml_scratch *scratch, const uint8_t *data, size_t size, unsigned cut)
{
    struct summary s = {0, XML_ERR_NONE};
    uint32_t random = cut * 2654435761u + 1u;
    xml_tokenizer t;
    xml_tokenizer_init(&t);
    for (size_t at = 0; at < size && s.error == XML_ERR_NONE;) {
        random = random * 1103515245u + 12345u;
        size_t n = cut == 0 ? size - at : 1 + (random >> 16) % (cut + 1u);
        if (n > size - at)
            n = size - at;
        char *piece = malloc(n);
        memcpy(piece, data + at, n);
        for (size_t used_total = 0; used_total < n;) {
            size_t used;
            xml_view v;
            xml_event e =
                xml_tokenizer_feed(&t, scratch, piece + used_total, n - used_total, &used, &v);
            if (e == XML_EVENT_ERROR) {
                s.error = xml_tokenizer_error(&t);
                break;
            }
            if (e != XML_EVENT_NEED_MORE)
                s.hash = s.hash * 31u + visit(&v, e);
            used_total += used;
        }
        free(piece);
        at += n;
    }
    xml_tokenizer_fini(&t);
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static xml_scratch *scratch;
    if (scratch == NULL && (scratch = xml_scratch_create()) == NULL)
        abort();
    if (size == 0)
        return 0;
    unsigned cut = data[0];
    struct summary whole = feed(scratch, data + 1, size - 1, 0);
    struct summary pieces = feed(scratch, data + 1, size - 1, cut % 64u);
    if (whole.error != pieces.error || whole.hash != pieces.hash)
        abort();
    return 0;
}
