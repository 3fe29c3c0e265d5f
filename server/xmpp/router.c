/*
 * router.c: the delivery rules of RFC 6120 section 10 and RFC 6121 section
 * 8.5, one function per case the RFCs name, so each reads beside its
 * section.
 */
#include "server/xmpp/router.h"

#include <string.h>

static bool slice_is(xml_slice slice, const char *text)
{
    size_t length = strlen(text);
    return slice.len == length && memcmp(slice.ptr, text, length) == 0;
}

bool router_jid_split(const char *jid, size_t length, router_jid *out)
{
    memset(out, 0, sizeof *out);
    if (jid == NULL || length == 0 || length > LIMIT_ROUTE_JID_BYTES_MAX)
        return false;
    const char *slash = memchr(jid, '/', length);
    size_t bare_length = slash != NULL ? (size_t)(slash - jid) : length;
    if (slash != NULL) {
        out->resource = (xml_slice){slash + 1, length - bare_length - 1};
        if (out->resource.len == 0)
            return false;
    }
    out->bare = (xml_slice){jid, bare_length};
    const char *at = memchr(jid, '@', bare_length);
    if (at != NULL) {
        out->local = (xml_slice){jid, (size_t)(at - jid)};
        out->domain = (xml_slice){at + 1, bare_length - out->local.len - 1};
        if (out->local.len == 0)
            return false;
    } else {
        out->domain = out->bare;
    }
    return out->domain.len > 0;
}

router_kind router_kind_of(xml_slice name)
{
    if (slice_is(name, "message"))
        return ROUTER_KIND_MESSAGE;
    if (slice_is(name, "presence"))
        return ROUTER_KIND_PRESENCE;
    if (slice_is(name, "iq"))
        return ROUTER_KIND_IQ;
    return ROUTER_KIND_OTHER;
}

static const struct {
    router_kind kind;
    const char *name;
    router_type type;
} type_names[] = {
    {ROUTER_KIND_MESSAGE, "normal", ROUTER_TYPE_NORMAL},
    {ROUTER_KIND_MESSAGE, "chat", ROUTER_TYPE_CHAT},
    {ROUTER_KIND_MESSAGE, "groupchat", ROUTER_TYPE_GROUPCHAT},
    {ROUTER_KIND_MESSAGE, "headline", ROUTER_TYPE_HEADLINE},
    {ROUTER_KIND_MESSAGE, "error", ROUTER_TYPE_ERROR},
    {ROUTER_KIND_PRESENCE, "unavailable", ROUTER_TYPE_UNAVAILABLE},
    {ROUTER_KIND_PRESENCE, "subscribe", ROUTER_TYPE_SUBSCRIBE},
    {ROUTER_KIND_PRESENCE, "subscribed", ROUTER_TYPE_SUBSCRIBED},
    {ROUTER_KIND_PRESENCE, "unsubscribe", ROUTER_TYPE_UNSUBSCRIBE},
    {ROUTER_KIND_PRESENCE, "unsubscribed", ROUTER_TYPE_UNSUBSCRIBED},
    {ROUTER_KIND_PRESENCE, "probe", ROUTER_TYPE_PROBE},
    {ROUTER_KIND_PRESENCE, "error", ROUTER_TYPE_ERROR},
    {ROUTER_KIND_IQ, "get", ROUTER_TYPE_GET},
    {ROUTER_KIND_IQ, "set", ROUTER_TYPE_SET},
    {ROUTER_KIND_IQ, "result", ROUTER_TYPE_RESULT},
    {ROUTER_KIND_IQ, "error", ROUTER_TYPE_ERROR},
};

router_type router_type_of(router_kind kind, bool has_type, xml_slice value)
{
    if (!has_type) {
        if (kind == ROUTER_KIND_MESSAGE)
            return ROUTER_TYPE_NORMAL;
        return kind == ROUTER_KIND_PRESENCE ? ROUTER_TYPE_AVAILABLE : ROUTER_TYPE_INVALID;
    }
    for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++)
        if (type_names[i].kind == kind && slice_is(value, type_names[i].name))
            return type_names[i].type;
    return kind == ROUTER_KIND_MESSAGE ? ROUTER_TYPE_NORMAL : ROUTER_TYPE_INVALID;
}

static bool is_subscription(router_type type)
{
    return type == ROUTER_TYPE_SUBSCRIBE || type == ROUTER_TYPE_SUBSCRIBED ||
           type == ROUTER_TYPE_UNSUBSCRIBE || type == ROUTER_TYPE_UNSUBSCRIBED;
}

/* ------------------------------------------------------------- resolve */

void router_resolve(const router_stanza *stanza, router_domain_fn *served, void *context,
                    router_resolution *out)
{
    memset(out, 0, sizeof *out);
    if (stanza->type == ROUTER_TYPE_INVALID) {
        out->target = ROUTER_TARGET_ERROR;
        out->condition = STANZA_ERROR_BAD_REQUEST;
    } else if (!stanza->has_to) {
        /* RFC 6120 section 10.3: a message goes to the sender's own bare
         * JID; the server handles presence (broadcast) and IQs (on behalf
         * of the sender's account). */
        if (stanza->kind == ROUTER_KIND_MESSAGE) {
            out->target = ROUTER_TARGET_LOCAL_USER;
            out->recipient = stanza->sender;
            out->recipient.resource = (xml_slice){NULL, 0};
        } else {
            out->target = ROUTER_TARGET_SERVER;
        }
    } else if (!served(context, stanza->to.domain)) {
        out->target = ROUTER_TARGET_ERROR; /* section 10.4, until federation exists */
        out->condition = STANZA_ERROR_REMOTE_SERVER_NOT_FOUND;
    } else if (stanza->to.local.len == 0) {
        out->target = ROUTER_TARGET_SERVER; /* sections 10.5.1 and 10.5.2 */
    } else {
        out->target = ROUTER_TARGET_LOCAL_USER; /* section 10.5.3 */
        out->recipient = stanza->to;
    }
    if (out->target == ROUTER_TARGET_ERROR && stanza->type == ROUTER_TYPE_ERROR)
        out->target = ROUTER_TARGET_DROP;
}

/* -------------------------------------------------------------- decide */

static void one_action(router_actions *out, router_action_kind kind, stanza_error condition,
                       bool offline)
{
    out->count = 1;
    out->actions[0] = (router_action){.kind = kind, .condition = condition, .offline = offline};
}

static void deliver_to(router_actions *out, const session_resource *resource)
{
    out->actions[out->count++] =
        (router_action){.kind = ROUTER_ACTION_DELIVER, .resource = resource};
}

/* The highest priority among available resources with priority >= 0, or
 * -1 when there is none. */
static int highest_priority(const session_user *user)
{
    int highest = -1;
    for (size_t i = 0; user != NULL && i < user->resource_count; i++)
        if (user->resources[i].available && user->resources[i].priority > highest)
            highest = user->resources[i].priority;
    return highest;
}

/* RFC 6121 section 8.5.2.1.1 and 8.5.2.2.1: a message to the bare JID. */
static void decide_bare_message(const router_stanza *stanza, const session_user *user,
                                router_actions *out)
{
    switch (stanza->type) {
    case ROUTER_TYPE_GROUPCHAT:
        one_action(out, ROUTER_ACTION_ERROR, STANZA_ERROR_SERVICE_UNAVAILABLE, false);
        return;
    case ROUTER_TYPE_ERROR:
        one_action(out, ROUTER_ACTION_DROP, 0, false);
        return;
    default:
        break;
    }
    int highest = highest_priority(user);
    out->count = 0;
    for (size_t i = 0; highest >= 0 && i < user->resource_count; i++) {
        const session_resource *r = &user->resources[i];
        if (!r->available || r->priority < 0)
            continue;
        /* headline: every non-negative resource; normal and chat: the
         * "most available" ones, those of the highest priority. */
        if (stanza->type == ROUTER_TYPE_HEADLINE || r->priority == highest)
            deliver_to(out, r);
    }
    if (out->count > 0)
        return;
    if (stanza->type == ROUTER_TYPE_HEADLINE)
        one_action(out, ROUTER_ACTION_DROP, 0, false);
    else
        one_action(out, ROUTER_ACTION_ERROR, STANZA_ERROR_SERVICE_UNAVAILABLE, true);
}

/* RFC 6121 section 8.5.2.1.2 and 8.5.2.2.2: a presence to the bare JID. */
static void decide_bare_presence(const router_stanza *stanza, const session_user *user,
                                 router_actions *out)
{
    if (is_subscription(stanza->type) || stanza->type == ROUTER_TYPE_PROBE) {
        one_action(out, ROUTER_ACTION_SERVER, 0, false);
        return;
    }
    out->count = 0;
    for (size_t i = 0; user != NULL && i < user->resource_count; i++)
        if (user->resources[i].available)
            deliver_to(out, &user->resources[i]);
    if (out->count == 0)
        one_action(out, ROUTER_ACTION_DROP, 0, false);
}

static void decide_bare(const router_stanza *stanza, const session_user *user, router_actions *out)
{
    switch (stanza->kind) {
    case ROUTER_KIND_MESSAGE:
        decide_bare_message(stanza, user, out);
        return;
    case ROUTER_KIND_PRESENCE:
        decide_bare_presence(stanza, user, out);
        return;
    default:
        /* Section 8.5.2.1.3 and 8.5.2.2.3: the server answers on behalf of
         * the user, whether or not a resource is online. */
        one_action(out, ROUTER_ACTION_SERVER, 0, false);
        return;
    }
}

static const session_resource *resource_of(const session_user *user, xml_slice resource)
{
    for (size_t i = 0; user != NULL && i < user->resource_count; i++)
        if (user->resources[i].resource_length == resource.len &&
            memcmp(user->resources[i].resource, resource.ptr, resource.len) == 0)
            return &user->resources[i];
    return NULL;
}

/* RFC 6121 section 8.5.3: to a full JID. */
static void decide_full(const router_stanza *stanza, xml_slice resource, const session_user *user,
                        router_actions *out)
{
    if (stanza->kind == ROUTER_KIND_PRESENCE &&
        (is_subscription(stanza->type) || stanza->type == ROUTER_TYPE_PROBE)) {
        /* Subscription states and probes belong to the account. */
        one_action(out, ROUTER_ACTION_SERVER, 0, false);
        return;
    }
    const session_resource *target = resource_of(user, resource);
    if (target != NULL) { /* section 8.5.3.1: available or connected */
        out->count = 0;
        deliver_to(out, target);
        return;
    }
    switch (stanza->kind) { /* section 8.5.3.2: no such resource */
    case ROUTER_KIND_MESSAGE:
        if (stanza->type == ROUTER_TYPE_NORMAL || stanza->type == ROUTER_TYPE_CHAT)
            decide_bare_message(stanza, user, out);
        else if (stanza->type == ROUTER_TYPE_GROUPCHAT)
            one_action(out, ROUTER_ACTION_ERROR, STANZA_ERROR_SERVICE_UNAVAILABLE, false);
        else
            one_action(out, ROUTER_ACTION_DROP, 0, false);
        return;
    case ROUTER_KIND_IQ:
        if (stanza->type == ROUTER_TYPE_GET || stanza->type == ROUTER_TYPE_SET)
            one_action(out, ROUTER_ACTION_ERROR, STANZA_ERROR_SERVICE_UNAVAILABLE, false);
        else
            one_action(out, ROUTER_ACTION_DROP, 0, false);
        return;
    default:
        one_action(out, ROUTER_ACTION_DROP, 0, false);
        return;
    }
}

void router_decide(const router_stanza *stanza, const router_jid *recipient,
                   const session_user *user, router_actions *out)
{
    if (stanza->type == ROUTER_TYPE_INVALID)
        one_action(out, ROUTER_ACTION_ERROR, STANZA_ERROR_BAD_REQUEST, false);
    else if (recipient->resource.len > 0)
        decide_full(stanza, recipient->resource, user, out);
    else
        decide_bare(stanza, user, out);
    if (out->actions[0].kind == ROUTER_ACTION_ERROR && stanza->type == ROUTER_TYPE_ERROR)
        one_action(out, ROUTER_ACTION_DROP, 0, false);
}

void router_unhandled(const router_stanza *stanza, router_actions *out)
{
    if (stanza->type == ROUTER_TYPE_INVALID)
        one_action(out, ROUTER_ACTION_ERROR, STANZA_ERROR_BAD_REQUEST, false);
    else if (stanza->kind == ROUTER_KIND_IQ &&
             (stanza->type == ROUTER_TYPE_GET || stanza->type == ROUTER_TYPE_SET))
        one_action(out, ROUTER_ACTION_ERROR, STANZA_ERROR_SERVICE_UNAVAILABLE, false);
    else
        one_action(out, ROUTER_ACTION_DROP, 0, false);
}

/* ---------------------------------------------------------------- read */

stanza_error router_stanza_read(const xml_view *view, const char *sender, size_t sender_length,
                                char *to_buffer, size_t to_capacity, router_stanza *out)
{
    memset(out, 0, sizeof *out);
    xml_node_id root = xml_view_root(view);
    out->kind =
        root != XML_NODE_NONE ? router_kind_of(xml_element_name(view, root)) : ROUTER_KIND_OTHER;
    if (!router_jid_split(sender, sender_length, &out->sender))
        return STANZA_ERROR_INTERNAL_SERVER_ERROR; /* the session's own JID: a caller bug */
    if (out->kind == ROUTER_KIND_OTHER)
        return STANZA_ERROR_COUNT;
    xml_routing routing;
    xml_view_routing(view, &routing);
    out->type = router_type_of(out->kind, routing.has_type, routing.type.raw_value);
    out->has_to = routing.has_to;
    if (!routing.has_to)
        return STANZA_ERROR_COUNT;
    xml_slice to;
    if (!xml_attribute_value(&routing.to, to_buffer, to_capacity, &to) ||
        !router_jid_split(to.ptr, to.len, &out->to))
        return STANZA_ERROR_JID_MALFORMED;
    return STANZA_ERROR_COUNT;
}
