/*
 * test_xml.c: unit tests of the tokenizer, the views and the writer.
 *
 * Every stream is fed whole, byte by byte, and in pseudo-random pieces; each
 * piece is copied into its own heap block that is freed once consumed, so
 * AddressSanitizer catches a view or a parked state pointing into a piece
 * the caller has already reused. The three runs must describe the same
 * events (a textual rendering of every view) and end with the same
 * condition. Usage: test_xml [path/to/corpus/stanzas.txt]
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/xml.h"
#include "proto/xml_writer.h"
#include "tests/proto/check.h"

#define HEADER                                                                                     \
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "        \
    "to='example.com' version='1.0' xml:lang='en'>"

static xml_scratch *scratch;

/* A growing text buffer for describing outcomes. */
struct text {
    char *bytes;
    size_t length, capacity;
};

static void text_add(struct text *t, const char *bytes, size_t length)
{
    if (t->length + length + 1 > t->capacity) {
        t->capacity = (t->length + length + 1) * 2;
        t->bytes = realloc(t->bytes, t->capacity);
        if (t->bytes == NULL)
            abort();
    }
    memcpy(t->bytes + t->length, bytes, length);
    t->length += length;
    t->bytes[t->length] = '\0';
}

static void text_str(struct text *t, const char *s)
{
    text_add(t, s, strlen(s));
}

static void text_slice(struct text *t, xml_slice s)
{
    text_add(t, s.ptr, s.len);
}

/* Renders a node and its subtree, with namespaces and unescaped values. */
static void describe_node(const xml_view *v, xml_node_id n, struct text *out)
{
    static char buffer[1 << 16];
    xml_slice value;
    if (xml_node_kind_of(v, n) == XML_NODE_TEXT) {
        CHECK(xml_text_value(v, n, buffer, sizeof buffer, &value));
        text_str(out, "\"");
        text_slice(out, value);
        text_str(out, "\"");
        return;
    }
    text_str(out, "<");
    text_slice(out, xml_element_name(v, n));
    text_str(out, "{");
    text_slice(out, xml_element_namespace(v, n));
    text_str(out, "}");
    for (size_t i = 0; i < xml_element_attribute_count(v, n); i++) {
        xml_attribute a;
        xml_element_attribute_at(v, n, i, &a);
        CHECK(xml_unescape(a.raw_value, buffer, sizeof buffer, &value));
        text_str(out, " ");
        text_slice(out, a.name);
        text_str(out, "=");
        text_slice(out, value);
    }
    text_str(out, ">");
    for (xml_node_id c = xml_node_first_child(v, n); c != XML_NODE_NONE;
         c = xml_node_next_sibling(v, c)) {
        CHECK(xml_node_parent(v, c) == n);
        describe_node(v, c, out);
    }
    text_str(out, "</>");
}

struct outcome {
    struct text log;
    int opens, stanzas, closes;
    xml_error_condition error;
    bool zero_copy; /* every unsplit element pointed into its piece */
};

/* Records an event. The call that yielded it consumed used bytes from
 * call_start: an element that began in this call (it is no longer than
 * that) must be a view into them; one that began in an earlier piece must
 * be in the assembly buffer. */
static void record(struct outcome *o, xml_event e, const xml_view *v, const char *call_start,
                   size_t used, const char *assembly)
{
    char mask[8];
    if (e == XML_EVENT_NEED_MORE)
        return;
    o->opens += e == XML_EVENT_STREAM_OPEN;
    o->stanzas += e == XML_EVENT_STANZA;
    o->closes += e == XML_EVENT_STREAM_CLOSE;
    text_str(&o->log, e == XML_EVENT_STREAM_OPEN ? "OPEN "
                      : e == XML_EVENT_STANZA    ? "STANZA "
                                                 : "CLOSE ");
    text_slice(&o->log, xml_view_bytes(v));
    snprintf(mask, sizeof mask, " %02x ", xml_view_header_prefixes(v));
    text_str(&o->log, mask);
    if (xml_view_root(v) != XML_NODE_NONE)
        describe_node(v, xml_view_root(v), &o->log);
    text_str(&o->log, "\n");
    if (v->length <= used ? v->bytes < call_start || v->bytes + v->length > call_start + used
                          : v->bytes != assembly)
        o->zero_copy = false;
}

/* Feeds input in pieces: 0 = whole, 1 = bytes, else a seed for random sizes. */
static void feed(const char *input, size_t length, unsigned mode, struct outcome *o)
{
    xml_tokenizer t;
    unsigned seed = mode;
    xml_tokenizer_init(&t);
    *o = (struct outcome){.zero_copy = true};
    for (size_t at = 0; at < length && o->error == XML_ERR_NONE;) {
        size_t n = mode == 0 ? length : mode == 1 ? 1 : 1 + (size_t)(rand_r(&seed) % 97);
        if (n > length - at)
            n = length - at;
        char *piece = malloc(n);
        memcpy(piece, input + at, n);
        for (size_t used_total = 0; used_total < n;) {
            size_t used;
            xml_view v;
            xml_event e =
                xml_tokenizer_feed(&t, scratch, piece + used_total, n - used_total, &used, &v);
            if (e == XML_EVENT_ERROR) {
                o->error = xml_tokenizer_error(&t);
                CHECK(xml_tokenizer_feed(&t, scratch, "<a/>", 4, &used, &v) == XML_EVENT_ERROR);
                break;
            }
            CHECK(used > 0 && used <= n - used_total);
            record(o, e, &v, piece + used_total, used, t.assembly);
            used_total += used;
        }
        free(piece);
        at += n;
    }
    xml_tokenizer_fini(&t);
}

/* Feeds a stream whole, bytewise and randomly; all must agree. */
static void run(const char *label, const char *input, size_t length, struct outcome *whole)
{
    static const unsigned modes[] = {1, 7, 12345};
    check_label = label;
    feed(input, length, 0, whole);
    CHECK(whole->zero_copy);
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        struct outcome split;
        feed(input, length, modes[i], &split);
        CHECK(split.zero_copy);
        CHECK(split.error == whole->error);
        CHECK(split.log.length == whole->log.length &&
              (split.log.length == 0 ||
               memcmp(split.log.bytes, whole->log.bytes, split.log.length) == 0));
        if (split.log.length != whole->log.length ||
            (split.log.length && memcmp(split.log.bytes, whole->log.bytes, split.log.length)))
            fprintf(stderr, "whole:\n%s\nsplit %u:\n%s\n", whole->log.bytes ? whole->log.bytes : "",
                    modes[i], split.log.bytes ? split.log.bytes : "");
        free(split.log.bytes);
    }
}

static void expect_error(const char *label, const char *input, xml_error_condition condition)
{
    struct outcome o;
    run(label, input, strlen(input), &o);
    CHECK(o.error == condition);
    if (o.error != condition)
        fprintf(stderr, "  got %s, want %s\n", xml_error_condition_name(o.error),
                xml_error_condition_name(condition));
    free(o.log.bytes);
}

static void expect_stanza_error(const char *label, const char *stanza, xml_error_condition c)
{
    char input[4096];
    snprintf(input, sizeof input, "%s%s", HEADER, stanza);
    expect_error(label, input, c);
}

static void expect_log(const char *label, const char *input, const char *log)
{
    struct outcome o;
    run(label, input, strlen(input), &o);
    CHECK(o.error == XML_ERR_NONE);
    CHECK(o.log.bytes != NULL && strcmp(o.log.bytes, log) == 0);
    if (o.log.bytes == NULL || strcmp(o.log.bytes, log) != 0)
        fprintf(stderr, "  got:\n%s  want:\n%s", o.log.bytes ? o.log.bytes : "(none)\n", log);
    free(o.log.bytes);
}

#define OPEN_LOG                                                                                   \
    "OPEN " HEADER " 00 <stream{http://etherx.jabber.org/streams} xmlns=jabber:client "            \
    "xmlns:stream=http://etherx.jabber.org/streams to=example.com version=1.0 xml:lang=en></>\n"

static void test_stream_basics(void)
{
    expect_log("basic stream",
               "<?xml version='1.0'?>" HEADER " \n\t<message to='a@b' type=\"chat\" id='1'>"
               "<body>Hi &amp; bye &#x263A;&#65;</body></message>  \r\n <presence/>"
               "</stream:stream>",
               OPEN_LOG "STANZA <message to='a@b' type=\"chat\" id='1'><body>Hi &amp; bye "
                        "&#x263A;&#65;</body></message> 00 <message{jabber:client} to=a@b "
                        "type=chat id=1><body{jabber:client}>\"Hi & bye \xE2\x98\xBA"
                        "A\"</></>\n"
                        "STANZA <presence/> 00 <presence{jabber:client}></>\n"
                        "CLOSE </stream:stream> 00 \n");
    expect_log(
        "no declaration, double quotes, close with space",
        "<s:stream xmlns=\"jabber:server\" xmlns:s=\"http://etherx.jabber.org/streams\">"
        "<iq/></s:stream >",
        "OPEN <s:stream xmlns=\"jabber:server\" xmlns:s=\"http://etherx.jabber.org/streams\">"
        " 00 <stream{http://etherx.jabber.org/streams} xmlns=jabber:server "
        "xmlns:s=http://etherx.jabber.org/streams></>\n"
        "STANZA <iq/> 00 <iq{jabber:server}></>\n"
        "CLOSE </s:stream > 00 \n");
    expect_log("namespaces and children",
               HEADER "<iq type='get'><query xmlns='jabber:iq:roster'><item jid='a@b'/>"
                      "</query><f:x xmlns:f='urn:f'><f:y/><z/>t<![CDATA[<c>&amp;]]>u</f:x></iq>",
               OPEN_LOG "STANZA <iq type='get'><query xmlns='jabber:iq:roster'><item "
                        "jid='a@b'/></query><f:x xmlns:f='urn:f'><f:y/><z/>t<![CDATA[<c>&amp;]]>"
                        "u</f:x></iq> 00 <iq{jabber:client} type=get><query{jabber:iq:roster} "
                        "xmlns=jabber:iq:roster><item{jabber:iq:roster} jid=a@b></></>"
                        "<x{urn:f} xmlns:f=urn:f><y{urn:f}></><z{jabber:client}></>\"t\""
                        "\"<c>&amp;\"\"u\"</></>\n");
    expect_log("header prefixes used",
               "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/"
               "streams' xmlns:db='jabber:server:dialback'>"
               "<db:result to='b' from='a'>key</db:result><stream:features/>"
               "<db:verify xmlns:db='jabber:server:dialback'/><message db:x='1'/>",
               "OPEN <stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/"
               "streams' xmlns:db='jabber:server:dialback'> 00 "
               "<stream{http://etherx.jabber.org/streams} xmlns=jabber:server "
               "xmlns:stream=http://etherx.jabber.org/streams xmlns:db=jabber:server:dialback>"
               "</>\n"
               "STANZA <db:result to='b' from='a'>key</db:result> 02 "
               "<result{jabber:server:dialback} to=b from=a>\"key\"</>\n"
               "STANZA <stream:features/> 01 <features{http://etherx.jabber.org/streams}></>\n"
               "STANZA <db:verify xmlns:db='jabber:server:dialback'/> 00 "
               "<verify{jabber:server:dialback} xmlns:db=jabber:server:dialback></>\n"
               "STANZA <message db:x='1'/> 02 <message{jabber:server} db:x=1></>\n");
    expect_log("utf-8, xml:lang, quotes and > in values",
               HEADER "<message xml:lang='ru' a='\"&apos;>'><body>\xD0\x9F\xD1\x80\xD0\xB8 "
                      "\xE4\xB8\x96 \xF0\x9F\x98\x80 ]] ] > x</body></message>",
               OPEN_LOG
               "STANZA <message xml:lang='ru' a='\"&apos;>'><body>\xD0\x9F\xD1\x80\xD0\xB8"
               " \xE4\xB8\x96 \xF0\x9F\x98\x80 ]] ] > x</body></message> 00 "
               "<message{jabber:client} xml:lang=ru a=\"'>><body{jabber:client}>"
               "\"\xD0\x9F\xD1\x80\xD0\xB8 \xE4\xB8\x96 \xF0\x9F\x98\x80 ]] ] > x\"</></>\n");
    expect_log("undeclaring the default namespace", HEADER "<a xmlns=''><b/></a>",
               OPEN_LOG "STANZA <a xmlns=''><b/></a> 00 <a{} xmlns=><b{}></></>\n");
}

/* Each rejection with the exact RFC 6120 condition it must raise. */
struct rejection {
    const char *label;
    const char *input;
    xml_error_condition condition;
};

/* Whole streams, from their first byte. */
static const struct rejection stream_rejections[] = {
    {"doctype", "<?xml version='1.0'?><!DOCTYPE stream>", XML_ERR_RESTRICTED_XML},
    {"entity declaration", "<!ENTITY x 'y'>", XML_ERR_RESTRICTED_XML},
    {"billion laughs",
     "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">"
     "<!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">]>"
     "<lolz>&lol2;</lolz>",
     XML_ERR_RESTRICTED_XML},
    {"comment before header", "<!-- hi --><stream:stream/>", XML_ERR_RESTRICTED_XML},
    {"PI before header", "<?xml-stylesheet href='a'?>", XML_ERR_RESTRICTED_XML},
    {"declaration twice", "<?xml version='1.0'?><?xml version='1.0'?>", XML_ERR_RESTRICTED_XML},
    {"wrong stream namespace",
     "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/x'>",
     XML_ERR_INVALID_NAMESPACE},
    {"wrong stream name",
     "<stream:flow xmlns='jabber:client' "
     "xmlns:stream='http://etherx.jabber.org/streams'>",
     XML_ERR_INVALID_NAMESPACE},
    {"undeclared stream prefix", "<stream:stream xmlns='jabber:client'>",
     XML_ERR_INVALID_NAMESPACE},
    {"no default namespace", "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>",
     XML_ERR_INVALID_NAMESPACE},
    {"empty header",
     "<stream:stream xmlns='jabber:client' "
     "xmlns:stream='http://etherx.jabber.org/streams'/>",
     XML_ERR_BAD_FORMAT},
    {"end tag first", "</stream:stream>", XML_ERR_NOT_WELL_FORMED},
    {"text first", "hello", XML_ERR_NOT_WELL_FORMED},
};

/* Stanzas, after a valid client stream header. */
static const struct rejection stanza_rejections[] = {
    {"doctype in stream", "<!DOCTYPE x>", XML_ERR_RESTRICTED_XML},
    {"entity reference", "<message><body>&foo;</body></message>", XML_ERR_RESTRICTED_XML},
    {"entity reference in value", "<message to='&nbsp;'/>", XML_ERR_RESTRICTED_XML},
    {"long entity reference", "<message>&verylongname;</message>", XML_ERR_RESTRICTED_XML},
    {"comment in stanza", "<message><!-- x --></message>", XML_ERR_RESTRICTED_XML},
    {"comment between stanzas", "<!-- x -->", XML_ERR_RESTRICTED_XML},
    {"PI in stream", "<?foo bar?>", XML_ERR_RESTRICTED_XML},
    {"PI in stanza", "<message><?foo?></message>", XML_ERR_RESTRICTED_XML},
    {"declaration after header", "<?xml version='1.0'?>", XML_ERR_RESTRICTED_XML},
    {"mismatched", "<message><body></message>", XML_ERR_NOT_WELL_FORMED},
    {"mismatched prefix", "<a xmlns:p='u' xmlns:q='u'><p:b></q:b></a>", XML_ERR_NOT_WELL_FORMED},
    {"duplicate", "<message to='a' to='b'/>", XML_ERR_NOT_WELL_FORMED},
    {"duplicate xmlns", "<message xmlns='a' xmlns='a'/>", XML_ERR_NOT_WELL_FORMED},
    {"unquoted", "<message to=a/>", XML_ERR_NOT_WELL_FORMED},
    {"no space between attributes", "<message to='a'id='b'/>", XML_ERR_NOT_WELL_FORMED},
    {"lt in value", "<message to='a<b'/>", XML_ERR_NOT_WELL_FORMED},
    {"missing value", "<message to/>", XML_ERR_NOT_WELL_FORMED},
    {"two colons", "<a:b:c/>", XML_ERR_NOT_WELL_FORMED},
    {"empty tag name", "<>", XML_ERR_NOT_WELL_FORMED},
    {"cdata end in text", "<m>a]]>b</m>", XML_ERR_NOT_WELL_FORMED},
    {"cdata at stream level", "<![CDATA[x]]>", XML_ERR_NOT_WELL_FORMED},
    {"charref zero", "<m>&#0;</m>", XML_ERR_NOT_WELL_FORMED},
    {"charref surrogate", "<m>&#xD800;</m>", XML_ERR_NOT_WELL_FORMED},
    {"charref too big", "<m>&#x110000;</m>", XML_ERR_NOT_WELL_FORMED},
    {"charref huge", "<m>&#99999999999999999999;</m>", XML_ERR_NOT_WELL_FORMED},
    {"charref empty", "<m>&#;</m>", XML_ERR_NOT_WELL_FORMED},
    {"charref empty hex", "<m>&#x;</m>", XML_ERR_NOT_WELL_FORMED},
    {"charref no semicolon", "<m>&#65 </m>", XML_ERR_NOT_WELL_FORMED},
    {"entity no semicolon", "<m>&amp </m>", XML_ERR_NOT_WELL_FORMED},
    {"bare ampersand", "<m>a & b</m>", XML_ERR_NOT_WELL_FORMED},
    {"charref fffe", "<m a='&#xFFFE;'/>", XML_ERR_NOT_WELL_FORMED},
    {"overlong", "<m>\xC0\x80</m>", XML_ERR_NOT_WELL_FORMED},
    {"overlong 3", "<m>\xE0\x80\xAF</m>", XML_ERR_NOT_WELL_FORMED},
    {"surrogate", "<m>\xED\xA0\x80</m>", XML_ERR_NOT_WELL_FORMED},
    {"beyond U+10FFFF", "<m>\xF5\x80\x80\x80</m>", XML_ERR_NOT_WELL_FORMED},
    {"F4 90", "<m>\xF4\x90\x80\x80</m>", XML_ERR_NOT_WELL_FORMED},
    {"truncated", "<m>\xE2\x82</m>", XML_ERR_NOT_WELL_FORMED},
    {"truncated 4", "<m>\xF0\x9F\x98 </m>", XML_ERR_NOT_WELL_FORMED},
    {"ff", "<m>\xFF</m>", XML_ERR_NOT_WELL_FORMED},
    {"lone continuation", "<m>\x80</m>", XML_ERR_NOT_WELL_FORMED},
    {"bad utf-8 in value", "<m a='\xC1\xBF'/>", XML_ERR_NOT_WELL_FORMED},
    {"bad utf-8 in name", "<m\xC3/>", XML_ERR_NOT_WELL_FORMED},
    {"bad utf-8 in cdata", "<m><![CDATA[\xED\xBF\xBF]]></m>", XML_ERR_NOT_WELL_FORMED},
    {"control char", "<m>\x01</m>", XML_ERR_NOT_WELL_FORMED},
    {"control char in value", "<m a='\x1F'/>", XML_ERR_NOT_WELL_FORMED},
    {"U+FFFE", "<m>\xEF\xBF\xBE</m>", XML_ERR_NOT_WELL_FORMED},
    {"U+FFFF", "<m>\xEF\xBF\xBF</m>", XML_ERR_NOT_WELL_FORMED},
    {"undeclared prefix", "<foo:bar/>", XML_ERR_INVALID_NAMESPACE},
    {"undeclared prefix inside", "<m><a:b/></m>", XML_ERR_INVALID_NAMESPACE},
    {"undeclared attribute prefix", "<m foo:x='1'/>", XML_ERR_INVALID_NAMESPACE},
    {"prefix out of scope", "<m><a xmlns:p='u'/><p:b/></m>", XML_ERR_INVALID_NAMESPACE},
    {"undeclaring a prefix", "<m xmlns:p=''/>", XML_ERR_NOT_WELL_FORMED},
    {"text between stanzas", "hello", XML_ERR_BAD_FORMAT},
    {"bytes after close", "</stream:stream><m/>", XML_ERR_NOT_WELL_FORMED},
    {"wrong close", "</stream:streams>", XML_ERR_NOT_WELL_FORMED},
};

static void test_rejections(void)
{
    for (size_t i = 0; i < sizeof stream_rejections / sizeof stream_rejections[0]; i++)
        expect_error(stream_rejections[i].label, stream_rejections[i].input,
                     stream_rejections[i].condition);
    for (size_t i = 0; i < sizeof stanza_rejections / sizeof stanza_rejections[0]; i++)
        expect_stanza_error(stanza_rejections[i].label, stanza_rejections[i].input,
                            stanza_rejections[i].condition);
}

/* Builds "<e a0='v' a1='v' ...>" with count attributes, or nesting. */
static void test_bounds(void)
{
    static char input[8192];
    size_t n = (size_t)snprintf(input, sizeof input, "%s<m", HEADER);
    for (unsigned i = 0; i < LIMIT_ELEMENT_ATTRIBUTES_MAX; i++)
        n += (size_t)snprintf(input + n, sizeof input - n, " a%u='%u'", i, i);
    snprintf(input + n, sizeof input - n, "/>");
    struct outcome o;
    run("attributes at the bound", input, strlen(input), &o);
    CHECK(o.error == XML_ERR_NONE && o.stanzas == 1);
    free(o.log.bytes);
    snprintf(input + n, sizeof input - n, " extra='1'/>");
    expect_error("too many attributes", input, XML_ERR_POLICY_VIOLATION);

    n = (size_t)snprintf(input, sizeof input, "%s", HEADER);
    for (unsigned i = 0; i < LIMIT_STANZA_DEPTH_MAX; i++)
        n += (size_t)snprintf(input + n, sizeof input - n, "<d%u>", i);
    size_t open_end = n;
    for (unsigned i = LIMIT_STANZA_DEPTH_MAX; i-- > 0;)
        n += (size_t)snprintf(input + n, sizeof input - n, "</d%u>", i);
    run("depth at the bound", input, strlen(input), &o);
    CHECK(o.error == XML_ERR_NONE && o.stanzas == 1);
    free(o.log.bytes);
    snprintf(input + open_end, sizeof input - open_end, "<deeper/>");
    expect_error("too deep", input, XML_ERR_POLICY_VIOLATION);

    n = (size_t)snprintf(input, sizeof input, "%s<m ", HEADER);
    memset(input + n, 'a', LIMIT_NAME_BYTES_MAX + 1);
    snprintf(input + n + LIMIT_NAME_BYTES_MAX + 1, 16, "='1'/>");
    expect_error("name too long", input, XML_ERR_POLICY_VIOLATION);

    n = (size_t)snprintf(input, sizeof input, "<stream:stream xmlns='jabber:client' x='");
    memset(input + n, 'x', LIMIT_STREAM_HEADER_BYTES_MAX);
    input[n + LIMIT_STREAM_HEADER_BYTES_MAX] = '\0';
    expect_error("header too big", input, XML_ERR_POLICY_VIOLATION);

    n = (size_t)snprintf(input, sizeof input,
                         "<stream:stream xmlns='jabber:client' "
                         "xmlns:stream='http://etherx.jabber.org/streams'");
    for (unsigned i = 0; i < LIMIT_STREAM_HEADER_PREFIXES_MAX; i++)
        n += (size_t)snprintf(input + n, sizeof input - n, " xmlns:p%u='u'", i);
    snprintf(input + n, sizeof input - n, ">");
    expect_error("too many header prefixes", input, XML_ERR_POLICY_VIOLATION);
}

/* A 10 MB stanza fails at LIMIT_STANZA_BYTES_MAX, fast, without growing
 * the assembly buffer past the bound. */
static void test_huge_stanza(void)
{
    size_t size = 10u * 1024u * 1024u;
    char *input = malloc(size);
    size_t n = (size_t)snprintf(input, size, "%s<message><body>", HEADER);
    memset(input + n, 'a', size - n);
    check_label = "10 MB stanza";
    for (size_t piece = 4096; piece <= size; piece = piece == 4096 ? size : size + 1) {
        xml_tokenizer t;
        xml_view v;
        size_t used = 0, at = 0;
        struct timespec start, stop;
        xml_event e = XML_EVENT_NEED_MORE;
        xml_tokenizer_init(&t);
        clock_gettime(CLOCK_MONOTONIC, &start);
        while (at < size && e != XML_EVENT_ERROR) {
            size_t length = size - at < piece ? size - at : piece;
            e = xml_tokenizer_feed(&t, scratch, input + at, length, &used, &v);
            at += used;
        }
        clock_gettime(CLOCK_MONOTONIC, &stop);
        double seconds =
            (double)(stop.tv_sec - start.tv_sec) + (double)(stop.tv_nsec - start.tv_nsec) / 1e9;
        CHECK(e == XML_EVENT_ERROR && xml_tokenizer_error(&t) == XML_ERR_POLICY_VIOLATION);
        CHECK(at <= LIMIT_STANZA_BYTES_MAX + 2 * 4096 + n);
        CHECK(t.assembly_capacity <= 2 * LIMIT_STANZA_BYTES_MAX);
        CHECK(seconds < 1.0);
        xml_tokenizer_fini(&t);
    }
    free(input);
}

static void test_restart_and_views(void)
{
    const char *first = HEADER "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
    const char *second = "<?xml version='1.0'?>" HEADER "<iq id='1'/>";
    xml_tokenizer t;
    xml_view v;
    size_t used, at = 0;
    check_label = "restart";
    xml_tokenizer_init(&t);
    CHECK(xml_tokenizer_feed(&t, scratch, first, strlen(first), &used, &v) ==
          XML_EVENT_STREAM_OPEN);
    CHECK(xml_stream_default_namespace(&t).len == 13);
    CHECK(xml_stream_prefix_count(&t) == 1);
    at = used;
    CHECK(xml_tokenizer_feed(&t, scratch, first + at, strlen(first) - at, &used, &v) ==
          XML_EVENT_STANZA);
    CHECK(v.bytes == first + at); /* zero copy */
    xml_tokenizer_reset(&t);
    CHECK(xml_tokenizer_feed(&t, scratch, second, strlen(second), &used, &v) ==
          XML_EVENT_STREAM_OPEN);
    xml_attribute a;
    CHECK(xml_element_attribute(&v, 0, "to", 2, &a) && a.raw_value.len == 11);
    CHECK(xml_element_attribute(&v, 0, "xml:lang", 8, &a) && a.raw_value.len == 2);
    CHECK(!xml_element_attribute(&v, 0, "from", 4, &a));
    at = used;
    CHECK(xml_tokenizer_feed(&t, scratch, second + at, strlen(second) - at, &used, &v) ==
          XML_EVENT_STANZA);
    CHECK(xml_element_attribute(&v, 0, "id", 2, &a) && a.raw_value.ptr[0] == '1');
    xml_tokenizer_fini(&t);

    /* A stanza split in two pieces is assembled; the next is zero copy. */
    const char *pieces[] = {HEADER "<message to='x'><bo", "dy>hi</body></message><presence/>"};
    xml_tokenizer_init(&t);
    CHECK(xml_tokenizer_feed(&t, scratch, pieces[0], strlen(pieces[0]), &used, &v) ==
          XML_EVENT_STREAM_OPEN);
    at = used;
    CHECK(xml_tokenizer_feed(&t, scratch, pieces[0] + at, strlen(pieces[0]) - at, &used, &v) ==
          XML_EVENT_NEED_MORE);
    CHECK(t.assembly != NULL);
    CHECK(xml_tokenizer_feed(&t, scratch, pieces[1], strlen(pieces[1]), &used, &v) ==
          XML_EVENT_STANZA);
    CHECK(v.bytes == t.assembly && v.length == strlen("<message to='x'><body>hi</body></message>"));
    xml_node_id body = xml_element_child(&v, 0, "body", 4, "jabber:client", 13);
    char buffer[16];
    xml_slice text;
    CHECK(body != XML_NODE_NONE && xml_element_text(&v, body, buffer, sizeof buffer, &text));
    CHECK(text.len == 2 && memcmp(text.ptr, "hi", 2) == 0);
    CHECK(xml_element_name_end(&v, 0) == 8 && xml_element_start_tag_end(&v, 0) == 16);
    at = used;
    CHECK(xml_tokenizer_feed(&t, scratch, pieces[1] + at, strlen(pieces[1]) - at, &used, &v) ==
          XML_EVENT_STANZA);
    CHECK(t.assembly == NULL && v.bytes == pieces[1] + at);
    xml_tokenizer_fini(&t);
    CHECK(sizeof(xml_tokenizer) <= 320);
}

static void test_values(void)
{
    const char *input = HEADER "<message id='a&apos;b' to='x'><body>a<![CDATA[&]]>&amp;b</body>"
                               "<thread>t</thread></message>";
    xml_tokenizer t;
    xml_view v;
    xml_attribute a;
    xml_slice value;
    char buffer[16];
    size_t used;
    check_label = "values";
    xml_tokenizer_init(&t);
    CHECK(xml_tokenizer_feed(&t, scratch, input, strlen(input), &used, &v) ==
          XML_EVENT_STREAM_OPEN);
    CHECK(xml_tokenizer_feed(&t, scratch, input + used, strlen(input) - used, &used, &v) ==
          XML_EVENT_STANZA);
    CHECK(xml_element_attribute(&v, 0, "id", 2, &a) && a.needs_unescape);
    CHECK(xml_attribute_value(&a, buffer, sizeof buffer, &value) && value.len == 3 &&
          memcmp(value.ptr, "a'b", 3) == 0 && value.ptr == buffer);
    xml_routing routing;
    xml_view_routing(&v, &routing);
    CHECK(routing.has_to && routing.has_id && !routing.has_from && !routing.has_type);
    CHECK(routing.to.raw_value.len == 1 && routing.to.raw_value.ptr[0] == 'x');
    CHECK(routing.id.needs_unescape && routing.id.raw_value.len == 8);
    CHECK(xml_element_attribute(&v, 0, "to", 2, &a) && !a.needs_unescape);
    CHECK(xml_attribute_value(&a, buffer, 0, &value) && value.ptr == a.raw_value.ptr);
    xml_node_id body = xml_element_child(&v, 0, "body", 4, NULL, 0);
    CHECK(body != XML_NODE_NONE);
    CHECK(xml_element_text(&v, body, buffer, sizeof buffer, &value) && value.len == 4 &&
          memcmp(value.ptr, "a&&b", 4) == 0);
    CHECK(!xml_element_text(&v, body, buffer, 3, &value));
    xml_node_id thread = xml_element_child(&v, 0, "thread", 6, "jabber:client", 13);
    CHECK(xml_element_text(&v, thread, buffer, 0, &value) && value.len == 1 &&
          value.ptr >= v.bytes && value.ptr < v.bytes + v.length); /* zero copy */
    CHECK(xml_element_child(&v, 0, "thread", 6, "urn:other", 9) == XML_NODE_NONE);
    CHECK(xml_element_end(&v, body) < xml_element_start_tag_end(&v, thread));

    /* A reset in the middle of a stanza frees its assembly buffer. */
    xml_tokenizer_reset(&t);
    const char *partial = HEADER "<message><bo";
    CHECK(xml_tokenizer_feed(&t, scratch, partial, strlen(partial), &used, &v) ==
          XML_EVENT_STREAM_OPEN);
    CHECK(xml_tokenizer_feed(&t, scratch, partial + used, strlen(partial) - used, &used, &v) ==
          XML_EVENT_NEED_MORE);
    CHECK(t.assembly != NULL);
    xml_tokenizer_reset(&t);
    CHECK(t.assembly == NULL);
    CHECK(xml_tokenizer_feed(&t, scratch, input, strlen(input), &used, &v) ==
          XML_EVENT_STREAM_OPEN);
    xml_tokenizer_fini(&t);
}

static void test_unescape(void)
{
    char buffer[8];
    xml_slice value;
    check_label = "unescape";
    CHECK(xml_unescape((xml_slice){"abc", 3}, buffer, 0, &value) && value.len == 3);
    CHECK(xml_unescape((xml_slice){"&lt;&#x1F600;", 13}, buffer, sizeof buffer, &value));
    CHECK(value.len == 5 && memcmp(value.ptr, "<\xF0\x9F\x98\x80", 5) == 0);
    CHECK(!xml_unescape((xml_slice){"&lt;&lt;", 8}, buffer, 1, &value));
    CHECK(!xml_unescape((xml_slice){"&bad;", 5}, buffer, sizeof buffer, &value));
    CHECK(!xml_unescape((xml_slice){"&amp", 4}, buffer, sizeof buffer, &value));
}

static void test_writer(void)
{
    char buffer[128];
    xml_writer w;
    check_label = "writer";
    xml_writer_init(&w, buffer, sizeof buffer);
    xml_write_start_tag(&w, "message", 7);
    xml_write_attribute(&w, "to", 2, "a'b\"c<&>", 8);
    xml_write_start_tag_end(&w);
    xml_write_text(&w, "x<y&z>'\"", 8);
    xml_write_end_tag(&w, "message", 7);
    const char *want = "<message to='a&apos;b&quot;c&lt;&amp;&gt;'>x&lt;y&amp;z&gt;'\"</message>";
    CHECK(!xml_writer_failed(&w) && w.length == strlen(want) &&
          memcmp(buffer, want, w.length) == 0);

    char small[12 + 4];
    memset(small, '#', sizeof small);
    xml_writer_init(&w, small, 12);
    xml_write_start_tag(&w, "presence", 8);
    xml_write_attribute(&w, "type", 4, "x", 1);
    xml_write_empty_tag_end(&w);
    CHECK(xml_writer_failed(&w) && w.length == 9);
    CHECK(memcmp(small + 12, "####", 4) == 0);
    xml_write_raw(&w, "/", 1);
    CHECK(w.length == 9);
}

/* Stamps from on a stanza, joins the slices, tokenizes the result and
 * returns whether its from is the new value and it otherwise equals want. */
static bool stamp_and_check(const char *stanza, size_t stanza_length, const char *from,
                            const char *want)
{
    static char input[8192], attribute[512];
    xml_tokenizer t;
    xml_view v;
    xml_slice slices[XML_STAMP_SLICES_MAX];
    size_t used, n = (size_t)snprintf(input, sizeof input, "%s", HEADER), header = n;
    bool ok = true;
    memcpy(input + n, stanza, stanza_length);
    n += stanza_length;
    xml_tokenizer_init(&t);
    ok &= xml_tokenizer_feed(&t, scratch, input, n, &used, &v) == XML_EVENT_STREAM_OPEN;
    ok &=
        xml_tokenizer_feed(&t, scratch, input + header, n - header, &used, &v) == XML_EVENT_STANZA;
    static char joined[8192];
    size_t count =
        ok ? xml_stamp_from(&v, from, strlen(from), attribute, sizeof attribute, slices) : 0;
    size_t joined_length = 0;
    ok &= count >= 2;
    for (size_t i = 0; i < count; i++) {
        ok &= slices[i].len > 0;
        memcpy(joined + joined_length, slices[i].ptr, slices[i].len);
        joined_length += slices[i].len;
    }
    ok &=
        want == NULL || (joined_length == strlen(want) && memcmp(joined, want, joined_length) == 0);
    xml_tokenizer_reset(&t);
    memcpy(input + header, joined, joined_length);
    n = header + joined_length;
    ok &= xml_tokenizer_feed(&t, scratch, input, n, &used, &v) == XML_EVENT_STREAM_OPEN;
    ok &=
        xml_tokenizer_feed(&t, scratch, input + header, n - header, &used, &v) == XML_EVENT_STANZA;
    xml_attribute a;
    char value[512];
    xml_slice unescaped;
    ok &= xml_element_attribute(&v, 0, "from", 4, &a) &&
          xml_unescape(a.raw_value, value, sizeof value, &unescaped) &&
          unescaped.len == strlen(from) && memcmp(unescaped.ptr, from, unescaped.len) == 0;
    xml_tokenizer_fini(&t);
    return ok;
}

static void test_stamp(void)
{
    check_label = "stamp";
    const char *cases[][2] = {
        {"<message from='old@x' to='y'><body/></message>",
         "<message from='new@x/r' to='y'><body/></message>"},
        {"<message to='y' from=\"old\" id='1'>hi</message>",
         "<message from='new@x/r' to='y' id='1'>hi</message>"},
        {"<message to='y'\n  from='old'/>", "<message from='new@x/r' to='y'/>"},
        {"<iq type='get'/>", "<iq from='new@x/r' type='get'/>"},
        {"<presence/>", "<presence from='new@x/r'/>"},
        {"<presence\n/>", "<presence from='new@x/r'\n/>"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK(stamp_and_check(cases[i][0], strlen(cases[i][0]), "new@x/r", cases[i][1]));
    CHECK(stamp_and_check("<presence/>", 11, "a'b<c>&\"",
                          "<presence from='a&apos;b&lt;c&gt;&amp;&quot;'/>"));
    const char *input = HEADER "<presence/>";
    char tiny[8];
    xml_slice slices[XML_STAMP_SLICES_MAX];
    xml_tokenizer t;
    xml_view v;
    size_t used;
    xml_tokenizer_init(&t);
    CHECK(xml_tokenizer_feed(&t, scratch, input, strlen(input), &used, &v) ==
          XML_EVENT_STREAM_OPEN);
    CHECK(xml_tokenizer_feed(&t, scratch, input + used, strlen(input) - used, &used, &v) ==
          XML_EVENT_STANZA);
    CHECK(xml_stamp_from(&v, "new@x", 5, tiny, sizeof tiny, slices) == 0);
    xml_tokenizer_fini(&t);
}

static void test_corpus(const char *path)
{
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (f == NULL) {
        printf("corpus %s absent: skipping the corpus checks\n", path ? path : "(no path)");
        return;
    }
    static char line[1 << 16], input[(1 << 16) + 512];
    unsigned lines = 0, good = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        size_t length = strcspn(line, "\n");
        if (length == 0)
            continue;
        lines++;
        int n = snprintf(input, sizeof input, "%s%.*s", HEADER, (int)length, line);
        struct outcome o;
        run("corpus", input, (size_t)n, &o);
        bool ok = o.error == XML_ERR_NONE && o.opens == 1 && o.stanzas == 1;
        CHECK(ok);
        if (!ok)
            fprintf(stderr, "  corpus line %u: %s: %.*s\n", lines,
                    xml_error_condition_name(o.error), (int)length, line);
        bool stamped = stamp_and_check(line, length, "user1@localhost/res'1", NULL);
        CHECK(stamped);
        good += ok && stamped;
        free(o.log.bytes);
    }
    fclose(f);
    printf("corpus: %u of %u stanzas tokenized and stamped\n", good, lines);
}

int main(int argc, char **argv)
{
    scratch = xml_scratch_create();
    if (scratch == NULL)
        return 2;
    test_stream_basics();
    test_rejections();
    test_bounds();
    test_huge_stanza();
    test_restart_and_views();
    test_values();
    test_unescape();
    test_writer();
    test_stamp();
    test_corpus(argc > 1 ? argv[1] : NULL);
    xml_scratch_destroy(scratch);
    return check_finish();
}
