/*
 * test_jid.c: JIDs (RFC 7622) and the PRECIS profiles under them (RFC 8264,
 * RFC 8265): the examples of RFC 7622 section 3.5, each profile rule (width
 * and case mapping, spaces, NFC, disallowed, ignorable and unassigned code
 * points, the context rules of RFC 5892 appendix A, the Bidi Rule), the
 * domainpart (IDNA2008, A-labels to U-labels, IP literals, DNS bounds),
 * the length limits at the bound and one over, idempotence of every
 * accepted input, and the generated tables against libunistring.
 */
#include <string.h>

#include <unictype.h>

#include "proto/jid.h"
#include "proto/precis.h"
#include "tests/proto/check.h"

/* Parses text; when that succeeds, checks that the prepared text parses to
 * the same JID (idempotence). */
static jid_result parse(const char *text, jid *out)
{
    jid_result result = jid_parse(text, strlen(text), out);
    if (result == JID_OK) {
        jid again;
        CHECK(jid_parse(out->text, jid_full_length(out), &again) == JID_OK);
        CHECK(jid_equal(out, &again));
        CHECK(strlen(out->text) == jid_full_length(out));
    }
    return result;
}

/* text is accepted and prepares to expected. */
static void accepts(const char *text, const char *expected)
{
    jid j;
    check_label = text;
    jid_result result = parse(text, &j);
    CHECK(result == JID_OK);
    if (result == JID_OK)
        CHECK(strcmp(j.text, expected) == 0);
    if (result == JID_OK && strcmp(j.text, expected) != 0)
        fprintf(stderr, "  got '%s', expected '%s'\n", j.text, expected);
}

/* text is refused with result. */
static void refuses(const char *text, jid_result expected)
{
    jid j;
    check_label = text;
    jid_result result = parse(text, &j);
    CHECK(result == expected);
    if (result != expected)
        fprintf(stderr, "  got %s, expected %s\n", jid_result_name(result),
                jid_result_name(expected));
}

static void rfc7622_examples(void)
{
    /* Section 3.5.1: valid. */
    accepts("juliet@example.com", "juliet@example.com");
    accepts("juliet@example.com/foo", "juliet@example.com/foo");
    accepts("juliet@example.com/foo bar", "juliet@example.com/foo bar");
    accepts("juliet@example.com/foo@bar", "juliet@example.com/foo@bar");
    accepts("foo\\20bar@example.com", "foo\\20bar@example.com");
    accepts("fussball@example.com", "fussball@example.com");
    accepts("fu\xc3\x9f"
            "ball@example.com",
            "fu\xc3\x9f"
            "ball@example.com");
    accepts("\xcf\x80@example.com", "\xcf\x80@example.com");                   /* π */
    accepts("\xce\xa3@example.com/foo", "\xcf\x83@example.com/foo");           /* Σ -> σ */
    accepts("\xcf\x83@example.com/foo", "\xcf\x83@example.com/foo");           /* σ */
    accepts("\xcf\x82@example.com/foo", "\xcf\x82@example.com/foo");           /* ς */
    accepts("king@example.com/\xe2\x99\x9a", "king@example.com/\xe2\x99\x9a"); /* ♚ */
    accepts("example.com", "example.com");
    accepts("example.com/foobar", "example.com/foobar");
    accepts("a.example.com/b@example.net", "a.example.com/b@example.net");

    /* Section 3.5.2: invalid. */
    refuses("\"juliet\"@example.com", JID_ERROR_LOCALPART);
    refuses("foo bar@example.com", JID_ERROR_LOCALPART);
    refuses("juliet@example.com/", JID_ERROR_EMPTY);
    refuses("@example.com/", JID_ERROR_EMPTY);
    refuses("henry\xe2\x85\xa3@example.com", JID_ERROR_LOCALPART); /* U+2163 ROMAN NUMERAL FOUR */
    refuses("\xe2\x99\x9a@example.com", JID_ERROR_LOCALPART);      /* ♚ */
    refuses("juliet@", JID_ERROR_EMPTY);
    refuses("/foobar", JID_ERROR_EMPTY);
}

static void parsing(void)
{
    jid j;
    check_label = "parts";
    CHECK(parse("a@b.example/c/d@e", &j) == JID_OK);
    CHECK(j.localpart_len == 1 && memcmp(jid_localpart(&j), "a", 1) == 0);
    CHECK(j.domainpart_len == 9 && memcmp(jid_domainpart(&j), "b.example", 9) == 0);
    CHECK(j.resourcepart_len == 5 && memcmp(jid_resourcepart(&j), "c/d@e", 5) == 0);
    CHECK(jid_bare_length(&j) == 11 && jid_full_length(&j) == 17);

    refuses("", JID_ERROR_EMPTY);
    refuses("@", JID_ERROR_EMPTY);
    refuses("a@b@example.com", JID_ERROR_DOMAINPART);
    refuses("a:b@example.com", JID_ERROR_LOCALPART);
    for (const char *c = "\"&'/:<>@"; *c != '\0'; c++) {
        char text[32];
        snprintf(text, sizeof text, "a%cb@example.com", *c);
        if (*c == '/' || *c == '@')
            continue; /* these split the JID instead */
        refuses(text, JID_ERROR_LOCALPART);
    }
    /* Those characters are fine in a resourcepart. */
    accepts("example.com/\"&'/:<>@", "example.com/\"&'/:<>@");

    check_label = "NUL inside";
    CHECK(jid_parse("a\0b@example.com", 15, &j) == JID_ERROR_LOCALPART);
    CHECK(jid_parse("exa\0mple.com", 12, &j) == JID_ERROR_DOMAINPART);
    CHECK(jid_parse("example.com/a\0b", 16, &j) == JID_ERROR_RESOURCEPART);

    refuses("\xff@example.com", JID_ERROR_UTF8);
    refuses("a@example.com/\xc3", JID_ERROR_UTF8);
    refuses("\xc0\xaf@example.com", JID_ERROR_UTF8);     /* overlong '/' */
    refuses("\xed\xa0\x80@example.com", JID_ERROR_UTF8); /* a surrogate */
}

static void localpart_profile(void)
{
    /* Case mapping (toLowerCase) of the localpart only. */
    accepts("JULIET@EXAMPLE.COM/Balcony", "juliet@example.com/Balcony");
    accepts("\xce\xa3\xce\x91\xce\xa3@example.com",
            "\xcf\x83\xce\xb1\xcf\x82@example.com");          /* ΣΑΣ -> σας */
    accepts("\xc4\xb0@example.com", "i\xcc\x87@example.com"); /* İ -> i + U+0307 */
    /* Width mapping: fullwidth to ASCII, then lower case. */
    accepts("\xef\xbc\xaa\xef\xbd\x95liet@example.com", "juliet@example.com"); /* Ｊｕliet */
    /* Halfwidth KA + halfwidth VOICED SOUND MARK: width mapping, then NFC
     * composes them into GA. */
    accepts("\xef\xbd\xb6\xef\xbe\x9e@example.com", "\xe3\x82\xac@example.com");
    /* Conjoining jamo (old Hangul jamo, disallowed alone) compose under NFC
     * into a syllable, which is allowed: the class is checked after. */
    accepts("\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8@example.com", "\xea\xb0\x81@example.com");
    /* NFC: e + COMBINING ACUTE -> é. */
    accepts("e\xcc\x81@example.com", "\xc3\xa9@example.com");
    /* Disallowed: spaces, controls, symbols, compatibility characters,
     * default-ignorables, old Hangul jamo, unassigned code points. */
    refuses("a\tb@example.com", JID_ERROR_LOCALPART);
    refuses("a\x7f@example.com", JID_ERROR_LOCALPART);
    refuses("a\xc2\xa0"
            "b@example.com",
            JID_ERROR_LOCALPART); /* NO-BREAK SPACE */
    refuses("a\xc2\xad"
            "b@example.com",
            JID_ERROR_LOCALPART); /* SOFT HYPHEN */
    refuses("a\xe2\x80\x8b"
            "b@example.com",
            JID_ERROR_LOCALPART);                             /* ZERO WIDTH SPACE */
    refuses("\xe1\x84\x80@example.com", JID_ERROR_LOCALPART); /* U+1100 HANGUL CHOSEONG KIYEOK */
    refuses("\xcd\xb8@example.com", JID_ERROR_LOCALPART);     /* U+0378, unassigned */
    refuses("\xef\xbf\xbf@example.com", JID_ERROR_LOCALPART); /* U+FFFF, a noncharacter */
    refuses("\xc7\x85@example.com", JID_ERROR_LOCALPART); /* U+01C5 Dž, titlecase with compat */
    refuses("\xe2\x82\xac@example.com", JID_ERROR_LOCALPART); /* € */
    refuses("\xd9\x80@example.com", JID_ERROR_LOCALPART);     /* U+0640 TATWEEL, an exception */
    /* An exception that is PVALID. */
    accepts("\xc3\x9f@example.com", "\xc3\x9f@example.com"); /* ß */
    /* U+1E030, assigned in Unicode 15.0, newer than libunistring 1.0. */
    refuses("\xf0\x9e\x80\xb0@example.com", JID_ERROR_LOCALPART);
}

/* The PRECIS result of the UsernameCaseMapped profile for text. */
static precis_result username(const char *text)
{
    char out[LIMIT_JID_PART_BYTES_MAX];
    size_t out_len;
    return precis_username_case_mapped(text, strlen(text), out, sizeof out, &out_len);
}

static precis_result opaque(const char *text)
{
    char out[LIMIT_JID_PART_BYTES_MAX];
    size_t out_len;
    return precis_opaque_string(text, strlen(text), out, sizeof out, &out_len);
}

static void context_rules(void)
{
    check_label = "context rules";
    /* A.1, A.2: ZWNJ and ZWJ after a virama (KA + VIRAMA + ZWJ). */
    CHECK(username("\xe0\xa4\x95\xe0\xa5\x8d\xe2\x80\x8d") == PRECIS_OK);
    CHECK(username("\xe0\xa4\x95\xe0\xa5\x8d\xe2\x80\x8c") == PRECIS_OK);
    CHECK(username("a\xe2\x80\x8d"
                   "b") == PRECIS_ERROR_CONTEXT);
    CHECK(username("a\xe2\x80\x8c"
                   "b") == PRECIS_ERROR_CONTEXT);
    CHECK(username("\xe2\x80\x8c") == PRECIS_ERROR_CONTEXT);
    /* A.1: ZWNJ between a left-joining and a right-joining letter
     * (BEH ZWNJ BEH; BEH is dual-joining). Arabic, so the Bidi Rule holds. */
    CHECK(username("\xd8\xa8\xe2\x80\x8c\xd8\xa8") == PRECIS_OK);
    /* ... and not after a right-joining only letter (ALEF ZWNJ BEH). */
    CHECK(username("\xd8\xa7\xe2\x80\x8c\xd8\xa8") == PRECIS_ERROR_CONTEXT);
    /* A.3: MIDDLE DOT only between two l. */
    CHECK(username("l\xc2\xb7l") == PRECIS_OK);
    CHECK(username("a\xc2\xb7"
                   "b") == PRECIS_ERROR_CONTEXT);
    CHECK(username("l\xc2\xb7") == PRECIS_ERROR_CONTEXT);
    /* A.4: KERAIA before a Greek letter only. */
    CHECK(username("\xcd\xb5\xce\xb1") == PRECIS_OK);
    CHECK(username("\xcd\xb5"
                   "a") == PRECIS_ERROR_CONTEXT);
    /* A.5: GERESH after a Hebrew letter only. */
    CHECK(username("\xd7\x90\xd7\xb3") == PRECIS_OK);
    CHECK(opaque("a\xd7\xb3") == PRECIS_ERROR_CONTEXT);
    /* A.7: KATAKANA MIDDLE DOT with some Hiragana, Katakana or Han. */
    CHECK(username("\xe3\x82\xa2\xe3\x83\xbb\xe3\x82\xa2") == PRECIS_OK);
    CHECK(username("a\xe3\x83\xbb"
                   "b") == PRECIS_ERROR_CONTEXT);
    /* A.8, A.9: Arabic-Indic digits of the two kinds never mixed. */
    CHECK(opaque("\xd9\xa0\xd9\xa1") == PRECIS_OK);
    CHECK(opaque("\xdb\xb0\xdb\xb1") == PRECIS_OK);
    CHECK(opaque("\xd9\xa0\xdb\xb0") == PRECIS_ERROR_CONTEXT);
}

static void bidi_rule(void)
{
    check_label = "bidi rule";
    CHECK(username("\xd7\x90\xd7\x91") == PRECIS_OK); /* alef bet */
    CHECK(username("\xd7\x90"
                   "1") == PRECIS_OK);                 /* R then EN last */
    CHECK(username("\xd7\x90\xcc\x81") == PRECIS_OK);  /* R then NSM */
    CHECK(username("a\xd7\x90") == PRECIS_ERROR_BIDI); /* L first, R inside */
    CHECK(username("1\xd7\x90") == PRECIS_ERROR_BIDI); /* EN first */
    CHECK(username("\xd7\x90"
                   "a") == PRECIS_ERROR_BIDI);         /* L in a right-to-left string */
    CHECK(username("\xd7\x90-") == PRECIS_ERROR_BIDI); /* ends with ES */
    CHECK(username("\xd8\xa8"
                   "1\xd9\xa1") == PRECIS_ERROR_BIDI); /* EN and AN */
    /* No directionality rule in OpaqueString. */
    CHECK(opaque("a\xd7\x90") == PRECIS_OK);
    accepts("\xd7\x90\xd7\x91@example.com/a\xd7\x90", "\xd7\x90\xd7\x91@example.com/a\xd7\x90");
    refuses("a\xd7\x90@example.com", JID_ERROR_LOCALPART);
}

static void resourcepart_profile(void)
{
    /* No case or width mapping; non-ASCII spaces become U+0020; NFC. */
    accepts("example.com/Foo", "example.com/Foo");
    accepts("example.com/\xef\xbc\xa6\xef\xbc\xaf",
            "example.com/\xef\xbc\xa6\xef\xbc\xaf"); /* ＦＯ */
    accepts("example.com/a\xc2\xa0"
            "b",
            "example.com/a b");
    accepts("example.com/a\xe3\x80\x80"
            "b",
            "example.com/a b");
    accepts("example.com/ a ", "example.com/ a ");
    accepts("example.com/e\xcc\x81", "example.com/\xc3\xa9");
    accepts("example.com/\xe2\x85\xa3", "example.com/\xe2\x85\xa3"); /* Ⅳ: compat is fine here */
    refuses("example.com/a\tb", JID_ERROR_RESOURCEPART);
    refuses("example.com/a\xc2\xad"
            "b",
            JID_ERROR_RESOURCEPART); /* SOFT HYPHEN */
    refuses("example.com/a\xe2\x80\x8b"
            "b",
            JID_ERROR_RESOURCEPART);                         /* ZERO WIDTH SPACE */
    refuses("example.com/\xcd\xb8", JID_ERROR_RESOURCEPART); /* unassigned */
    refuses("example.com/\xc2\x85", JID_ERROR_RESOURCEPART); /* U+0085, a control */
}

static void domainpart(void)
{
    accepts("EXAMPLE.Com", "example.com");
    accepts("juliet@example.com.", "juliet@example.com");
    accepts("example.com./r", "example.com/r");
    accepts("xn--bcher-kva.example", "b\xc3\xbc"
                                     "cher.example");
    accepts("XN--BCHER-KVA.example", "b\xc3\xbc"
                                     "cher.example");
    accepts("B\xc3\x9c"
            "CHER.example",
            "b\xc3\xbc"
            "cher.example");
    accepts("fa\xc3\x9f.de", "fa\xc3\x9f.de");
    accepts("xn--fa-hia.de", "fa\xc3\x9f.de");
    /* Fullwidth letters and FULLWIDTH FULL STOP; IDEOGRAPHIC FULL STOP. */
    accepts("\xef\xbd\x85\xef\xbd\x98\xef\xbc\x8e\xef\xbd\x83\xef\xbd\x8f", "ex.co");
    accepts("a\xe3\x80\x82"
            "b",
            "a.b");
    accepts("a\xe3\x80\x82", "a");
    accepts("192.0.2.1", "192.0.2.1");
    accepts("u@[::1]/r", "u@[::1]/r");
    accepts("[2001:DB8:0:0:0:0:0:1]", "[2001:db8::1]");
    accepts("[::ffff:192.0.2.1]", "[::ffff:192.0.2.1]");
    refuses("[::1", JID_ERROR_DOMAINPART);
    refuses("[]", JID_ERROR_DOMAINPART);
    refuses("[example]", JID_ERROR_DOMAINPART);
    refuses("[::1%eth0]", JID_ERROR_DOMAINPART);
    refuses("[\xef\xbc\x91::]", JID_ERROR_DOMAINPART); /* a fullwidth digit */
    check_label = "NUL in an IPv6 literal";
    jid nul;
    CHECK(jid_parse("[::\0junk]", 9, &nul) == JID_ERROR_DOMAINPART);
    refuses(".", JID_ERROR_EMPTY);
    refuses("example.com..", JID_ERROR_DOMAINPART);
    refuses(".example.com", JID_ERROR_DOMAINPART);
    refuses("a..b", JID_ERROR_DOMAINPART);
    refuses("ex_ample.com", JID_ERROR_DOMAINPART);
    refuses("ex ample.com", JID_ERROR_DOMAINPART);
    refuses("-ex.com", JID_ERROR_DOMAINPART);
    refuses("ex-.com", JID_ERROR_DOMAINPART);
    refuses("ab--cd.com", JID_ERROR_DOMAINPART);
    refuses("xn--zz.com", JID_ERROR_DOMAINPART); /* not Punycode of anything valid */
    refuses("xn--ab.com", JID_ERROR_DOMAINPART);
    refuses("xn--cceb", JID_ERROR_DOMAINPART);         /* upper-case Cherokee: not in mapped form */
    refuses("\xe2\x85\xb3.com", JID_ERROR_DOMAINPART); /* ⅳ: IDNA2008 disallows it */
    refuses("\xe2\x99\x9a.com", JID_ERROR_DOMAINPART); /* ♚ */
    refuses("1\xd7\x90.com", JID_ERROR_DOMAINPART);    /* the Bidi Rule */
    refuses("a\xe2\x80\x8d"
            "b.com",
            JID_ERROR_DOMAINPART); /* ZWJ out of context */
    refuses("a\xef\xbc\xa0"
            "b.com",
            JID_ERROR_DOMAINPART);                   /* FULLWIDTH @ */
    refuses("\xc3\xbc_x.com", JID_ERROR_DOMAINPART); /* '_' beside non-ASCII */

    jid a, b;
    check_label = "U-labels and A-labels compare equal";
    CHECK(parse("u@xn--bcher-kva.example", &a) == JID_OK);
    CHECK(parse("U@B\xc3\xbc"
                "cher.EXAMPLE.",
                &b) == JID_OK);
    CHECK(jid_equal(&a, &b));
}

/* A string of count copies of unit. */
static size_t repeat(char *out, const char *unit, size_t count)
{
    size_t unit_len = strlen(unit);
    for (size_t i = 0; i < count; i++)
        memcpy(out + i * unit_len, unit, unit_len);
    out[count * unit_len] = '\0';
    return count * unit_len;
}

static void length_limits(void)
{
    static char text[4 * LIMIT_JID_PART_INPUT_BYTES_MAX], part[LIMIT_JID_PART_INPUT_BYTES_MAX + 8];
    jid j;
    const size_t max = LIMIT_JID_PART_BYTES_MAX;

    check_label = "localpart at the bound and one over";
    repeat(part, "a", max);
    snprintf(text, sizeof text, "%s@example.com", part);
    CHECK(parse(text, &j) == JID_OK && j.localpart_len == max);
    repeat(part, "a", max + 1);
    snprintf(text, sizeof text, "%s@example.com", part);
    CHECK(parse(text, &j) == JID_ERROR_TOO_LONG);

    check_label = "non-ASCII localpart at the bound and one over";
    size_t len = repeat(part, "\xc3\xa9", (max - 1) / 2); /* é: two bytes */
    part[len++] = 'a';
    part[len] = '\0';
    snprintf(text, sizeof text, "%s@example.com", part);
    CHECK(parse(text, &j) == JID_OK && j.localpart_len == max);
    repeat(part, "\xc3\xa9", (max + 1) / 2);
    snprintf(text, sizeof text, "%s@example.com", part);
    CHECK(parse(text, &j) == JID_ERROR_TOO_LONG);

    check_label = "the limit holds after preparation";
    repeat(part, "\xef\xbc\xa1", max); /* Ａ: three bytes, prepared to 'a' */
    snprintf(text, sizeof text, "%s@example.com", part);
    CHECK(parse(text, &j) == JID_OK && j.localpart_len == max);
    repeat(part, "\xef\xbc\xa1", max + 1);
    snprintf(text, sizeof text, "%s@example.com", part);
    CHECK(parse(text, &j) == JID_ERROR_TOO_LONG);
    repeat(part, "e\xcc\x81", max / 2); /* e + U+0301: three bytes, NFC to two */
    snprintf(text, sizeof text, "example.com/%s", part);
    CHECK(parse(text, &j) == JID_OK && j.resourcepart_len == 2 * (max / 2));

    check_label = "input bound";
    repeat(part, "\xc2\xad", LIMIT_JID_PART_INPUT_BYTES_MAX / 2 + 1);
    snprintf(text, sizeof text, "example.com/%s", part);
    CHECK(parse(text, &j) == JID_ERROR_TOO_LONG);

    check_label = "resourcepart at the bound and one over";
    repeat(part, "r", max);
    snprintf(text, sizeof text, "example.com/%s", part);
    CHECK(parse(text, &j) == JID_OK && j.resourcepart_len == max);
    repeat(part, "r", max + 1);
    snprintf(text, sizeof text, "example.com/%s", part);
    CHECK(parse(text, &j) == JID_ERROR_TOO_LONG);

    check_label = "domain labels of 63 and 64, names of 253 and 254";
    repeat(part, "d", 63);
    CHECK(parse(part, &j) == JID_OK);
    repeat(part, "d", 64);
    CHECK(parse(part, &j) == JID_ERROR_DOMAINPART);
    len = repeat(part, "abcdefghi.", 25); /* 250 bytes */
    memcpy(part + len, "abc", 4);
    CHECK(parse(part, &j) == JID_OK && j.domainpart_len == 253);
    memcpy(part + len, "abc.", 5); /* a final dot does not count */
    CHECK(parse(part, &j) == JID_OK && j.domainpart_len == 253);
    memcpy(part + len, "abcd", 5);
    CHECK(parse(part, &j) == JID_ERROR_DOMAINPART);

    /* The same bound on the full path: non-ASCII input longer than the
     * name it maps to (a fullwidth letter is three octets, its letter one)
     * and A-labels. */
    check_label = "names of 252 and 253 on the full path";
    len = repeat(part, "abcdefghi.", 25);
    memcpy(part + len, "\357\275\201b", 5); /* FULLWIDTH a, mapped to "a" */
    CHECK(parse(part, &j) == JID_OK && j.domainpart_len == 252);
    memcpy(part + len, "\357\275\201bc", 6);
    CHECK(parse(part, &j) == JID_OK && j.domainpart_len == 253 &&
          memcmp(jid_domainpart(&j) + len, "abc", 3) == 0);
    memcpy(part + len, "\357\275\201bcd", 7);
    CHECK(parse(part, &j) == JID_ERROR_DOMAINPART);
    len = repeat(part, "abcdefghi.", 24);    /* 240 bytes, then an A-label */
    memcpy(part + len, "xn--bcher-kva", 14); /* 253 bytes: "bücher" */
    CHECK(parse(part, &j) == JID_OK && j.domainpart_len == 240 + 7 &&
          memcmp(jid_domainpart(&j) + len, "b\303\274cher", 7) == 0);
    memcpy(part + len, "xn--bcher-kva.", 15); /* a final dot does not count */
    CHECK(parse(part, &j) == JID_OK && j.domainpart_len == 240 + 7);
    memcpy(part + len, "xn--bcher-kvaa", 15); /* 254 bytes, a bad A-label too */
    CHECK(parse(part, &j) == JID_ERROR_DOMAINPART);
    len = repeat(part, "abcdefghi.", 24);
    memcpy(part + len, "x.xn--bcher-kva", 16); /* 255 bytes as A-labels */
    CHECK(parse(part, &j) == JID_ERROR_DOMAINPART);

    check_label = "the largest JID";
    static char local[LIMIT_JID_PART_BYTES_MAX + 1], resource[LIMIT_JID_PART_BYTES_MAX + 1];
    repeat(local, "l", max);
    repeat(resource, "r", max);
    len = repeat(part, "abcdefghi.", 25);
    memcpy(part + len, "abc", 4);
    snprintf(text, sizeof text, "%s@%s/%s", local, part, resource);
    CHECK(parse(text, &j) == JID_OK && jid_full_length(&j) == 2 * max + 253 + 2);
}

static void operations(void)
{
    jid a, b, c;
    char out[64];
    check_label = "equality";
    CHECK(parse("Juliet@Example.com/Balcony", &a) == JID_OK);
    CHECK(parse("juliet@example.com/Balcony", &b) == JID_OK);
    CHECK(parse("juliet@example.com/balcony", &c) == JID_OK);
    CHECK(jid_equal(&a, &b));
    CHECK(!jid_equal(&a, &c));
    CHECK(jid_bare_equal(&a, &c));
    CHECK(parse("example.com/juliet", &c) == JID_OK);
    CHECK(!jid_bare_equal(&a, &c));

    check_label = "formatting";
    CHECK(jid_format_full(&a, out, sizeof out) == 26 &&
          strcmp(out, "juliet@example.com/Balcony") == 0);
    CHECK(jid_format_bare(&a, out, sizeof out) == 18 && strcmp(out, "juliet@example.com") == 0);
    CHECK(jid_format_full(&a, out, 26) == 0);
    CHECK(jid_format_bare(&a, out, 19) == 18);

    check_label = "set resourcepart";
    CHECK(jid_set_resourcepart(&a,
                               "Orchard\xc2\xa0"
                               "2",
                               10) == JID_OK);
    CHECK(strcmp(a.text, "juliet@example.com/Orchard 2") == 0 && a.resourcepart_len == 9);
    CHECK(jid_set_resourcepart(&a, "bad\x01", 4) == JID_ERROR_RESOURCEPART);
    CHECK(strcmp(a.text, "juliet@example.com/Orchard 2") == 0 && a.resourcepart_len == 9);
    CHECK(jid_set_resourcepart(&a, "", 0) == JID_OK);
    CHECK(strcmp(a.text, "juliet@example.com") == 0 && a.resourcepart_len == 0);

    check_label = "from prepared";
    CHECK(jid_from_prepared(&c, "juliet", 6, "example.com", 11, "Balcony", 7));
    CHECK(jid_equal(&c, &b));
    CHECK(!jid_from_prepared(&c, "juliet", 6, "", 0, NULL, 0));

    check_label = "per-part preparation";
    char part[LIMIT_JID_PART_BYTES_MAX];
    size_t part_len;
    CHECK(jid_prepare_localpart("ROMEO", 5, part, &part_len) == JID_OK && part_len == 5 &&
          memcmp(part, "romeo", 5) == 0);
    CHECK(jid_prepare_localpart("ro/meo", 6, part, &part_len) == JID_ERROR_LOCALPART);
    CHECK(jid_prepare_domainpart("Example.COM", 11, part, &part_len) == JID_OK && part_len == 11 &&
          memcmp(part, "example.com", 11) == 0);
    CHECK(jid_prepare_resourcepart("", 0, part, &part_len) == JID_ERROR_EMPTY);
    CHECK(strcmp(jid_result_condition(JID_ERROR_LOCALPART), "jid-malformed") == 0);
}

/* The generated tables against the RFCs' spot values and libunistring. */
static void tables(void)
{
    check_label = "derived properties";
    CHECK(precis_property_of('a') == PRECIS_PVALID);
    CHECK(precis_property_of('~') == PRECIS_PVALID);
    CHECK(precis_property_of(' ') == PRECIS_FREE_PVAL);
    CHECK(precis_property_of(0x00DF) == PRECIS_PVALID);     /* exception */
    CHECK(precis_property_of(0x0640) == PRECIS_DISALLOWED); /* exception */
    CHECK(precis_property_of(0x200C) == PRECIS_CONTEXTJ);
    CHECK(precis_property_of(0x00B7) == PRECIS_CONTEXTO);
    CHECK(precis_property_of(0x0661) == PRECIS_CONTEXTO);
    CHECK(precis_property_of(0x1100) == PRECIS_DISALLOWED); /* old Hangul jamo */
    CHECK(precis_property_of(0xAC00) == PRECIS_PVALID);     /* a Hangul syllable */
    CHECK(precis_property_of(0x00AD) == PRECIS_DISALLOWED); /* default ignorable */
    CHECK(precis_property_of(0x2163) == PRECIS_FREE_PVAL);  /* has compat */
    CHECK(precis_property_of(0xFF21) == PRECIS_FREE_PVAL);  /* fullwidth: has compat */
    CHECK(precis_property_of(0x2658) == PRECIS_FREE_PVAL);  /* a symbol */
    CHECK(precis_property_of(0x0021) == PRECIS_PVALID);
    CHECK(precis_property_of(0x00A1) == PRECIS_FREE_PVAL); /* punctuation */
    CHECK(precis_property_of(0x0007) == PRECIS_DISALLOWED);
    CHECK(precis_property_of(0x0378) == PRECIS_UNASSIGNED);
    CHECK(precis_property_of(0xFFFF) == PRECIS_DISALLOWED); /* noncharacter */
    CHECK(precis_property_of(0xE000) == PRECIS_DISALLOWED); /* private use */
    CHECK(precis_property_of(0x110000) == PRECIS_UNASSIGNED);

    /* What the ASCII path assumes (proto/precis.c): printable ASCII is
     * PVALID, U+0020 is a space (FREE_PVAL), the rest are controls. */
    check_label = "ASCII in the tables";
    for (uint32_t cp = 0; cp < 0x80; cp++) {
        precis_property expected = cp >= 0x21 && cp <= 0x7E ? PRECIS_PVALID
                                   : cp == 0x20             ? PRECIS_FREE_PVAL
                                                            : PRECIS_DISALLOWED;
        CHECK(precis_property_of(cp) == expected);
    }

    /* Unassigned in the tables exactly where libunistring knows no
     * character: the age cap keeps the two Unicode versions in step. */
    check_label = "tables agree with libunistring on assignment";
    unsigned long disagreements = 0;
    for (uint32_t cp = 0; cp < 0x110000; cp++) {
        bool noncharacter = (cp & 0xFFFE) == 0xFFFE || (cp >= 0xFDD0 && cp <= 0xFDEF);
        bool unassigned = uc_is_general_category(cp, UC_CATEGORY_Cn) && !noncharacter;
        if (unassigned != (precis_property_of(cp) == PRECIS_UNASSIGNED))
            disagreements++;
    }
    CHECK(disagreements == 0);
    if (disagreements != 0)
        fprintf(stderr, "  %lu code points disagree\n", disagreements);
}

int main(void)
{
    rfc7622_examples();
    parsing();
    localpart_profile();
    context_rules();
    bidi_rule();
    resourcepart_profile();
    domainpart();
    length_limits();
    operations();
    tables();
    return check_finish();
}
