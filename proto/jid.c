/*
 * jid.c: parsing and preparing JIDs (RFC 7622).
 *
 * The localpart and resourcepart are PRECIS profiles (proto/precis.c); this
 * file adds the JID grammar, RFC 7622's extra localpart rule and the
 * domainpart.
 *
 * A domainpart of ASCII letters, digits, hyphens and dots is checked and
 * lowercased here in one pass: for such a name IDNA2008 asks nothing more
 * than the LDH rules (an NR-LDH label), so libidn2 is not called. Anything
 * else (non-ASCII, or an A-label "xn--...", which must be decoded to its
 * U-label) is mapped (precis_domain_map) and handed to libidn2 without its
 * UTS 46 processing (IDN2_NO_TR46: plain IDNA2008); its A-label result is
 * checked with the same LDH rules (libidn2 lets ASCII such as '@' or '_'
 * through untouched) and converted back to U-labels, which must give the
 * same A-labels again and be unchanged by the mapping, so a stored
 * domainpart always prepares to itself.
 */
#include "proto/jid.h"

#include <arpa/inet.h>
#include <idn2.h>
#include <stdlib.h>
#include <string.h>

#include "proto/precis.h"

/* Octets of one DNS label and of a whole name in A-label form, without
 * the final dot (RFC 1035 section 2.3.4, RFC 5890 section 2.3.2.1). */
#define DNS_LABEL_BYTES_MAX 63u
#define DNS_NAME_BYTES_MAX  253u

static jid_result from_precis(precis_result result, jid_result part_error)
{
    switch (result) {
    case PRECIS_OK:
        return JID_OK;
    case PRECIS_ERROR_UTF8:
        return JID_ERROR_UTF8;
    case PRECIS_ERROR_EMPTY:
        return JID_ERROR_EMPTY;
    case PRECIS_ERROR_TOO_LONG:
        return JID_ERROR_TOO_LONG;
    case PRECIS_ERROR_MEMORY:
        return JID_ERROR_MEMORY;
    case PRECIS_ERROR_DISALLOWED:
    case PRECIS_ERROR_CONTEXT:
    case PRECIS_ERROR_BIDI:
        break;
    }
    return part_error;
}

/* ---------------------------------------------------------------- parts */

/* RFC 7622 section 3.3.1: PVALID in IdentifierClass, but never allowed
 * in a localpart. */
static bool forbidden_in_localpart(char c)
{
    switch (c) {
    case '"':
    case '&':
    case '\'':
    case '/':
    case ':':
    case '<':
    case '>':
    case '@':
        return true;
    default:
        return false;
    }
}

jid_result jid_prepare_localpart(const char *in, size_t in_len, char *out, size_t *out_len)
{
    precis_result prepared =
        precis_username_case_mapped(in, in_len, out, LIMIT_JID_PART_BYTES_MAX, out_len);
    jid_result result = from_precis(prepared, JID_ERROR_LOCALPART);
    if (result != JID_OK)
        return result;
    bool forbidden = false;
    for (size_t i = 0; i < *out_len; i++)
        forbidden |= forbidden_in_localpart(out[i]);
    return forbidden ? JID_ERROR_LOCALPART : JID_OK;
}

jid_result jid_prepare_resourcepart(const char *in, size_t in_len, char *out, size_t *out_len)
{
    precis_result prepared =
        precis_opaque_string(in, in_len, out, LIMIT_JID_PART_BYTES_MAX, out_len);
    return from_precis(prepared, JID_ERROR_RESOURCEPART);
}

static bool is_ldh(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/* Checks name (lower-case ASCII, no final dot) as LDH labels within the
 * DNS bounds. Sets *has_a_label when a label starts with "xn--"; any other
 * label with hyphens in positions 3 and 4 is refused (a reserved LDH label,
 * RFC 5890 section 2.3.1). */
static bool ldh_labels_valid(const char *name, size_t len, bool *has_a_label)
{
    *has_a_label = false;
    if (len == 0 || len > DNS_NAME_BYTES_MAX)
        return false;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && name[i] != '.') {
            if (!is_ldh(name[i]))
                return false;
            continue;
        }
        size_t label_len = i - start;
        const char *label = name + start;
        if (label_len == 0 || label_len > DNS_LABEL_BYTES_MAX || label[0] == '-' ||
            label[label_len - 1] == '-')
            return false;
        if (label_len >= 4 && label[2] == '-' && label[3] == '-') {
            if (label[0] != 'x' || label[1] != 'n')
                return false;
            *has_a_label = true;
        }
        start = i + 1;
    }
    return true;
}

/* An IPv6 literal "[...]" (RFC 7622 section 3.2, RFC 3986 IP-literal
 * without IPvFuture), written back in its canonical form. */
static jid_result prepare_ipv6(const char *in, size_t in_len, char *out, size_t *out_len)
{
    char text[INET6_ADDRSTRLEN];
    struct in6_addr address;
    if (in_len < 3 || in[in_len - 1] != ']' || in_len - 2 >= sizeof text ||
        memchr(in, '\0', in_len) != NULL)
        return JID_ERROR_DOMAINPART;
    memcpy(text, in + 1, in_len - 2);
    text[in_len - 2] = '\0';
    if (inet_pton(AF_INET6, text, &address) != 1 ||
        inet_ntop(AF_INET6, &address, text, sizeof text) == NULL)
        return JID_ERROR_DOMAINPART;
    size_t len = strlen(text);
    out[0] = '[';
    memcpy(out + 1, text, len);
    out[len + 1] = ']';
    *out_len = len + 2;
    return JID_OK;
}

/* Whether U-labels (from libidn2) are already in mapped form. An A-label
 * can decode to what the mapping would change (upper-case Cherokee, which
 * libidn2 accepts), and such a domain would not prepare to itself. */
static jid_result check_mapped(const char *unicode, size_t len)
{
    char mapped[LIMIT_JID_PART_BYTES_MAX];
    size_t mapped_len;
    precis_result result = precis_domain_map(unicode, len, mapped, sizeof mapped, &mapped_len);
    if (result == PRECIS_ERROR_MEMORY)
        return JID_ERROR_MEMORY;
    if (result != PRECIS_OK || mapped_len != len || memcmp(mapped, unicode, len) != 0)
        return JID_ERROR_DOMAINPART;
    return JID_OK;
}

/* libidn2's part: name (mapped, NUL-terminated, no final dot) to A-labels
 * and back to U-labels, written to out. */
static jid_result prepare_idna(const char *name, char *out, size_t *out_len)
{
    char *ascii = NULL, *unicode = NULL, *again = NULL;
    jid_result result = JID_ERROR_DOMAINPART;
    int status = idn2_lookup_u8((const uint8_t *)name, (uint8_t **)&ascii, IDN2_NO_TR46);
    bool has_a_label;
    if (status == IDN2_OK && ldh_labels_valid(ascii, strlen(ascii), &has_a_label))
        status = idn2_to_unicode_8z8z(ascii, &unicode, 0);
    else if (status == IDN2_OK)
        status = IDN2_ENCODING_ERROR;
    if (status == IDN2_OK)
        status = idn2_lookup_u8((const uint8_t *)unicode, (uint8_t **)&again, IDN2_NO_TR46);
    if (status == IDN2_OK && strcmp(ascii, again) == 0) {
        size_t len = strlen(unicode);
        result = len <= LIMIT_JID_PART_BYTES_MAX ? check_mapped(unicode, len) : JID_ERROR_TOO_LONG;
        if (result == JID_OK) {
            memcpy(out, unicode, len);
            *out_len = len;
        }
    } else if (status == IDN2_MALLOC) {
        result = JID_ERROR_MEMORY;
    }
    idn2_free(ascii);
    idn2_free(unicode);
    idn2_free(again);
    return result;
}

/* The ASCII path: lowercases in into out when it is LDH labels with at
 * most one final dot and no A-label. Returns JID_ERROR_UTF8 to say "take
 * the full path". */
static jid_result prepare_ascii_domain(const char *in, size_t in_len, char *out, size_t *out_len)
{
    if (in_len > 0 && in[in_len - 1] == '.')
        in_len--;
    if (in_len == 0)
        return JID_ERROR_EMPTY;
    /* One pass: non-ASCII anywhere takes the full path, whatever the
     * length (the mapping can shorten it: fullwidth letters are three
     * octets each), so the DNS bound is checked after it; out holds at
     * most that bound. */
    for (size_t i = 0; i < in_len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c >= 0x80)
            return JID_ERROR_UTF8;
        if (i < DNS_NAME_BYTES_MAX)
            out[i] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    }
    if (in_len > DNS_NAME_BYTES_MAX) /* as LDH labels it would be too long */
        return JID_ERROR_DOMAINPART;
    bool has_a_label;
    if (!ldh_labels_valid(out, in_len, &has_a_label))
        return JID_ERROR_DOMAINPART;
    if (has_a_label)
        return JID_ERROR_UTF8;
    *out_len = in_len;
    return JID_OK;
}

jid_result jid_prepare_domainpart(const char *in, size_t in_len, char *out, size_t *out_len)
{
    if (in_len > 0 && in[0] == '[')
        return prepare_ipv6(in, in_len, out, out_len);
    jid_result result = prepare_ascii_domain(in, in_len, out, out_len);
    if (result != JID_ERROR_UTF8)
        return result;
    char mapped[LIMIT_JID_PART_INPUT_BYTES_MAX + 1];
    size_t mapped_len;
    result = from_precis(precis_domain_map(in, in_len, mapped, sizeof mapped - 1, &mapped_len),
                         JID_ERROR_DOMAINPART);
    if (result != JID_OK)
        return result;
    if (mapped_len > 0 && mapped[mapped_len - 1] == '.')
        mapped_len--;
    if (mapped_len == 0)
        return JID_ERROR_EMPTY;
    if (memchr(mapped, '\0', mapped_len) != NULL)
        return JID_ERROR_DOMAINPART;
    mapped[mapped_len] = '\0';
    return prepare_idna(mapped, out, out_len);
}

/* ----------------------------------------------------------------- JIDs */

jid_result jid_parse(const char *in, size_t in_len, jid *out)
{
    const char *slash = memchr(in, '/', in_len);
    size_t bare_len = slash != NULL ? (size_t)(slash - in) : in_len;
    const char *at = memchr(in, '@', bare_len);
    const char *domain = at != NULL ? at + 1 : in;
    size_t domain_in_len = bare_len - (size_t)(domain - in);
    size_t local_len = 0, domain_len = 0, resource_len = 0, used = 0;
    jid_result result = JID_OK;
    if (at != NULL) {
        result = jid_prepare_localpart(in, (size_t)(at - in), out->text, &local_len);
        if (result != JID_OK)
            return result;
        out->text[local_len] = '@';
        used = local_len + 1;
    }
    result = jid_prepare_domainpart(domain, domain_in_len, out->text + used, &domain_len);
    if (result != JID_OK)
        return result;
    used += domain_len;
    if (slash != NULL) {
        out->text[used] = '/';
        result = jid_prepare_resourcepart(slash + 1, in_len - bare_len - 1, out->text + used + 1,
                                          &resource_len);
        if (result != JID_OK)
            return result;
        used += 1 + resource_len;
    }
    out->text[used] = '\0';
    out->localpart_len = (uint16_t)local_len;
    out->domainpart_len = (uint16_t)domain_len;
    out->resourcepart_len = (uint16_t)resource_len;
    return JID_OK;
}

bool jid_from_prepared(jid *out, const char *localpart, size_t localpart_len,
                       const char *domainpart, size_t domainpart_len, const char *resourcepart,
                       size_t resourcepart_len)
{
    if (localpart_len > LIMIT_JID_PART_BYTES_MAX || domainpart_len == 0 ||
        domainpart_len > LIMIT_JID_PART_BYTES_MAX || resourcepart_len > LIMIT_JID_PART_BYTES_MAX)
        return false;
    size_t used = 0;
    if (localpart_len > 0) {
        memcpy(out->text, localpart, localpart_len);
        out->text[localpart_len] = '@';
        used = localpart_len + 1;
    }
    memcpy(out->text + used, domainpart, domainpart_len);
    used += domainpart_len;
    if (resourcepart_len > 0) {
        out->text[used] = '/';
        memcpy(out->text + used + 1, resourcepart, resourcepart_len);
        used += 1 + resourcepart_len;
    }
    out->text[used] = '\0';
    out->localpart_len = (uint16_t)localpart_len;
    out->domainpart_len = (uint16_t)domainpart_len;
    out->resourcepart_len = (uint16_t)resourcepart_len;
    return true;
}

jid_result jid_set_resourcepart(jid *j, const char *in, size_t in_len)
{
    size_t bare_len = jid_bare_length(j);
    if (in_len == 0) {
        j->text[bare_len] = '\0';
        j->resourcepart_len = 0;
        return JID_OK;
    }
    char prepared[LIMIT_JID_PART_BYTES_MAX];
    size_t prepared_len;
    jid_result result = jid_prepare_resourcepart(in, in_len, prepared, &prepared_len);
    if (result != JID_OK)
        return result;
    j->text[bare_len] = '/';
    memcpy(j->text + bare_len + 1, prepared, prepared_len);
    j->text[bare_len + 1 + prepared_len] = '\0';
    j->resourcepart_len = (uint16_t)prepared_len;
    return JID_OK;
}

static size_t format(const jid *j, size_t len, char *out, size_t out_cap)
{
    if (len + 1 > out_cap)
        return 0;
    memcpy(out, j->text, len);
    out[len] = '\0';
    return len;
}

size_t jid_format_full(const jid *j, char *out, size_t out_cap)
{
    return format(j, jid_full_length(j), out, out_cap);
}

size_t jid_format_bare(const jid *j, char *out, size_t out_cap)
{
    return format(j, jid_bare_length(j), out, out_cap);
}

bool jid_equal(const jid *a, const jid *b)
{
    return a->localpart_len == b->localpart_len && a->domainpart_len == b->domainpart_len &&
           a->resourcepart_len == b->resourcepart_len &&
           memcmp(a->text, b->text, jid_full_length(a)) == 0;
}

bool jid_bare_equal(const jid *a, const jid *b)
{
    return a->localpart_len == b->localpart_len && a->domainpart_len == b->domainpart_len &&
           memcmp(a->text, b->text, jid_bare_length(a)) == 0;
}

const char *jid_result_name(jid_result result)
{
    switch (result) {
    case JID_OK:
        return "ok";
    case JID_ERROR_EMPTY:
        return "a part is empty";
    case JID_ERROR_TOO_LONG:
        return "a part is longer than 1023 bytes";
    case JID_ERROR_UTF8:
        return "not well-formed UTF-8";
    case JID_ERROR_LOCALPART:
        return "the localpart holds a character it may not";
    case JID_ERROR_DOMAINPART:
        return "the domainpart is not a valid domain name or IP address";
    case JID_ERROR_RESOURCEPART:
        return "the resourcepart holds a character it may not";
    case JID_ERROR_MEMORY:
        return "out of memory";
    }
    return "unknown";
}

const char *jid_result_condition(jid_result result)
{
    return result == JID_ERROR_MEMORY ? "resource-constraint" : "jid-malformed";
}
