/*
 * stanza_out.h: the bytes a routed stanza leaves with, and the error reply
 * a refused stanza gets.
 *
 * Forwarding writes the received bytes with `from` stamped, never a
 * re-serialised tree (shared/DESIGN.md, "Memory"). stanza_out_stamp takes
 * the tokenizer's view of a stanza and describes the outgoing stanza as a
 * few slices: the received bytes up to the end of the root's name, the new
 * attributes (from='full JID', escaped, and any namespace declaration the
 * stanza leaned on), then the received bytes again, with the old `from`
 * attribute left out. Nothing is copied until stanza_out_copy writes the
 * slices, once, into the destination (a send queue, a mailbox message).
 *
 * The inline namespace case: a stanza may use a prefix that only the
 * stream header declares (<stream:stream xmlns:x='urn:x'> ...
 * <message><x:y/></message>). Out of that stream the prefix means nothing,
 * so the stamped start tag carries xmlns:x='urn:x' itself and the bytes
 * keep their meaning on any stream. The default namespace (jabber:client)
 * is not carried: every client stream declares the same one.
 *
 * The stamp must be taken on the reactor that received the stanza, while
 * its view is valid: it reads the stream header's declarations through the
 * view's tokenizer.
 *
 * Spoofing: RFC 6120 section 8.1.2.1 lets a client put its own full JID or
 * bare JID in `from`, nothing else (else the stream ends with invalid-from);
 * stanza_from_allowed checks that before the stamp replaces it.
 *
 * Error replies (RFC 6120 section 8.3): stanza_error_write builds
 * <KIND to=sender from=recipient type='error' id=...><error type=T>
 * <CONDITION xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></KIND>,
 * with T the error type section 8.3.3 gives the condition.
 */
#ifndef STARLING_SERVER_XMPP_STANZA_OUT_H
#define STARLING_SERVER_XMPP_STANZA_OUT_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/limits.h"
#include "proto/xml.h"

/* The stanza error conditions of RFC 6120 section 8.3.3, in its order. */
typedef enum stanza_error {
    STANZA_ERROR_BAD_REQUEST = 0,
    STANZA_ERROR_CONFLICT,
    STANZA_ERROR_FEATURE_NOT_IMPLEMENTED,
    STANZA_ERROR_FORBIDDEN,
    STANZA_ERROR_GONE,
    STANZA_ERROR_INTERNAL_SERVER_ERROR,
    STANZA_ERROR_ITEM_NOT_FOUND,
    STANZA_ERROR_JID_MALFORMED,
    STANZA_ERROR_NOT_ACCEPTABLE,
    STANZA_ERROR_NOT_ALLOWED,
    STANZA_ERROR_NOT_AUTHORIZED,
    STANZA_ERROR_POLICY_VIOLATION,
    STANZA_ERROR_RECIPIENT_UNAVAILABLE,
    STANZA_ERROR_REDIRECT,
    STANZA_ERROR_REGISTRATION_REQUIRED,
    STANZA_ERROR_REMOTE_SERVER_NOT_FOUND,
    STANZA_ERROR_REMOTE_SERVER_TIMEOUT,
    STANZA_ERROR_RESOURCE_CONSTRAINT,
    STANZA_ERROR_SERVICE_UNAVAILABLE,
    STANZA_ERROR_SUBSCRIPTION_REQUIRED,
    STANZA_ERROR_UNDEFINED_CONDITION,
    STANZA_ERROR_UNEXPECTED_REQUEST,
    STANZA_ERROR_COUNT,
} stanza_error;

/* The error types of RFC 6120 section 8.3.2. */
typedef enum stanza_error_type {
    STANZA_ERROR_TYPE_AUTH = 0,
    STANZA_ERROR_TYPE_CANCEL,
    STANZA_ERROR_TYPE_CONTINUE,
    STANZA_ERROR_TYPE_MODIFY,
    STANZA_ERROR_TYPE_WAIT,
} stanza_error_type;

/* The condition's element name, e.g. "service-unavailable" (static;
 * "undefined-condition" for a value out of range). */
const char *stanza_error_name(stanza_error condition);

/* The type section 8.3.3 gives the condition, and its name ("cancel"). */
stanza_error_type stanza_error_type_of(stanza_error condition);
const char *stanza_error_type_name(stanza_error_type type);

/* ------------------------------------------------------------- stamping */

/* Slices of a stamped stanza: head, new attributes, middle, tail. */
#define STANZA_OUT_SLICES_MAX 4u

/* Bytes of the new attributes: from='...' with every byte of a JID
 * escaped (6 bytes for "&quot;"), and each stream-header prefix declared
 * inline with its URI (as written, at most the header's bytes). */
#define STANZA_OUT_ATTRIBUTE_BYTES                                                                 \
    (16u + 6u * LIMIT_ROUTE_JID_BYTES_MAX + LIMIT_STREAM_HEADER_PREFIXES_MAX * 12u +               \
     LIMIT_STREAM_HEADER_NAMESPACE_BYTES_MAX)

/* A stamped stanza. The slices borrow from the view's bytes and from
 * attributes; valid while both are. About 19 KiB (the worst-case
 * escaped JID): keep one per reactor rather than on a small stack. */
typedef struct stanza_out {
    xml_slice slices[STANZA_OUT_SLICES_MAX];
    size_t slice_count;
    size_t length; /* bytes of all slices together */
    char attributes[STANZA_OUT_ATTRIBUTE_BYTES];
} stanza_out;

/*
 * Stamps from (a full JID, 1..LIMIT_ROUTE_JID_BYTES_MAX bytes, borrowed;
 * escaped here) on the stanza of view (borrowed, with a root element),
 * replacing any from it had, and declares inline every stream-header prefix
 * the stanza uses. Fills *out; false only when from is empty or too long.
 */
bool stanza_out_stamp(const xml_view *view, const char *from, size_t from_length, stanza_out *out);

/* Writes the stamped stanza into destination (borrowed, capacity bytes) in
 * one pass. Returns out->length, or 0 (nothing written) when it does not
 * fit. */
size_t stanza_out_copy(const stanza_out *out, char *destination, size_t capacity);

/*
 * RFC 6120 section 8.1.2.1: may a client whose session is full_jid send
 * from (the value it put in `from`, normalised)? true for its full JID or
 * its bare JID; false for anything else (invalid-from). All borrowed.
 */
bool stanza_from_allowed(const char *from, size_t from_length, const char *full_jid,
                         size_t full_length);

/* --------------------------------------------------------- error replies */

/*
 * Writes the error reply to the stanza of view (borrowed) into out
 * (borrowed, capacity bytes): the same element name, to = reply_to (the
 * sender; NULL: the stanza's from attribute), from = reply_from (the
 * addressee; NULL: the stanza's to attribute, left out when it has none),
 * the stanza's id, type='error', and the error element. Returns the bytes
 * written, or 0 when it does not fit, when the root is not a message,
 * presence or iq, or when the stanza is itself of type error: errors are
 * never answered with errors (RFC 6120 section 8.3.1). 512 bytes plus six times the JIDs and id
 * always suffice.
 */
size_t stanza_error_write(const xml_view *view, stanza_error condition, const char *reply_to,
                          size_t reply_to_length, const char *reply_from, size_t reply_from_length,
                          char *out, size_t capacity);

/*
 * The same from a stanza's bytes alone (stamped bytes handed to another
 * reactor: no view of them is left): parses stanza (borrowed) as one
 * element of a jabber:client stream, using scratch (borrowed, the calling
 * thread's) for its index, and answers it to its from (the stamped sender)
 * from its to. Returns the bytes written, or 0 as above, or when the bytes
 * are not one well-formed stanza.
 */
size_t stanza_error_write_from_bytes(xml_scratch *scratch, const char *stanza, size_t length,
                                     stanza_error condition, char *out, size_t capacity);

#endif
