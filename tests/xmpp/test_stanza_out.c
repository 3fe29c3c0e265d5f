/*
 * test_stanza_out.c: stamping `from` on received bytes and building error
 * replies, checked by parsing the output again with the tokenizer.
 *
 * Over the real-traffic corpus: every element is stamped, the output is
 * re-parsed on a fresh stream, its from equals the stamped JID, every
 * other attribute of the root is byte-identical (name and value as
 * written, in order), the children and end tag are byte-identical, and a
 * stream-header prefix the element used is declared inline.
 * Usage: test_xmpp_stanza_out [path/to/corpus/stanzas.txt]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/xmpp/stanza_out.h"
#include "stanza_stream.h"
#include "tests/harness.h"

#define S(text) text, (sizeof text - 1)

static char output[LIMIT_STANZA_BYTES_MAX + STANZA_OUT_ATTRIBUTE_BYTES];

/* Stamps the current view of st with from, copies it into output and
 * re-parses it on a fresh stream opened with header; *again holds it. */
static bool stamp_and_reparse(stanza_stream *st, const char *from, const char *header,
                              stanza_stream *again, size_t *length)
{
    static stanza_out out;
    if (!stanza_out_stamp(&st->view, from, strlen(from), &out))
        return false;
    *length = stanza_out_copy(&out, output, sizeof output);
    if (*length != out.length || *length == 0)
        return false;
    return stanza_stream_open(again, header) && stanza_stream_feed(again, output, *length);
}

/* The checks every stamped element must pass; false on the first miss. */
static bool stamped_as_expected(const xml_view *in, const xml_view *out, const char *from)
{
    xml_node_id root = xml_view_root(in), root_out = xml_view_root(out);
    char buffer[4 * LIMIT_ROUTE_JID_BYTES_MAX];
    xml_slice value;
    if (!stanza_attribute(out, "from", buffer, sizeof buffer, &value) || !slice_equals(value, from))
        return false;
    xml_slice name = xml_element_qname(in, root), name_out = xml_element_qname(out, root_out);
    if (name.len != name_out.len || memcmp(name.ptr, name_out.ptr, name.len) != 0)
        return false;
    /* Other attributes: the input's, in order, then only inline
     * declarations of header prefixes. */
    size_t count = xml_element_attribute_count(in, root);
    size_t count_out = xml_element_attribute_count(out, root_out);
    size_t j = 0;
    for (size_t i = 0; i < count; i++) {
        xml_attribute a, b;
        xml_element_attribute_at(in, root, i, &a);
        if (slice_equals(a.name, "from"))
            continue;
        do {
            if (j >= count_out)
                return false;
            xml_element_attribute_at(out, root_out, j++, &b);
        } while (slice_equals(b.name, "from") ||
                 (b.name.len > 6 && memcmp(b.name.ptr, "xmlns:", 6) == 0 &&
                  !(a.name.len == b.name.len && memcmp(a.name.ptr, b.name.ptr, a.name.len) == 0)));
        if (a.name.len != b.name.len || memcmp(a.name.ptr, b.name.ptr, a.name.len) != 0 ||
            a.raw_value.len != b.raw_value.len ||
            memcmp(a.raw_value.ptr, b.raw_value.ptr, a.raw_value.len) != 0)
            return false;
    }
    /* Children and end tag. */
    uint32_t tail = xml_element_start_tag_end(in, root);
    uint32_t tail_out = xml_element_start_tag_end(out, root_out);
    return in->length - tail == out->length - tail_out &&
           memcmp(in->bytes + tail, out->bytes + tail_out, in->length - tail) == 0;
}

static void test_corpus(const char *path)
{
    FILE *file = path != NULL ? fopen(path, "r") : NULL;
    if (file == NULL) {
        printf("corpus %s absent: skipping the corpus checks\n", path ? path : "(no path)");
        return;
    }
    static const char *const froms[] = {"user1@localhost/laptop", "user2@localhost/é'\"&<>"};
    char *line = NULL;
    size_t capacity = 0;
    ssize_t n;
    unsigned lines = 0, stamped = 0, good = 0;
    while ((n = getline(&line, &capacity, file)) > 0) {
        if (line[n - 1] == '\n')
            n--;
        lines++;
        stanza_stream st, again;
        CHECK(stanza_stream_open(&st, NULL));
        if (!stanza_stream_feed(&st, line, (size_t)n)) {
            stanza_stream_close(&st);
            continue; /* not a lone element on a jabber:client stream */
        }
        const char *from = froms[lines % 2];
        size_t length = 0;
        stamped++;
        if (stamp_and_reparse(&st, from, NULL, &again, &length) &&
            stamped_as_expected(&st.view, &again.view, from)) {
            good++;
        } else if (stamped - good <= 5) {
            fprintf(stderr, "  corpus line %u: %.*s\n  became: %.*s\n", lines, (int)n, line,
                    (int)length, output);
        }
        stanza_stream_close(&again);
        stanza_stream_close(&st);
    }
    free(line);
    fclose(file);
    printf("corpus: %u of %u lines stamped and checked (%u elements)\n", good, lines, stamped);
    CHECK(stamped > lines * 9 / 10);
    CHECK(good == stamped);
}

static void test_replaces_and_escapes(void)
{
    stanza_stream st, again;
    CHECK(stanza_stream_open(&st, NULL));
    static const char spoof[] =
        "<message type='chat'  from=\"mallory@evil.example/x\" to='bob@example.com'>"
        "<body>hi &amp; bye</body></message>";
    CHECK(stanza_stream_feed(&st, spoof, sizeof spoof - 1));
    const char *from = "alice@example.com/it's \"<&>\"";
    size_t length;
    CHECK(stamp_and_reparse(&st, from, NULL, &again, &length));
    CHECK(stamped_as_expected(&st.view, &again.view, from));
    CHECK(xml_element_attribute_count(&again.view, 0) == 3);
    CHECK(strstr(output, "mallory") == NULL);
    CHECK(strstr(output, " from='alice@example.com/it&apos;s &quot;&lt;&amp;&gt;&quot;'") != NULL);
    stanza_stream_close(&again);

    /* No from before: one is added after the name. */
    static const char plain[] = "<presence/>";
    CHECK(stanza_stream_feed(&st, plain, sizeof plain - 1));
    CHECK(stamp_and_reparse(&st, "a@b/c", NULL, &again, &length));
    CHECK(length == strlen("<presence from='a@b/c'/>") &&
          memcmp(output, "<presence from='a@b/c'/>", length) == 0);
    stanza_stream_close(&again);

    /* Too small a destination: nothing, and an empty from is refused. */
    stanza_out out;
    CHECK(stanza_out_stamp(&st.view, S("a@b/c"), &out));
    char tiny[8];
    CHECK(stanza_out_copy(&out, tiny, sizeof tiny) == 0);
    CHECK(stanza_out_copy(&out, output, out.length) == out.length);
    CHECK(!stanza_out_stamp(&st.view, "", 0, &out));
    stanza_stream_close(&st);
}

static void test_inline_namespace(void)
{
    static const char header[] =
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
        "xmlns:x='urn:example:x' xmlns:q=\"urn:it's\" to='example.com' version='1.0'>";
    stanza_stream st, again;
    CHECK(stanza_stream_open(&st, header));
    static const char leaning[] =
        "<message to='bob@example.com'><x:thing a='1'/><q:other/><body>b</body></message>";
    CHECK(stanza_stream_feed(&st, leaning, sizeof leaning - 1));
    CHECK(xml_view_header_prefixes(&st.view) != 0);
    size_t length;
    /* Re-parsed on a stream whose header declares neither prefix. */
    CHECK(stamp_and_reparse(&st, "alice@example.com/r", NULL, &again, &length));
    CHECK(stamped_as_expected(&st.view, &again.view, "alice@example.com/r"));
    xml_node_id thing = xml_node_first_child(&again.view, 0);
    CHECK(thing != XML_NODE_NONE &&
          slice_equals(xml_element_namespace(&again.view, thing), "urn:example:x"));
    xml_node_id other = xml_node_next_sibling(&again.view, thing);
    CHECK(other != XML_NODE_NONE &&
          slice_equals(xml_element_namespace(&again.view, other), "urn:it's"));
    CHECK(strstr(output, "xmlns:x='urn:example:x'") != NULL);
    CHECK(strstr(output, "xmlns:q=\"urn:it's\"") != NULL);
    CHECK(strstr(output, "xmlns:stream") == NULL);
    stanza_stream_close(&again);

    /* A stanza declaring its prefix itself carries nothing more. */
    static const char own[] = "<message><x:thing xmlns:x='urn:own'/></message>";
    CHECK(stanza_stream_feed(&st, own, sizeof own - 1));
    CHECK(stamp_and_reparse(&st, "a@b/c", NULL, &again, &length));
    CHECK(length == strlen(own) + strlen(" from='a@b/c'"));
    CHECK(strstr(output, "urn:example:x") == NULL);
    stanza_stream_close(&again);
    stanza_stream_close(&st);
}

static void test_from_allowed(void)
{
    const char *full = "alice@example.com/phone";
    size_t full_length = strlen(full);
    CHECK(stanza_from_allowed(S("alice@example.com/phone"), full, full_length));
    CHECK(stanza_from_allowed(S("alice@example.com"), full, full_length));
    CHECK(!stanza_from_allowed(S("alice@example.com/desk"), full, full_length));
    CHECK(!stanza_from_allowed(S("alice@example.co"), full, full_length));
    CHECK(!stanza_from_allowed(S("bob@example.com/phone"), full, full_length));
    CHECK(!stanza_from_allowed(S("example.com"), full, full_length));
    CHECK(!stanza_from_allowed("", 0, full, full_length));
    CHECK(!stanza_from_allowed(S("alice@example.com/phone/x"), full, full_length));
}

/* Parses an error reply and checks its addressing and condition. */
static void check_reply(const char *reply, size_t length, const char *name, const char *to,
                        const char *from, const char *id, const char *type, const char *condition)
{
    stanza_stream st;
    CHECK(stanza_stream_open(&st, NULL));
    CHECK(stanza_stream_feed(&st, reply, length));
    char buffer[256];
    xml_slice value;
    CHECK(slice_equals(xml_element_qname(&st.view, 0), name));
    CHECK(stanza_attribute(&st.view, "type", buffer, sizeof buffer, &value) &&
          slice_equals(value, "error"));
    bool has_to = stanza_attribute(&st.view, "to", buffer, sizeof buffer, &value);
    CHECK(to == NULL ? !has_to : has_to && slice_equals(value, to));
    bool has_from = stanza_attribute(&st.view, "from", buffer, sizeof buffer, &value);
    CHECK(from == NULL ? !has_from : has_from && slice_equals(value, from));
    bool has_id = stanza_attribute(&st.view, "id", buffer, sizeof buffer, &value);
    CHECK(id == NULL ? !has_id : has_id && slice_equals(value, id));
    xml_node_id error = xml_element_child(&st.view, 0, S("error"), "jabber:client", 13);
    CHECK(error != XML_NODE_NONE);
    xml_attribute attribute;
    CHECK(xml_element_attribute(&st.view, error, S("type"), &attribute) &&
          slice_equals(attribute.raw_value, type));
    xml_node_id c = xml_element_child(&st.view, error, condition, strlen(condition),
                                      S("urn:ietf:params:xml:ns:xmpp-stanzas"));
    CHECK(c != XML_NODE_NONE && xml_node_next_sibling(&st.view, c) == XML_NODE_NONE);
    stanza_stream_close(&st);
}

static void test_error_replies(void)
{
    stanza_stream st;
    CHECK(stanza_stream_open(&st, NULL));
    char reply[1024];
    static const char iq[] = "<iq type='get' id='q&amp;1' from='alice@example.com/phone' "
                             "to='bob@example.com/gone'><query xmlns='jabber:iq:version'/></iq>";
    CHECK(stanza_stream_feed(&st, iq, sizeof iq - 1));
    size_t n = stanza_error_write(&st.view, STANZA_ERROR_SERVICE_UNAVAILABLE, NULL, 0, NULL, 0,
                                  reply, sizeof reply);
    CHECK(n > 0);
    check_reply(reply, n, "iq", "alice@example.com/phone", "bob@example.com/gone", "q&1", "cancel",
                "service-unavailable");
    CHECK(stanza_error_write(&st.view, STANZA_ERROR_SERVICE_UNAVAILABLE, NULL, 0, NULL, 0, reply,
                             n - 1) == 0);

    /* A client's stanza with no from or to: the caller names both. */
    static const char message[] = "<message type='groupchat' id=\"it's\"><body>x</body></message>";
    CHECK(stanza_stream_feed(&st, message, sizeof message - 1));
    n = stanza_error_write(&st.view, STANZA_ERROR_REMOTE_SERVER_NOT_FOUND, S("a@example.com/r"),
                           S("elsewhere.org"), reply, sizeof reply);
    CHECK(n > 0);
    check_reply(reply, n, "message", "a@example.com/r", "elsewhere.org", "it's", "cancel",
                "remote-server-not-found");
    n = stanza_error_write(&st.view, STANZA_ERROR_RESOURCE_CONSTRAINT, S("a@example.com/r"), NULL,
                           0, reply, sizeof reply);
    check_reply(reply, n, "message", "a@example.com/r", NULL, "it's", "wait",
                "resource-constraint");

    /* Errors are never answered with errors. */
    static const char error[] = "<message type='error' to='a@example.com'/>";
    CHECK(stanza_stream_feed(&st, error, sizeof error - 1));
    CHECK(stanza_error_write(&st.view, STANZA_ERROR_SERVICE_UNAVAILABLE, S("x@y/z"), NULL, 0, reply,
                             sizeof reply) == 0);

    /* Every condition of RFC 6120 section 8.3.3 with its type. */
    static const char presence[] = "<presence to='b@example.com' id='p'/>";
    CHECK(stanza_stream_feed(&st, presence, sizeof presence - 1));
    static const char *const types[STANZA_ERROR_COUNT] = {
        "modify", "cancel", "cancel", "auth",   "cancel", "cancel", "cancel", "modify",
        "modify", "cancel", "auth",   "modify", "wait",   "modify", "auth",   "cancel",
        "wait",   "wait",   "cancel", "auth",   "cancel", "wait"};
    for (unsigned c = 0; c < STANZA_ERROR_COUNT; c++) {
        n = stanza_error_write(&st.view, (stanza_error)c, S("a@example.com/r"), NULL, 0, reply,
                               sizeof reply);
        CHECK(n > 0);
        check_reply(reply, n, "presence", "a@example.com/r", "b@example.com", "p", types[c],
                    stanza_error_name((stanza_error)c));
    }
    CHECK(strcmp(stanza_error_name(STANZA_ERROR_COUNT), "undefined-condition") == 0);

    /* Not a stanza: no reply. */
    static const char nonza[] = "<r xmlns='urn:xmpp:sm:3'/>";
    CHECK(stanza_stream_feed(&st, nonza, sizeof nonza - 1));
    CHECK(stanza_error_write(&st.view, STANZA_ERROR_BAD_REQUEST, S("x@y/z"), NULL, 0, reply,
                             sizeof reply) == 0);
    CHECK(strcmp(stanza_error_name(STANZA_ERROR_JID_MALFORMED), "jid-malformed") == 0);
    stanza_stream_close(&st);
}

/* On the recipient's reactor only the stamped bytes are left: the reply is
 * built from them, prefixes declared inline included. */
static void test_error_reply_from_bytes(void)
{
    static const char header[] =
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
        "xmlns:x='urn:example:x' to='example.com' version='1.0'>";
    stanza_stream st;
    CHECK(stanza_stream_open(&st, header));
    static const char iq[] = "<iq type='set' id='s1' to='bob@example.com/gone'><x:q/></iq>";
    CHECK(stanza_stream_feed(&st, iq, sizeof iq - 1));
    stanza_out out;
    CHECK(stanza_out_stamp(&st.view, S("alice@example.com/it's"), &out));
    char bytes[512], reply[1024];
    size_t length = stanza_out_copy(&out, bytes, sizeof bytes);
    CHECK(length > 0);
    xml_scratch *scratch = xml_scratch_create();
    CHECK(scratch != NULL);
    size_t n = stanza_error_write_from_bytes(scratch, bytes, length,
                                             STANZA_ERROR_SERVICE_UNAVAILABLE, reply, sizeof reply);
    CHECK(n > 0);
    check_reply(reply, n, "iq", "alice@example.com/it's", "bob@example.com/gone", "s1", "cancel",
                "service-unavailable");
    /* Truncated bytes, or two elements, are not one stanza. */
    CHECK(stanza_error_write_from_bytes(scratch, bytes, length - 1,
                                        STANZA_ERROR_SERVICE_UNAVAILABLE, reply,
                                        sizeof reply) == 0);
    static const char two[] = "<iq type='get' id='1'/><iq type='get' id='2'/>";
    CHECK(stanza_error_write_from_bytes(scratch, two, sizeof two - 1,
                                        STANZA_ERROR_SERVICE_UNAVAILABLE, reply,
                                        sizeof reply) == 0);
    xml_scratch_destroy(scratch);
    stanza_stream_close(&st);
}

int main(int argc, char **argv)
{
    harness_run("replaces_and_escapes", test_replaces_and_escapes, NULL);
    harness_run("inline_namespace", test_inline_namespace, NULL);
    harness_run("from_allowed", test_from_allowed, NULL);
    harness_run("error_replies", test_error_replies, NULL);
    harness_run("error_reply_from_bytes", test_error_reply_from_bytes, NULL);
    const char *path = argc > 1 ? argv[1] : NULL;
    harness_current_failed = false;
    test_corpus(path);
    if (harness_current_failed)
        harness_failed++;
    else
        harness_passed++;
    return harness_finish();
}
