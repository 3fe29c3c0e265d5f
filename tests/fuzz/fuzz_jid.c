/*
 * fuzz_jid.c: libFuzzer target for JID parsing and preparation (RFC 7622,
 * PRECIS, IDNA2008).
 *
 * Each input is parsed as a whole JID and also prepared as each kind of
 * part on its own. Whatever is accepted must keep the module's promises:
 * every part within LIMIT_JID_PART_BYTES_MAX and the domainpart never
 * empty, the text NUL-terminated at its length with no NUL inside, and
 * preparation idempotent: the prepared text parses to the same JID, and
 * each prepared part prepares to itself. ASCII input is also prepared
 * through the full (non-ASCII) path, which must agree with the ASCII one.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/jid.h"

typedef jid_result (*prepare_function)(const char *, size_t, char *, size_t *);

/* in prepared by prepare, when accepted, is bounded and prepares to itself. */
static void check_part(prepare_function prepare, const char *in, size_t in_len)
{
    char once[LIMIT_JID_PART_BYTES_MAX], twice[LIMIT_JID_PART_BYTES_MAX];
    size_t once_len, twice_len;
    if (prepare(in, in_len, once, &once_len) != JID_OK)
        return;
    if (once_len == 0 || once_len > LIMIT_JID_PART_BYTES_MAX)
        abort();
    if (prepare(once, once_len, twice, &twice_len) != JID_OK || twice_len != once_len ||
        memcmp(once, twice, once_len) != 0)
        abort();
}

static void check_jid(const char *in, size_t in_len)
{
    static jid parsed, again;
    if (jid_parse(in, in_len, &parsed) != JID_OK)
        return;
    size_t full = jid_full_length(&parsed);
    if (parsed.domainpart_len == 0 || parsed.domainpart_len > LIMIT_JID_PART_BYTES_MAX ||
        parsed.localpart_len > LIMIT_JID_PART_BYTES_MAX ||
        parsed.resourcepart_len > LIMIT_JID_PART_BYTES_MAX || full > LIMIT_JID_BYTES_MAX ||
        parsed.text[full] != '\0' || strlen(parsed.text) != full)
        abort();
    if (jid_parse(parsed.text, full, &again) != JID_OK || !jid_equal(&parsed, &again) ||
        !jid_bare_equal(&parsed, &again))
        abort();
    check_part(jid_prepare_domainpart, jid_domainpart(&parsed), parsed.domainpart_len);
    if (parsed.localpart_len > 0)
        check_part(jid_prepare_localpart, jid_localpart(&parsed), parsed.localpart_len);
    if (parsed.resourcepart_len > 0)
        check_part(jid_prepare_resourcepart, jid_resourcepart(&parsed), parsed.resourcepart_len);
}

/* The ASCII path and the full path agree: in (ASCII) with its first
 * letter written fullwidth, which width mapping turns back into the
 * letter, takes the full path and must prepare the same way (but for an
 * IPv6 literal). */
static void check_paths_agree(prepare_function prepare, const char *in, size_t in_len)
{
    static char variant[LIMIT_JID_PART_INPUT_BYTES_MAX + 2];
    size_t letter = in_len;
    for (size_t i = 0; i < in_len; i++) {
        if ((unsigned char)in[i] >= 0x80)
            return;
        if (letter == in_len && ((in[i] >= 'a' && in[i] <= 'z') || (in[i] >= 'A' && in[i] <= 'Z')))
            letter = i;
    }
    /* An IPv6 literal is ASCII only: a fullwidth hex digit is refused. */
    if (letter == in_len || in_len > LIMIT_JID_PART_INPUT_BYTES_MAX - 2 || in[0] == '[')
        return;
    /* U+FF21..U+FF3A and U+FF41..U+FF5A, FULLWIDTH LATIN letters. */
    bool upper = in[letter] <= 'Z';
    unsigned cp = (upper ? 0xFF21u : 0xFF41u) + (unsigned)(in[letter] - (upper ? 'A' : 'a'));
    memcpy(variant, in, letter);
    variant[letter] = (char)(0xE0 | (cp >> 12));
    variant[letter + 1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    variant[letter + 2] = (char)(0x80 | (cp & 0x3F));
    memcpy(variant + letter + 3, in + letter + 1, in_len - letter - 1);
    char ascii[LIMIT_JID_PART_BYTES_MAX], full[LIMIT_JID_PART_BYTES_MAX];
    size_t ascii_len = 0, full_len = 0;
    bool ascii_ok = prepare(in, in_len, ascii, &ascii_len) == JID_OK;
    bool full_ok = prepare(variant, in_len + 2, full, &full_len) == JID_OK;
    if (ascii_ok != full_ok ||
        (ascii_ok && (ascii_len != full_len || memcmp(ascii, full, ascii_len) != 0)))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    check_jid(in, size);
    check_part(jid_prepare_localpart, in, size);
    check_part(jid_prepare_domainpart, in, size);
    check_part(jid_prepare_resourcepart, in, size);
    check_paths_agree(jid_prepare_localpart, in, size);
    check_paths_agree(jid_prepare_domainpart, in, size);
    return 0;
}
