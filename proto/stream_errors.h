/*
 * stream_errors.h: the stream error conditions of RFC 6120 section 4.9.3.
 *
 * A stream error is fatal to its stream: the server sends
 * <stream:error><CONDITION xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>
 * </stream:error> followed by the closing stream tag, and closes the
 * connection (section 4.9.1.1). Every layer that ends a stream names one of
 * these conditions; the tokenizer's own rejections map onto them too.
 */
#ifndef STARLING_PROTO_STREAM_ERRORS_H
#define STARLING_PROTO_STREAM_ERRORS_H

#include <stddef.h>

/* Every defined condition of RFC 6120 section 4.9.3, in its order. */
typedef enum stream_error {
    STREAM_ERROR_BAD_FORMAT = 0,
    STREAM_ERROR_BAD_NAMESPACE_PREFIX,
    STREAM_ERROR_CONFLICT,
    STREAM_ERROR_CONNECTION_TIMEOUT,
    STREAM_ERROR_HOST_GONE,
    STREAM_ERROR_HOST_UNKNOWN,
    STREAM_ERROR_IMPROPER_ADDRESSING,
    STREAM_ERROR_INTERNAL_SERVER_ERROR,
    STREAM_ERROR_INVALID_FROM,
    STREAM_ERROR_INVALID_NAMESPACE,
    STREAM_ERROR_INVALID_XML,
    STREAM_ERROR_NOT_AUTHORIZED,
    STREAM_ERROR_NOT_WELL_FORMED,
    STREAM_ERROR_POLICY_VIOLATION,
    STREAM_ERROR_REMOTE_CONNECTION_FAILED,
    STREAM_ERROR_RESET,
    STREAM_ERROR_RESOURCE_CONSTRAINT,
    STREAM_ERROR_RESTRICTED_XML,
    STREAM_ERROR_SEE_OTHER_HOST,
    STREAM_ERROR_SYSTEM_SHUTDOWN,
    STREAM_ERROR_UNDEFINED_CONDITION,
    STREAM_ERROR_UNSUPPORTED_ENCODING,
    STREAM_ERROR_UNSUPPORTED_FEATURE,
    STREAM_ERROR_UNSUPPORTED_STANZA_TYPE,
    STREAM_ERROR_UNSUPPORTED_VERSION,
    STREAM_ERROR_COUNT,
} stream_error;

/* The condition's element name, e.g. "host-unknown" (static, never NULL
 * for a valid condition; "undefined-condition" otherwise). */
const char *stream_error_name(stream_error condition);

/* Writes the whole stream error element followed by the closing stream tag
 * "</stream:stream>" into out (borrowed, out_len bytes). The stream prefix
 * is always "stream", as Starling's own headers declare it. Returns the
 * number of bytes written, or 0 if out is too small (nothing useful is
 * written then). 160 bytes always suffice. */
size_t stream_error_write(stream_error condition, char *out, size_t out_len);

#endif
