/*
 * c2s_route.c: stanzas from bound sessions to their recipients.
 *
 * On the sender's reactor (which is its own shard's reactor, since the
 * session moved there at bind): the stanza's 'from' must be the sender's
 * own full or bare JID (else invalid-from, RFC 6120 section 8.1.2.1); 'to'
 * is prepared (RFC 7622); router_resolve says who handles it. The server's
 * own stanzas are answered here (c2s_server.c). A stanza for a user is
 * stamped (`from` set to the sender's full JID, prefixes the stream header
 * declared carried inline) and copied once into a parcel, which goes to the
 * reactor that owns the recipient's shard: handled inline when that is this
 * reactor, else posted to its mailbox (one hop).
 *
 * On the recipient's shard reactor: router_decide applies RFC 6121 section
 * 8.5 to the user's sessions in this reactor's table and the parcel's bytes
 * are written to each target session. A user with no session here is
 * looked up in the cluster (the `local` driver answers from this node; a
 * multi-node driver names the nodes that hold the user, and the parcel is
 * delivered there); with none anywhere the RFC's error goes back to the
 * sender, itself routed as a parcel to the sender's full JID. Errors are
 * never answered with errors (router_decide drops them). With a driver
 * that does not span nodes (`local`) the session tables are the whole
 * directory: sessions are not published and misses are not looked up
 * (cluster_spans_nodes).
 */
#include "server/xmpp/c2s_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void parcel_handle(c2s_reactor *here, c2s_parcel *parcel, bool from_cluster);

/* ------------------------------------------------------------- helpers */

static bool served(void *context, xml_slice domain)
{
    size_t index;
    return c2s_node_domain(context, domain.ptr, domain.len, &index);
}

/* The whole JID text of a split JID (its parts are contiguous). */
static xml_slice jid_text(const router_jid *jid)
{
    const char *end = jid->resource.len > 0 ? jid->resource.ptr + jid->resource.len
                                            : jid->bare.ptr + jid->bare.len;
    return (xml_slice){jid->bare.ptr, (size_t)(end - jid->bare.ptr)};
}

static c2s_parcel *parcel_new(const char *recipient, size_t recipient_length, const char *sender,
                              size_t sender_length, size_t stanza_length)
{
    c2s_parcel *parcel =
        malloc(sizeof *parcel + recipient_length + sender_length + stanza_length);
    if (parcel == NULL)
        return NULL;
    parcel->recipient_length = (uint16_t)recipient_length;
    parcel->sender_length = (uint16_t)sender_length;
    parcel->stanza_length = (uint32_t)stanza_length;
    memcpy(parcel->bytes, recipient, recipient_length);
    memcpy(parcel->bytes + recipient_length, sender, sender_length);
    return parcel;
}

static void parcel_arrived(const rx_message *message)
{
    c2s_node *node = (c2s_node *)(uintptr_t)message->words[0];
    parcel_handle(c2s_reactor_here(node), message->pointer, false);
}

/* Splits the parcel's recipient and hashes its bare JID, once: the hash
 * picks the shard (parcel_send) and the session table's bucket
 * (parcel_handle). False for a recipient that does not split. */
static bool parcel_address(c2s_parcel *parcel)
{
    router_jid recipient;
    if (!router_jid_split(c2s_parcel_recipient(parcel), parcel->recipient_length, &recipient))
        return false;
    parcel->recipient_hash = cluster_hash(recipient.bare.ptr, recipient.bare.len);
    return true;
}

/* Hands a parcel to the reactor of its recipient's shard. Returns false
 * (the parcel freed) when that reactor's mailbox is full. */
static bool parcel_send(c2s_reactor *here, c2s_parcel *parcel)
{
    if (!parcel_address(parcel)) {
        free(parcel);
        return false;
    }
    unsigned owner = cluster_shard_of_hash(parcel->recipient_hash, here->node->reactor_count);
    if (owner == here->index) {
        parcel_handle(here, parcel, false);
        return true;
    }
    rx_message message = {.function = parcel_arrived,
                          .pointer = parcel,
                          .words = {(uint64_t)(uintptr_t)here->node, 0}};
    if (rx_post(owner, &message) != RX_OK) {
        free(parcel);
        return false;
    }
    return true;
}

/* The error for a parcel's stanza, routed back to its sender. */
static void bounce(c2s_reactor *here, const c2s_parcel *parcel, stanza_error condition)
{
    if (here->scratch == NULL && (here->scratch = xml_scratch_create()) == NULL)
        return;
    size_t length = stanza_error_write_from_bytes(here->scratch, c2s_parcel_stanza(parcel),
                                                  parcel->stanza_length, condition, here->reply,
                                                  sizeof here->reply);
    if (length == 0)
        return; /* an error is never answered with an error */
    c2s_parcel *back = parcel_new(c2s_parcel_sender(parcel), parcel->sender_length,
                                  c2s_parcel_recipient(parcel), parcel->recipient_length, length);
    if (back == NULL)
        return;
    back->kind = parcel->kind;
    back->type = ROUTER_TYPE_ERROR;
    back->has_to = true;
    memcpy((char *)c2s_parcel_stanza(back), here->reply, length);
    if (!parcel_send(here, back))
        rx_log(RX_LOG_WARNING, "c2s: an error reply was dropped: reactor mailbox full");
}

/* ----------------------------------------------------------- delivery */

typedef struct lookup_wait {
    c2s_node *node;
    c2s_parcel *parcel;
} lookup_wait;

static void decide_and_deliver(c2s_reactor *here, c2s_parcel *parcel, const router_jid *recipient,
                               const session_user *user)
{
    router_stanza stanza = {.kind = parcel->kind, .type = parcel->type, .has_to = parcel->has_to};
    if (parcel->has_to)
        stanza.to = *recipient;
    router_jid_split(c2s_parcel_sender(parcel), parcel->sender_length, &stanza.sender);
    router_actions actions;
    router_decide(&stanza, recipient, user, &actions);
    for (size_t i = 0; i < actions.count; i++) {
        const router_action *action = &actions.actions[i];
        switch (action->kind) {
        case ROUTER_ACTION_DELIVER:
            c2s_write(action->resource->handle, c2s_parcel_stanza(parcel), parcel->stanza_length);
            break;
        case ROUTER_ACTION_ERROR:
            bounce(here, parcel, action->condition);
            break;
        case ROUTER_ACTION_SERVER: {
            /* The server answers for the user (RFC 6121 section 8.5.1):
             * no handler for a bare JID's IQs yet. */
            router_actions unhandled;
            router_unhandled(&stanza, &unhandled);
            if (unhandled.count > 0 && unhandled.actions[0].kind == ROUTER_ACTION_ERROR)
                bounce(here, parcel, unhandled.actions[0].condition);
            break;
        }
        case ROUTER_ACTION_DROP:
            break;
        }
    }
}

static void looked_up(void *context, const cluster_result *result)
{
    lookup_wait *wait = context;
    c2s_reactor *here = c2s_reactor_here(wait->node);
    c2s_parcel *parcel = wait->parcel;
    cluster *cluster = wait->node->cluster;
    free(wait);
    bool elsewhere = false;
    if (result->status == CLUSTER_OK) {
        for (size_t i = 0; i < result->node_count; i++) {
            if (result->nodes[i] == cluster_self(cluster))
                continue;
            if (cluster_deliver(cluster, here->index, result->nodes[i],
                                c2s_parcel_recipient(parcel), parcel->recipient_length,
                                c2s_parcel_stanza(parcel), parcel->stanza_length, NULL,
                                NULL) == CLUSTER_OK)
                elsewhere = true;
        }
    }
    if (!elsewhere) {
        router_jid recipient;
        if (router_jid_split(c2s_parcel_recipient(parcel), parcel->recipient_length, &recipient)) {
            /* The user may have bound here meanwhile. */
            decide_and_deliver(here, parcel, &recipient,
                               session_table_user_hashed(here->sessions, recipient.bare.ptr,
                                                         recipient.bare.len,
                                                         parcel->recipient_hash));
        }
    }
    free(parcel);
}

/* On the recipient's shard reactor, for a parcel that parcel_address
 * accepted. Frees the parcel. */
static void parcel_handle(c2s_reactor *here, c2s_parcel *parcel, bool from_cluster)
{
    router_jid recipient;
    if (!router_jid_split(c2s_parcel_recipient(parcel), parcel->recipient_length, &recipient)) {
        free(parcel);
        return;
    }
    const session_user *user = session_table_user_hashed(
        here->sessions, recipient.bare.ptr, recipient.bare.len, parcel->recipient_hash);
    if (user == NULL && !from_cluster && parcel->type != ROUTER_TYPE_ERROR &&
        cluster_spans_nodes(here->node->cluster)) {
        /* Not here: ask the cluster where the user is. */
        lookup_wait *wait = malloc(sizeof *wait);
        if (wait != NULL) {
            wait->node = here->node;
            wait->parcel = parcel;
            if (cluster_lookup(here->node->cluster, here->index, recipient.bare.ptr,
                               recipient.bare.len, looked_up, wait) == CLUSTER_OK)
                return;
            free(wait);
        }
    }
    decide_and_deliver(here, parcel, &recipient, user);
    free(parcel);
}

/* ------------------------------------------------------------ sending */

void c2s_route_stanza(c2s_session *session, c2s_reactor *here, const xml_view *view)
{
    c2s_node *node = session->listener->node;
    xml_node_id root = xml_view_root(view);

    /* 'from', when the client put one, must be its own (RFC 6120 section
     * 8.1.2.1), compared in prepared form. */
    xml_attribute from;
    if (xml_element_attribute(view, root, "from", 4, &from)) {
        xml_slice value;
        if (!xml_attribute_value(&from, here->to, sizeof here->to, &value) ||
            jid_parse(value.ptr, value.len, &here->jid) != JID_OK ||
            !stanza_from_allowed(here->jid.text, jid_full_length(&here->jid), session->jid,
                                 session->full_length)) {
            c2s_fail(session, STREAM_ERROR_INVALID_FROM);
            return;
        }
    }
    router_stanza stanza;
    stanza_error bad = router_stanza_read(view, session->jid, session->full_length, here->to,
                                          sizeof here->to, &stanza);
    if (bad == STANZA_ERROR_COUNT && stanza.has_to) {
        /* Route on the prepared 'to'. */
        xml_slice to = jid_text(&stanza.to);
        if (jid_parse(to.ptr, to.len, &here->jid) != JID_OK ||
            !router_jid_split(here->jid.text, jid_full_length(&here->jid), &stanza.to))
            bad = STANZA_ERROR_JID_MALFORMED;
    }
    if (bad != STANZA_ERROR_COUNT) {
        c2s_reply_error(session, here, view, bad);
        return;
    }
    router_resolution resolution;
    router_resolve(&stanza, served, node, &resolution);
    switch (resolution.target) {
    case ROUTER_TARGET_SERVER:
        c2s_server_stanza(session, here, view, &stanza);
        return;
    case ROUTER_TARGET_ERROR:
        c2s_reply_error(session, here, view, resolution.condition);
        return;
    case ROUTER_TARGET_DROP:
        return;
    case ROUTER_TARGET_LOCAL_USER:
        break;
    }
    if (!stanza_out_stamp(view, session->jid, session->full_length, &here->out)) {
        c2s_reply_error(session, here, view, STANZA_ERROR_INTERNAL_SERVER_ERROR);
        return;
    }
    xml_slice recipient = jid_text(&resolution.recipient);
    c2s_parcel *parcel = parcel_new(recipient.ptr, recipient.len, session->jid,
                                    session->full_length, here->out.length);
    if (parcel == NULL) {
        c2s_reply_error(session, here, view, STANZA_ERROR_RESOURCE_CONSTRAINT);
        return;
    }
    parcel->kind = (uint8_t)stanza.kind;
    parcel->type = (uint8_t)stanza.type;
    parcel->has_to = stanza.has_to;
    stanza_out_copy(&here->out, (char *)c2s_parcel_stanza(parcel), here->out.length);
    if (!parcel_send(here, parcel))
        c2s_reply_error(session, here, view, STANZA_ERROR_RESOURCE_CONSTRAINT);
}

/* ----------------------------------------------------- binding, cluster */

session_status c2s_route_bind(c2s_session *session, c2s_reactor *here)
{
    const char *resource = session->jid + session->bare_length + 1;
    size_t resource_length = (size_t)(session->full_length - session->bare_length - 1);
    void *replaced = NULL;
    session_status status = session_table_bind(here->sessions, session->jid, session->bare_length,
                                               resource, resource_length, session, &replaced);
    if (status != SESSION_OK && status != SESSION_REPLACED)
        return status;
    session->flags |= C2S_BOUND | C2S_IN_TABLE;
    if (status == SESSION_REPLACED && replaced != NULL) {
        /* RFC 6120 section 7.7.2.2: the older session ends with conflict. */
        c2s_session *older = replaced;
        older->flags &= (uint8_t)~(C2S_IN_TABLE | C2S_AVAILABLE);
        c2s_fail(older, STREAM_ERROR_CONFLICT);
    } else if (cluster_spans_nodes(here->node->cluster)) {
        cluster_publish(here->node->cluster, here->index, session->jid, session->full_length,
                        NULL, NULL);
    }
    return status;
}

void c2s_route_unbind(c2s_session *session, c2s_reactor *here)
{
    if (!(session->flags & C2S_IN_TABLE))
        return;
    const char *resource = session->jid + session->bare_length + 1;
    size_t resource_length = (size_t)(session->full_length - session->bare_length - 1);
    session_table_remove(here->sessions, session->jid, session->bare_length, resource,
                         resource_length, session);
    session->flags &= (uint8_t)~C2S_IN_TABLE;
    if (cluster_spans_nodes(here->node->cluster) &&
        session_table_find(here->sessions, session->jid, session->bare_length, resource,
                           resource_length) == NULL)
        cluster_withdraw(here->node->cluster, here->index, session->jid, session->full_length,
                         NULL, NULL);
}

void c2s_route_arrived(void *context, unsigned reactor, const char *recipient,
                       size_t recipient_length, const char *stanza, size_t stanza_length)
{
    c2s_node *node = context;
    c2s_reactor *here = &node->reactors[reactor];
    if (here->scratch == NULL && (here->scratch = xml_scratch_create()) == NULL)
        return;
    /* Read kind, type and the stamped sender back from the bytes. */
    static const char header[] = "<stream:stream xmlns='jabber:client' "
                                 "xmlns:stream='http://etherx.jabber.org/streams'>";
    xml_tokenizer tokenizer;
    xml_tokenizer_init(&tokenizer);
    size_t used = 0;
    xml_view view;
    if (xml_tokenizer_feed(&tokenizer, here->scratch, header, sizeof header - 1, &used, &view) ==
            XML_EVENT_STREAM_OPEN &&
        xml_tokenizer_feed(&tokenizer, here->scratch, stanza, stanza_length, &used, &view) ==
            XML_EVENT_STANZA) {
        xml_attribute from;
        xml_slice sender = {NULL, 0};
        router_stanza read;
        if (xml_element_attribute(&view, xml_view_root(&view), "from", 4, &from) &&
            xml_attribute_value(&from, here->to, sizeof here->to, &sender) &&
            router_stanza_read(&view, sender.ptr, sender.len, here->reply, sizeof here->reply,
                               &read) == STANZA_ERROR_COUNT) {
            c2s_parcel *parcel = parcel_new(recipient, recipient_length, sender.ptr, sender.len,
                                            stanza_length);
            if (parcel != NULL) {
                parcel->kind = (uint8_t)read.kind;
                parcel->type = (uint8_t)read.type;
                parcel->has_to = read.has_to;
                memcpy((char *)c2s_parcel_stanza(parcel), stanza, stanza_length);
                xml_tokenizer_fini(&tokenizer);
                if (parcel_address(parcel))
                    parcel_handle(here, parcel, true);
                else
                    free(parcel);
                return;
            }
        }
    }
    xml_tokenizer_fini(&tokenizer);
    rx_log(RX_LOG_WARNING, "c2s: a stanza from the cluster did not parse; dropped");
}
