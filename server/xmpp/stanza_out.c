/*
 * stanza_out.c: stamping `from` on received bytes, and stanza error
 * replies.
 *
 * Attribute values taken from a view are copied as written (references and
 * all), never unescaped and escaped again: they are well-formed attribute
 * content already. Only the quote needs care: a value written between
 * double quotes may hold a literal apostrophe, so it is written back
 * between double quotes. It cannot hold both kinds, since it held no
 * literal of its own delimiter.
 */
#include "server/xmpp/stanza_out.h"

#include <assert.h>
#include <string.h>

#include "proto/xml_writer.h"

/* ------------------------------------------------------------ conditions */

static const struct {
    const char *name;
    stanza_error_type type;
} conditions[STANZA_ERROR_COUNT] = {
    [STANZA_ERROR_BAD_REQUEST] = {"bad-request", STANZA_ERROR_TYPE_MODIFY},
    [STANZA_ERROR_CONFLICT] = {"conflict", STANZA_ERROR_TYPE_CANCEL},
    [STANZA_ERROR_FEATURE_NOT_IMPLEMENTED] = {"feature-not-implemented", STANZA_ERROR_TYPE_CANCEL},
    [STANZA_ERROR_FORBIDDEN] = {"forbidden", STANZA_ERROR_TYPE_AUTH},
    [STANZA_ERROR_GONE] = {"gone", STANZA_ERROR_TYPE_CANCEL},
    [STANZA_ERROR_INTERNAL_SERVER_ERROR] = {"internal-server-error", STANZA_ERROR_TYPE_CANCEL},
    [STANZA_ERROR_ITEM_NOT_FOUND] = {"item-not-found", STANZA_ERROR_TYPE_CANCEL},
    [STANZA_ERROR_JID_MALFORMED] = {"jid-malformed", STANZA_ERROR_TYPE_MODIFY},
    [STANZA_ERROR_NOT_ACCEPTABLE] = {"not-acceptable", STANZA_ERROR_TYPE_MODIFY},
    [STANZA_ERROR_NOT_ALLOWED] = {"not-allowed", STANZA_ERROR_TYPE_CANCEL},
    [STANZA_ERROR_NOT_AUTHORIZED] = {"not-authorized", STANZA_ERROR_TYPE_AUTH},
    [STANZA_ERROR_POLICY_VIOLATION] = {"policy-violation", STANZA_ERROR_TYPE_MODIFY},
    [STANZA_ERROR_RECIPIENT_UNAVAILABLE] = {"recipient-unavailable", STANZA_ERROR_TYPE_WAIT},
    [STANZA_ERROR_REDIRECT] = {"redirect", STANZA_ERROR_TYPE_MODIFY},
    [STANZA_ERROR_REGISTRATION_REQUIRED] = {"registration-required", STANZA_ERROR_TYPE_AUTH},
    [STANZA_ERROR_REMOTE_SERVER_NOT_FOUND] = {"remote-server-not-found", STANZA_ERROR_TYPE_CANCEL},
    [STANZA_ERROR_REMOTE_SERVER_TIMEOUT] = {"remote-server-timeout", STANZA_ERROR_TYPE_WAIT},
    [STANZA_ERROR_RESOURCE_CONSTRAINT] = {"resource-constraint", STANZA_ERROR_TYPE_WAIT},
    [STANZA_ERROR_SERVICE_UNAVAILABLE] = {"service-unavailable", STANZA_ERROR_TYPE_CANCEL},
    [STANZA_ERROR_SUBSCRIPTION_REQUIRED] = {"subscription-required", STANZA_ERROR_TYPE_AUTH},
    [STANZA_ERROR_UNDEFINED_CONDITION] = {"undefined-condition", STANZA_ERROR_TYPE_CANCEL},
    [STANZA_ERROR_UNEXPECTED_REQUEST] = {"unexpected-request", STANZA_ERROR_TYPE_WAIT},
};

const char *stanza_error_name(stanza_error condition)
{
    if ((unsigned)condition >= STANZA_ERROR_COUNT)
        condition = STANZA_ERROR_UNDEFINED_CONDITION;
    return conditions[condition].name;
}

stanza_error_type stanza_error_type_of(stanza_error condition)
{
    if ((unsigned)condition >= STANZA_ERROR_COUNT)
        condition = STANZA_ERROR_UNDEFINED_CONDITION;
    return conditions[condition].type;
}

const char *stanza_error_type_name(stanza_error_type type)
{
    switch (type) {
    case STANZA_ERROR_TYPE_AUTH:
        return "auth";
    case STANZA_ERROR_TYPE_CANCEL:
        return "cancel";
    case STANZA_ERROR_TYPE_CONTINUE:
        return "continue";
    case STANZA_ERROR_TYPE_MODIFY:
        return "modify";
    case STANZA_ERROR_TYPE_WAIT:
        return "wait";
    }
    return "cancel";
}

/* ------------------------------------------------------------- stamping */

/* " name=" and value, as written, between a quote it does not hold. */
static void write_raw_attribute(xml_writer *w, const char *name, size_t name_length, xml_slice raw)
{
    char quote = memchr(raw.ptr, '\'', raw.len) != NULL ? '"' : '\'';
    xml_write_raw(w, " ", 1);
    xml_write_raw(w, name, name_length);
    xml_write_raw(w, "=", 1);
    xml_write_raw(w, &quote, 1);
    xml_write_raw(w, raw.ptr, raw.len);
    xml_write_raw(w, &quote, 1);
}

/* xmlns:PREFIX='URI' for each stream-header prefix the stanza uses. */
static void write_inline_declarations(xml_writer *w, const xml_view *view)
{
    uint8_t used = xml_view_header_prefixes(view);
    size_t count = xml_stream_prefix_count(view->tokenizer);
    for (size_t i = 0; i < count && i < 8; i++) {
        if ((used & (1u << i)) == 0)
            continue;
        xml_slice prefix, uri;
        xml_stream_prefix(view->tokenizer, i, &prefix, &uri);
        char name[6 + LIMIT_NAME_BYTES_MAX];
        if (prefix.len > LIMIT_NAME_BYTES_MAX)
            continue; /* the tokenizer never keeps one this long */
        memcpy(name, "xmlns:", 6);
        memcpy(name + 6, prefix.ptr, prefix.len);
        write_raw_attribute(w, name, 6 + prefix.len, uri);
    }
}

_Static_assert(STANZA_OUT_SLICES_MAX == XML_STAMP_SLICES_MAX, "a stamp's slices");

bool stanza_out_stamp(const xml_view *view, const char *from, size_t from_length, stanza_out *out)
{
    assert(xml_view_root(view) != XML_NODE_NONE);
    if (from == NULL || from_length == 0 || from_length > LIMIT_ROUTE_JID_BYTES_MAX)
        return false;
    /* The stamp itself is the writer's (xml_stamp_from); the inline
     * declarations follow the new from in the same attribute buffer, so
     * its slice just grows over them. */
    size_t count = xml_stamp_from(view, from, from_length, out->attributes,
                                  sizeof out->attributes, out->slices);
    assert(count >= 2); /* STANZA_OUT_ATTRIBUTE_BYTES covers the worst case */
    size_t stamped = out->slices[1].len;
    xml_writer w;
    xml_writer_init(&w, out->attributes + stamped, sizeof out->attributes - stamped);
    write_inline_declarations(&w, view);
    assert(!xml_writer_failed(&w));
    out->slices[1].len += xml_writer_output(&w).len;
    out->slice_count = count;
    out->length = 0;
    for (size_t i = 0; i < count; i++)
        out->length += out->slices[i].len;
    return true;
}

size_t stanza_out_copy(const stanza_out *out, char *destination, size_t capacity)
{
    if (out->length > capacity)
        return 0;
    char *at = destination;
    for (size_t i = 0; i < out->slice_count; i++) {
        memcpy(at, out->slices[i].ptr, out->slices[i].len);
        at += out->slices[i].len;
    }
    return out->length;
}

bool stanza_from_allowed(const char *from, size_t from_length, const char *full_jid,
                         size_t full_length)
{
    if (from_length == full_length && memcmp(from, full_jid, full_length) == 0)
        return true;
    const char *slash = memchr(full_jid, '/', full_length);
    size_t bare_length = slash != NULL ? (size_t)(slash - full_jid) : full_length;
    return from_length == bare_length && memcmp(from, full_jid, bare_length) == 0;
}

/* --------------------------------------------------------- error replies */

static bool is_error_type(const xml_routing *routing)
{
    return routing->has_type && routing->type.raw_value.len == 5 &&
           memcmp(routing->type.raw_value.ptr, "error", 5) == 0;
}

/* " name='value'": a caller's value escaped, or else the raw attribute. */
static void write_address(xml_writer *w, const char *name, const char *value, size_t length,
                          bool has_raw, const xml_attribute *raw)
{
    if (value != NULL)
        xml_write_attribute(w, name, strlen(name), value, length);
    else if (has_raw)
        write_raw_attribute(w, name, strlen(name), raw->raw_value);
}

size_t stanza_error_write(const xml_view *view, stanza_error condition, const char *reply_to,
                          size_t reply_to_length, const char *reply_from, size_t reply_from_length,
                          char *out, size_t capacity)
{
    xml_node_id root = xml_view_root(view);
    if (root == XML_NODE_NONE)
        return 0;
    xml_routing routing;
    xml_view_routing(view, &routing);
    if (is_error_type(&routing))
        return 0;
    /* The reply's name is written from this list, never copied: only the
     * three stanzas have error replies. */
    static const char *const kinds[] = {"message", "presence", "iq"};
    xml_slice root_name = xml_element_name(view, root);
    xml_slice name = {NULL, 0};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (root_name.len == strlen(kinds[i]) &&
            memcmp(root_name.ptr, kinds[i], root_name.len) == 0)
            name = (xml_slice){kinds[i], root_name.len};
    if (name.ptr == NULL)
        return 0;
    const char *condition_name = stanza_error_name(condition);
    const char *type_name = stanza_error_type_name(stanza_error_type_of(condition));

    xml_writer w;
    xml_writer_init(&w, out, capacity);
    xml_write_start_tag(&w, name.ptr, name.len);
    write_address(&w, "to", reply_to, reply_to_length, routing.has_from, &routing.from);
    write_address(&w, "from", reply_from, reply_from_length, routing.has_to, &routing.to);
    xml_write_attribute(&w, "type", 4, "error", 5);
    if (routing.has_id)
        write_raw_attribute(&w, "id", 2, routing.id.raw_value);
    xml_write_start_tag_end(&w);
    xml_write_start_tag(&w, "error", 5);
    xml_write_attribute(&w, "type", 4, type_name, strlen(type_name));
    xml_write_start_tag_end(&w);
    xml_write_start_tag(&w, condition_name, strlen(condition_name));
    static const char stanzas_ns[] = "urn:ietf:params:xml:ns:xmpp-stanzas";
    xml_write_attribute(&w, "xmlns", 5, stanzas_ns, sizeof stanzas_ns - 1);
    xml_write_empty_tag_end(&w);
    xml_write_end_tag(&w, "error", 5);
    xml_write_end_tag(&w, name.ptr, name.len);
    return xml_writer_failed(&w) ? 0 : xml_writer_output(&w).len;
}

size_t stanza_error_write_from_bytes(xml_scratch *scratch, const char *stanza, size_t length,
                                     stanza_error condition, char *out, size_t capacity)
{
    static const char header[] =
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
    xml_tokenizer tokenizer;
    xml_view view;
    size_t used = 0, written = 0;
    xml_tokenizer_init(&tokenizer);
    if (xml_tokenizer_feed(&tokenizer, scratch, header, sizeof header - 1, &used, &view) ==
            XML_EVENT_STREAM_OPEN &&
        xml_tokenizer_feed(&tokenizer, scratch, stanza, length, &used, &view) == XML_EVENT_STANZA &&
        used == length)
        written = stanza_error_write(&view, condition, NULL, 0, NULL, 0, out, capacity);
    xml_tokenizer_fini(&tokenizer);
    return written;
}
