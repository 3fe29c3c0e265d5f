/*
 * c2s_server.c: what the server answers itself, for a bound session on
 * its own reactor.
 *
 *   - IQs to the server (its domain, or no 'to'): XEP-0199 ping, the legacy
 *     session request (RFC 3921; advertised optional, answered empty),
 *     XEP-0030 disco#info of the server. Any other get or set gets
 *     service-unavailable (RFC 6120 section 8.2.3); results and errors
 *     addressed to the server are dropped.
 *   - Presence with no 'to' (RFC 6121 section 4): available presence sets
 *     the resource available with its priority in the session table, and
 *     unavailable presence clears it; either is broadcast to the user's
 *     available resources, the sending one included (section 4.2.2: an
 *     entity is subscribed to its own presence). Rosters and subscriptions
 *     come with the next issue: until then there is no one else to tell.
 *   - A message to the server's domain: service-unavailable (for normal
 *     and chat; groupchat, headline and error are dropped).
 */
#include "server/xmpp/c2s_internal.h"

#include <stdlib.h>
#include <string.h>

#include "proto/xml_writer.h"

#define LITERAL(text) text, sizeof text - 1

#define NS_PING    "urn:xmpp:ping"
#define NS_SESSION "urn:ietf:params:xml:ns:xmpp-session"
#define NS_DISCO   "http://jabber.org/protocol/disco#info"

static bool slice_is(xml_slice slice, const char *text, size_t length)
{
    return slice.len == length && memcmp(slice.ptr, text, length) == 0;
}


/* <iq type='result'> to the session, from the server (or from what the
 * request was addressed to), with the request's id and inner (raw XML, may
 * be empty). */
static void reply_result(c2s_session *session, c2s_reactor *here, const xml_view *view,
                         const char *inner, size_t inner_length)
{
    xml_node_id root = xml_view_root(view);
    const c2s_domain *domain = &session->listener->node->domains[session->domain_index];
    xml_writer writer;
    xml_writer_init(&writer, here->reply, sizeof here->reply);
    xml_write_raw(&writer, LITERAL("<iq type='result'"));
    xml_attribute attribute;
    xml_slice value;
    if (xml_element_attribute(view, root, "id", 2, &attribute)) {
        /* The id as written (already escaped), in the quote it came in. */
        xml_write_raw(&writer, LITERAL(" id="));
        char quote = attribute.raw_value.ptr[-1] == '"' ? '"' : '\'';
        xml_write_raw(&writer, &quote, 1);
        xml_write_raw(&writer, attribute.raw_value.ptr, attribute.raw_value.len);
        xml_write_raw(&writer, &quote, 1);
    }
    if (xml_element_attribute(view, root, "to", 2, &attribute) &&
        xml_attribute_value(&attribute, here->to, sizeof here->to, &value))
        xml_write_attribute(&writer, LITERAL("from"), value.ptr, value.len);
    else
        xml_write_attribute(&writer, LITERAL("from"), domain->name, domain->length);
    xml_write_attribute(&writer, LITERAL("to"), session->jid, session->full_length);
    if (inner_length == 0) {
        xml_write_empty_tag_end(&writer);
    } else {
        xml_write_start_tag_end(&writer);
        xml_write_raw(&writer, inner, inner_length);
        xml_write_raw(&writer, LITERAL("</iq>"));
    }
    if (!xml_writer_failed(&writer)) {
        xml_slice out = xml_writer_output(&writer);
        c2s_write(session, out.ptr, out.len);
    }
}

static const char disco_info[] =
    "<query xmlns='" NS_DISCO "'>"
    "<identity category='server' type='im' name='Starling'/>"
    "<feature var='" NS_DISCO "'/>"
    "<feature var='" NS_PING "'/>"
    "</query>";

static void server_iq(c2s_session *session, c2s_reactor *here, const xml_view *view,
                      const router_stanza *stanza)
{
    if (stanza->type != ROUTER_TYPE_GET && stanza->type != ROUTER_TYPE_SET)
        return; /* results and errors to the server: nothing asked them */
    xml_node_id root = xml_view_root(view);
    xml_node_id child = xml_node_first_child(view, root);
    while (child != XML_NODE_NONE && xml_node_kind_of(view, child) != XML_NODE_ELEMENT)
        child = xml_node_next_sibling(view, child);
    if (child != XML_NODE_NONE) {
        xml_slice ns = xml_element_namespace(view, child);
        xml_slice name = xml_element_name(view, child);
        bool get = stanza->type == ROUTER_TYPE_GET;
        bool to_domain = !stanza->has_to || stanza->to.local.len == 0;
        if (get && slice_is(ns, LITERAL(NS_PING)) && slice_is(name, LITERAL("ping"))) {
            reply_result(session, here, view, NULL, 0);
            return;
        }
        if (!get && slice_is(ns, LITERAL(NS_SESSION)) && slice_is(name, LITERAL("session"))) {
            reply_result(session, here, view, NULL, 0);
            return;
        }
        if (get && to_domain && slice_is(ns, LITERAL(NS_DISCO)) &&
            slice_is(name, LITERAL("query"))) {
            xml_attribute node;
            if (xml_element_attribute(view, child, "node", 4, &node)) {
                c2s_reply_error(session, here, view, STANZA_ERROR_ITEM_NOT_FOUND);
                return;
            }
            reply_result(session, here, view, disco_info, sizeof disco_info - 1);
            return;
        }
    }
    c2s_reply_error(session, here, view, STANZA_ERROR_SERVICE_UNAVAILABLE);
}

/* Writes presence bytes to every available resource of the session's user
 * (all on this reactor: one user, one shard). */
static void broadcast_to_own(c2s_session *session, c2s_reactor *here, const char *bytes,
                             size_t length, bool include_self)
{
    const session_user *user = session_table_user(here->sessions, session->jid, session->bare_length);
    if (user == NULL)
        return;
    for (size_t i = 0; i < user->resource_count; i++) {
        const session_resource *resource = &user->resources[i];
        c2s_session *target = resource->handle;
        if (!resource->available || (!include_self && target == session))
            continue;
        c2s_write(target, bytes, length);
    }
}

/* RFC 6121 section 4.7.2.3: an integer -128..127; anything else is 0. */
static int8_t priority_of(const xml_view *view, c2s_reactor *here)
{
    xml_node_id root = xml_view_root(view);
    xml_node_id element = xml_element_child(view, root, "priority", 8, "jabber:client", 13);
    xml_slice text;
    if (element == XML_NODE_NONE || !xml_element_text(view, element, here->to, 16, &text) ||
        text.len == 0 || text.len > 4)
        return 0;
    long value = 0;
    size_t i = text.ptr[0] == '-' || text.ptr[0] == '+' ? 1 : 0;
    if (i == text.len)
        return 0;
    for (; i < text.len; i++) {
        if (text.ptr[i] < '0' || text.ptr[i] > '9')
            return 0;
        value = value * 10 + (text.ptr[i] - '0');
    }
    if (text.ptr[0] == '-')
        value = -value;
    return value < -128 || value > 127 ? 0 : (int8_t)value;
}

static void server_presence(c2s_session *session, c2s_reactor *here, const xml_view *view,
                            const router_stanza *stanza)
{
    bool available = stanza->type == ROUTER_TYPE_AVAILABLE;
    if (!available && stanza->type != ROUTER_TYPE_UNAVAILABLE)
        return; /* subscriptions and probes with no 'to': nothing to do without rosters */
    const char *resource = session->jid + session->bare_length + 1;
    size_t resource_length = (size_t)(session->full_length - session->bare_length - 1);
    int8_t priority = available ? priority_of(view, here) : 0;
    if (!stanza_out_stamp(view, session->jid, session->full_length, &here->out))
        return;
    size_t length = stanza_out_copy(&here->out, here->reply, sizeof here->reply);
    if (available) {
        session_table_set_presence(here->sessions, session->jid, session->bare_length, resource,
                                   resource_length, true, priority);
        session->flags |= C2S_AVAILABLE;
        session->priority = priority;
        if (length > 0)
            broadcast_to_own(session, here, here->reply, length, true);
    } else {
        if (length > 0)
            broadcast_to_own(session, here, here->reply, length, true);
        session_table_set_presence(here->sessions, session->jid, session->bare_length, resource,
                                   resource_length, false, 0);
        session->flags &= (uint8_t)~C2S_AVAILABLE;
    }
}

void c2s_server_stanza(c2s_session *session, c2s_reactor *here, const xml_view *view,
                       const router_stanza *stanza)
{
    switch (stanza->kind) {
    case ROUTER_KIND_IQ:
        server_iq(session, here, view, stanza);
        return;
    case ROUTER_KIND_PRESENCE:
        server_presence(session, here, view, stanza);
        return;
    case ROUTER_KIND_MESSAGE:
        if (stanza->type == ROUTER_TYPE_NORMAL || stanza->type == ROUTER_TYPE_CHAT)
            c2s_reply_error(session, here, view, STANZA_ERROR_SERVICE_UNAVAILABLE);
        return;
    case ROUTER_KIND_OTHER:
        return;
    }
}

void c2s_server_gone(c2s_session *session, c2s_reactor *here)
{
    xml_writer writer;
    xml_writer_init(&writer, here->reply, sizeof here->reply);
    xml_write_raw(&writer, LITERAL("<presence type='unavailable'"));
    xml_write_attribute(&writer, LITERAL("from"), session->jid, session->full_length);
    xml_write_empty_tag_end(&writer);
    if (xml_writer_failed(&writer))
        return;
    xml_slice out = xml_writer_output(&writer);
    broadcast_to_own(session, here, out.ptr, out.len, false);
}
