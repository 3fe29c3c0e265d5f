/*
 * bench_tokenizer.c: throughput of Starling's XML tokenizer against libexpat
 * on the same bytes, fed in the same 4 KiB pieces a socket would deliver.
 *
 * Two streams are measured: the real-traffic corpus (../shared/corpus) and
 * generated everyday chat traffic (messages with bodies, presences with
 * XEP-0115 caps, roster results). Each is repeated to about --mb MiB. For
 * every top-level element both sides do what a router does first: count it
 * and look at its name, to, from and type. Each side runs --runs times; the
 * best and the median run are reported. The numbers are for reading, not
 * asserting: the bench-smoke ctest only proves the tool runs.
 *
 * Usage: starling-bench-tokenizer [--mb N] [--runs N] [--corpus path]
 *                                 [--only starling|expat]   (for profiling)
 */
#include <expat.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/xml.h"

#define PIECE_BYTES 4096u
#define RUNS_MAX    32u

/* Sides to run: bit 0 Starling, bit 1 expat. */
static unsigned sides = 3;

#define HEADER                                                                                     \
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "                                   \
    "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' from='user1@localhost' "       \
    "version='1.0' xml:lang='en'>"
#define FOOTER "</stream:stream>"

struct buffer {
    char *bytes;
    size_t length, capacity;
};

static void append(struct buffer *b, const char *bytes, size_t length)
{
    if (b->length + length > b->capacity) {
        b->capacity = (b->length + length) * 2;
        b->bytes = realloc(b->bytes, b->capacity);
        if (b->bytes == NULL) {
            perror("realloc");
            exit(1);
        }
    }
    memcpy(b->bytes + b->length, bytes, length);
    b->length += length;
}

static void append_str(struct buffer *b, const char *s)
{
    append(b, s, strlen(s));
}

/* Wraps body (the stanzas) in a stream, repeated to at least bytes. */
static struct buffer make_stream(const struct buffer *body, size_t bytes)
{
    struct buffer stream = {0};
    append_str(&stream, HEADER);
    while (stream.length < bytes)
        append(&stream, body->bytes, body->length);
    append_str(&stream, FOOTER);
    return stream;
}

static struct buffer read_corpus(const char *path)
{
    struct buffer body = {0};
    char line[1 << 16];
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return body;
    while (fgets(line, sizeof line, f) != NULL)
        append_str(&body, line); /* the newlines stay: whitespace between stanzas */
    fclose(f);
    return body;
}

/* Everyday traffic: chat messages, presences with caps, roster results. */
static struct buffer make_chat(void)
{
    static const char *const words[] = {"hello",
                                        "are",
                                        "you",
                                        "there",
                                        "&amp;",
                                        "meeting",
                                        "at",
                                        "noon",
                                        "&lt;3",
                                        "ok",
                                        "\xD0\xBF\xD1\x80\xD0\xB8",
                                        "see",
                                        "you",
                                        "soon",
                                        "\xF0\x9F\x98\x80",
                                        "thanks"};
    struct buffer body = {0};
    char stanza[2048];
    uint32_t random = 12345;
    for (unsigned i = 0; i < 600; i++) {
        random = random * 1103515245u + 12345u;
        unsigned a = (random >> 8) % 50, b = (random >> 16) % 50;
        if (i % 3 != 2) {
            char text[512] = "";
            size_t n = 0, words_count = 3 + (random >> 20) % 24;
            for (size_t w = 0; w < words_count; w++)
                n += (size_t)snprintf(text + n, sizeof text - n, "%s ",
                                      words[(random >> (w % 24)) % 16]);
            snprintf(stanza, sizeof stanza,
                     "<message to='user%u@example.com/phone' from='user%u@example.com/laptop' "
                     "type='chat' id='msg-%u' xml:lang='en'><body>%s</body>"
                     "<active xmlns='http://jabber.org/protocol/chatstates'/>"
                     "<request xmlns='urn:xmpp:receipts'/></message>\n",
                     a, b, i, text);
        } else if (i % 9 == 2) {
            int n = snprintf(stanza, sizeof stanza,
                             "<iq to='user%u@example.com/phone' type='result' id='roster-%u'>"
                             "<query xmlns='jabber:iq:roster' ver='ver%u'>",
                             a, i, i);
            for (unsigned item = 0; item < 8; item++)
                n += snprintf(stanza + n, sizeof stanza - (size_t)n,
                              "<item jid='contact%u@example.org' name='Contact %u' "
                              "subscription='both'><group>Friends</group></item>",
                              item + b, item);
            snprintf(stanza + n, sizeof stanza - (size_t)n, "</query></iq>\n");
        } else {
            snprintf(stanza, sizeof stanza,
                     "<presence from='user%u@example.com/laptop' to='user%u@example.com'>"
                     "<show>away</show><status>Out for lunch</status><priority>5</priority>"
                     "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
                     "node='https://conversations.im' ver='q07IKJEyjvHSyhy//CH0CxmKi8w='/>"
                     "<delay xmlns='urn:xmpp:delay' stamp='2026-11-23T10:00:00Z'/></presence>\n",
                     b, a);
        }
        append_str(&body, stanza);
    }
    return body;
}

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

struct result {
    unsigned long stanzas;
    unsigned long touched; /* bytes looked at, so the work cannot be optimised away */
};

static void touch(const xml_view *v, struct result *r)
{
    xml_slice name = xml_element_qname(v, 0); /* expat reports qualified names */
    xml_routing routing;
    char buffer[1024];
    r->touched += name.len;
    xml_view_routing(v, &routing);
    const xml_attribute *wanted[] = {routing.has_to ? &routing.to : NULL,
                                     routing.has_from ? &routing.from : NULL,
                                     routing.has_type ? &routing.type : NULL};
    for (size_t i = 0; i < 3; i++) {
        xml_slice value;
        /* Unescaped, as expat hands them over (zero copy when plain). */
        if (wanted[i] != NULL && xml_attribute_value(wanted[i], buffer, sizeof buffer, &value))
            r->touched += value.len + (value.len ? (unsigned char)value.ptr[0] : 0u);
    }
}

static struct result run_starling(const struct buffer *stream, xml_scratch *scratch)
{
    struct result r = {0, 0};
    xml_tokenizer t;
    xml_tokenizer_init(&t);
    for (size_t at = 0; at < stream->length; at += PIECE_BYTES) {
        size_t length = stream->length - at < PIECE_BYTES ? stream->length - at : PIECE_BYTES;
        for (size_t used_total = 0; used_total < length;) {
            size_t used;
            xml_view v;
            xml_event e = xml_tokenizer_feed(&t, scratch, stream->bytes + at + used_total,
                                             length - used_total, &used, &v);
            if (e == XML_EVENT_ERROR) {
                fprintf(stderr, "starling: %s\n",
                        xml_error_condition_name(xml_tokenizer_error(&t)));
                exit(1);
            }
            if (e == XML_EVENT_STANZA) {
                r.stanzas++;
                touch(&v, &r);
            }
            used_total += used;
        }
    }
    xml_tokenizer_fini(&t);
    return r;
}

struct expat_state {
    unsigned depth;
    struct result r;
};

static void XMLCALL expat_start(void *data, const XML_Char *name, const XML_Char **attributes)
{
    struct expat_state *s = data;
    if (s->depth++ != 1)
        return;
    s->r.touched += strlen(name);
    for (size_t i = 0; attributes[i] != NULL; i += 2) {
        const char *a = attributes[i];
        if (strcmp(a, "to") == 0 || strcmp(a, "from") == 0 || strcmp(a, "type") == 0)
            s->r.touched += strlen(attributes[i + 1]) + (unsigned char)attributes[i + 1][0];
    }
}

static void XMLCALL expat_end(void *data, const XML_Char *name)
{
    struct expat_state *s = data;
    (void)name;
    if (--s->depth == 1)
        s->r.stanzas++;
}

static struct result run_expat(const struct buffer *stream)
{
    struct expat_state s = {0, {0, 0}};
    XML_Parser parser = XML_ParserCreate("UTF-8");
    XML_SetUserData(parser, &s);
    XML_SetElementHandler(parser, expat_start, expat_end);
    for (size_t at = 0; at < stream->length; at += PIECE_BYTES) {
        size_t length = stream->length - at < PIECE_BYTES ? stream->length - at : PIECE_BYTES;
        if (XML_Parse(parser, stream->bytes + at, (int)length, 0) != XML_STATUS_OK) {
            fprintf(stderr, "expat: %s\n", XML_ErrorString(XML_GetErrorCode(parser)));
            exit(1);
        }
    }
    XML_ParserFree(parser);
    return s.r;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Runs one side runs times; returns the median seconds, sets *best. */
static double measure(const struct buffer *stream, xml_scratch *scratch, bool expat, unsigned runs,
                      double *best, struct result *r)
{
    double seconds[RUNS_MAX];
    for (unsigned i = 0; i < runs; i++) {
        double start = now_seconds();
        *r = expat ? run_expat(stream) : run_starling(stream, scratch);
        seconds[i] = now_seconds() - start;
    }
    qsort(seconds, runs, sizeof seconds[0], compare_doubles);
    *best = seconds[0];
    return seconds[runs / 2];
}

static void bench(const char *label, const struct buffer *stream, xml_scratch *scratch,
                  unsigned runs)
{
    double mib = (double)stream->length / (1024.0 * 1024.0), best[2], median[2];
    struct result r[2] = {{0, 0}, {0, 0}};
    for (int side = 0; side < 2; side++)
        if (sides & (1u << side))
            median[side] = measure(stream, scratch, side == 1, runs, &best[side], &r[side]);
    if (sides != 3) {
        int side = sides == 1 ? 0 : 1;
        printf("%s: %s %.1f MiB/s\n", label, side ? "expat" : "starling", mib / best[side]);
        return;
    }
    if (r[0].stanzas != r[1].stanzas || r[0].touched != r[1].touched) {
        fprintf(stderr, "%s: starling saw %lu stanzas/%lu bytes, expat %lu/%lu\n", label,
                r[0].stanzas, r[0].touched, r[1].stanzas, r[1].touched);
        exit(1);
    }
    printf("%s: %.1f MiB, %lu stanzas, %u KiB pieces, %u runs\n", label, mib, r[0].stanzas,
           PIECE_BYTES / 1024u, runs);
    for (int side = 0; side < 2; side++)
        printf("  %-8s best %8.1f MiB/s %6.2f M stanzas/s   median %8.1f MiB/s\n",
               side == 0 ? "starling" : "expat", mib / best[side],
               (double)r[side].stanzas / best[side] / 1e6, mib / median[side]);
    printf("  ratio    best %.1fx   median %.1fx\n", best[1] / best[0], median[1] / median[0]);
}

int main(int argc, char **argv)
{
    const char *corpus = STARLING_CORPUS_PATH;
    unsigned long mib = 64, runs = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--mb") == 0)
            mib = strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--runs") == 0)
            runs = strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--corpus") == 0)
            corpus = argv[i + 1];
        else if (strcmp(argv[i], "--only") == 0)
            sides = strcmp(argv[i + 1], "starling") == 0 ? 1
                    : strcmp(argv[i + 1], "expat") == 0  ? 2
                                                         : 0;
    }
    if (mib == 0 || runs == 0 || runs > RUNS_MAX || argc % 2 == 0 || sides == 0) {
        fprintf(stderr,
                "usage: %s [--mb N] [--runs 1..%u] [--corpus path] [--only starling|expat]\n",
                argv[0], RUNS_MAX);
        return 2;
    }
    xml_scratch *scratch = xml_scratch_create();
    if (scratch == NULL)
        return 1;
    struct buffer body = read_corpus(corpus);
    if (body.length > 0) {
        struct buffer stream = make_stream(&body, mib << 20);
        bench("corpus", &stream, scratch, (unsigned)runs);
        free(stream.bytes);
    } else {
        printf("corpus %s absent: chat traffic only\n", corpus);
    }
    struct buffer chat = make_chat();
    struct buffer stream = make_stream(&chat, mib << 20);
    bench("chat", &stream, scratch, (unsigned)runs);
    free(stream.bytes);
    free(chat.bytes);
    free(body.bytes);
    xml_scratch_destroy(scratch);
    return 0;
}
