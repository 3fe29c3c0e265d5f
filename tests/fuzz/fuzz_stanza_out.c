/*
 * fuzz_stanza_out.c: libFuzzer target for the routing path of a received
 * stanza: reading its addressing (router_stanza_read, JID splitting),
 * the delivery decisions, stamping `from` with inline namespace
 * declarations (stanza_out_stamp) and building its error reply.
 *
 * Input: a client stream (header and stanzas). For every stanza the
 * tokenizer yields, the stamped bytes must parse again as one stanza on a
 * fresh stream whose header declares only the stream prefix (so a prefix
 * the stanza took from its header must now be declared inline), with from
 * equal to the stamped JID and the children and end tag byte-identical;
 * the error reply, when there is one, must parse as one stanza. The only
 * excused failure of the re-parse is a bound of proto/limits.h that the
 * added attributes pushed over (policy-violation).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/xml.h"
#include "server/xmpp/router.h"
#include "server/xmpp/stanza_out.h"

#define FROM "fuzz@example.com/it's \"<&>\""

static const char reparse_header[] =
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

static xml_scratch *scratch;       /* the input stream's index */
static xml_scratch *scratch_again; /* the re-parses', so the input's view stays valid */
static char output[LIMIT_STANZA_BYTES_MAX + STANZA_OUT_ATTRIBUTE_BYTES];
static stanza_out stamped;

/* Parses bytes as one element after reparse_header; returns the event and
 * leaves the view in *view (valid until the tokenizer is finished). */
static xml_event reparse(xml_tokenizer *t, const char *bytes, size_t length, xml_view *view)
{
    size_t used = 0;
    xml_tokenizer_init(t);
    if (xml_tokenizer_feed(t, scratch_again, reparse_header, sizeof reparse_header - 1, &used,
                           view) != XML_EVENT_STREAM_OPEN)
        abort();
    xml_event e = xml_tokenizer_feed(t, scratch_again, bytes, length, &used, view);
    if (e == XML_EVENT_STANZA && used != length)
        abort(); /* one element and nothing after it */
    return e;
}

static bool allowed_failure(const xml_tokenizer *t)
{
    return xml_tokenizer_error(t) == XML_ERR_POLICY_VIOLATION;
}

static void check_stamp(const xml_view *view)
{
    if (!stanza_out_stamp(view, FROM, sizeof FROM - 1, &stamped))
        abort();
    size_t length = stanza_out_copy(&stamped, output, sizeof output);
    if (length != stamped.length)
        abort();
    uint32_t tail = xml_element_start_tag_end(view, xml_view_root(view));
    size_t tail_length = view->length - tail;
    xml_tokenizer t;
    xml_view again;
    xml_event e = reparse(&t, output, length, &again);
    if (e != XML_EVENT_STANZA) {
        if (!allowed_failure(&t))
            abort();
        xml_tokenizer_fini(&t);
        return;
    }
    xml_node_id root = xml_view_root(&again);
    xml_attribute from;
    char buffer[sizeof FROM];
    xml_slice value;
    if (!xml_element_attribute(&again, root, "from", 4, &from) ||
        !xml_attribute_value(&from, buffer, sizeof buffer, &value) ||
        value.len != sizeof FROM - 1 || memcmp(value.ptr, FROM, value.len) != 0)
        abort();
    uint32_t tail_again = xml_element_start_tag_end(&again, root);
    if (again.length - tail_again != tail_length ||
        memcmp(again.bytes + tail_again, output + (length - tail_length), tail_length) != 0)
        abort();
    xml_tokenizer_fini(&t);
    /* The reply built from the stamped bytes alone goes back to FROM. */
    static char reply[8192];
    size_t reply_length = stanza_error_write_from_bytes(
        scratch_again, output, length, STANZA_ERROR_BAD_REQUEST, reply, sizeof reply);
    if (reply_length > 0) {
        if (reparse(&t, reply, reply_length, &again) != XML_EVENT_STANZA) {
            if (!allowed_failure(&t))
                abort();
        } else if (!xml_element_attribute(&again, xml_view_root(&again), "to", 2, &from) ||
                   !xml_attribute_value(&from, buffer, sizeof buffer, &value) ||
                   value.len != sizeof FROM - 1 || memcmp(value.ptr, FROM, value.len) != 0) {
            abort();
        }
        xml_tokenizer_fini(&t);
    }
}

static void check_error_reply(const xml_view *view)
{
    static char reply[8192];
    size_t length = stanza_error_write(view, STANZA_ERROR_SERVICE_UNAVAILABLE, FROM,
                                       sizeof FROM - 1, NULL, 0, reply, sizeof reply);
    if (length == 0)
        return;
    xml_tokenizer t;
    xml_view again;
    if (reparse(&t, reply, length, &again) != XML_EVENT_STANZA && !allowed_failure(&t))
        abort();
    xml_tokenizer_fini(&t);
}

static bool served(void *context, xml_slice domain)
{
    (void)context;
    return domain.len == 11 && memcmp(domain.ptr, "example.com", 11) == 0;
}

static void check_routing(const xml_view *view)
{
    static char to[LIMIT_ROUTE_JID_BYTES_MAX];
    router_stanza stanza;
    stanza_error error = router_stanza_read(view, FROM, sizeof FROM - 1, to, sizeof to, &stanza);
    if (error != STANZA_ERROR_COUNT || stanza.kind == ROUTER_KIND_OTHER)
        return;
    router_resolution resolution;
    router_resolve(&stanza, served, NULL, &resolution);
    if (resolution.target != ROUTER_TARGET_LOCAL_USER)
        return;
    router_actions actions;
    router_decide(&stanza, &resolution.recipient, NULL, &actions);
    if (actions.count != 1 || actions.actions[0].kind == ROUTER_ACTION_DELIVER)
        abort(); /* nobody is online: never a delivery */
    if (stanza.type == ROUTER_TYPE_ERROR && actions.actions[0].kind == ROUTER_ACTION_ERROR)
        abort(); /* errors are never answered with errors */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (scratch == NULL && ((scratch = xml_scratch_create()) == NULL ||
                            (scratch_again = xml_scratch_create()) == NULL))
        abort();
    xml_tokenizer t;
    xml_tokenizer_init(&t);
    size_t at = 0;
    while (at < size) {
        size_t used = 0;
        xml_view view;
        xml_event e =
            xml_tokenizer_feed(&t, scratch, (const char *)data + at, size - at, &used, &view);
        at += used;
        if (e == XML_EVENT_ERROR || e == XML_EVENT_STREAM_CLOSE || e == XML_EVENT_NEED_MORE)
            break;
        if (e != XML_EVENT_STANZA)
            continue;
        check_routing(&view);
        check_error_reply(&view);
        check_stamp(&view);
    }
    xml_tokenizer_fini(&t);
    return 0;
}
