/*
 * c2s.c: the client stream state machine.
 *
 * Each connection holds one c2s_stream: the tokenizer (which keeps its place
 * between receive buffers and owns no heap memory while the stream is idle)
 * and the stream phase. Received bytes are fed straight from the runtime's
 * provided buffer; the tokenizer's index of each element lives in a scratch
 * area shared by every stream of the reactor thread, so an idle stream costs
 * only sizeof(c2s_stream).
 *
 * Every way a stream ends goes through c2s_fail (a stream error, then the
 * closing tag, then a close after the queue drains) or c2s_finish (the
 * client closed its stream: answer with the closing tag). After either, the
 * stream is in C2S_CLOSED and every later byte is ignored.
 */
#include "server/xmpp/c2s.h"

#include <assert.h>
#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "proto/stream_errors.h"
#include "proto/xml.h"

enum c2s_phase {
    C2S_AWAIT_HEADER = 0, /* nothing sent yet */
    C2S_OPEN,             /* our header and features are sent */
    C2S_CLOSED,           /* our closing tag is queued; ignore input */
};

typedef struct c2s_stream {
    xml_tokenizer tokenizer;
    const c2s_context *context;
    uint8_t phase;
} c2s_stream;

/* Bytes of a stream id: 16 random bytes, hex encoded. RFC 6120 section
 * 4.7.3 asks for ids that are unique and unpredictable. */
#define C2S_STREAM_ID_RANDOM_BYTES 16u

/* The longest xml:lang echoed back (RFC 5646 language tags stay far below). */
#define C2S_LANGUAGE_BYTES_MAX 35u

/* ------------------------------------------------------ per-thread scratch */

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *scratch)
{
    xml_scratch_destroy(scratch);
}

static void scratch_key_create(void)
{
    int result = pthread_key_create(&scratch_key, scratch_free);
    assert(result == 0);
    (void)result;
}

/* The calling reactor thread's scratch index, created on first use and
 * freed when the thread exits. NULL when memory ran out. */
static xml_scratch *c2s_scratch(void)
{
    pthread_once(&scratch_once, scratch_key_create);
    xml_scratch *scratch = pthread_getspecific(scratch_key);
    if (scratch == NULL) {
        scratch = xml_scratch_create();
        if (scratch != NULL && pthread_setspecific(scratch_key, scratch) != 0) {
            xml_scratch_destroy(scratch);
            scratch = NULL;
        }
    }
    return scratch;
}

/* ------------------------------------------------------------- context */

int c2s_context_init(c2s_context *context, const char *domain)
{
    size_t length = strlen(domain);
    if (length == 0 || length > C2S_DOMAIN_BYTES_MAX)
        return -1;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)domain[i];
        if (!(isalnum(c) || c == '-' || c == '.'))
            return -1;
        context->domain[i] = (char)tolower(c);
    }
    context->domain[length] = '\0';
    context->domain_length = length;
    return 0;
}

/* ------------------------------------------------------------- sending */

/* Queues bytes; a refused send ends the stream (the runtime has already
 * aborted the connection when the hard cap was hit). */
static void c2s_send(rx_conn *conn, c2s_stream *stream, const char *bytes, size_t length)
{
    if (rx_conn_send(conn, bytes, length) != RX_OK)
        stream->phase = C2S_CLOSED;
}

/* Writes Starling's stream header (and nothing else) into out, which has
 * room for it. Returns its length. */
static size_t c2s_write_header(const c2s_stream *stream, const char *language,
                               size_t language_length, char *out, size_t capacity)
{
    unsigned char random[C2S_STREAM_ID_RANDOM_BYTES];
    char id[2 * C2S_STREAM_ID_RANDOM_BYTES + 1];
    static const char hex[] = "0123456789abcdef";
    if (RAND_bytes(random, sizeof random) != 1)
        abort(); /* BoringSSL's RAND_bytes only fails if the kernel's RNG is gone. */
    for (size_t i = 0; i < sizeof random; i++) {
        id[2 * i] = hex[random[i] >> 4];
        id[2 * i + 1] = hex[random[i] & 15];
    }
    id[sizeof id - 1] = '\0';
    int length = snprintf(out, capacity,
                          "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                          "xmlns:stream='http://etherx.jabber.org/streams' id='%s' from='%s' "
                          "version='1.0' xml:lang='%.*s'>",
                          id, stream->context->domain, (int)language_length, language);
    assert(length > 0 && (size_t)length < capacity);
    return (size_t)length;
}

/* Room for Starling's header: the fixed text, the id, the domain and a
 * language tag. */
#define C2S_HEADER_BYTES_MAX (256u + C2S_DOMAIN_BYTES_MAX + C2S_LANGUAGE_BYTES_MAX)

/* Sends a stream error and the closing tag (with our header first when the
 * client has not had it yet), then closes after the queue drains. */
static void c2s_fail(rx_conn *conn, c2s_stream *stream, stream_error condition)
{
    if (stream->phase == C2S_CLOSED)
        return;
    char out[C2S_HEADER_BYTES_MAX + 160];
    size_t length = 0;
    if (stream->phase == C2S_AWAIT_HEADER)
        length = c2s_write_header(stream, "en", 2, out, sizeof out);
    size_t error_length = stream_error_write(condition, out + length, sizeof out - length);
    assert(error_length > 0);
    c2s_send(conn, stream, out, length + error_length);
    stream->phase = C2S_CLOSED;
    rx_log(RX_LOG_INFO, "c2s: stream error %s", stream_error_name(condition));
    rx_conn_close(conn);
}

/* The client closed its stream: close ours (RFC 6120 section 4.4). */
static void c2s_finish(rx_conn *conn, c2s_stream *stream)
{
    static const char closing[] = "</stream:stream>";
    c2s_send(conn, stream, closing, sizeof closing - 1);
    stream->phase = C2S_CLOSED;
    rx_conn_close(conn);
}

/* ---------------------------------------------------------- the header */

static bool slice_equals(xml_slice slice, const char *text)
{
    size_t length = strlen(text);
    return slice.len == length && memcmp(slice.ptr, text, length) == 0;
}

/* A language tag worth echoing: RFC 5646 letters, digits and hyphens. */
static bool language_is_plain(xml_slice language)
{
    if (language.len == 0 || language.len > C2S_LANGUAGE_BYTES_MAX)
        return false;
    for (size_t i = 0; i < language.len; i++)
        if (!(isalnum((unsigned char)language.ptr[i]) || language.ptr[i] == '-'))
            return false;
    return true;
}

/* RFC 6120 section 4.7.5: no version means 0.0; Starling speaks 1.x only
 * (a higher major version is answered with 1.0, which the client accepts or
 * not). Returns false for a version below 1.0 or one that is not
 * "major.minor" digits. */
static bool version_is_supported(const xml_view *view, xml_node_id root)
{
    xml_attribute version;
    if (!xml_element_attribute(view, root, "version", 7, &version))
        return false;
    xml_slice value = version.raw_value;
    const char *dot = memchr(value.ptr, '.', value.len);
    if (dot == NULL || dot == value.ptr || dot == value.ptr + value.len - 1)
        return false;
    unsigned long major = 0;
    for (const char *c = value.ptr; c < value.ptr + value.len; c++) {
        if (c == dot)
            continue;
        if (!isdigit((unsigned char)*c))
            return false;
        if (c < dot && major < 1000)
            major = major * 10 + (unsigned long)(*c - '0');
    }
    return major >= 1;
}

/* The served domain, compared case-insensitively (full IDNA2008 and PRECIS
 * comparison arrives with JIDs in issue 5). */
static bool addressed_to_us(const c2s_stream *stream, const xml_view *view, xml_node_id root)
{
    xml_attribute to;
    if (!xml_element_attribute(view, root, "to", 2, &to) || to.needs_unescape)
        return false;
    return to.raw_value.len == stream->context->domain_length &&
           strncasecmp(to.raw_value.ptr, stream->context->domain, to.raw_value.len) == 0;
}

static void c2s_stream_open(rx_conn *conn, c2s_stream *stream, const xml_view *view)
{
    xml_node_id root = xml_view_root(view);
    if (!slice_equals(xml_stream_default_namespace(&stream->tokenizer), "jabber:client")) {
        c2s_fail(conn, stream, STREAM_ERROR_INVALID_NAMESPACE);
        return;
    }
    if (!addressed_to_us(stream, view, root)) {
        c2s_fail(conn, stream, STREAM_ERROR_HOST_UNKNOWN);
        return;
    }
    if (!version_is_supported(view, root)) {
        c2s_fail(conn, stream, STREAM_ERROR_UNSUPPORTED_VERSION);
        return;
    }
    xml_attribute language;
    xml_slice tag = {"en", 2};
    if (xml_element_attribute(view, root, "xml:lang", 8, &language) &&
        language_is_plain(language.raw_value))
        tag = language.raw_value;

    static const char features[] = "<stream:features/>";
    char out[C2S_HEADER_BYTES_MAX + sizeof features];
    size_t length = c2s_write_header(stream, tag.ptr, tag.len, out, sizeof out);
    memcpy(out + length, features, sizeof features - 1);
    c2s_send(conn, stream, out, length + sizeof features - 1);
    if (stream->phase != C2S_CLOSED)
        stream->phase = C2S_OPEN;
}

/* ------------------------------------------------------------ callbacks */

static stream_error condition_of(xml_error_condition condition)
{
    switch (condition) {
    case XML_ERR_BAD_FORMAT:
        return STREAM_ERROR_BAD_FORMAT;
    case XML_ERR_INVALID_NAMESPACE:
        return STREAM_ERROR_INVALID_NAMESPACE;
    case XML_ERR_NOT_WELL_FORMED:
        return STREAM_ERROR_NOT_WELL_FORMED;
    case XML_ERR_POLICY_VIOLATION:
        return STREAM_ERROR_POLICY_VIOLATION;
    case XML_ERR_RESOURCE_CONSTRAINT:
        return STREAM_ERROR_RESOURCE_CONSTRAINT;
    case XML_ERR_RESTRICTED_XML:
        return STREAM_ERROR_RESTRICTED_XML;
    case XML_ERR_NONE:
        break;
    }
    return STREAM_ERROR_UNDEFINED_CONDITION;
}

static void c2s_on_open(rx_conn *conn, void *listener_context)
{
    c2s_stream *stream = malloc(sizeof *stream);
    if (stream == NULL) {
        rx_log(RX_LOG_WARNING, "c2s: out of memory for a new stream");
        rx_conn_abort(conn);
        return;
    }
    xml_tokenizer_init(&stream->tokenizer);
    stream->context = listener_context;
    stream->phase = C2S_AWAIT_HEADER;
    rx_conn_set_userdata(conn, stream);
}

/* Handles one tokenizer event; returns false when the stream has ended. */
static bool c2s_on_event(rx_conn *conn, c2s_stream *stream, xml_event event, const xml_view *view)
{
    switch (event) {
    case XML_EVENT_NEED_MORE:
        return true;
    case XML_EVENT_STREAM_OPEN:
        c2s_stream_open(conn, stream, view);
        break;
    case XML_EVENT_STANZA:
        c2s_fail(conn, stream, STREAM_ERROR_NOT_AUTHORIZED);
        break;
    case XML_EVENT_STREAM_CLOSE:
        c2s_finish(conn, stream);
        break;
    case XML_EVENT_ERROR:
        c2s_fail(conn, stream, condition_of(xml_tokenizer_error(&stream->tokenizer)));
        break;
    }
    return stream->phase != C2S_CLOSED;
}

static void c2s_on_data(rx_conn *conn, const uint8_t *bytes, size_t length)
{
    c2s_stream *stream = rx_conn_userdata(conn);
    if (stream == NULL || stream->phase == C2S_CLOSED)
        return;
    xml_scratch *scratch = c2s_scratch();
    if (scratch == NULL) {
        c2s_fail(conn, stream, STREAM_ERROR_RESOURCE_CONSTRAINT);
        return;
    }
    size_t at = 0;
    while (at < length) {
        size_t used = 0;
        xml_view view;
        xml_event event = xml_tokenizer_feed(&stream->tokenizer, scratch, (const char *)bytes + at,
                                             length - at, &used, &view);
        assert(used <= length - at);
        at += used;
        if (!c2s_on_event(conn, stream, event, &view))
            return;
        if (used == 0)
            return; /* no progress: the tokenizer is waiting for a reset */
    }
}

static void c2s_on_close(rx_conn *conn, rx_close_reason reason)
{
    c2s_stream *stream = rx_conn_userdata(conn);
    if (reason != RX_CLOSE_LOCAL && reason != RX_CLOSE_PEER)
        rx_log(RX_LOG_INFO, "c2s: connection closed: %s", rx_close_reason_name(reason));
    if (stream == NULL)
        return;
    xml_tokenizer_fini(&stream->tokenizer);
    free(stream);
    rx_conn_set_userdata(conn, NULL);
}

static void c2s_on_shutdown(rx_conn *conn)
{
    c2s_stream *stream = rx_conn_userdata(conn);
    if (stream == NULL) {
        rx_conn_close(conn);
        return;
    }
    c2s_fail(conn, stream, STREAM_ERROR_SYSTEM_SHUTDOWN);
}

/* RFC 6120 section 4.9.3.4: a stream that did not finish its handshake in
 * time, or went silent, ends with connection-timeout. */
static void c2s_on_timeout(rx_conn *conn, rx_close_reason reason)
{
    c2s_stream *stream = rx_conn_userdata(conn);
    (void)reason;
    if (stream == NULL) {
        rx_conn_close(conn);
        return;
    }
    c2s_fail(conn, stream, STREAM_ERROR_CONNECTION_TIMEOUT);
}

const rx_listener_ops c2s_listener_ops = {
    .on_open = c2s_on_open,
    .on_data = c2s_on_data,
    .on_close = c2s_on_close,
    .on_timeout = c2s_on_timeout,
    .on_shutdown = c2s_on_shutdown,
};
