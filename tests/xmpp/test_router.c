/*
 * test_router.c: every delivery rule of RFC 6120 section 10 and RFC 6121
 * section 8.5 that applies without rosters, one case each, against a real
 * session table; JID splitting; and reading a stanza from a real view.
 */
#include <stdio.h>
#include <string.h>

#include "server/xmpp/router.h"
#include "stanza_stream.h"
#include "tests/harness.h"

#define S(text) text, (sizeof text - 1)

static const char *const sender_jid = "alice@example.com/phone";

static bool served(void *context, xml_slice domain)
{
    (void)context;
    return slice_equals(domain, "example.com") || slice_equals(domain, "chat.example.com");
}

/* A stanza of kind and type to `to` (NULL: no to) from alice's phone. */
static router_stanza stanza_of(router_kind kind, router_type type, const char *to)
{
    router_stanza s;
    memset(&s, 0, sizeof s);
    s.kind = kind;
    s.type = type;
    CHECK(router_jid_split(sender_jid, strlen(sender_jid), &s.sender));
    if (to != NULL) {
        s.has_to = true;
        CHECK(router_jid_split(to, strlen(to), &s.to));
    }
    return s;
}

static router_resolution resolve(router_kind kind, router_type type, const char *to)
{
    router_stanza s = stanza_of(kind, type, to);
    router_resolution r;
    router_resolve(&s, served, NULL, &r);
    return r;
}

/* ------------------------------------------------------------ JID split */

static void test_jid_split(void)
{
    router_jid j;
    CHECK(router_jid_split(S("a@b/c"), &j));
    CHECK(slice_equals(j.local, "a") && slice_equals(j.domain, "b") &&
          slice_equals(j.resource, "c") && slice_equals(j.bare, "a@b"));
    CHECK(router_jid_split(S("b"), &j));
    CHECK(j.local.len == 0 && slice_equals(j.domain, "b") && j.resource.len == 0);
    /* The first '/' ends the bare JID; a resource may hold '/' and '@'. */
    CHECK(router_jid_split(S("b/c/d@e"), &j));
    CHECK(slice_equals(j.domain, "b") && slice_equals(j.resource, "c/d@e"));
    CHECK(router_jid_split(S("a@b/c@d"), &j) && slice_equals(j.local, "a"));
    CHECK(!router_jid_split(S(""), &j));
    CHECK(!router_jid_split(S("@b"), &j));
    CHECK(!router_jid_split(S("a@"), &j));
    CHECK(!router_jid_split(S("a@b/"), &j));
    CHECK(!router_jid_split(S("/r"), &j));
    CHECK(!router_jid_split(S("a@/r"), &j));
    static char big[LIMIT_ROUTE_JID_BYTES_MAX + 1];
    memset(big, 'd', sizeof big);
    CHECK(!router_jid_split(big, sizeof big, &j));
    CHECK(router_jid_split(big, sizeof big - 1, &j));
}

static void test_types(void)
{
    xml_slice none = {NULL, 0};
    CHECK(router_type_of(ROUTER_KIND_MESSAGE, false, none) == ROUTER_TYPE_NORMAL);
    CHECK(router_type_of(ROUTER_KIND_MESSAGE, true, (xml_slice){S("chat")}) == ROUTER_TYPE_CHAT);
    /* RFC 6121 section 5.2.2: a type not understood is normal. */
    CHECK(router_type_of(ROUTER_KIND_MESSAGE, true, (xml_slice){S("shout")}) == ROUTER_TYPE_NORMAL);
    CHECK(router_type_of(ROUTER_KIND_MESSAGE, true, (xml_slice){S("get")}) == ROUTER_TYPE_NORMAL);
    CHECK(router_type_of(ROUTER_KIND_PRESENCE, false, none) == ROUTER_TYPE_AVAILABLE);
    CHECK(router_type_of(ROUTER_KIND_PRESENCE, true, (xml_slice){S("probe")}) == ROUTER_TYPE_PROBE);
    CHECK(router_type_of(ROUTER_KIND_PRESENCE, true, (xml_slice){S("chat")}) ==
          ROUTER_TYPE_INVALID);
    CHECK(router_type_of(ROUTER_KIND_IQ, false, none) == ROUTER_TYPE_INVALID);
    CHECK(router_type_of(ROUTER_KIND_IQ, true, (xml_slice){S("result")}) == ROUTER_TYPE_RESULT);
    CHECK(router_type_of(ROUTER_KIND_IQ, true, (xml_slice){S("GET")}) == ROUTER_TYPE_INVALID);
    CHECK(router_type_of(ROUTER_KIND_IQ, true, (xml_slice){S("error")}) == ROUTER_TYPE_ERROR);
    CHECK(router_kind_of((xml_slice){S("iq")}) == ROUTER_KIND_IQ);
    CHECK(router_kind_of((xml_slice){S("r")}) == ROUTER_KIND_OTHER);
}

/* ------------------------------------------------------------- resolve */

static void test_resolve(void)
{
    /* RFC 6120 section 10.3: no 'to'. */
    router_resolution r = resolve(ROUTER_KIND_MESSAGE, ROUTER_TYPE_CHAT, NULL);
    CHECK(r.target == ROUTER_TARGET_LOCAL_USER);
    CHECK(slice_equals(r.recipient.bare, "alice@example.com") && r.recipient.resource.len == 0);
    CHECK(resolve(ROUTER_KIND_PRESENCE, ROUTER_TYPE_AVAILABLE, NULL).target ==
          ROUTER_TARGET_SERVER);
    CHECK(resolve(ROUTER_KIND_IQ, ROUTER_TYPE_GET, NULL).target == ROUTER_TARGET_SERVER);
    /* Section 10.5.1 and 10.5.2: the server's own domain. */
    CHECK(resolve(ROUTER_KIND_IQ, ROUTER_TYPE_GET, "example.com").target == ROUTER_TARGET_SERVER);
    CHECK(resolve(ROUTER_KIND_MESSAGE, ROUTER_TYPE_CHAT, "example.com/admin").target ==
          ROUTER_TARGET_SERVER);
    /* Section 10.5.3: a local user. */
    r = resolve(ROUTER_KIND_MESSAGE, ROUTER_TYPE_CHAT, "bob@chat.example.com/desk");
    CHECK(r.target == ROUTER_TARGET_LOCAL_USER);
    CHECK(slice_equals(r.recipient.bare, "bob@chat.example.com") &&
          slice_equals(r.recipient.resource, "desk"));
    /* Section 10.4: a domain not served here, no federation yet. */
    r = resolve(ROUTER_KIND_MESSAGE, ROUTER_TYPE_CHAT, "bob@elsewhere.org");
    CHECK(r.target == ROUTER_TARGET_ERROR && r.condition == STANZA_ERROR_REMOTE_SERVER_NOT_FOUND);
    CHECK(resolve(ROUTER_KIND_IQ, ROUTER_TYPE_GET, "elsewhere.org").target == ROUTER_TARGET_ERROR);
    /* Errors are never answered with errors. */
    CHECK(resolve(ROUTER_KIND_MESSAGE, ROUTER_TYPE_ERROR, "bob@elsewhere.org").target ==
          ROUTER_TARGET_DROP);
    CHECK(resolve(ROUTER_KIND_IQ, ROUTER_TYPE_ERROR, "elsewhere.org").target == ROUTER_TARGET_DROP);
    /* RFC 6120 section 8.2.3: an IQ without a valid type. */
    r = resolve(ROUTER_KIND_IQ, ROUTER_TYPE_INVALID, "bob@example.com");
    CHECK(r.target == ROUTER_TARGET_ERROR && r.condition == STANZA_ERROR_BAD_REQUEST);
}

/* -------------------------------------------------------------- decide */

static int handles[8];
static session_table *bob_table;

/* bob@example.com with resources: a (available, 5), b (available, 5),
 * c (available, 1), d (available, -1), e (connected only, 10). */
static const session_user *bob(void)
{
    session_table_destroy(bob_table);
    bob_table = session_table_create(0, 0, SESSION_CONFLICT_REPLACE);
    const char *names = "abcde";
    static const int8_t priorities[5] = {5, 5, 1, -1, 10};
    void *replaced;
    for (unsigned i = 0; i < 5; i++) {
        CHECK(session_table_bind(bob_table, S("bob@example.com"), &names[i], 1, &handles[i],
                                 &replaced) == SESSION_OK);
        CHECK(session_table_set_presence(bob_table, S("bob@example.com"), &names[i], 1, i < 4,
                                         priorities[i]) == SESSION_OK);
    }
    return session_table_user(bob_table, S("bob@example.com"));
}

/* bob with one available resource of priority -3. */
static const session_user *bob_negative(void)
{
    session_table_destroy(bob_table);
    bob_table = session_table_create(0, 0, SESSION_CONFLICT_REPLACE);
    void *replaced;
    CHECK(session_table_bind(bob_table, S("bob@example.com"), S("n"), &handles[5], &replaced) ==
          SESSION_OK);
    CHECK(session_table_set_presence(bob_table, S("bob@example.com"), S("n"), true, -3) ==
          SESSION_OK);
    return session_table_user(bob_table, S("bob@example.com"));
}

static router_actions decide(router_kind kind, router_type type, const char *to,
                             const session_user *user)
{
    router_stanza s = stanza_of(kind, type, to);
    router_actions out;
    memset(&out, 0xA5, sizeof out);
    router_decide(&s, &s.to, user, &out);
    CHECK(out.count >= 1 && out.count <= LIMIT_SESSION_RESOURCES_PER_USER);
    return out;
}

/* The resources (as a string of their names, in table order) delivered to. */
static const char *delivered(const router_actions *a)
{
    static char names[LIMIT_SESSION_RESOURCES_PER_USER + 1];
    size_t n = 0;
    for (size_t i = 0; i < a->count; i++) {
        if (a->actions[i].kind != ROUTER_ACTION_DELIVER)
            return "(not a delivery)";
        names[n++] = a->actions[i].resource->resource[0];
    }
    names[n] = '\0';
    return names;
}

static bool is_single(const router_actions *a, router_action_kind kind)
{
    return a->count == 1 && a->actions[0].kind == kind;
}

static bool is_error(const router_actions *a, stanza_error condition, bool offline)
{
    return is_single(a, ROUTER_ACTION_ERROR) && a->actions[0].condition == condition &&
           a->actions[0].offline == offline;
}

static void test_full_jid_with_session(void)
{
    /* RFC 6121 section 8.5.3.1: deliver to the resource, available or only
     * connected. */
    router_actions a = decide(ROUTER_KIND_MESSAGE, ROUTER_TYPE_CHAT, "bob@example.com/c", bob());
    CHECK(strcmp(delivered(&a), "c") == 0);
    a = decide(ROUTER_KIND_IQ, ROUTER_TYPE_GET, "bob@example.com/e", bob());
    CHECK(strcmp(delivered(&a), "e") == 0);
    a = decide(ROUTER_KIND_IQ, ROUTER_TYPE_RESULT, "bob@example.com/a", bob());
    CHECK(strcmp(delivered(&a), "a") == 0);
    a = decide(ROUTER_KIND_PRESENCE, ROUTER_TYPE_UNAVAILABLE, "bob@example.com/d", bob());
    CHECK(strcmp(delivered(&a), "d") == 0);
    a = decide(ROUTER_KIND_MESSAGE, ROUTER_TYPE_GROUPCHAT, "bob@example.com/a", bob());
    CHECK(strcmp(delivered(&a), "a") == 0);
    a = decide(ROUTER_KIND_MESSAGE, ROUTER_TYPE_ERROR, "bob@example.com/a", bob());
    CHECK(strcmp(delivered(&a), "a") == 0);
    /* Subscription states and probes are the account's, not a resource's. */
    a = decide(ROUTER_KIND_PRESENCE, ROUTER_TYPE_SUBSCRIBE, "bob@example.com/a", bob());
    CHECK(is_single(&a, ROUTER_ACTION_SERVER));
    a = decide(ROUTER_KIND_PRESENCE, ROUTER_TYPE_PROBE, "bob@example.com/a", bob());
    CHECK(is_single(&a, ROUTER_ACTION_SERVER));
}

static void test_full_jid_without_session(void)
{
    /* RFC 6121 section 8.5.3.2.3: an IQ gets service-unavailable; a reply
     * is never answered. */
    router_actions a = decide(ROUTER_KIND_IQ, ROUTER_TYPE_GET, "bob@example.com/gone", bob());
    CHECK(is_error(&a, STANZA_ERROR_SERVICE_UNAVAILABLE, false));
    a = decide(ROUTER_KIND_IQ, ROUTER_TYPE_SET, "bob@example.com/gone", NULL);
    CHECK(is_error(&a, STANZA_ERROR_SERVICE_UNAVAILABLE, false));
    a = decide(ROUTER_KIND_IQ, ROUTER_TYPE_RESULT, "bob@example.com/gone", bob());
    CHECK(is_single(&a, ROUTER_ACTION_DROP));
    a = decide(ROUTER_KIND_IQ, ROUTER_TYPE_ERROR, "bob@example.com/gone", bob());
    CHECK(is_single(&a, ROUTER_ACTION_DROP));
    /* Section 8.5.3.2.1: normal and chat as if to the bare JID. */
    a = decide(ROUTER_KIND_MESSAGE, ROUTER_TYPE_CHAT, "bob@example.com/gone", bob());
    CHECK(strcmp(delivered(&a), "ab") == 0);
    a = decide(ROUTER_KIND_MESSAGE, ROUTER_TYPE_NORMAL, "bob@example.com/gone", bob());
    CHECK(strcmp(delivered(&a), "ab") == 0);
    a = decide(ROUTER_KIND_MESSAGE, ROUTER_TYPE_CHAT, "bob@example.com/gone", NULL);
    CHECK(is_error(&a, STANZA_ERROR_SERVICE_UNAVAILABLE, true));
    /* groupchat: service-unavailable; headline and error: ignored. */
    a = decide(ROUTER_KIND_MESSAGE, ROUTER_TYPE_GROUPCHAT, "bob@example.com/gone", bob());
    CHECK(is_error(&a, STANZA_ERROR_SERVICE_UNAVAILABLE, false));
    a = decide(ROUTER_KIND_MESSAGE, ROUTER_TYPE_HEADLINE, "bob@example.com/gone", bob());
    CHECK(is_single(&a, ROUTER_ACTION_DROP));
    a = decide(ROUTER_KIND_MESSAGE, ROUTER_TYPE_ERROR, "bob@example.com/gone", bob());
    CHECK(is_single(&a, ROUTER_ACTION_DROP));
    /* Section 8.5.3.2.2: presence is ignored, subscriptions go to the
     * account. */
    a = decide(ROUTER_KIND_PRESENCE, ROUTER_TYPE_AVAILABLE, "bob@example.com/gone", bob());
    CHECK(is_single(&a, ROUTER_ACTION_DROP));
    a = decide(ROUTER_KIND_PRESENCE, ROUTER_TYPE_UNSUBSCRIBED, "bob@example.com/gone", NULL);
    CHECK(is_single(&a, ROUTER_ACTION_SERVER));
}

static void test_bare_jid_messages(void)
{
    /* RFC 6121 section 8.5.2.1.1: normal and chat go to the most available
     * resources (the highest non-negative priority, every one of them);
     * e has priority 10 but sent no presence. */
    router_actions a = decide(ROUTER_KIND_MESSAGE, ROUTER_TYPE_CHAT, "bob@example.com", bob());
    CHECK(strcmp(delivered(&a), "ab") == 0);
    a = decide(ROUTER_KIND_MESSAGE, ROUTER_TYPE_NORMAL, "bob@example.com", bob());
    CHECK(strcmp(delivered(&a), "ab") == 0);
    /* headline: every available resource of non-negative priority. */
    a = decide(ROUTER_KIND_MESSAGE, ROUTER_TYPE_HEADLINE, "bob@example.com", bob());
    CHECK(strcmp(delivered(&a), "abc") == 0);
    /* groupchat to a bare JID: service-unavailable. */
    a = decide(ROUTER_KIND_MESSAGE, ROUTER_TYPE_GROUPCHAT, "bob@example.com", bob());
    CHECK(is_error(&a, STANZA_ERROR_SERVICE_UNAVAILABLE, false));
    a = decide(ROUTER_KIND_MESSAGE, ROUTER_TYPE_ERROR, "bob@example.com", bob());
    CHECK(is_single(&a, ROUTER_ACTION_DROP));
    /* Only a negative resource: as if none (offline storage would take
     * normal and chat; until then service-unavailable). */
    a = decide(ROUTER_KIND_MESSAGE, ROUTER_TYPE_CHAT, "bob@example.com", bob_negative());
    CHECK(is_error(&a, STANZA_ERROR_SERVICE_UNAVAILABLE, true));
    a = decide(ROUTER_KIND_MESSAGE, ROUTER_TYPE_HEADLINE, "bob@example.com", bob_negative());
    CHECK(is_single(&a, ROUTER_ACTION_DROP));
    /* Section 8.5.2.2.1: no session at all. */
    a = decide(ROUTER_KIND_MESSAGE, ROUTER_TYPE_NORMAL, "bob@example.com", NULL);
    CHECK(is_error(&a, STANZA_ERROR_SERVICE_UNAVAILABLE, true));
    a = decide(ROUTER_KIND_MESSAGE, ROUTER_TYPE_GROUPCHAT, "bob@example.com", NULL);
    CHECK(is_error(&a, STANZA_ERROR_SERVICE_UNAVAILABLE, false));
    a = decide(ROUTER_KIND_MESSAGE, ROUTER_TYPE_HEADLINE, "bob@example.com", NULL);
    CHECK(is_single(&a, ROUTER_ACTION_DROP));
    a = decide(ROUTER_KIND_MESSAGE, ROUTER_TYPE_ERROR, "bob@example.com", NULL);
    CHECK(is_single(&a, ROUTER_ACTION_DROP));
}

static void test_bare_jid_presence_and_iq(void)
{
    /* RFC 6121 section 8.5.2.1.2: presence to every available resource,
     * whatever its priority. */
    router_actions a =
        decide(ROUTER_KIND_PRESENCE, ROUTER_TYPE_AVAILABLE, "bob@example.com", bob());
    CHECK(strcmp(delivered(&a), "abcd") == 0);
    a = decide(ROUTER_KIND_PRESENCE, ROUTER_TYPE_UNAVAILABLE, "bob@example.com", bob());
    CHECK(strcmp(delivered(&a), "abcd") == 0);
    /* Section 8.5.2.2.2: nobody available: ignored. */
    a = decide(ROUTER_KIND_PRESENCE, ROUTER_TYPE_AVAILABLE, "bob@example.com", NULL);
    CHECK(is_single(&a, ROUTER_ACTION_DROP));
    a = decide(ROUTER_KIND_PRESENCE, ROUTER_TYPE_SUBSCRIBE, "bob@example.com", NULL);
    CHECK(is_single(&a, ROUTER_ACTION_SERVER));
    a = decide(ROUTER_KIND_PRESENCE, ROUTER_TYPE_PROBE, "bob@example.com", bob());
    CHECK(is_single(&a, ROUTER_ACTION_SERVER));
    /* Section 8.5.2.1.3: the server answers IQs to the bare JID itself. */
    a = decide(ROUTER_KIND_IQ, ROUTER_TYPE_GET, "bob@example.com", bob());
    CHECK(is_single(&a, ROUTER_ACTION_SERVER));
    a = decide(ROUTER_KIND_IQ, ROUTER_TYPE_SET, "bob@example.com", NULL);
    CHECK(is_single(&a, ROUTER_ACTION_SERVER));
    /* A presence of an unknown type: bad-request. */
    a = decide(ROUTER_KIND_PRESENCE, ROUTER_TYPE_INVALID, "bob@example.com", bob());
    CHECK(is_error(&a, STANZA_ERROR_BAD_REQUEST, false));
}

/* A user at the resource bound, all of equal priority: every one gets a
 * chat, and the action list holds them all. */
static void test_most_resources(void)
{
    session_table *t = session_table_create(0, 0, SESSION_CONFLICT_REPLACE);
    static int many[LIMIT_SESSION_RESOURCES_PER_USER];
    char resource[16];
    void *replaced;
    for (unsigned i = 0; i < LIMIT_SESSION_RESOURCES_PER_USER; i++) {
        int n = snprintf(resource, sizeof resource, "r%u", i);
        CHECK(session_table_bind(t, S("bob@example.com"), resource, (size_t)n, &many[i],
                                 &replaced) == SESSION_OK);
        CHECK(session_table_set_presence(t, S("bob@example.com"), resource, (size_t)n, true, 0) ==
              SESSION_OK);
    }
    const session_user *user = session_table_user(t, S("bob@example.com"));
    router_actions a = decide(ROUTER_KIND_MESSAGE, ROUTER_TYPE_CHAT, "bob@example.com", user);
    CHECK(a.count == LIMIT_SESSION_RESOURCES_PER_USER);
    bool seen[LIMIT_SESSION_RESOURCES_PER_USER] = {false};
    for (size_t i = 0; i < a.count; i++) {
        CHECK(a.actions[i].kind == ROUTER_ACTION_DELIVER);
        size_t index = (size_t)((int *)a.actions[i].resource->handle - many);
        CHECK(index < LIMIT_SESSION_RESOURCES_PER_USER && !seen[index]);
        if (index < LIMIT_SESSION_RESOURCES_PER_USER)
            seen[index] = true;
    }
    session_table_destroy(t);
}

static void test_unhandled(void)
{
    router_actions a;
    router_stanza s = stanza_of(ROUTER_KIND_IQ, ROUTER_TYPE_GET, "example.com");
    router_unhandled(&s, &a);
    CHECK(is_error(&a, STANZA_ERROR_SERVICE_UNAVAILABLE, false));
    s.type = ROUTER_TYPE_SET;
    router_unhandled(&s, &a);
    CHECK(is_error(&a, STANZA_ERROR_SERVICE_UNAVAILABLE, false));
    s.type = ROUTER_TYPE_RESULT;
    router_unhandled(&s, &a);
    CHECK(is_single(&a, ROUTER_ACTION_DROP));
    s.type = ROUTER_TYPE_ERROR;
    router_unhandled(&s, &a);
    CHECK(is_single(&a, ROUTER_ACTION_DROP));
    s.type = ROUTER_TYPE_INVALID;
    router_unhandled(&s, &a);
    CHECK(is_error(&a, STANZA_ERROR_BAD_REQUEST, false));
    s = stanza_of(ROUTER_KIND_MESSAGE, ROUTER_TYPE_CHAT, "example.com");
    router_unhandled(&s, &a);
    CHECK(is_single(&a, ROUTER_ACTION_DROP));
}

static void test_read_from_view(void)
{
    stanza_stream st;
    CHECK(stanza_stream_open(&st, NULL));
    char buffer[256];
    router_stanza s;
    static const char chat[] =
        "<message to='b&#111;b@example.com/d&amp;sk' type='chat' id='1'><body>x</body></message>";
    CHECK(stanza_stream_feed(&st, chat, sizeof chat - 1));
    CHECK(router_stanza_read(&st.view, S("alice@example.com/phone"), buffer, sizeof buffer, &s) ==
          STANZA_ERROR_COUNT);
    CHECK(s.kind == ROUTER_KIND_MESSAGE && s.type == ROUTER_TYPE_CHAT && s.has_to);
    CHECK(slice_equals(s.to.bare, "bob@example.com") && slice_equals(s.to.resource, "d&sk"));
    CHECK(slice_equals(s.sender.resource, "phone"));

    static const char iq[] = "<iq id='2'><ping xmlns='urn:xmpp:ping'/></iq>";
    CHECK(stanza_stream_feed(&st, iq, sizeof iq - 1));
    CHECK(router_stanza_read(&st.view, S("alice@example.com/phone"), buffer, sizeof buffer, &s) ==
          STANZA_ERROR_COUNT);
    CHECK(s.kind == ROUTER_KIND_IQ && s.type == ROUTER_TYPE_INVALID && !s.has_to);
    router_resolution r;
    router_resolve(&s, served, NULL, &r);
    CHECK(r.target == ROUTER_TARGET_ERROR && r.condition == STANZA_ERROR_BAD_REQUEST);

    static const char bad_to[] = "<presence to='@example.com'/>";
    CHECK(stanza_stream_feed(&st, bad_to, sizeof bad_to - 1));
    CHECK(router_stanza_read(&st.view, S("alice@example.com/phone"), buffer, sizeof buffer, &s) ==
          STANZA_ERROR_JID_MALFORMED);

    static const char nonza[] = "<r xmlns='urn:xmpp:sm:3'/>";
    CHECK(stanza_stream_feed(&st, nonza, sizeof nonza - 1));
    CHECK(router_stanza_read(&st.view, S("alice@example.com/phone"), buffer, sizeof buffer, &s) ==
          STANZA_ERROR_COUNT);
    CHECK(s.kind == ROUTER_KIND_OTHER);
    stanza_stream_close(&st);
}

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    harness_run("jid_split", test_jid_split, filter);
    harness_run("types", test_types, filter);
    harness_run("resolve", test_resolve, filter);
    harness_run("full_jid_with_session", test_full_jid_with_session, filter);
    harness_run("full_jid_without_session", test_full_jid_without_session, filter);
    harness_run("bare_jid_messages", test_bare_jid_messages, filter);
    harness_run("bare_jid_presence_and_iq", test_bare_jid_presence_and_iq, filter);
    harness_run("most_resources", test_most_resources, filter);
    harness_run("unhandled", test_unhandled, filter);
    harness_run("read_from_view", test_read_from_view, filter);
    session_table_destroy(bob_table);
    return harness_finish();
}
