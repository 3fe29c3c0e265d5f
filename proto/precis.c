/*
 * precis.c: the PRECIS framework (RFC 8264) and the RFC 8265 profiles.
 *
 * Every profile runs in RFC 8264 section 7's order: width mapping,
 * additional mapping, case mapping, normalization, then the checks
 * (directionality, string class, context rules). The mappings copy from one
 * stack buffer to the next (each bounded by LIMIT_JID_PART_INPUT_BYTES_MAX)
 * and the last step, NFC, writes into the caller's buffer.
 *
 * All-ASCII input takes a short path: every printable ASCII code point is
 * PVALID in both string classes (RFC 8264 section 9.11, ASCII7), NFC and
 * toLowerCase of ASCII are ASCII, and ASCII carries no right-to-left
 * character, so one pass that copies (and lowercases) the bytes is the
 * whole enforcement. That pass neither allocates nor calls libunistring.
 */
#include "proto/precis.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <unicase.h>
#include <uninorm.h>
#include <unistr.h>

#include "proto/limits.h"

/* One distinct combination of the properties a code point has here. */
typedef struct precis_record {
    uint8_t property; /* precis_property */
    uint8_t bidi;     /* bidi_class */
    uint8_t flags;    /* FLAG_ bits below */
} precis_record;

/* A fullwidth or halfwidth code point and its decomposition mapping. */
typedef struct precis_width_pair {
    uint32_t from;
    uint32_t to;
} precis_width_pair;

/* Bidi_Class values, numbered as gen_precis.py's BIDI_CLASSES. */
enum bidi_class {
    BIDI_L = 0,
    BIDI_R,
    BIDI_AL,
    BIDI_EN,
    BIDI_ES,
    BIDI_ET,
    BIDI_AN,
    BIDI_CS,
    BIDI_NSM,
    BIDI_BN,
    BIDI_B,
    BIDI_S,
    BIDI_WS,
    BIDI_ON,
};

/* The flags byte: Joining_Type in bits 0..2 (numbered as gen_precis.py's
 * JOINING_TYPES), canonical combining class Virama, a script group in bits
 * 4..5, and general category Zs. */
enum {
    JOINING_MASK = 0x07,
    JOINING_U = 0,
    JOINING_C,
    JOINING_D,
    JOINING_L,
    JOINING_R,
    JOINING_T,
    FLAG_VIRAMA = 0x08,
    SCRIPT_SHIFT = 4,
    SCRIPT_MASK = 0x30,
    SCRIPT_GREEK = 1,
    SCRIPT_HEBREW = 2,
    SCRIPT_KANA_HAN = 3,
    FLAG_SPACE = 0x40,
};

#include "precis_tables.h"

#define CODE_POINTS 0x110000u

static const precis_record *record_of(uint32_t cp)
{
    unsigned block = precis_stage1[cp >> PRECIS_BLOCK_SHIFT];
    unsigned entry = (block << PRECIS_BLOCK_SHIFT) | (cp & ((1u << PRECIS_BLOCK_SHIFT) - 1));
    return &precis_records[precis_stage2[entry]];
}

precis_property precis_property_of(uint32_t cp)
{
    if (cp >= CODE_POINTS)
        return PRECIS_UNASSIGNED;
    return (precis_property)record_of(cp)->property;
}

static unsigned script_of(uint32_t cp)
{
    return (record_of(cp)->flags & SCRIPT_MASK) >> SCRIPT_SHIFT;
}

static unsigned joining_of(uint32_t cp)
{
    return record_of(cp)->flags & JOINING_MASK;
}

/* ------------------------------------------------------------ the checks */

/* The code point before byte offset at, or U+FFFFFFFF at the start. */
static uint32_t before(const uint8_t *s, size_t at)
{
    ucs4_t cp;
    if (at == 0 || u8_prev(&cp, s + at, s) == NULL)
        return UINT32_MAX;
    return cp;
}

/* The code point at byte offset at, or U+FFFFFFFF at the end. */
static uint32_t at_offset(const uint8_t *s, size_t n, size_t at)
{
    ucs4_t cp;
    if (at >= n)
        return UINT32_MAX;
    u8_mbtouc(&cp, s + at, n - at);
    return cp;
}

static bool has_virama(uint32_t cp)
{
    return cp < CODE_POINTS && (record_of(cp)->flags & FLAG_VIRAMA) != 0;
}

/* RFC 5892 appendix A.1, the second half: (Joining_Type:{L,D})
 * (Joining_Type:T)* ZWNJ (Joining_Type:T)* (Joining_Type:{R,D}). The zero
 * width non-joiner spans [at, after). */
static bool zwnj_between_joiners(const uint8_t *s, size_t n, size_t at, size_t after)
{
    const uint8_t *p = s + at;
    ucs4_t cp;
    unsigned joining;
    do {
        p = p > s ? u8_prev(&cp, p, s) : NULL;
        if (p == NULL)
            return false;
        joining = joining_of(cp);
    } while (joining == JOINING_T);
    if (joining != JOINING_L && joining != JOINING_D)
        return false;
    size_t i = after;
    do {
        if (i >= n)
            return false;
        i += (size_t)u8_mbtouc(&cp, s + i, n - i);
        joining = joining_of(cp);
    } while (joining == JOINING_T);
    return joining == JOINING_R || joining == JOINING_D;
}

/* What the whole-string context rules need to know, gathered in one pass. */
typedef struct string_facts {
    bool right_to_left;         /* some R, AL or AN code point */
    bool arabic_indic;          /* some U+0660..U+0669 */
    bool extended_arabic_indic; /* some U+06F0..U+06F9 */
    bool kana_han;              /* some Hiragana, Katakana or Han code point */
} string_facts;

/* RFC 5892 appendix A: the rule of the CONTEXTJ or CONTEXTO code point cp
 * that spans [at, after) of s. A code point without a rule fails. */
static bool context_rule_holds(const uint8_t *s, size_t n, size_t at, size_t after, uint32_t cp,
                               const string_facts *facts)
{
    switch (cp) {
    case 0x200C: /* A.1 ZERO WIDTH NON-JOINER */
        return has_virama(before(s, at)) || zwnj_between_joiners(s, n, at, after);
    case 0x200D: /* A.2 ZERO WIDTH JOINER */
        return has_virama(before(s, at));
    case 0x00B7: /* A.3 MIDDLE DOT, between two l */
        return before(s, at) == 0x6C && at_offset(s, n, after) == 0x6C;
    case 0x0375: /* A.4 GREEK LOWER NUMERAL SIGN (KERAIA) */
        return after < n && script_of(at_offset(s, n, after)) == SCRIPT_GREEK;
    case 0x05F3: /* A.5 HEBREW PUNCTUATION GERESH */
    case 0x05F4: /* A.6 HEBREW PUNCTUATION GERSHAYIM */
        return at > 0 && script_of(before(s, at)) == SCRIPT_HEBREW;
    case 0x30FB: /* A.7 KATAKANA MIDDLE DOT */
        return facts->kana_han;
    default:
        if (cp >= 0x0660 && cp <= 0x0669) /* A.8 ARABIC-INDIC DIGITS */
            return !facts->extended_arabic_indic;
        if (cp >= 0x06F0 && cp <= 0x06F9) /* A.9 EXTENDED ARABIC-INDIC DIGITS */
            return !facts->arabic_indic;
        return false;
    }
}

/* The Bidi Rule (RFC 5893 section 2) over a string known to hold an R, AL
 * or AN code point. Such a string must start with R or AL (rule 1; an L
 * start makes it a left-to-right string, and rule 5 then forbids the R, AL
 * or AN it holds), hold only the classes rule 2 lists, end with R, AL, EN
 * or AN and then only NSM (rule 3), and not mix EN with AN (rule 4). */
static bool bidi_rule_holds(const uint8_t *s, size_t n)
{
    ucs4_t cp;
    u8_mbtouc(&cp, s, n);
    unsigned first = record_of(cp)->bidi;
    if (first != BIDI_R && first != BIDI_AL)
        return false;
    bool european = false, arabic = false;
    unsigned last = first; /* the last class other than NSM */
    for (size_t i = 0; i < n;) {
        i += (size_t)u8_mbtouc(&cp, s + i, n - i);
        unsigned bidi = record_of(cp)->bidi;
        switch (bidi) {
        case BIDI_R:
        case BIDI_AL:
        case BIDI_ES:
        case BIDI_ET:
        case BIDI_CS:
        case BIDI_ON:
        case BIDI_BN:
            break;
        case BIDI_EN:
            european = true;
            break;
        case BIDI_AN:
            arabic = true;
            break;
        case BIDI_NSM:
            continue;
        default:
            return false;
        }
        last = bidi;
    }
    if (european && arabic)
        return false;
    return last == BIDI_R || last == BIDI_AL || last == BIDI_EN || last == BIDI_AN;
}

/* Checks a mapped string (well-formed UTF-8) against IdentifierClass or
 * FreeformClass, the context rules and, when bidi is set and the string
 * holds a right-to-left code point, the Bidi Rule. */
static precis_result check_string(const uint8_t *s, size_t n, bool identifier, bool bidi)
{
    if (n == 0)
        return PRECIS_ERROR_EMPTY;
    string_facts facts = {0};
    bool contextual = false;
    for (size_t i = 0; i < n;) {
        ucs4_t cp;
        i += (size_t)u8_mbtouc(&cp, s + i, n - i);
        const precis_record *record = record_of(cp);
        switch ((precis_property)record->property) {
        case PRECIS_PVALID:
            break;
        case PRECIS_FREE_PVAL:
            if (identifier)
                return PRECIS_ERROR_DISALLOWED;
            break;
        case PRECIS_CONTEXTJ:
        case PRECIS_CONTEXTO:
            contextual = true;
            break;
        case PRECIS_DISALLOWED:
        case PRECIS_UNASSIGNED:
            return PRECIS_ERROR_DISALLOWED;
        }
        facts.right_to_left |=
            record->bidi == BIDI_R || record->bidi == BIDI_AL || record->bidi == BIDI_AN;
        facts.arabic_indic |= cp >= 0x0660 && cp <= 0x0669;
        facts.extended_arabic_indic |= cp >= 0x06F0 && cp <= 0x06F9;
        facts.kana_han |= ((record->flags & SCRIPT_MASK) >> SCRIPT_SHIFT) == SCRIPT_KANA_HAN;
    }
    for (size_t i = 0; contextual && i < n;) {
        ucs4_t cp;
        size_t at = i;
        i += (size_t)u8_mbtouc(&cp, s + i, n - i);
        precis_property property = (precis_property)record_of(cp)->property;
        if ((property == PRECIS_CONTEXTJ || property == PRECIS_CONTEXTO) &&
            !context_rule_holds(s, n, at, i, cp, &facts))
            return PRECIS_ERROR_CONTEXT;
    }
    if (bidi && facts.right_to_left && !bidi_rule_holds(s, n))
        return PRECIS_ERROR_BIDI;
    return PRECIS_OK;
}

/* ----------------------------------------------------------- the mappings */

/* The <wide> or <narrow> decomposition of cp, or cp. */
static uint32_t width_mapped(uint32_t cp)
{
    size_t low = 0, high = sizeof precis_width_pairs / sizeof precis_width_pairs[0];
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        if (precis_width_pairs[middle].from == cp)
            return precis_width_pairs[middle].to;
        if (precis_width_pairs[middle].from < cp)
            low = middle + 1;
        else
            high = middle;
    }
    return cp;
}

typedef enum mapping {
    MAP_WIDTH = 1,     /* fullwidth and halfwidth to their decompositions */
    MAP_SPACES = 2,    /* non-ASCII spaces (Zs) to U+0020 */
    MAP_FULL_STOP = 4, /* U+3002 IDEOGRAPHIC FULL STOP to '.' */
} mapping;

/* Copies in to out (out_cap >= in_len) one code point at a time through
 * the mappings asked for, each of which never lengthens a code point's
 * encoding. Returns the bytes written. */
static size_t map_code_points(const uint8_t *in, size_t in_len, unsigned mappings, uint8_t *out)
{
    size_t written = 0;
    for (size_t i = 0; i < in_len;) {
        ucs4_t cp;
        int length = u8_mbtouc(&cp, in + i, in_len - i);
        i += (size_t)length;
        if ((mappings & MAP_WIDTH) != 0)
            cp = width_mapped(cp);
        if ((mappings & MAP_SPACES) != 0 && cp >= 0x80 && (record_of(cp)->flags & FLAG_SPACE))
            cp = 0x20;
        if ((mappings & MAP_FULL_STOP) != 0 && cp == 0x3002)
            cp = '.';
        /* gen_precis.py checks that no width mapping lengthens. */
        int encoded = u8_uctomb(out + written, cp, length);
        assert(encoded > 0);
        written += (size_t)encoded;
    }
    return written;
}

/* A result of libunistring: NULL on failure, resultbuf when it fit,
 * anything else a malloc'ed result that did not fit (freed here). */
static precis_result library_outcome(uint8_t *result, const uint8_t *resultbuf)
{
    if (result == NULL)
        return errno == ENOMEM ? PRECIS_ERROR_MEMORY : PRECIS_ERROR_UTF8;
    if (result != resultbuf) {
        free(result);
        return PRECIS_ERROR_TOO_LONG;
    }
    return PRECIS_OK;
}

/* Width and other code point mappings, then toLowerCase if lower, then
 * NFC into out. in is well-formed UTF-8 of at most
 * LIMIT_JID_PART_INPUT_BYTES_MAX bytes. */
__attribute__((noinline)) static precis_result map_string(const uint8_t *in, size_t in_len,
                                                          unsigned mappings, bool lower,
                                                          uint8_t *out, size_t out_cap,
                                                          size_t *out_len)
{
    /* toLowerCase lengthens a code point by at most half (U+0130 to
     * U+0069 U+0307), so twice the input always fits. */
    uint8_t mapped[LIMIT_JID_PART_INPUT_BYTES_MAX], lowered[2 * LIMIT_JID_PART_INPUT_BYTES_MAX];
    size_t length = map_code_points(in, in_len, mappings, mapped);
    const uint8_t *next = mapped;
    if (lower) {
        size_t lowered_len = sizeof lowered;
        precis_result result =
            library_outcome(u8_tolower(mapped, length, NULL, NULL, lowered, &lowered_len), lowered);
        if (result != PRECIS_OK)
            return result;
        next = lowered;
        length = lowered_len;
    }
    *out_len = out_cap;
    return library_outcome(u8_normalize(UNINORM_NFC, next, length, out, out_len), out);
}

/* Checks the input is well-formed UTF-8 within the bound every mapping
 * buffer has. */
static precis_result check_input(const char *in, size_t in_len)
{
    if (in_len > LIMIT_JID_PART_INPUT_BYTES_MAX)
        return PRECIS_ERROR_TOO_LONG;
    if (u8_check((const uint8_t *)in, in_len) != NULL)
        return PRECIS_ERROR_UTF8;
    return PRECIS_OK;
}

/* The ASCII path (see the file comment): copies printable ASCII, with
 * U+0020 too when space_allowed and lowercased when lower. Returns
 * PRECIS_ERROR_UTF8 to say "not ASCII, take the full path". One pass with
 * no branch per byte: every JID on every stanza comes through here. */
static precis_result ascii_path(const char *in, size_t in_len, bool space_allowed, bool lower,
                                char *out, size_t out_cap, size_t *out_len)
{
    const unsigned char *bytes = (const unsigned char *)in;
    unsigned seen = 0, bad = 0;
    unsigned lowest = space_allowed ? 0x20 : 0x21;
    unsigned lower_bit = lower ? 0x20 : 0;
    if (in_len <= out_cap) {
        for (size_t i = 0; i < in_len; i++) {
            unsigned c = bytes[i];
            seen |= c;
            bad |= (c < lowest) | (c == 0x7F);
            out[i] = (char)(c | ((c - 'A' < 26u) ? lower_bit : 0));
        }
    } else {
        for (size_t i = 0; i < in_len; i++) {
            seen |= bytes[i];
            bad |= (bytes[i] < lowest) | (bytes[i] == 0x7F);
        }
    }
    if ((seen & 0x80) != 0)
        return PRECIS_ERROR_UTF8;
    if (bad != 0)
        return PRECIS_ERROR_DISALLOWED;
    if (in_len == 0)
        return PRECIS_ERROR_EMPTY;
    if (in_len > out_cap)
        return PRECIS_ERROR_TOO_LONG;
    *out_len = in_len;
    return PRECIS_OK;
}

/* ------------------------------------------------------------ the profiles */

precis_result precis_username_case_mapped(const char *in, size_t in_len, char *out, size_t out_cap,
                                          size_t *out_len)
{
    precis_result result = ascii_path(in, in_len, false, true, out, out_cap, out_len);
    if (result != PRECIS_ERROR_UTF8)
        return result;
    result = check_input(in, in_len);
    if (result == PRECIS_OK)
        result = map_string((const uint8_t *)in, in_len, MAP_WIDTH, true, (uint8_t *)out, out_cap,
                            out_len);
    if (result == PRECIS_OK)
        result = check_string((const uint8_t *)out, *out_len, true, true);
    return result;
}

precis_result precis_opaque_string(const char *in, size_t in_len, char *out, size_t out_cap,
                                   size_t *out_len)
{
    precis_result result = ascii_path(in, in_len, true, false, out, out_cap, out_len);
    if (result != PRECIS_ERROR_UTF8)
        return result;
    result = check_input(in, in_len);
    if (result == PRECIS_OK)
        result = map_string((const uint8_t *)in, in_len, MAP_SPACES, false, (uint8_t *)out, out_cap,
                            out_len);
    if (result == PRECIS_OK)
        result = check_string((const uint8_t *)out, *out_len, false, false);
    return result;
}

precis_result precis_domain_map(const char *in, size_t in_len, char *out, size_t out_cap,
                                size_t *out_len)
{
    precis_result result = check_input(in, in_len);
    if (result != PRECIS_OK)
        return result;
    return map_string((const uint8_t *)in, in_len, MAP_WIDTH | MAP_FULL_STOP, true, (uint8_t *)out,
                      out_cap, out_len);
}

const char *precis_result_name(precis_result result)
{
    switch (result) {
    case PRECIS_OK:
        return "ok";
    case PRECIS_ERROR_UTF8:
        return "not well-formed UTF-8";
    case PRECIS_ERROR_EMPTY:
        return "empty";
    case PRECIS_ERROR_TOO_LONG:
        return "too long";
    case PRECIS_ERROR_DISALLOWED:
        return "disallowed code point";
    case PRECIS_ERROR_CONTEXT:
        return "context rule fails";
    case PRECIS_ERROR_BIDI:
        return "bidi rule fails";
    case PRECIS_ERROR_MEMORY:
        return "out of memory";
    }
    return "unknown";
}
