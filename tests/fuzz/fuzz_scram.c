/*
 * fuzz_scram.c: libFuzzer target for the SCRAM message parsers.
 *
 * Every input is handed to all four parsers (client-first, server-first,
 * client-final, server-final). Whatever they accept is used further the way
 * a peer would: names are unescaped and escaped back, which must give the
 * original bytes (escaping is canonical), and the checks that follow a
 * parse run over the parsed slices, so AddressSanitizer sees each slice
 * read to its end.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/scram.h"

static void check_name_round_trip(scram_slice escaped)
{
    char plain[LIMIT_SCRAM_MESSAGE_BYTES_MAX], again[LIMIT_SCRAM_MESSAGE_BYTES_MAX];
    size_t plain_len, again_len;
    if (escaped.len == 0)
        return;
    if (scram_saslname_unescape(escaped.ptr, escaped.len, plain, sizeof plain, &plain_len) !=
            SCRAM_OK ||
        scram_saslname_escape(plain, plain_len, again, sizeof again, &again_len) != SCRAM_OK ||
        again_len != escaped.len || memcmp(again, escaped.ptr, again_len) != 0)
        abort();
}

static void fuzz_client_first(const char *message, size_t length)
{
    scram_client_first first;
    if (scram_client_first_parse(message, length, &first) != SCRAM_OK)
        return;
    if (first.gs2_header.len + first.bare.len != length)
        abort();
    check_name_round_trip(first.username);
    check_name_round_trip(first.authzid);
}

static void fuzz_server_first(const char *message, size_t length)
{
    static const char client_nonce[] = "fyko+d2lbbFgONRv9qkxdawL";
    scram_server_first first;
    scram_slice nonce = {client_nonce, sizeof client_nonce - 1};
    if (scram_server_first_parse(message, length, nonce, &first) != SCRAM_OK)
        return;
    if (first.salt_len == 0 || first.salt_len > sizeof first.salt ||
        first.iterations < LIMIT_SCRAM_ITERATIONS_MIN)
        abort();
}

static void fuzz_client_final(const char *message, size_t length)
{
    static const unsigned char keys[2][SCRAM_HASH_BYTES_MAX];
    unsigned char signature[SCRAM_HASH_BYTES_MAX];
    scram_client_final final;
    if (scram_client_final_parse(message, length, &final) != SCRAM_OK)
        return;
    scram_slice header = {"n,,", 3};
    (void)scram_client_final_check(&final, final.nonce, header, NULL, 0);
    scram_auth_message auth = {{"n=u,r=x", 7}, {"r=xy,s=QQ==,i=4096", 18}, final.without_proof};
    if (scram_server_verify_proof(SCRAM_HASH_SHA256, keys[0], keys[1], &auth, final.proof,
                                  final.proof_len, signature) == SCRAM_OK)
        abort();
}

static void fuzz_server_final(const char *message, size_t length)
{
    scram_server_final final;
    scram_keys keys;
    if (scram_server_final_parse(message, length, &final) != SCRAM_OK)
        return;
    memset(&keys, 0, sizeof keys);
    keys.hash = SCRAM_HASH_SHA1;
    scram_auth_message auth = {{"n=u,r=x", 7}, {"r=xy,s=QQ==,i=4096", 18}, {"c=biws,r=xy", 11}};
    scram_result result = scram_client_verify_server(&keys, &auth, &final);
    if (final.is_error != (result == SCRAM_ERROR_SERVER_ERROR))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *message = (const char *)data;
    fuzz_client_first(message, size);
    fuzz_server_first(message, size);
    fuzz_client_final(message, size);
    fuzz_server_final(message, size);
    return 0;
}
