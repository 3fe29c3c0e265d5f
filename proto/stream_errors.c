/*
 * stream_errors.c: names and the wire form of RFC 6120 stream errors.
 *
 * The element is built from constant pieces: conditions carry no text and no
 * application-specific child, so nothing here needs escaping.
 */
#include "proto/stream_errors.h"

#include <assert.h>
#include <string.h>

static const char *const stream_error_names[STREAM_ERROR_COUNT] = {
    [STREAM_ERROR_BAD_FORMAT] = "bad-format",
    [STREAM_ERROR_BAD_NAMESPACE_PREFIX] = "bad-namespace-prefix",
    [STREAM_ERROR_CONFLICT] = "conflict",
    [STREAM_ERROR_CONNECTION_TIMEOUT] = "connection-timeout",
    [STREAM_ERROR_HOST_GONE] = "host-gone",
    [STREAM_ERROR_HOST_UNKNOWN] = "host-unknown",
    [STREAM_ERROR_IMPROPER_ADDRESSING] = "improper-addressing",
    [STREAM_ERROR_INTERNAL_SERVER_ERROR] = "internal-server-error",
    [STREAM_ERROR_INVALID_FROM] = "invalid-from",
    [STREAM_ERROR_INVALID_NAMESPACE] = "invalid-namespace",
    [STREAM_ERROR_INVALID_XML] = "invalid-xml",
    [STREAM_ERROR_NOT_AUTHORIZED] = "not-authorized",
    [STREAM_ERROR_NOT_WELL_FORMED] = "not-well-formed",
    [STREAM_ERROR_POLICY_VIOLATION] = "policy-violation",
    [STREAM_ERROR_REMOTE_CONNECTION_FAILED] = "remote-connection-failed",
    [STREAM_ERROR_RESET] = "reset",
    [STREAM_ERROR_RESOURCE_CONSTRAINT] = "resource-constraint",
    [STREAM_ERROR_RESTRICTED_XML] = "restricted-xml",
    [STREAM_ERROR_SEE_OTHER_HOST] = "see-other-host",
    [STREAM_ERROR_SYSTEM_SHUTDOWN] = "system-shutdown",
    [STREAM_ERROR_UNDEFINED_CONDITION] = "undefined-condition",
    [STREAM_ERROR_UNSUPPORTED_ENCODING] = "unsupported-encoding",
    [STREAM_ERROR_UNSUPPORTED_FEATURE] = "unsupported-feature",
    [STREAM_ERROR_UNSUPPORTED_STANZA_TYPE] = "unsupported-stanza-type",
    [STREAM_ERROR_UNSUPPORTED_VERSION] = "unsupported-version",
};

const char *stream_error_name(stream_error condition)
{
    if ((unsigned)condition >= STREAM_ERROR_COUNT)
        return stream_error_names[STREAM_ERROR_UNDEFINED_CONDITION];
    return stream_error_names[condition];
}

size_t stream_error_write(stream_error condition, char *out, size_t out_len)
{
    static const char head[] = "<stream:error><";
    static const char tail[] =
        " xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>";
    const char *name = stream_error_name(condition);
    size_t name_len = strlen(name);
    size_t total = sizeof head - 1 + name_len + sizeof tail - 1;
    if (total > out_len)
        return 0;
    memcpy(out, head, sizeof head - 1);
    memcpy(out + sizeof head - 1, name, name_len);
    memcpy(out + sizeof head - 1 + name_len, tail, sizeof tail - 1);
    assert(total <= 160);
    return total;
}
