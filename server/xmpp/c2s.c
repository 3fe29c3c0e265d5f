/*
 * c2s.c: the client stream state machine (RFC 6120 sections 4 to 7).
 *
 * A stream goes header -> features -> [STARTTLS -> header -> features] ->
 * SASL -> header -> features -> bind, each header answered with the
 * features of where the stream is:
 *
 *   not encrypted, listener "starttls"  <starttls><required/></starttls>
 *   not authenticated                   SASL mechanisms (+ XEP-0440 types)
 *   authenticated                       bind, and session (optional)
 *
 * Received bytes go straight from the runtime's provided buffer to the
 * tokenizer (plaintext), or through the TLS session into the reactor's
 * plaintext buffer and then to the tokenizer. The bytes after <starttls/>
 * in the same read are the client's first TLS bytes and go to TLS.
 *
 * Holding: while an answer is in flight (a credential fetch, a held-back
 * SASL failure, the move to the shard's reactor after bind), the stream
 * takes no input: what arrives is kept in `held` (bounded by
 * LIMIT_C2S_HELD_BYTES; a client that pipelines more than that is told
 * policy-violation) and fed once the answer is out, so input is handled in
 * order and only in the state it was meant for.
 *
 * After bind the connection moves to the reactor that owns hash(bare JID)
 * (cluster_shard) with rx_conn_move_to: the descriptor, the send queue,
 * this session, its tokenizer and TLS state travel together; the bind is
 * answered there, once the session is in that reactor's table.
 *
 * Every way a stream ends goes through c2s_fail (a stream error, the
 * closing tag, close_notify, a close after the queue drains) or
 * c2s_finish (the client closed its stream). After either the phase is
 * C2S_CLOSED and input is ignored.
 */
#include "server/xmpp/c2s_internal.h"

#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "proto/xml_writer.h"

#define NS_CLIENT  "jabber:client"
#define NS_TLS     "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL    "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_BIND    "urn:ietf:params:xml:ns:xmpp-bind"
#define NS_SESSION "urn:ietf:params:xml:ns:xmpp-session"
#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"

#define LITERAL(text) text, sizeof text - 1

/* Bytes of a stream id: 16 random bytes, hex encoded. RFC 6120 section
 * 4.7.3 asks for ids that are unique and unpredictable. */
#define C2S_STREAM_ID_RANDOM_BYTES 16u

/* The longest xml:lang echoed back (RFC 5646 language tags stay far below). */
#define C2S_LANGUAGE_BYTES_MAX 35u

/* Random bytes of a server-generated resource (hex encoded). */
#define C2S_RESOURCE_RANDOM_BYTES 8u

static const char stream_end[] = "</stream:stream>";

static void c2s_input_held(c2s_session *session);
static size_t c2s_input(c2s_session *session, const char *bytes, size_t length);

/* ------------------------------------------------------- reactor state */

c2s_reactor *c2s_reactor_here(c2s_node *node)
{
    rx_reactor *reactor = rx_reactor_current();
    assert(reactor != NULL);
    return &node->reactors[rx_reactor_index(reactor)];
}

/* --------------------------------------------------------------- output */

static bool tls_out(void *argument, const uint8_t *bytes, size_t length)
{
    c2s_session *session = argument;
    return rx_conn_send(session->conn, bytes, length) == RX_OK;
}

static bool tls_in(void *argument, const uint8_t *bytes, size_t length)
{
    c2s_session *session = argument;
    c2s_input(session, (const char *)bytes, length);
    return session->phase != C2S_CLOSED;
}

/* The io of a receive: decrypted bytes land in the reactor's plaintext
 * buffer. Sends use an io of their own (send_io): a receive on one session
 * may deliver to another session of the reactor, whose send must not
 * retarget the receive's io. */
static void io_for(c2s_reactor *here, c2s_session *session)
{
    here->tls_io.plaintext = here->plaintext;
    here->tls_io.plaintext_capacity = sizeof here->plaintext;
    here->tls_io.argument = session;
    here->tls_io.on_ciphertext = tls_out;
    here->tls_io.on_plaintext = tls_in;
}

static tls_io send_io(c2s_session *session)
{
    return (tls_io){.argument = session, .on_ciphertext = tls_out, .on_plaintext = tls_in};
}

static void tls_goodbye(c2s_session *session)
{
    tls_io io = send_io(session);
    tls_session_shutdown(session->tls, &io);
}

void c2s_write(c2s_session *session, const char *bytes, size_t length)
{
    if (session->phase == C2S_CLOSED)
        return;
    if (session->tls != NULL) {
        tls_io io = send_io(session);
        if (tls_session_send(session->tls, (const uint8_t *)bytes, length, &io) != TLS_OK) {
            session->phase = C2S_CLOSED;
            rx_conn_close(session->conn);
        }
        return;
    }
    if (rx_conn_send(session->conn, bytes, length) != RX_OK) {
        session->phase = C2S_CLOSED;
        rx_conn_close(session->conn);
    }
}

void c2s_reply_error(c2s_session *session, c2s_reactor *here, const xml_view *view,
                     stanza_error condition)
{
    size_t length = stanza_error_write(view, condition, session->jid, session->full_length, NULL,
                                       0, here->reply, sizeof here->reply);
    if (length > 0)
        c2s_write(session, here->reply, length);
}

static void c2s_write_slice(c2s_session *session, xml_slice slice)
{
    c2s_write(session, slice.ptr, slice.len);
}

/* Our stream header (and nothing else) into writer. */
static void write_header(const c2s_session *session, xml_slice language, xml_writer *writer)
{
    unsigned char random[C2S_STREAM_ID_RANDOM_BYTES];
    char id[2 * C2S_STREAM_ID_RANDOM_BYTES];
    static const char hex[] = "0123456789abcdef";
    if (RAND_bytes(random, sizeof random) != 1)
        abort(); /* BoringSSL's RAND_bytes fails only if the kernel's RNG is gone */
    for (size_t i = 0; i < sizeof random; i++) {
        id[2 * i] = hex[random[i] >> 4];
        id[2 * i + 1] = hex[random[i] & 15];
    }
    const c2s_domain *domain = &session->listener->node->domains[session->domain_index];
    xml_write_raw(writer, LITERAL("<?xml version='1.0'?><stream:stream xmlns='" NS_CLIENT
                                  "' xmlns:stream='http://etherx.jabber.org/streams'"));
    xml_write_attribute(writer, LITERAL("id"), id, sizeof id);
    xml_write_attribute(writer, LITERAL("from"), domain->name, domain->length);
    if (session->flags & C2S_BOUND)
        xml_write_attribute(writer, LITERAL("to"), session->jid, session->full_length);
    else if (session->flags & C2S_AUTHENTICATED)
        xml_write_attribute(writer, LITERAL("to"), session->jid, session->bare_length);
    xml_write_attribute(writer, LITERAL("version"), LITERAL("1.0"));
    xml_write_attribute(writer, LITERAL("xml:lang"), language.ptr, language.len);
    xml_write_start_tag_end(writer);
}

void c2s_fail(c2s_session *session, stream_error condition)
{
    if (session->phase == C2S_CLOSED)
        return;
    c2s_reactor *here = c2s_reactor_here(session->listener->node);
    xml_writer writer;
    xml_writer_init(&writer, here->reply, sizeof here->reply);
    if (!(session->flags & C2S_SENT_HEADER))
        write_header(session, (xml_slice){"en", 2}, &writer);
    xml_slice head = xml_writer_output(&writer);
    char error[192];
    size_t error_length = stream_error_write(condition, error, sizeof error);
    assert(error_length > 0);
    session->flags |= C2S_SENT_HEADER;
    c2s_write(session, head.ptr, head.len);
    c2s_write(session, error, error_length);
    if (session->tls != NULL && session->phase != C2S_CLOSED)
        tls_goodbye(session);
    session->phase = C2S_CLOSED;
    if (session->flags & C2S_BOUND)
        rx_log(RX_LOG_INFO, "c2s: %.*s: stream error %s", (int)session->full_length, session->jid,
               stream_error_name(condition));
    else
        rx_log(RX_LOG_INFO, "c2s: stream error %s", stream_error_name(condition));
    rx_conn_close(session->conn);
}

/* The client closed its stream: close ours (RFC 6120 section 4.4). */
static void c2s_finish(c2s_session *session)
{
    c2s_write(session, stream_end, sizeof stream_end - 1);
    if (session->tls != NULL && session->phase != C2S_CLOSED)
        tls_goodbye(session);
    session->phase = C2S_CLOSED;
    rx_conn_close(session->conn);
}

/* ------------------------------------------------------------- holding */

static void hold(c2s_session *session)
{
    session->flags |= C2S_HELD;
}

/* Keeps input that arrived while held. */
static void hold_bytes(c2s_session *session, const char *bytes, size_t length)
{
    if (length == 0)
        return;
    if (length > LIMIT_C2S_HELD_BYTES - session->held_length) {
        session->flags &= (uint8_t)~C2S_HELD;
        c2s_fail(session, STREAM_ERROR_POLICY_VIOLATION);
        return;
    }
    char *grown = realloc(session->held, session->held_length + length);
    if (grown == NULL) {
        session->flags &= (uint8_t)~C2S_HELD;
        c2s_fail(session, STREAM_ERROR_RESOURCE_CONSTRAINT);
        return;
    }
    memcpy(grown + session->held_length, bytes, length);
    session->held = grown;
    session->held_length += (uint32_t)length;
}

/* The answer is out: input flows again, starting with what was held. */
static void release(c2s_session *session)
{
    session->flags &= (uint8_t)~C2S_HELD;
    if (session->held_length > 0 && session->phase != C2S_CLOSED)
        c2s_input_held(session);
}

/* ------------------------------------------------------------ features */

static bool language_is_plain(xml_slice language)
{
    if (language.len == 0 || language.len > C2S_LANGUAGE_BYTES_MAX)
        return false;
    for (size_t i = 0; i < language.len; i++)
        if (!(isalnum((unsigned char)language.ptr[i]) || language.ptr[i] == '-'))
            return false;
    return true;
}

/* RFC 6120 section 4.7.5: Starling speaks 1.x; no version, or one below
 * 1.0, or one that is not "major.minor" digits, is refused. */
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

static bool needs_starttls(const c2s_session *session)
{
    return !(session->flags & C2S_ENCRYPTED) && session->listener->tls == CONFIG_TLS_STARTTLS;
}

/* Fills params for session; exporter, end_point and peer are the caller's
 * buffers that params points into, so they must live as long as params. */
static void sasl_params(const c2s_session *session, sasl_stream_params *params,
                        uint8_t exporter[TLS_EXPORTER_BYTES],
                        uint8_t end_point[TLS_END_POINT_BYTES_MAX], struct sockaddr_storage *peer)
{
    const c2s_domain *domain = &session->listener->node->domains[session->domain_index];
    memset(params, 0, sizeof *params);
    params->domain = domain->name;
    params->tls = (session->flags & C2S_ENCRYPTED) != 0;
    params->plaintext_allowed = session->listener->tls == CONFIG_TLS_PLAINTEXT;
    params->anonymous = domain->anonymous;
    /* The client's address keys the failed-login throttle; unknown (NULL)
     * only when the kernel cannot report it, and then nothing is throttled
     * by address. */
    if (session->conn != NULL && rx_conn_peer(session->conn, peer, NULL))
        params->peer = (const struct sockaddr *)peer;
    if (session->tls != NULL && tls_session_established(session->tls)) {
        if (tls_session_exporter(session->tls, exporter)) {
            params->cbind_data[SASL_CBIND_TLS_EXPORTER] = exporter;
            params->cbind_data_len[SASL_CBIND_TLS_EXPORTER] = TLS_EXPORTER_BYTES;
        }
        size_t length = tls_session_server_end_point(session->tls, end_point,
                                                     TLS_END_POINT_BYTES_MAX);
        if (length > 0) {
            params->cbind_data[SASL_CBIND_TLS_SERVER_END_POINT] = end_point;
            params->cbind_data_len[SASL_CBIND_TLS_SERVER_END_POINT] = length;
        }
    }
}

static void write_features(const c2s_session *session, xml_writer *writer)
{
    xml_write_raw(writer, LITERAL("<stream:features>"));
    if (needs_starttls(session)) {
        xml_write_raw(writer, LITERAL("<starttls xmlns='" NS_TLS "'><required/></starttls>"));
    } else if (!(session->flags & C2S_AUTHENTICATED)) {
        sasl_stream_params params;
        uint8_t exporter[TLS_EXPORTER_BYTES], end_point[TLS_END_POINT_BYTES_MAX];
        struct sockaddr_storage peer;
        sasl_params(session, &params, exporter, end_point, &peer);
        sasl_features_write(&params, writer);
    } else {
        xml_write_raw(writer, LITERAL("<bind xmlns='" NS_BIND "'/><session xmlns='" NS_SESSION
                                      "'><optional/></session>"));
    }
    xml_write_raw(writer, LITERAL("</stream:features>"));
}

static void c2s_stream_open(c2s_session *session, const xml_view *view)
{
    c2s_node *node = session->listener->node;
    xml_node_id root = xml_view_root(view);
    xml_slice ns = xml_stream_default_namespace(&session->tokenizer);
    if (ns.len != sizeof NS_CLIENT - 1 || memcmp(ns.ptr, NS_CLIENT, ns.len) != 0) {
        c2s_fail(session, STREAM_ERROR_INVALID_NAMESPACE);
        return;
    }
    /* 'to' names a domain we serve (RFC 6120 section 4.7.2), compared in
     * its prepared form; after a restart it must stay the same. */
    xml_attribute to;
    char value[LIMIT_JID_PART_BYTES_MAX + 1];
    char prepared[LIMIT_JID_PART_BYTES_MAX + 1];
    xml_slice domain = {NULL, 0};
    size_t prepared_length = 0, index = 0;
    if (!xml_element_attribute(view, root, "to", 2, &to) ||
        !xml_attribute_value(&to, value, sizeof value, &domain) ||
        jid_prepare_domainpart(domain.ptr, domain.len, prepared, &prepared_length) != JID_OK ||
        !c2s_node_domain(node, prepared, prepared_length, &index) ||
        ((session->flags & C2S_AUTHENTICATED) && index != session->domain_index)) {
        c2s_fail(session, STREAM_ERROR_HOST_UNKNOWN);
        return;
    }
    session->domain_index = (uint16_t)index;
    if (!version_is_supported(view, root)) {
        c2s_fail(session, STREAM_ERROR_UNSUPPORTED_VERSION);
        return;
    }
    xml_attribute language;
    xml_slice tag = {"en", 2};
    if (xml_element_attribute(view, root, "xml:lang", 8, &language) &&
        language_is_plain(language.raw_value))
        tag = language.raw_value;

    c2s_reactor *here = c2s_reactor_here(node);
    xml_writer writer;
    xml_writer_init(&writer, here->reply, sizeof here->reply);
    write_header(session, tag, &writer);
    write_features(session, &writer);
    assert(!xml_writer_failed(&writer));
    session->flags |= C2S_SENT_HEADER;
    session->phase = C2S_OPEN;
    c2s_write_slice(session, xml_writer_output(&writer));
}

/* After STARTTLS or SASL success: the client starts a new stream. */
static void restart(c2s_session *session)
{
    xml_tokenizer_reset(&session->tokenizer);
    session->phase = C2S_HEADER;
    session->flags &= (uint8_t)~C2S_SENT_HEADER;
}

/* ------------------------------------------------------------ STARTTLS */

/* <starttls/>: <proceed/>, then TLS (RFC 6120 section 5.4.2.3). Returns
 * true when TLS now starts; the caller hands the rest of its bytes to it. */
static bool c2s_starttls(c2s_session *session)
{
    c2s_node *node = session->listener->node;
    if (session->flags & (C2S_ENCRYPTED | C2S_AUTHENTICATED) || node->tls == NULL ||
        session->listener->tls == CONFIG_TLS_DIRECT) {
        /* Not offered: failure, then close (section 5.4.2.2). */
        static const char failure[] = "<failure xmlns='" NS_TLS "'/>";
        c2s_write(session, failure, sizeof failure - 1);
        c2s_finish(session);
        return false;
    }
    static const char proceed[] = "<proceed xmlns='" NS_TLS "'/>";
    c2s_write(session, proceed, sizeof proceed - 1);
    if (session->phase == C2S_CLOSED)
        return false;
    session->tls = tls_session_create(node->tls, TLS_MODE_STARTTLS);
    if (session->tls == NULL) {
        rx_log(RX_LOG_WARNING, "c2s: out of memory for a TLS session");
        session->phase = C2S_CLOSED;
        rx_conn_abort(session->conn);
        return false;
    }
    session->flags |= C2S_ENCRYPTED;
    restart(session);
    return true;
}

/* ----------------------------------------------------------------- SASL */

static void sasl_apply(c2s_session *session, sasl_step step);

/* A fetch answered: the step's output is ready. */
static void sasl_ready(void *context, sasl_session *sasl, sasl_step step)
{
    c2s_session *session = context;
    (void)sasl;
    session->flags &= (uint8_t)~C2S_HELD;
    sasl_apply(session, step); /* a held-back failure holds again */
    if (session->phase != C2S_CLOSED && !(session->flags & C2S_HELD))
        release(session);
}

static void delay_done(rx_timer *timer, void *argument)
{
    c2s_session *session = argument;
    (void)timer;
    free(session->delay);
    session->delay = NULL;
    if (session->phase == C2S_CLOSED || session->sasl == NULL)
        return;
    c2s_write_slice(session, sasl_session_output(session->sasl));
    release(session);
}

static void sasl_success(c2s_session *session)
{
    c2s_node *node = session->listener->node;
    const c2s_domain *domain = &node->domains[session->domain_index];
    const char *localpart = sasl_session_localpart(session->sasl);
    size_t local_length = strlen(localpart);
    size_t bare = local_length + 1 + domain->length;
    char *jid = malloc(bare + 1);
    if (jid == NULL || bare > LIMIT_ROUTE_JID_BYTES_MAX) {
        free(jid);
        c2s_fail(session, STREAM_ERROR_RESOURCE_CONSTRAINT);
        return;
    }
    memcpy(jid, localpart, local_length);
    jid[local_length] = '@';
    memcpy(jid + local_length + 1, domain->name, domain->length);
    jid[bare] = '\0';
    rx_log(RX_LOG_INFO, "c2s: %s authenticated with %s", jid,
           sasl_mechanism_name(sasl_session_mechanism(session->sasl)));
    c2s_write_slice(session, sasl_session_output(session->sasl));
    sasl_session_destroy(session->sasl);
    session->sasl = NULL;
    free(session->jid);
    session->jid = jid;
    session->bare_length = (uint16_t)bare;
    session->full_length = (uint16_t)bare;
    session->flags |= C2S_AUTHENTICATED;
    restart(session);
}

/* What a SASL step asks for. Leaves the stream held while an answer is
 * still due (a fetch, or a failure held back by the throttle). */
static void sasl_apply(c2s_session *session, sasl_step step)
{
    switch (step) {
    case SASL_STEP_PENDING:
        hold(session);
        return;
    case SASL_STEP_CHALLENGE:
        c2s_write_slice(session, sasl_session_output(session->sasl));
        return;
    case SASL_STEP_SUCCESS:
        sasl_success(session);
        return;
    case SASL_STEP_FAILURE: {
        uint64_t delay = sasl_session_delay_ms(session->sasl);
        if (delay == 0) {
            c2s_write_slice(session, sasl_session_output(session->sasl));
            return;
        }
        session->delay = malloc(sizeof *session->delay);
        if (session->delay == NULL) {
            c2s_write_slice(session, sasl_session_output(session->sasl));
            return;
        }
        hold(session);
        rx_timer_init(session->delay, delay_done, session);
        rx_timer_arm(session->delay, delay);
        return;
    }
    case SASL_STEP_FAILURE_CLOSE:
        c2s_write_slice(session, sasl_session_output(session->sasl));
        c2s_fail(session, STREAM_ERROR_POLICY_VIOLATION);
        return;
    }
}

static void sasl_failure_now(c2s_session *session, const char *condition)
{
    char out[160];
    int length = snprintf(out, sizeof out, "<failure xmlns='" NS_SASL "'><%s/></failure>",
                          condition);
    c2s_write(session, out, (size_t)length);
}

static void c2s_sasl(c2s_session *session, const xml_view *view, xml_slice name)
{
    c2s_reactor *here = c2s_reactor_here(session->listener->node);
    xml_node_id root = xml_view_root(view);
    xml_slice text = {"", 0};
    if (needs_starttls(session)) {
        sasl_failure_now(session, "encryption-required");
        return;
    }
    /* The text (base64) is unescaped into the reactor's buffer; the
     * session copies what it keeps. */
    if (!xml_element_text(view, root, here->text, sizeof here->text, &text)) {
        sasl_failure_now(session, "malformed-request");
        return;
    }
    sasl_step step;
    if (name.len == 4 && memcmp(name.ptr, "auth", 4) == 0) {
        if (session->sasl == NULL) {
            sasl_stream_params params;
            uint8_t exporter[TLS_EXPORTER_BYTES], end_point[TLS_END_POINT_BYTES_MAX];
            struct sockaddr_storage peer;
            sasl_params(session, &params, exporter, end_point, &peer);
            session->sasl = sasl_session_create(&here->sasl, &params, sasl_ready, session);
            if (session->sasl == NULL) {
                c2s_fail(session, STREAM_ERROR_RESOURCE_CONSTRAINT);
                return;
            }
        }
        xml_attribute mechanism;
        xml_slice mechanism_name = {"", 0};
        if (xml_element_attribute(view, root, "mechanism", 9, &mechanism))
            mechanism_name = mechanism.raw_value;
        step = sasl_session_auth(session->sasl, mechanism_name.ptr, mechanism_name.len, text.ptr,
                                 text.len);
    } else if (session->sasl == NULL) {
        /* A response or abort with no exchange (section 6.4.2 ff.). */
        sasl_failure_now(session, name.len == 5 ? "aborted" : "malformed-request");
        return;
    } else if (name.len == 8 && memcmp(name.ptr, "response", 8) == 0) {
        step = sasl_session_response(session->sasl, text.ptr, text.len);
    } else {
        step = sasl_session_abort(session->sasl);
    }
    sasl_apply(session, step);
}

/* ----------------------------------------------------------------- bind */

/* " id='...'" with the request's id as it was written (raw, escaped
 * already), quoted with a character it does not hold. */
static void write_raw_id(xml_writer *writer, const char *id, size_t length)
{
    char quote = memchr(id, '\'', length) != NULL ? '"' : '\'';
    xml_write_raw(writer, LITERAL(" id="));
    xml_write_raw(writer, &quote, 1);
    xml_write_raw(writer, id, length);
    xml_write_raw(writer, &quote, 1);
}

static void iq_reply_error(c2s_session *session, xml_slice id, const char *type,
                           const char *condition)
{
    c2s_reactor *here = c2s_reactor_here(session->listener->node);
    xml_writer writer;
    xml_writer_init(&writer, here->reply, sizeof here->reply);
    xml_write_raw(&writer, LITERAL("<iq type='error'"));
    write_raw_id(&writer, id.ptr, id.len);
    xml_write_raw(&writer, LITERAL("><error type='"));
    xml_write_raw(&writer, type, strlen(type));
    xml_write_raw(&writer, LITERAL("'><"));
    xml_write_raw(&writer, condition, strlen(condition));
    xml_write_raw(&writer, LITERAL(" xmlns='" NS_STANZAS "'/></error></iq>"));
    if (!xml_writer_failed(&writer))
        c2s_write_slice(session, xml_writer_output(&writer));
}

/* The bind request's id travels with the session across the move, at the
 * start of `held` (held input follows it); bind_id_length says how long. */
typedef struct bind_request {
    uint16_t id_length;
} bind_request;

static void bind_answer(c2s_session *session, const char *id, size_t id_length,
                        session_status status)
{
    xml_slice id_slice = {id, id_length};
    switch (status) {
    case SESSION_OK:
    case SESSION_REPLACED: {
        c2s_reactor *here = c2s_reactor_here(session->listener->node);
        xml_writer writer;
        xml_writer_init(&writer, here->reply, sizeof here->reply);
        xml_write_raw(&writer, LITERAL("<iq type='result'"));
        write_raw_id(&writer, id, id_length);
        xml_write_raw(&writer, LITERAL("><bind xmlns='" NS_BIND "'><jid>"));
        xml_write_text(&writer, session->jid, session->full_length);
        xml_write_raw(&writer, LITERAL("</jid></bind></iq>"));
        if (!xml_writer_failed(&writer))
            c2s_write_slice(session, xml_writer_output(&writer));
        rx_conn_handshake_done(session->conn);
        rx_log(RX_LOG_INFO, "c2s: %.*s bound on reactor %u%s", (int)session->full_length,
               session->jid, rx_conn_reactor_index(session->conn),
               status == SESSION_REPLACED ? " (replacing an older session)" : "");
        return;
    }
    case SESSION_CONFLICT:
        iq_reply_error(session, id_slice, "cancel", "conflict");
        break;
    case SESSION_USER_FULL:
    case SESSION_TABLE_FULL:
    case SESSION_NOMEM:
        iq_reply_error(session, id_slice, "wait", "resource-constraint");
        break;
    default:
        iq_reply_error(session, id_slice, "modify", "bad-request");
        break;
    }
    /* Not bound: back to the bare JID, a bind may be tried again. */
    session->full_length = session->bare_length;
    session->jid[session->bare_length] = '\0';
    session->binds = 0;
}

static void moved(rx_conn *conn, void *state, rx_status status)
{
    c2s_session *session = state;
    (void)conn;
    session->flags &= (uint8_t)~C2S_MOVING;
    /* The id of the bind request heads `held`. */
    bind_request request;
    memcpy(&request, session->held, sizeof request);
    char id[LIMIT_C2S_ID_BYTES];
    memcpy(id, session->held + sizeof request, request.id_length);
    size_t prefix = sizeof request + request.id_length;
    memmove(session->held, session->held + prefix, session->held_length - prefix);
    session->held_length -= (uint32_t)prefix;
    if (session->held_length == 0) {
        free(session->held);
        session->held = NULL;
    }
    if (status == RX_ERR_CLOSED || status == RX_ERR_STATE || session->phase == C2S_CLOSED)
        return; /* on_close or on_shutdown follows */
    c2s_node *node = session->listener->node;
    c2s_reactor *here = c2s_reactor_here(node);
    unsigned owner = cluster_shard(session->jid, session->bare_length, node->reactor_count);
    session_status bound = SESSION_TABLE_FULL;
    if (status == RX_OK && here->index == owner)
        bound = c2s_route_bind(session, here);
    else
        rx_log(RX_LOG_WARNING, "c2s: %.*s could not move to reactor %u (%s)",
               (int)session->full_length, session->jid, owner,
               status == RX_ERR_FULL ? "its table is full" : "refused");
    bind_answer(session, id, request.id_length, bound);
    release(session);
}

static void c2s_bind(c2s_session *session, const xml_view *view, xml_node_id bind, xml_slice id)
{
    c2s_node *node = session->listener->node;
    c2s_reactor *here = c2s_reactor_here(node);
    if (session->binds++ > 0 || id.len == 0 || id.len > LIMIT_C2S_ID_BYTES) {
        /* One resource per stream (RFC 6120 section 7.7.2.? "not-allowed"). */
        iq_reply_error(session, id, "cancel", "not-allowed");
        return;
    }
    char resource[LIMIT_JID_PART_BYTES_MAX];
    size_t resource_length = 0;
    xml_node_id element = xml_element_child(view, bind, "resource", 8, NS_BIND,
                                            sizeof NS_BIND - 1);
    xml_slice asked = {"", 0};
    if (element != XML_NODE_NONE &&
        !xml_element_text(view, element, here->to, sizeof here->to, &asked)) {
        session->binds = 0;
        iq_reply_error(session, id, "modify", "bad-request");
        return;
    }
    if (asked.len > 0) {
        if (jid_prepare_resourcepart(asked.ptr, asked.len, resource, &resource_length) !=
            JID_OK) {
            session->binds = 0;
            iq_reply_error(session, id, "modify", "bad-request");
            return;
        }
    } else {
        unsigned char random[C2S_RESOURCE_RANDOM_BYTES];
        static const char hex[] = "0123456789abcdef";
        if (RAND_bytes(random, sizeof random) != 1)
            abort();
        memcpy(resource, "starling-", 9);
        for (size_t i = 0; i < sizeof random; i++) {
            resource[9 + 2 * i] = hex[random[i] >> 4];
            resource[9 + 2 * i + 1] = hex[random[i] & 15];
        }
        resource_length = 9 + 2 * sizeof random;
    }
    size_t full = session->bare_length + 1 + resource_length;
    if (full > LIMIT_ROUTE_JID_BYTES_MAX) {
        session->binds = 0;
        iq_reply_error(session, id, "modify", "bad-request");
        return;
    }
    char *jid = realloc(session->jid, full + 1);
    if (jid == NULL) {
        session->binds = 0;
        iq_reply_error(session, id, "wait", "resource-constraint");
        return;
    }
    jid[session->bare_length] = '/';
    memcpy(jid + session->bare_length + 1, resource, resource_length);
    jid[full] = '\0';
    session->jid = jid;
    session->full_length = (uint16_t)full;
    /* Move to the shard's reactor, carrying the request's id at the head of
     * `held`; the bind is answered there (moved). */
    bind_request request = {(uint16_t)id.len};
    char head[sizeof request + LIMIT_C2S_ID_BYTES];
    memcpy(head, &request, sizeof request);
    memcpy(head + sizeof request, id.ptr, id.len);
    char *held = malloc(sizeof request + id.len + session->held_length);
    if (held == NULL) {
        session->binds = 0;
        iq_reply_error(session, id, "wait", "resource-constraint");
        return;
    }
    memcpy(held, head, sizeof request + id.len);
    if (session->held_length > 0)
        memcpy(held + sizeof request + id.len, session->held, session->held_length);
    free(session->held);
    session->held = held;
    session->held_length += (uint32_t)(sizeof request + id.len);
    unsigned owner = cluster_shard(session->jid, session->bare_length, node->reactor_count);
    session->flags |= C2S_HELD | C2S_MOVING;
    rx_status status = rx_conn_move_to(session->conn, owner, session, moved);
    if (status != RX_OK) {
        session->flags &= (uint8_t)~C2S_MOVING;
        moved(session->conn, session, status == RX_ERR_CLOSED ? RX_ERR_CLOSED : RX_ERR_SYSTEM);
    }
}

/* ------------------------------------------------------------- stanzas */

static bool slice_is(xml_slice slice, const char *text, size_t length)
{
    return slice.len == length && memcmp(slice.ptr, text, length) == 0;
}

static bool is_stanza(xml_slice name, xml_slice ns)
{
    return slice_is(ns, LITERAL(NS_CLIENT)) &&
           (slice_is(name, LITERAL("message")) || slice_is(name, LITERAL("presence")) ||
            slice_is(name, LITERAL("iq")));
}

/* A first-level element of an open stream. */
static void c2s_element(c2s_session *session, const xml_view *view)
{
    xml_node_id root = xml_view_root(view);
    xml_slice name = xml_element_name(view, root);
    xml_slice ns = xml_element_namespace(view, root);
    bool stanza = is_stanza(name, ns);

    if (session->flags & C2S_BOUND) {
        if (stanza) {
            c2s_route_stanza(session, c2s_reactor_here(session->listener->node), view);
            return;
        }
        c2s_fail(session, STREAM_ERROR_UNSUPPORTED_STANZA_TYPE);
        return;
    }
    if (!(session->flags & C2S_AUTHENTICATED)) {
        if (slice_is(ns, LITERAL(NS_SASL)) &&
            (slice_is(name, LITERAL("auth")) || slice_is(name, LITERAL("response")) ||
             slice_is(name, LITERAL("abort")))) {
            c2s_sasl(session, view, name);
            return;
        }
        /* Stanzas before authentication (section 4.9.3.12); anything else
         * is not part of the negotiation. */
        c2s_fail(session, stanza || needs_starttls(session) ? STREAM_ERROR_NOT_AUTHORIZED
                                                             : STREAM_ERROR_UNSUPPORTED_STANZA_TYPE);
        return;
    }
    /* Authenticated, not bound: only resource binding (section 7). */
    if (slice_is(name, LITERAL("iq")) && stanza) {
        xml_attribute type, id;
        xml_slice id_value = {"", 0};
        if (xml_element_attribute(view, root, "id", 2, &id))
            id_value = id.raw_value;
        xml_node_id bind = xml_element_child(view, root, "bind", 4, NS_BIND, sizeof NS_BIND - 1);
        if (bind != XML_NODE_NONE && xml_element_attribute(view, root, "type", 4, &type) &&
            slice_is(type.raw_value, LITERAL("set"))) {
            c2s_bind(session, view, bind, id_value);
            return;
        }
    }
    c2s_fail(session, stanza ? STREAM_ERROR_NOT_AUTHORIZED : STREAM_ERROR_UNSUPPORTED_STANZA_TYPE);
}

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

/* Feeds plaintext to the tokenizer and handles each event. Returns the
 * bytes taken: all of them, except after <starttls/>, where the rest is
 * the client's first TLS bytes and belongs to TLS. */
static size_t c2s_input(c2s_session *session, const char *bytes, size_t length)
{
    if (session->flags & C2S_HELD) {
        hold_bytes(session, bytes, length);
        return length;
    }
    c2s_reactor *here = c2s_reactor_here(session->listener->node);
    if (here->scratch == NULL && (here->scratch = xml_scratch_create()) == NULL) {
        c2s_fail(session, STREAM_ERROR_RESOURCE_CONSTRAINT);
        return length;
    }
    size_t at = 0;
    while (at < length && session->phase != C2S_CLOSED) {
        size_t used = 0;
        xml_view view;
        xml_event event = xml_tokenizer_feed(&session->tokenizer, here->scratch, bytes + at,
                                             length - at, &used, &view);
        assert(used <= length - at);
        at += used;
        switch (event) {
        case XML_EVENT_NEED_MORE:
            break;
        case XML_EVENT_STREAM_OPEN:
            c2s_stream_open(session, &view);
            break;
        case XML_EVENT_STANZA: {
            if (session->phase != C2S_OPEN) {
                c2s_fail(session, STREAM_ERROR_NOT_AUTHORIZED);
                break;
            }
            /* <starttls/> here, where the byte boundary is known: what
             * follows it in this read is the client's first TLS bytes. */
            xml_node_id root = xml_view_root(&view);
            if (slice_is(xml_element_namespace(&view, root), LITERAL(NS_TLS)) &&
                slice_is(xml_element_name(&view, root), LITERAL("starttls")) &&
                !(session->flags & C2S_BOUND)) {
                if (c2s_starttls(session))
                    return at; /* the rest is TLS */
                break;
            }
            c2s_element(session, &view);
            break;
        }
        case XML_EVENT_STREAM_CLOSE:
            c2s_finish(session);
            break;
        case XML_EVENT_ERROR:
            c2s_fail(session, condition_of(xml_tokenizer_error(&session->tokenizer)));
            break;
        }
        if (session->flags & C2S_HELD) {
            hold_bytes(session, bytes + at, length - at);
            return length;
        }
        if (used == 0)
            break; /* no progress: the tokenizer waits for a reset */
    }
    return length;
}

/* Feeds what was held, which may hold again. */
static void c2s_input_held(c2s_session *session)
{
    char *held = session->held;
    size_t length = session->held_length;
    session->held = NULL;
    session->held_length = 0;
    c2s_input(session, held, length);
    free(held);
}

/* ------------------------------------------------------------ callbacks */

static void c2s_on_open(rx_conn *conn, void *listener_context)
{
    const c2s_listener *listener = listener_context;
    c2s_session *session = calloc(1, sizeof *session);
    if (session == NULL) {
        rx_log(RX_LOG_WARNING, "c2s: out of memory for a new stream");
        rx_conn_abort(conn);
        return;
    }
    xml_tokenizer_init(&session->tokenizer);
    session->conn = conn;
    session->listener = listener;
    session->phase = C2S_HEADER;
    if (listener->tls == CONFIG_TLS_DIRECT) {
        session->tls = tls_session_create(listener->node->tls, TLS_MODE_DIRECT);
        if (session->tls == NULL) {
            xml_tokenizer_fini(&session->tokenizer);
            free(session);
            rx_conn_abort(conn);
            return;
        }
        session->flags |= C2S_ENCRYPTED;
    }
    rx_conn_set_userdata(conn, session);
}

/* Hands ciphertext to the session's TLS; ends the stream on a TLS error. */
static void tls_receive(c2s_session *session, const uint8_t *bytes, size_t length)
{
    c2s_reactor *here = c2s_reactor_here(session->listener->node);
    io_for(here, session);
    tls_result result = tls_session_receive(session->tls, bytes, length, &here->tls_io);
    if (result == TLS_ERROR) {
        if (session->phase != C2S_CLOSED)
            rx_log(RX_LOG_INFO, "c2s: TLS: %s", tls_session_error(session->tls));
        session->phase = C2S_CLOSED;
        rx_conn_close(session->conn);
    } else if (result == TLS_CLOSED && session->phase != C2S_CLOSED) {
        session->phase = C2S_CLOSED;
        rx_conn_close(session->conn);
    }
}

static void c2s_on_data(rx_conn *conn, const uint8_t *bytes, size_t length)
{
    c2s_session *session = rx_conn_userdata(conn);
    if (session == NULL || session->phase == C2S_CLOSED)
        return;
    if (session->tls != NULL) {
        tls_receive(session, bytes, length);
        return;
    }
    size_t used = c2s_input(session, (const char *)bytes, length);
    if (used < length && session->tls != NULL && session->phase != C2S_CLOSED)
        tls_receive(session, bytes + used, length - used);
}

static void c2s_on_close(rx_conn *conn, rx_close_reason reason)
{
    c2s_session *session = rx_conn_userdata(conn);
    if (reason != RX_CLOSE_LOCAL && reason != RX_CLOSE_PEER)
        rx_log(RX_LOG_INFO, "c2s: connection closed: %s", rx_close_reason_name(reason));
    if (session == NULL)
        return;
    if (session->flags & C2S_IN_TABLE) {
        c2s_reactor *here = c2s_reactor_here(session->listener->node);
        if (session->flags & C2S_AVAILABLE)
            c2s_server_gone(session, here);
        c2s_route_unbind(session, here);
    }
    if (session->delay != NULL) {
        rx_timer_cancel(session->delay);
        free(session->delay);
    }
    sasl_session_destroy(session->sasl);
    tls_session_destroy(session->tls);
    xml_tokenizer_fini(&session->tokenizer);
    free(session->held);
    free(session->jid);
    free(session);
    rx_conn_set_userdata(conn, NULL);
}

static void c2s_on_shutdown(rx_conn *conn)
{
    c2s_session *session = rx_conn_userdata(conn);
    if (session == NULL) {
        rx_conn_close(conn);
        return;
    }
    c2s_fail(session, STREAM_ERROR_SYSTEM_SHUTDOWN);
}

/* RFC 6120 section 4.9.3.4: a stream that did not finish its handshake in
 * time, or went silent, ends with connection-timeout. */
static void c2s_on_timeout(rx_conn *conn, rx_close_reason reason)
{
    c2s_session *session = rx_conn_userdata(conn);
    (void)reason;
    if (session == NULL) {
        rx_conn_close(conn);
        return;
    }
    c2s_fail(session, STREAM_ERROR_CONNECTION_TIMEOUT);
}

const rx_listener_ops c2s_listener_ops = {
    .on_open = c2s_on_open,
    .on_data = c2s_on_data,
    .on_close = c2s_on_close,
    .on_timeout = c2s_on_timeout,
    .on_shutdown = c2s_on_shutdown,
};
