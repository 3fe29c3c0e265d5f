/*
 * precis.h: PRECIS string preparation (RFC 8264) with the two profiles of
 * RFC 8265 that XMPP addresses use (RFC 7622): UsernameCaseMapped for
 * localparts and OpaqueString for resourceparts, plus the mapping RFC 7622
 * section 3.2.2 asks for before IDNA2008 checks a domainpart.
 *
 * A profile's enforcement maps a string (width mapping, additional mapping,
 * case mapping, NFC, in RFC 8264 section 7's order), then checks every code
 * point against the profile's string class (IdentifierClass or
 * FreeformClass), the context rules of RFC 5892 appendix A and, for
 * UsernameCaseMapped, the Bidi Rule (RFC 5893). Enforcing an enforced string
 * gives the same string (idempotence, RFC 8264 section 7).
 *
 * The class of each code point comes from tables generated at build time by
 * proto/gen_precis.py from the Unicode data files of Debian's unicode-data
 * package; normalization and case mapping are libunistring's. Code points
 * newer than libunistring's Unicode version count as unassigned (see
 * gen_precis.py), so the two never disagree.
 *
 * Everything here is pure and thread-safe: no global mutable state. Inputs
 * and outputs are caller buffers; an all-ASCII input never allocates, and a
 * non-ASCII one allocates (inside libunistring) only when a result would
 * not fit the output buffer, which is then an error.
 */
#ifndef STARLING_PROTO_PRECIS_H
#define STARLING_PROTO_PRECIS_H

#include <stddef.h>
#include <stdint.h>

/* Outcome of a preparation. */
typedef enum precis_result {
    PRECIS_OK = 0,
    PRECIS_ERROR_UTF8,       /* the input is not well-formed UTF-8 */
    PRECIS_ERROR_EMPTY,      /* the string is empty (RFC 8265 sections 3.3.3, 4.2.3) */
    PRECIS_ERROR_TOO_LONG,   /* the result does not fit the output buffer */
    PRECIS_ERROR_DISALLOWED, /* a code point the string class disallows or leaves unassigned */
    PRECIS_ERROR_CONTEXT,    /* a CONTEXTJ or CONTEXTO code point whose rule fails */
    PRECIS_ERROR_BIDI,       /* the Bidi Rule (RFC 5893 section 2) fails */
    PRECIS_ERROR_MEMORY,     /* libunistring could not allocate */
} precis_result;

/* RFC 8264 section 8 derived property of a code point. FREE_PVAL is
 * PVALID in FreeformClass and DISALLOWED in IdentifierClass (the RFC's
 * ID_DIS or FREE_PVAL). */
typedef enum precis_property {
    PRECIS_PVALID = 0,
    PRECIS_FREE_PVAL,
    PRECIS_CONTEXTJ,
    PRECIS_CONTEXTO,
    PRECIS_DISALLOWED,
    PRECIS_UNASSIGNED,
} precis_property;

/* Returns the derived property of code point cp (any value; over
 * U+10FFFF is UNASSIGNED). */
precis_property precis_property_of(uint32_t cp);

/* Enforces the UsernameCaseMapped profile (RFC 8265 section 3.3): width
 * mapping, case mapping with Unicode toLowerCase, NFC, the Bidi Rule, and
 * IdentifierClass. in (borrowed, in_len bytes, need not be NUL-terminated)
 * is read; the result goes to out (borrowed, out_cap bytes, not
 * NUL-terminated) and its length to *out_len. A result longer than
 * out_cap, or a non-ASCII input longer than LIMIT_JID_PART_INPUT_BYTES_MAX,
 * is PRECIS_ERROR_TOO_LONG. Non-ASCII input takes about 12 KiB of stack
 * for the mapping buffers. */
precis_result precis_username_case_mapped(const char *in, size_t in_len, char *out, size_t out_cap,
                                          size_t *out_len);

/* Enforces the OpaqueString profile (RFC 8265 section 4.2): non-ASCII
 * spaces mapped to U+0020, NFC, and FreeformClass. There is no case or
 * width mapping and no directionality rule. Buffers as for
 * precis_username_case_mapped. */
precis_result precis_opaque_string(const char *in, size_t in_len, char *out, size_t out_cap,
                                   size_t *out_len);

/* Maps a domain name the way RFC 7622 section 3.2.2 asks before IDNA2008
 * (the mappings of RFC 5895 section 2): width mapping, toLowerCase, NFC,
 * and the ideographic full stop U+3002 to '.'. It checks nothing else:
 * IDNA2008 (libidn2) validates the result. Buffers as for
 * precis_username_case_mapped. */
precis_result precis_domain_map(const char *in, size_t in_len, char *out, size_t out_cap,
                                size_t *out_len);

/* Returns the name of a result, for logs and tests (static text). */
const char *precis_result_name(precis_result result);

#endif
