/*
 * xmpp_wire.c: reading what starling-bench's client engine and sink server
 * share on the wire (see xmpp_wire.h).
 */
#include "bench/src/xmpp_wire.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/base64.h>

bool xmpp_slice_is(xml_slice slice, const char *text)
{
    return slice.len == strlen(text) && memcmp(slice.ptr, text, slice.len) == 0;
}

bool xmpp_named(const xml_view *view, xml_node_id element, const char *name, const char *ns)
{
    return xmpp_slice_is(xml_element_name(view, element), name) &&
           xmpp_slice_is(xml_element_namespace(view, element), ns);
}

xml_node_id xmpp_first_child_element(const xml_view *view, xml_node_id element)
{
    for (xml_node_id node = xml_node_first_child(view, element); node != XML_NODE_NONE;
         node = xml_node_next_sibling(view, node))
        if (xml_node_kind_of(view, node) == XML_NODE_ELEMENT)
            return node;
    return XML_NODE_NONE;
}

bool xmpp_sasl_decode(const xml_view *view, char *out, size_t capacity, size_t *out_bytes)
{
    char buffer[XMPP_WIRE_TEXT_BYTES_MAX];
    xml_slice text;
    size_t maximum = 0;
    *out_bytes = 0;
    if (!xml_element_text(view, xml_view_root(view), buffer, sizeof buffer, &text))
        return false;
    if (text.len == 0 || (text.len == 1 && text.ptr[0] == '='))
        return true;
    return EVP_DecodedLength(&maximum, text.len) && maximum <= capacity &&
           EVP_DecodeBase64((uint8_t *)out, out_bytes, capacity, (const uint8_t *)text.ptr,
                            text.len);
}

bool xmpp_child_numbers(const xml_view *view, const char *child, size_t text_bytes_max,
                        uint64_t *numbers, unsigned count)
{
    xml_node_id node = xml_element_child(view, xml_view_root(view), child, strlen(child), NULL, 0);
    char buffer[XMPP_WIRE_NUMBERS_BYTES_MAX];
    char copy[XMPP_WIRE_NUMBERS_BYTES_MAX];
    xml_slice text;
    if (text_bytes_max > sizeof copy)
        text_bytes_max = sizeof copy;
    if (node == XML_NODE_NONE || !xml_element_text(view, node, buffer, text_bytes_max, &text) ||
        text.len >= text_bytes_max)
        return false;
    memcpy(copy, text.ptr, text.len);
    copy[text.len] = '\0';
    char *at = copy;
    for (unsigned i = 0; i < count; i++) {
        char *end = NULL;
        numbers[i] = strtoull(at, &end, 10);
        if (end == at)
            return false;
        at = end;
    }
    return *at == '\0';
}
