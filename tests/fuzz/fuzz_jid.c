/*
 * fuzz_jid.c: libFuzzer target for JID parsing and preparation (RFC 7622,
 * PRECIS, IDNA2008).
 *
 * Each input is parsed as a whole JID and also prepared as each kind of
 * part on its own. Whatever is accepted must keep the module's promises:
 * every part within LIMIT_JID_PART_BYTES_MAX and the domainpart never
 * empty, the text NUL-terminated at its length with no NUL inside, and
 * preparation idempotent: the prepared text parses to the same JID, and
 * each prepared part prepares to itself.
 */
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    check_jid(in, size);
    check_part(jid_prepare_localpart, in, size);
    check_part(jid_prepare_domainpart, in, size);
    check_part(jid_prepare_resourcepart, in, size);
    return 0;
}
