/*
 * jid.h: XMPP addresses (RFC 7622), parsed and prepared.
 *
 * A JID is [localpart "@"] domainpart ["/" resourcepart]. Parsing follows
 * RFC 7622 section 3.1: the resourcepart is everything after the first '/'
 * (it may hold '/' and '@'), the localpart everything before the first '@'
 * that precedes it, and the domainpart what remains. Each part is then
 * prepared, and a JID is kept and compared only in its prepared form:
 *
 *   localpart     PRECIS UsernameCaseMapped (RFC 8265 section 3.3: width
 *                 mapping, toLowerCase, NFC, Bidi Rule, IdentifierClass),
 *                 and none of " & ' / : < > @ (RFC 7622 section 3.3.1).
 *   domainpart    a domain name: width mapping, toLowerCase, NFC and
 *                 IDNA2008 (RFC 5890..5893) through libidn2, kept as
 *                 U-labels (RFC 7622 section 3.2.1: an A-label "xn--..." is
 *                 converted to its U-label), lower case, without a final
 *                 dot (RFC 7622 section 3.2). Labels of LDH (letters,
 *                 digits, hyphens; no hyphen first or last or in positions
 *                 3 and 4 unless an A-label), each at most 63 octets and at
 *                 most 253 in A-label form, as DNS needs. An IPv4 address
 *                 is a valid domain name as it is; an IPv6 address is
 *                 written in brackets ("[2001:db8::1]") and kept in the
 *                 canonical text form of RFC 5952 (lower case, zeros
 *                 compressed).
 *   resourcepart  PRECIS OpaqueString (RFC 8265 section 4.2: non-ASCII
 *                 spaces to U+0020, NFC, FreeformClass).
 *
 * Each prepared part is 1 to LIMIT_JID_PART_BYTES_MAX octets (RFC 7622
 * section 3.1). Two prepared JIDs are equal exactly when their bytes are.
 *
 * All-ASCII input (nearly every JID) is prepared in one pass over its bytes
 * with no allocation and no library call. Other input goes through
 * libunistring (case mapping, NFC) and, for a domainpart, libidn2, which
 * allocate; everything is thread-safe and keeps no global state.
 *
 * Errors: a stanza whose 'to' does not parse gets the stanza error
 * jid-malformed (RFC 6120 section 8.3.3.8); see jid_result_condition. (A
 * stream header's 'to' is a domain the server serves or not: host-unknown.)
 * A client-chosen resource that
 * jid_prepare_resourcepart rejects is bad-request instead (RFC 6120
 * section 7.7.2.2).
 *
 * The prepared JID is stored as its text, "local@domain/resource" with a
 * NUL after it, so the full JID and the bare JID (a prefix of it) can be
 * written into a stanza with no formatting. The text is not XML-escaped: a
 * resourcepart (and a localpart: ' and & are forbidden there, but not in a
 * resource) may hold characters that need escaping in an attribute.
 */
#ifndef STARLING_PROTO_JID_H
#define STARLING_PROTO_JID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/limits.h"

/* Outcome of parsing or preparing. */
typedef enum jid_result {
    JID_OK = 0,
    JID_ERROR_EMPTY,        /* a part is empty ("@d", "d/", "") */
    JID_ERROR_TOO_LONG,     /* a prepared part over LIMIT_JID_PART_BYTES_MAX */
    JID_ERROR_UTF8,         /* not well-formed UTF-8 */
    JID_ERROR_LOCALPART,    /* UsernameCaseMapped or RFC 7622 rejects the localpart */
    JID_ERROR_DOMAINPART,   /* IDNA2008 rejects the domainpart, or a bad IPv6 literal */
    JID_ERROR_RESOURCEPART, /* OpaqueString rejects the resourcepart */
    JID_ERROR_MEMORY,       /* libunistring or libidn2 could not allocate */
} jid_result;

/* A prepared JID. localpart_len and resourcepart_len are 0 when the part
 * is absent; domainpart_len is never 0 in a JID jid_parse filled. */
typedef struct jid {
    uint16_t localpart_len;
    uint16_t domainpart_len;
    uint16_t resourcepart_len;
    char text[LIMIT_JID_BYTES_MAX + 1]; /* "local@domain/resource" NUL */
} jid;

/* Parses and prepares in (borrowed, in_len bytes, need not be
 * NUL-terminated) into *out (borrowed). On failure *out is unspecified.
 * A JID from an XML attribute is passed after XML unescaping ("&amp;" is
 * '&'). */
jid_result jid_parse(const char *in, size_t in_len, jid *out);

/* Prepare one part. in is borrowed (in_len bytes, need not be
 * NUL-terminated); out (borrowed) receives at most LIMIT_JID_PART_BYTES_MAX
 * bytes, not NUL-terminated, and *out_len their count. For SASL (an authcid
 * is a localpart) and resource binding (a client-chosen resource). */
jid_result jid_prepare_localpart(const char *in, size_t in_len, char *out, size_t *out_len);
jid_result jid_prepare_domainpart(const char *in, size_t in_len, char *out, size_t *out_len);
jid_result jid_prepare_resourcepart(const char *in, size_t in_len, char *out, size_t *out_len);

/* Builds a JID from parts that are already prepared (lengths within
 * LIMIT_JID_PART_BYTES_MAX, domainpart_len > 0; 0 for an absent localpart
 * or resourcepart). Nothing is checked but the lengths: false when one is
 * out of range. All pointers are borrowed. */
bool jid_from_prepared(jid *out, const char *localpart, size_t localpart_len,
                       const char *domainpart, size_t domainpart_len, const char *resourcepart,
                       size_t resourcepart_len);

/* Replaces the resourcepart of *j (borrowed) with in prepared as a
 * resourcepart (resource binding), or removes it when in_len is 0. On
 * failure *j is unchanged. */
jid_result jid_set_resourcepart(jid *j, const char *in, size_t in_len);

/* Bytes of the bare JID (localpart@domainpart), a prefix of j->text. */
static inline size_t jid_bare_length(const jid *j)
{
    return (j->localpart_len ? j->localpart_len + 1u : 0u) + j->domainpart_len;
}

/* Bytes of the full JID, all of j->text. */
static inline size_t jid_full_length(const jid *j)
{
    return jid_bare_length(j) + (j->resourcepart_len ? j->resourcepart_len + 1u : 0u);
}

/* Where each part starts in j->text (borrowed from j; not NUL-terminated
 * but by the lengths). jid_resourcepart means something only when
 * resourcepart_len > 0, jid_localpart only when localpart_len > 0. */
static inline const char *jid_localpart(const jid *j)
{
    return j->text;
}
static inline const char *jid_domainpart(const jid *j)
{
    return j->text + (j->localpart_len ? j->localpart_len + 1u : 0u);
}
static inline const char *jid_resourcepart(const jid *j)
{
    return j->text + jid_bare_length(j) + 1u;
}

/* Writes the full or bare JID with a NUL into out (borrowed, out_cap
 * bytes). Returns its length without the NUL, or 0 when it does not fit. */
size_t jid_format_full(const jid *j, char *out, size_t out_cap);
size_t jid_format_bare(const jid *j, char *out, size_t out_cap);

/* Whether two prepared JIDs are the same full JID, or have the same bare
 * JID (resourceparts ignored). */
bool jid_equal(const jid *a, const jid *b);
bool jid_bare_equal(const jid *a, const jid *b);

/* The name of a result, for logs and tests (static text). */
const char *jid_result_name(jid_result result);

/* The XMPP error condition a failed parse maps to (static text):
 * "jid-malformed", or "resource-constraint" for JID_ERROR_MEMORY. */
const char *jid_result_condition(jid_result result);

#endif
