/*
 * xml_view.c: reading an element through the index the tokenizer built.
 *
 * A view never copies the element: names, attribute values and text are
 * slices of its bytes. Only when the caller asks for a value with its
 * references resolved, and the value has references, are bytes written,
 * into the caller's buffer. The tokenizer has already checked every
 * reference, so unescaping here cannot meet a malformed one from a view;
 * xml_unescape still checks, because it also takes slices from elsewhere.
 */
#include <assert.h>
#include <string.h>

#include "proto/xml.h"
#include "proto/xml_index.h"

static const struct xml_index_node *node_of(const xml_view *view, xml_node_id node)
{
    assert(node < view->node_count);
    return &view->scratch->nodes[node];
}

static const struct xml_index_node *element_of(const xml_view *view, xml_node_id element)
{
    const struct xml_index_node *n = node_of(view, element);
    assert(n->kind == XML_NODE_ELEMENT);
    return n;
}

/* Names are short: a plain loop beats a call to memcmp. */
static inline bool same_bytes(const char *a, const char *b, size_t length)
{
    for (size_t i = 0; i < length; i++)
        if (a[i] != b[i])
            return false;
    return true;
}

xml_slice xml_view_bytes(const xml_view *view)
{
    return (xml_slice){view->bytes, view->length};
}

xml_node_id xml_view_root(const xml_view *view)
{
    return view->node_count > 0 ? 0 : XML_NODE_NONE;
}

uint8_t xml_view_header_prefixes(const xml_view *view)
{
    return view->header_prefixes_used;
}

xml_node_kind xml_node_kind_of(const xml_view *view, xml_node_id node)
{
    return (xml_node_kind)node_of(view, node)->kind;
}

xml_node_id xml_node_parent(const xml_view *view, xml_node_id node)
{
    return node_of(view, node)->parent;
}

xml_node_id xml_node_first_child(const xml_view *view, xml_node_id node)
{
    const struct xml_index_node *n = node_of(view, node);
    return n->kind == XML_NODE_ELEMENT ? n->first_child : XML_NODE_NONE;
}

xml_node_id xml_node_next_sibling(const xml_view *view, xml_node_id node)
{
    return node_of(view, node)->next_sibling;
}

xml_slice xml_element_qname(const xml_view *view, xml_node_id element)
{
    const struct xml_index_node *n = element_of(view, element);
    return (xml_slice){view->bytes + n->start + 1, n->name_length};
}

xml_slice xml_element_prefix(const xml_view *view, xml_node_id element)
{
    const struct xml_index_node *n = element_of(view, element);
    return (xml_slice){view->bytes + n->start + 1, n->prefix_length};
}

xml_slice xml_element_name(const xml_view *view, xml_node_id element)
{
    const struct xml_index_node *n = element_of(view, element);
    size_t skip = n->prefix_length ? n->prefix_length + 1u : 0u;
    return (xml_slice){view->bytes + n->start + 1 + skip, n->name_length - skip};
}

/* The default namespace in scope at element: the innermost xmlns attribute
 * on it or its ancestors, else the stream header's. The tokenizer leaves
 * this to the views that ask, since few do. */
static xml_slice default_namespace(const xml_view *view, xml_node_id element)
{
    for (xml_node_id e = element; e != XML_NODE_NONE; e = node_of(view, e)->parent) {
        const struct xml_index_node *n = node_of(view, e);
        const struct xml_index_attribute *a = &view->scratch->attributes[n->attribute_first];
        for (size_t i = 0; i < n->attribute_count; i++)
            if (a[i].name_length == 5 && same_bytes(view->bytes + a[i].name_start, "xmlns", 5))
                return (xml_slice){view->bytes + a[i].value_start,
                                   a[i].value_end - a[i].value_start};
    }
    const struct xml_stream_facts *f = &view->tokenizer->facts;
    return (xml_slice){f->strings + f->default_offset, f->default_length};
}

xml_slice xml_element_namespace(const xml_view *view, xml_node_id element)
{
    static const char xml_uri[] = XML_NS_XML_URI;
    const struct xml_index_node *n = element_of(view, element);
    switch (n->ns_source) {
    case XML_NS_ELEMENT:
        return (xml_slice){view->bytes + n->ns_offset, n->ns_length};
    case XML_NS_HEADER:
        return (xml_slice){view->tokenizer->facts.strings + n->ns_offset, n->ns_length};
    case XML_NS_XML:
        return (xml_slice){xml_uri, sizeof xml_uri - 1};
    case XML_NS_DEFAULT:
        return default_namespace(view, element);
    default:
        return (xml_slice){"", 0};
    }
}

static bool slice_equals(xml_slice slice, const char *bytes, size_t length)
{
    return slice.len == length && memcmp(slice.ptr, bytes, length) == 0;
}

xml_node_id xml_element_child(const xml_view *view, xml_node_id element, const char *name,
                              size_t name_length, const char *ns, size_t ns_length)
{
    for (xml_node_id c = xml_node_first_child(view, element); c != XML_NODE_NONE;
         c = xml_node_next_sibling(view, c)) {
        if (xml_node_kind_of(view, c) != XML_NODE_ELEMENT)
            continue;
        if (!slice_equals(xml_element_name(view, c), name, name_length))
            continue;
        if (ns == NULL || slice_equals(xml_element_namespace(view, c), ns, ns_length))
            return c;
    }
    return XML_NODE_NONE;
}

uint32_t xml_element_name_end(const xml_view *view, xml_node_id element)
{
    const struct xml_index_node *n = element_of(view, element);
    return n->start + 1u + n->name_length;
}

uint32_t xml_element_start_tag_end(const xml_view *view, xml_node_id element)
{
    return element_of(view, element)->start_tag_end;
}

uint32_t xml_element_end(const xml_view *view, xml_node_id element)
{
    return element_of(view, element)->end;
}

size_t xml_element_attribute_count(const xml_view *view, xml_node_id element)
{
    return element_of(view, element)->attribute_count;
}

static void fill_attribute(const xml_view *view, const struct xml_index_attribute *a,
                           xml_attribute *attribute)
{
    *attribute = (xml_attribute){
        .name = {view->bytes + a->name_start, a->name_length},
        .raw_value = {view->bytes + a->value_start, a->value_end - a->value_start},
        .whitespace_offset = a->space_start,
        .end_offset = a->value_end + 1,
        .needs_unescape = a->needs_unescape != 0,
    };
}

void xml_element_attribute_at(const xml_view *view, xml_node_id element, size_t index,
                              xml_attribute *attribute)
{
    const struct xml_index_node *n = element_of(view, element);
    assert(index < n->attribute_count);
    fill_attribute(view, &view->scratch->attributes[n->attribute_first + index], attribute);
}

bool xml_element_attribute(const xml_view *view, xml_node_id element, const char *qname,
                           size_t qname_length, xml_attribute *attribute)
{
    const struct xml_index_node *n = element_of(view, element);
    const struct xml_index_attribute *a = &view->scratch->attributes[n->attribute_first];
    for (size_t i = 0; i < n->attribute_count; i++) {
        if (a[i].name_length == qname_length &&
            same_bytes(view->bytes + a[i].name_start, qname, qname_length)) {
            fill_attribute(view, &a[i], attribute);
            return true;
        }
    }
    return false;
}

/* Zeroes an absent slot of xml_view_routing. Slot by slot, after the
 * search: zeroing the whole struct first cost a rep stos per stanza. */
static void clear_absent(xml_attribute *slot, bool present)
{
    if (!present)
        *slot = (xml_attribute){.needs_unescape = false};
}

void xml_view_routing(const xml_view *view, xml_routing *routing)
{
    const struct xml_index_node *root = element_of(view, 0);
    const struct xml_index_attribute *a = &view->scratch->attributes[root->attribute_first];
    bool has[4] = {false, false, false, false};
    xml_attribute *slots[4] = {&routing->to, &routing->from, &routing->type, &routing->id};
    for (size_t i = 0; i < root->attribute_count; i++) {
        const char *name = view->bytes + a[i].name_start;
        int k = -1;
        if (a[i].name_length == 2 && name[0] == 't' && name[1] == 'o')
            k = 0;
        else if (a[i].name_length == 2 && name[0] == 'i' && name[1] == 'd')
            k = 3;
        else if (a[i].name_length == 4 && memcmp(name, "from", 4) == 0)
            k = 1;
        else if (a[i].name_length == 4 && memcmp(name, "type", 4) == 0)
            k = 2;
        if (k >= 0) {
            fill_attribute(view, &a[i], slots[k]);
            has[k] = true;
        }
    }
    for (size_t k = 0; k < 4; k++)
        clear_absent(slots[k], has[k]);
    routing->has_to = has[0], routing->has_from = has[1];
    routing->has_type = has[2], routing->has_id = has[3];
}

bool xml_attribute_value(const xml_attribute *attribute, char *buffer, size_t capacity,
                         xml_slice *value)
{
    if (!attribute->needs_unescape) {
        *value = attribute->raw_value;
        return true;
    }
    return xml_unescape(attribute->raw_value, buffer, capacity, value);
}

xml_slice xml_text_raw(const xml_view *view, xml_node_id text)
{
    const struct xml_index_node *n = node_of(view, text);
    assert(n->kind == XML_NODE_TEXT);
    return (xml_slice){view->bytes + n->start, n->end - n->start};
}

/* Writes code point c as UTF-8 at out (room for 4 bytes); returns its length. */
static size_t utf8_encode(uint32_t c, char *out)
{
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* Decodes the reference between '&' and ';' (body, length bytes) into a
 * code point; false when it is not one XMPP allows. */
static bool decode_reference(const char *body, size_t length, uint32_t *c)
{
    static const struct {
        const char *name;
        char value;
    } predefined[] = {{"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''}};
    for (size_t i = 0; i < 5; i++) {
        if (strlen(predefined[i].name) == length && memcmp(predefined[i].name, body, length) == 0) {
            *c = (unsigned char)predefined[i].value;
            return true;
        }
    }
    if (length < 2 || body[0] != '#')
        return false;
    bool hex = body[1] == 'x';
    size_t i = hex ? 2 : 1;
    uint32_t value = 0;
    if (i == length)
        return false;
    for (; i < length; i++) {
        char d = body[i];
        uint32_t digit;
        if (d >= '0' && d <= '9')
            digit = (uint32_t)(d - '0');
        else if (hex && (d | 0x20) >= 'a' && (d | 0x20) <= 'f')
            digit = (uint32_t)((d | 0x20) - 'a' + 10);
        else
            return false;
        value = value * (hex ? 16u : 10u) + digit;
        if (value > 0x10FFFF)
            return false;
    }
    *c = value;
    return value == 0x9 || value == 0xA || value == 0xD || (value >= 0x20 && value <= 0xD7FF) ||
           (value >= 0xE000 && value <= 0xFFFD) || value >= 0x10000;
}

bool xml_unescape(xml_slice raw, char *buffer, size_t capacity, xml_slice *value)
{
    const char *amp = memchr(raw.ptr, '&', raw.len);
    if (amp == NULL) {
        *value = raw;
        return true;
    }
    const char *p = raw.ptr, *end = raw.ptr + raw.len;
    size_t out = 0;
    while (amp != NULL) {
        size_t plain = (size_t)(amp - p);
        const char *semicolon = memchr(amp, ';', (size_t)(end - amp));
        uint32_t c;
        if (semicolon == NULL || !decode_reference(amp + 1, (size_t)(semicolon - amp - 1), &c))
            return false;
        char encoded[4];
        size_t encoded_length = utf8_encode(c, encoded);
        if (capacity - out < plain + encoded_length)
            return false;
        memcpy(buffer + out, p, plain);
        memcpy(buffer + out + plain, encoded, encoded_length);
        out += plain + encoded_length;
        p = semicolon + 1;
        amp = memchr(p, '&', (size_t)(end - p));
    }
    if (capacity - out < (size_t)(end - p))
        return false;
    memcpy(buffer + out, p, (size_t)(end - p));
    out += (size_t)(end - p);
    *value = (xml_slice){buffer, out};
    return true;
}

bool xml_text_value(const xml_view *view, xml_node_id text, char *buffer, size_t capacity,
                    xml_slice *value)
{
    const struct xml_index_node *n = node_of(view, text);
    xml_slice raw = xml_text_raw(view, text);
    if (!(n->text_flags & XML_TEXT_NEEDS_UNESCAPE)) {
        *value = raw;
        return true;
    }
    return xml_unescape(raw, buffer, capacity, value);
}

bool xml_element_text(const xml_view *view, xml_node_id element, char *buffer, size_t capacity,
                      xml_slice *value)
{
    xml_node_id only = XML_NODE_NONE;
    size_t texts = 0, out = 0;
    for (xml_node_id c = xml_node_first_child(view, element); c != XML_NODE_NONE;
         c = xml_node_next_sibling(view, c))
        if (xml_node_kind_of(view, c) == XML_NODE_TEXT && texts++ == 0)
            only = c;
    if (texts == 0) {
        *value = (xml_slice){"", 0};
        return true;
    }
    if (texts == 1)
        return xml_text_value(view, only, buffer, capacity, value);
    for (xml_node_id c = only; c != XML_NODE_NONE; c = xml_node_next_sibling(view, c)) {
        xml_slice part;
        if (xml_node_kind_of(view, c) != XML_NODE_TEXT)
            continue;
        if (!xml_text_value(view, c, buffer + out, capacity - out, &part))
            return false;
        if (part.ptr != buffer + out) {
            if (capacity - out < part.len)
                return false;
            memcpy(buffer + out, part.ptr, part.len);
        }
        out += part.len;
    }
    *value = (xml_slice){buffer, out};
    return true;
}
