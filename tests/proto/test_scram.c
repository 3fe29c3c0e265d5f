/*
 * test_scram.c: unit tests of proto/scram.
 *
 * The exchanges of RFC 5802 section 5 (SHA-1) and RFC 7677 section 3
 * (SHA-256) are replayed from both sides and every message must match the
 * RFC byte for byte; a SHA-512 exchange with and without channel binding
 * must agree with itself and fail on a wrong password. Then each rejection
 * the parsers and builders make is checked with its error, including the
 * bounds of proto/limits.h at and one past their limit.
 */
#include <string.h>

#include "proto/scram.h"
#include "tests/proto/check.h"

#define S(literal) ((scram_slice){literal, sizeof literal - 1})

static bool slice_is(scram_slice slice, const char *text)
{
    return slice.len == strlen(text) && memcmp(slice.ptr, text, slice.len) == 0;
}

static bool bytes_are(const char *bytes, size_t length, const char *text)
{
    return length == strlen(text) && memcmp(bytes, text, length) == 0;
}

/* One exchange as an RFC prints it: the inputs and the four messages. */
typedef struct example {
    const char *label;
    scram_hash hash;
    const char *client_nonce, *server_nonce;
    const char *client_first, *server_first, *client_final, *server_final;
} example;

/* The client's side: builds its messages and checks the server's. */
static void client_side(const example *e, const scram_server_first *parsed_first, scram_keys *keys)
{
    char first[256], final[256];
    size_t first_len, header_len, final_len, without_proof_len;
    scram_client_first_params params = {.cbind = SCRAM_CBIND_NONE,
                                        .username = "user",
                                        .username_len = 4,
                                        .nonce = e->client_nonce,
                                        .nonce_len = strlen(e->client_nonce)};
    CHECK(scram_client_first_build(&params, first, sizeof first, &first_len, &header_len) ==
          SCRAM_OK);
    CHECK(bytes_are(first, first_len, e->client_first));
    CHECK(header_len == 3);
    CHECK(scram_keys_derive(e->hash, "pencil", 6, parsed_first->salt, parsed_first->salt_len,
                            parsed_first->iterations, keys) == SCRAM_OK);
    /* A client that cached SaltedPassword gets the same keys without PBKDF2. */
    scram_keys cached;
    CHECK(scram_keys_from_salted(e->hash, keys->salted_password, &cached) == SCRAM_OK);
    CHECK(memcmp(&cached, keys, sizeof cached) == 0);
    scram_slice bare = {first + header_len, first_len - header_len};
    scram_slice server_first = {e->server_first, strlen(e->server_first)};
    CHECK(scram_client_final_build(&cached, (scram_slice){first, header_len}, NULL, 0,
                                   parsed_first->nonce, bare, server_first, final, sizeof final,
                                   &final_len, &without_proof_len) == SCRAM_OK);
    CHECK(bytes_are(final, final_len, e->client_final));
    scram_server_final server_final;
    CHECK(scram_server_final_parse(e->server_final, strlen(e->server_final), &server_final) ==
          SCRAM_OK);
    scram_auth_message auth = {bare, server_first, {final, without_proof_len}};
    CHECK(scram_client_verify_server(keys, &auth, &server_final) == SCRAM_OK);
    server_final.verifier[0] ^= 1;
    CHECK(scram_client_verify_server(keys, &auth, &server_final) == SCRAM_ERROR_NOT_AUTHORIZED);
}

/* The server's side: parses the client's messages and builds its own. */
static void server_side(const example *e, const scram_server_first *parsed_first)
{
    char first[256], final[256];
    size_t first_len, final_len;
    scram_client_first client_first;
    CHECK(scram_client_first_parse(e->client_first, strlen(e->client_first), &client_first) ==
          SCRAM_OK);
    CHECK(client_first.cbind == SCRAM_CBIND_NONE);
    CHECK(slice_is(client_first.username, "user") && client_first.authzid.len == 0);
    CHECK(slice_is(client_first.nonce, e->client_nonce));
    scram_slice server_nonce = {e->server_nonce, strlen(e->server_nonce)};
    CHECK(scram_server_first_build(client_first.nonce, server_nonce, parsed_first->salt,
                                   parsed_first->salt_len, 4096, first, sizeof first,
                                   &first_len) == SCRAM_OK);
    CHECK(bytes_are(first, first_len, e->server_first));
    scram_keys stored;
    CHECK(scram_keys_derive(e->hash, "pencil", 6, parsed_first->salt, parsed_first->salt_len, 4096,
                            &stored) == SCRAM_OK);
    scram_client_final client_final;
    CHECK(scram_client_final_parse(e->client_final, strlen(e->client_final), &client_final) ==
          SCRAM_OK);
    CHECK(scram_client_final_check(&client_final, parsed_first->nonce, client_first.gs2_header,
                                   NULL, 0) == SCRAM_OK);
    scram_auth_message auth = {client_first.bare, {first, first_len}, client_final.without_proof};
    unsigned char signature[SCRAM_HASH_BYTES_MAX];
    CHECK(scram_server_verify_proof(e->hash, stored.stored_key, stored.server_key, &auth,
                                    client_final.proof, client_final.proof_len,
                                    signature) == SCRAM_OK);
    CHECK(scram_server_final_build(e->hash, signature, final, sizeof final, &final_len) ==
          SCRAM_OK);
    CHECK(bytes_are(final, final_len, e->server_final));
    client_final.proof[3] ^= 0x40;
    CHECK(scram_server_verify_proof(e->hash, stored.stored_key, stored.server_key, &auth,
                                    client_final.proof, client_final.proof_len,
                                    signature) == SCRAM_ERROR_NOT_AUTHORIZED);
}

static void test_example(const example *e)
{
    check_label = e->label;
    scram_server_first parsed;
    scram_slice client_nonce = {e->client_nonce, strlen(e->client_nonce)};
    CHECK(scram_server_first_parse(e->server_first, strlen(e->server_first), client_nonce,
                                   &parsed) == SCRAM_OK);
    CHECK(parsed.iterations == 4096);
    scram_keys keys;
    client_side(e, &parsed, &keys);
    server_side(e, &parsed);
}

static void test_rfc_examples(void)
{
    static const example sha1 = {
        "rfc5802",
        SCRAM_HASH_SHA1,
        "fyko+d2lbbFgONRv9qkxdawL",
        "3rfcNHYJY1ZVvWVs7j",
        "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        "v=rmF9pqV8S7suAoZWja4dJRkFsKQ="};
    static const example sha256 = {
        "rfc7677",
        SCRAM_HASH_SHA256,
        "rOprNGfwEbeRWgbNEkqO",
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="};
    test_example(&sha1);
    test_example(&sha256);
}

/* A whole SHA-512 exchange with tls-exporter binding and an authzid; a
 * client with the wrong password is refused and refuses the server. */
static void exchange_512(const char *client_password, scram_result expected)
{
    static const unsigned char salt[16] = "0123456789abcdef";
    static const unsigned char binding[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    char nonce[64], server_nonce[64], first[512], server_first[512], final[512];
    size_t nonce_len, server_nonce_len, first_len, header_len, server_first_len, final_len, wp_len;
    CHECK(scram_nonce_make(18, nonce, sizeof nonce, &nonce_len) == SCRAM_OK && nonce_len == 24);
    CHECK(scram_nonce_make(18, server_nonce, sizeof server_nonce, &server_nonce_len) == SCRAM_OK);
    scram_client_first_params params = {
        SCRAM_CBIND_REQUIRED, SCRAM_CBIND_TLS_EXPORTER, "a,=b", 4, "us=er,", 6, nonce, nonce_len};
    CHECK(scram_client_first_build(&params, first, sizeof first, &first_len, &header_len) ==
          SCRAM_OK);
    CHECK(memcmp(first, "p=tls-exporter,a=a=2C=3Db,n=us=3Der=2C,r=", 41) == 0);
    scram_client_first cf;
    CHECK(scram_client_first_parse(first, first_len, &cf) == SCRAM_OK);
    CHECK(cf.cbind == SCRAM_CBIND_REQUIRED && slice_is(cf.cbind_name, "tls-exporter"));
    CHECK(cf.gs2_header.len == header_len && slice_is(cf.authzid, "a=2C=3Db"));
    CHECK(scram_server_first_build(cf.nonce, (scram_slice){server_nonce, server_nonce_len}, salt,
                                   16, 4096, server_first, sizeof server_first,
                                   &server_first_len) == SCRAM_OK);
    scram_server_first sf;
    CHECK(scram_server_first_parse(server_first, server_first_len, (scram_slice){nonce, nonce_len},
                                   &sf) == SCRAM_OK);
    scram_keys client, server;
    CHECK(scram_keys_derive(SCRAM_HASH_SHA512, client_password, strlen(client_password), sf.salt,
                            sf.salt_len, sf.iterations, &client) == SCRAM_OK);
    CHECK(scram_keys_derive(SCRAM_HASH_SHA512, "pencil", 6, salt, 16, 4096, &server) == SCRAM_OK);
    CHECK(scram_client_final_build(&client, cf.gs2_header, binding, sizeof binding, sf.nonce,
                                   cf.bare, (scram_slice){server_first, server_first_len}, final,
                                   sizeof final, &final_len, &wp_len) == SCRAM_OK);
    scram_client_final fin;
    CHECK(scram_client_final_parse(final, final_len, &fin) == SCRAM_OK && fin.proof_len == 64);
    CHECK(scram_client_final_check(&fin, sf.nonce, cf.gs2_header, binding, sizeof binding) ==
          SCRAM_OK);
    CHECK(scram_client_final_check(&fin, sf.nonce, cf.gs2_header, binding, 31) ==
          SCRAM_ERROR_CHANNEL_BINDING);
    CHECK(scram_client_final_check(&fin, cf.nonce, cf.gs2_header, binding, sizeof binding) ==
          SCRAM_ERROR_NONCE_MISMATCH);
    scram_auth_message auth = {cf.bare, {server_first, server_first_len}, fin.without_proof};
    unsigned char signature[SCRAM_HASH_BYTES_MAX];
    CHECK(scram_server_verify_proof(SCRAM_HASH_SHA512, server.stored_key, server.server_key, &auth,
                                    fin.proof, fin.proof_len, signature) == expected);
    char out[256];
    size_t out_len;
    scram_server_final sfin;
    CHECK(scram_server_final_build(SCRAM_HASH_SHA512, signature, out, sizeof out, &out_len) ==
          SCRAM_OK);
    CHECK(scram_server_final_parse(out, out_len, &sfin) == SCRAM_OK);
    CHECK(scram_client_verify_server(&client, &auth, &sfin) == expected);
}

static void test_sha512(void)
{
    check_label = "sha512";
    exchange_512("pencil", SCRAM_OK);
    check_label = "sha512-wrong-password";
    exchange_512("pencils", SCRAM_ERROR_NOT_AUTHORIZED);
}

static void test_mechanisms(void)
{
    check_label = "mechanisms";
    scram_mechanism m;
    CHECK(scram_mechanism_parse("SCRAM-SHA-1", 11, &m) && m.hash == SCRAM_HASH_SHA1 && !m.plus);
    CHECK(scram_mechanism_parse("SCRAM-SHA-256-PLUS", 18, &m) && m.hash == SCRAM_HASH_SHA256 &&
          m.plus);
    CHECK(scram_mechanism_parse("SCRAM-SHA-512", 13, &m) && m.hash == SCRAM_HASH_SHA512);
    CHECK(strcmp(scram_mechanism_name(m), "SCRAM-SHA-512") == 0);
    CHECK(!scram_mechanism_parse("scram-sha-1", 11, &m));
    CHECK(!scram_mechanism_parse("SCRAM-SHA-256-PLUS", 17, &m));
    CHECK(!scram_mechanism_parse("SCRAM-SHA-384", 13, &m));
    CHECK(!scram_mechanism_parse("", 0, &m));
    CHECK(scram_hash_bytes(SCRAM_HASH_SHA1) == 20 && scram_hash_bytes(SCRAM_HASH_SHA512) == 64);
    CHECK(strcmp(scram_result_sasl_condition(SCRAM_ERROR_EXTENSION), "malformed-request") == 0);
    CHECK(strcmp(scram_result_sasl_condition(SCRAM_ERROR_NOT_AUTHORIZED), "not-authorized") == 0);
    CHECK(strcmp(scram_result_server_error(SCRAM_ERROR_EXTENSION), "extensions-not-supported") ==
          0);
    CHECK(strcmp(scram_result_name(SCRAM_ERROR_NONCE_MISMATCH), "nonce-mismatch") == 0);
}

static void test_saslname(void)
{
    check_label = "saslname";
    char out[64];
    size_t len;
    CHECK(scram_saslname_escape("a,b=c", 5, out, sizeof out, &len) == SCRAM_OK);
    CHECK(bytes_are(out, len, "a=2Cb=3Dc"));
    CHECK(scram_saslname_escape("user", 4, out, sizeof out, &len) == SCRAM_OK);
    CHECK(bytes_are(out, len, "user"));
    CHECK(scram_saslname_escape("\xc3\xa9,", 3, out, sizeof out, &len) == SCRAM_OK);
    CHECK(bytes_are(out, len, "\xc3\xa9=2C"));
    CHECK(scram_saslname_escape(",", 1, out, 3, &len) == SCRAM_OK && len == 3);
    CHECK(scram_saslname_escape(",", 1, out, 2, &len) == SCRAM_ERROR_BUFFER);
    CHECK(scram_saslname_escape("", 0, out, sizeof out, &len) == SCRAM_ERROR_BAD_ESCAPE);
    CHECK(scram_saslname_escape("a\0b", 3, out, sizeof out, &len) == SCRAM_ERROR_BAD_ESCAPE);
    CHECK(scram_saslname_escape("\xc0\xaf", 2, out, sizeof out, &len) == SCRAM_ERROR_BAD_ESCAPE);
    CHECK(scram_saslname_escape("\xed\xa0\x80", 3, out, sizeof out, &len) ==
          SCRAM_ERROR_BAD_ESCAPE);
    CHECK(scram_saslname_escape("\xf4\x90\x80\x80", 4, out, sizeof out, &len) ==
          SCRAM_ERROR_BAD_ESCAPE);
    CHECK(scram_saslname_escape("\xe2\x82", 2, out, sizeof out, &len) == SCRAM_ERROR_BAD_ESCAPE);
    CHECK(scram_saslname_unescape("a=2Cb=3Dc", 9, out, sizeof out, &len) == SCRAM_OK);
    CHECK(bytes_are(out, len, "a,b=c"));
    CHECK(scram_saslname_unescape("=3D=2C", 6, out, 2, &len) == SCRAM_OK && len == 2);
    CHECK(scram_saslname_unescape("=3D=2C", 6, out, 1, &len) == SCRAM_ERROR_BUFFER);
    static const char *const bad[] = {"=", "a=", "a=2", "=2c", "=3d", "=41", "a,b", "", "=2D"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(scram_saslname_unescape(bad[i], strlen(bad[i]), out, sizeof out, &len) ==
              SCRAM_ERROR_BAD_ESCAPE);
}

/* Which parser a rejection case goes to. */
enum parser { CLIENT_FIRST, SERVER_FIRST, CLIENT_FINAL, SERVER_FINAL };

static scram_result parse_as(enum parser parser, const char *message, size_t length)
{
    scram_client_first cf;
    scram_server_first sf;
    scram_client_final fin;
    scram_server_final sfin;
    switch (parser) {
    case CLIENT_FIRST:
        return scram_client_first_parse(message, length, &cf);
    case SERVER_FIRST:
        return scram_server_first_parse(message, length, S("abc"), &sf);
    case CLIENT_FINAL:
        return scram_client_final_parse(message, length, &fin);
    case SERVER_FINAL:
        return scram_server_final_parse(message, length, &sfin);
    }
    return SCRAM_ERROR_MALFORMED;
}

/* Each parser's verdict on a message, accepted and rejected alike. */
static const struct {
    enum parser parser;
    const char *message;
    scram_result expected;
} rejection_cases[] = {
    {CLIENT_FIRST, "n,,n=user,r=abc", SCRAM_OK},
    {CLIENT_FIRST, "y,a=admin,n=user,r=abc,x=1", SCRAM_OK},
    {CLIENT_FIRST, "", SCRAM_ERROR_MALFORMED},
    {CLIENT_FIRST, "n,,r=abc", SCRAM_ERROR_MALFORMED},
    {CLIENT_FIRST, "n,,n=user", SCRAM_ERROR_MALFORMED},
    {CLIENT_FIRST, "n,,n=user,", SCRAM_ERROR_MALFORMED},
    {CLIENT_FIRST, "n,n=user,r=abc", SCRAM_ERROR_MALFORMED},
    {CLIENT_FIRST, "x,,n=user,r=abc", SCRAM_ERROR_MALFORMED},
    {CLIENT_FIRST, "p=,,n=user,r=abc", SCRAM_ERROR_MALFORMED},
    {CLIENT_FIRST, "p=tls unique,,n=user,r=abc", SCRAM_ERROR_MALFORMED},
    {CLIENT_FIRST, "n,b=x,n=user,r=abc", SCRAM_ERROR_MALFORMED},
    {CLIENT_FIRST, "n,a=,n=user,r=abc", SCRAM_ERROR_BAD_ESCAPE},
    {CLIENT_FIRST, "n,,n=us=er,r=abc", SCRAM_ERROR_BAD_ESCAPE},
    {CLIENT_FIRST, "n,,n=,r=abc", SCRAM_ERROR_BAD_ESCAPE},
    {CLIENT_FIRST, "n,,n=user,r=", SCRAM_ERROR_BAD_NONCE},
    {CLIENT_FIRST, "n,,n=user,r=a b", SCRAM_ERROR_BAD_NONCE},
    {CLIENT_FIRST, "n,,n=user,r=abc,x", SCRAM_ERROR_MALFORMED},
    {CLIENT_FIRST, "n,,n=user,r=abc,1=x", SCRAM_ERROR_MALFORMED},
    {CLIENT_FIRST, "n,,m=ext,n=user,r=abc", SCRAM_ERROR_EXTENSION},
    {SERVER_FIRST, "r=abcd,s=QQ==,i=4096", SCRAM_OK},
    {SERVER_FIRST, "r=abcd,s=QQ==,i=4096,x=y", SCRAM_OK},
    {SERVER_FIRST, "m=x,r=abcd,s=QQ==,i=4096", SCRAM_ERROR_EXTENSION},
    {SERVER_FIRST, "r=abc,s=QQ==,i=4096", SCRAM_ERROR_NONCE_MISMATCH},
    {SERVER_FIRST, "r=abXd,s=QQ==,i=4096", SCRAM_ERROR_NONCE_MISMATCH},
    {SERVER_FIRST, "r=ab,s=QQ==,i=4096", SCRAM_ERROR_NONCE_MISMATCH},
    {SERVER_FIRST, "s=QQ==,r=abcd,i=4096", SCRAM_ERROR_MALFORMED},
    {SERVER_FIRST, "r=abcd,i=4096", SCRAM_ERROR_MALFORMED},
    {SERVER_FIRST, "r=abcd,s=QQ==", SCRAM_ERROR_MALFORMED},
    {SERVER_FIRST, "r=abcd,s=,i=4096", SCRAM_ERROR_BAD_BASE64},
    {SERVER_FIRST, "r=abcd,s=QQ=,i=4096", SCRAM_ERROR_BAD_BASE64},
    {SERVER_FIRST, "r=abcd,s=Q!==,i=4096", SCRAM_ERROR_BAD_BASE64},
    {SERVER_FIRST, "r=abcd,s=QQ==,i=0", SCRAM_ERROR_ITERATIONS},
    {SERVER_FIRST, "r=abcd,s=QQ==,i=4095", SCRAM_ERROR_ITERATIONS},
    {SERVER_FIRST, "r=abcd,s=QQ==,i=1000000", SCRAM_OK},
    {SERVER_FIRST, "r=abcd,s=QQ==,i=1000001", SCRAM_ERROR_ITERATIONS},
    {SERVER_FIRST, "r=abcd,s=QQ==,i=99999999999999999999", SCRAM_ERROR_ITERATIONS},
    {SERVER_FIRST, "r=abcd,s=QQ==,i=04096", SCRAM_ERROR_MALFORMED},
    {SERVER_FIRST, "r=abcd,s=QQ==,i=-1", SCRAM_ERROR_MALFORMED},
    {SERVER_FIRST, "r=abcd,s=QQ==,i=", SCRAM_ERROR_MALFORMED},
    {CLIENT_FINAL, "c=biws,r=abcd,p=QQ==", SCRAM_OK},
    {CLIENT_FINAL, "c=biws,r=abcd,x=1,p=QQ==", SCRAM_OK},
    {CLIENT_FINAL, "c=biws,r=abcd", SCRAM_ERROR_MALFORMED},
    {CLIENT_FINAL, "c=biws,p=QQ==", SCRAM_ERROR_MALFORMED},
    {CLIENT_FINAL, "r=abcd,p=QQ==", SCRAM_ERROR_MALFORMED},
    {CLIENT_FINAL, "c=biws,r=abcd,p=QQ==,x=1", SCRAM_ERROR_MALFORMED},
    {CLIENT_FINAL, "c=biw,r=abcd,p=QQ==", SCRAM_ERROR_BAD_BASE64},
    {CLIENT_FINAL, "c=biws,r=abcd,p=", SCRAM_ERROR_BAD_BASE64},
    {CLIENT_FINAL, "c=biws,r=ab\x7f,p=QQ==", SCRAM_ERROR_BAD_NONCE},
    {SERVER_FINAL, "v=QQ==", SCRAM_OK},
    {SERVER_FINAL, "e=invalid-proof", SCRAM_OK},
    {SERVER_FINAL, "e=", SCRAM_ERROR_MALFORMED},
    {SERVER_FINAL, "v=", SCRAM_ERROR_BAD_BASE64},
    {SERVER_FINAL, "v=QQ=", SCRAM_ERROR_BAD_BASE64},
    {SERVER_FINAL, "x=QQ==", SCRAM_ERROR_MALFORMED},
    {SERVER_FINAL, "v=QQ==,", SCRAM_ERROR_MALFORMED},
};

static void test_rejections(void)
{
    char label[32];
    for (size_t i = 0; i < sizeof rejection_cases / sizeof rejection_cases[0]; i++) {
        snprintf(label, sizeof label, "rejection %zu", i);
        check_label = label;
        CHECK(parse_as(rejection_cases[i].parser, rejection_cases[i].message,
                       strlen(rejection_cases[i].message)) == rejection_cases[i].expected);
    }
    check_label = "rejection null";
    for (int p = CLIENT_FIRST; p <= SERVER_FINAL; p++)
        CHECK(parse_as((enum parser)p, NULL, 0) == SCRAM_ERROR_MALFORMED);
}

/* Fills buffer with prefix, count copies of fill, then suffix. */
static size_t compose(char *buffer, const char *prefix, char fill, size_t count, const char *suffix)
{
    size_t length = strlen(prefix);
    memcpy(buffer, prefix, length);
    memset(buffer + length, fill, count);
    length += count;
    memcpy(buffer + length, suffix, strlen(suffix));
    return length + strlen(suffix);
}

static void test_message_bounds(void)
{
    static char message[2 * LIMIT_SCRAM_MESSAGE_BYTES_MAX];
    scram_client_first cf;
    scram_server_first sf;
    const size_t overhead = strlen("n,,n=,r=abc");
    check_label = "bound message";
    size_t length =
        compose(message, "n,,n=", 'u', LIMIT_SCRAM_MESSAGE_BYTES_MAX - overhead, ",r=abc");
    CHECK(length == LIMIT_SCRAM_MESSAGE_BYTES_MAX);
    CHECK(scram_client_first_parse(message, length, &cf) == SCRAM_OK);
    length = compose(message, "n,,n=", 'u', LIMIT_SCRAM_MESSAGE_BYTES_MAX + 1 - overhead, ",r=abc");
    CHECK(scram_client_first_parse(message, length, &cf) == SCRAM_ERROR_TOO_LONG);
    CHECK(scram_client_final_parse(message, length, &(scram_client_final){0}) ==
          SCRAM_ERROR_TOO_LONG);
    check_label = "bound nonce";
    length = compose(message, "n,,n=u,r=", 'x', LIMIT_SCRAM_NONCE_BYTES_MAX, "");
    CHECK(scram_client_first_parse(message, length, &cf) == SCRAM_OK);
    length = compose(message, "n,,n=u,r=", 'x', LIMIT_SCRAM_NONCE_BYTES_MAX + 1, "");
    CHECK(scram_client_first_parse(message, length, &cf) == SCRAM_ERROR_TOO_LONG);
    check_label = "bound salt";
    /* 128 salt bytes are 172 base64 characters ending "=", 129 are 172 without padding. */
    length = compose(message, "r=abcd,s=", 'A', 171, "=,i=4096");
    CHECK(scram_server_first_parse(message, length, S("abc"), &sf) == SCRAM_OK);
    CHECK(sf.salt_len == LIMIT_SCRAM_SALT_BYTES_MAX);
    length = compose(message, "r=abcd,s=", 'A', 172, ",i=4096");
    CHECK(scram_server_first_parse(message, length, S("abc"), &sf) == SCRAM_ERROR_TOO_LONG);
}

static void test_proof_bounds(void)
{
    static char message[512];
    scram_client_final fin;
    scram_server_final sfin;
    check_label = "bound proof";
    /* 64 bytes are 88 base64 characters ending "==", 66 bytes are 88 without. */
    size_t length = compose(message, "c=biws,r=abcd,p=", 'A', 86, "==");
    CHECK(scram_client_final_parse(message, length, &fin) == SCRAM_OK && fin.proof_len == 64);
    length = compose(message, "c=biws,r=abcd,p=", 'A', 88, "");
    CHECK(scram_client_final_parse(message, length, &fin) == SCRAM_ERROR_TOO_LONG);
    length = compose(message, "v=", 'A', 86, "==");
    CHECK(scram_server_final_parse(message, length, &sfin) == SCRAM_OK && sfin.verifier_len == 64);
    length = compose(message, "v=", 'A', 88, "");
    CHECK(scram_server_final_parse(message, length, &sfin) == SCRAM_ERROR_TOO_LONG);
    /* A proof of the wrong length for the hash is refused, not read past. */
    scram_keys keys;
    CHECK(scram_keys_derive(SCRAM_HASH_SHA1, "p", 1, (const unsigned char *)"s", 1, 1, &keys) ==
          SCRAM_OK);
    scram_auth_message auth = {S("n=u,r=a"), S("r=ab,s=cw==,i=4096"), S("c=biws,r=ab")};
    unsigned char signature[SCRAM_HASH_BYTES_MAX];
    CHECK(scram_server_verify_proof(SCRAM_HASH_SHA1, keys.stored_key, keys.server_key, &auth,
                                    fin.proof, 64, signature) == SCRAM_ERROR_NOT_AUTHORIZED);
    sfin.verifier_len = 19;
    CHECK(scram_client_verify_server(&keys, &auth, &sfin) == SCRAM_ERROR_NOT_AUTHORIZED);
    CHECK(scram_server_final_parse("e=unknown-user", 14, &sfin) == SCRAM_OK && sfin.is_error);
    CHECK(slice_is(sfin.error, "unknown-user"));
    CHECK(scram_client_verify_server(&keys, &auth, &sfin) == SCRAM_ERROR_SERVER_ERROR);
}

static void test_builders(void)
{
    char out[64];
    size_t len, header;
    static const unsigned char salt[1] = {'A'};
    scram_keys keys;
    check_label = "builders";
    scram_client_first_params params = {
        .username = "user", .username_len = 4, .nonce = "abc", .nonce_len = 3};
    CHECK(scram_client_first_build(&params, out, 15, &len, &header) == SCRAM_OK && len == 15);
    CHECK(scram_client_first_build(&params, out, 14, &len, &header) == SCRAM_ERROR_BUFFER);
    params.nonce = "a,c";
    CHECK(scram_client_first_build(&params, out, sizeof out, &len, &header) ==
          SCRAM_ERROR_BAD_NONCE);
    params.nonce = "abc";
    params.cbind = SCRAM_CBIND_REQUIRED;
    CHECK(scram_client_first_build(&params, out, sizeof out, &len, &header) ==
          SCRAM_ERROR_MALFORMED);
    params.cbind = SCRAM_CBIND_NOT_OFFERED;
    params.username_len = 0;
    CHECK(scram_client_first_build(&params, out, sizeof out, &len, &header) ==
          SCRAM_ERROR_BAD_ESCAPE);
    CHECK(scram_server_first_build(S("abc"), S("d"), salt, 1, 4096, out, sizeof out, &len) ==
          SCRAM_OK);
    CHECK(bytes_are(out, len, "r=abcd,s=QQ==,i=4096"));
    CHECK(scram_server_first_build(S("abc"), S("d"), salt, 1, 4095, out, sizeof out, &len) ==
          SCRAM_ERROR_ITERATIONS);
    CHECK(scram_server_first_build(S("abc"), S(""), salt, 1, 4096, out, sizeof out, &len) ==
          SCRAM_ERROR_BAD_NONCE);
    CHECK(scram_server_first_build(S("abc"), S("d"), salt, 0, 4096, out, sizeof out, &len) ==
          SCRAM_ERROR_MALFORMED);
    CHECK(scram_server_final_error_build(SCRAM_ERROR_NOT_AUTHORIZED, out, sizeof out, &len) ==
          SCRAM_OK);
    CHECK(bytes_are(out, len, "e=invalid-proof"));
    CHECK(scram_client_final_without_proof_build(S("n,,"), NULL, 0, S("abcd"), out, sizeof out,
                                                 &len) == SCRAM_OK);
    CHECK(bytes_are(out, len, "c=biws,r=abcd"));
    CHECK(scram_keys_derive(SCRAM_HASH_SHA256, "p", 1, salt, 1, 0, &keys) ==
          SCRAM_ERROR_ITERATIONS);
    CHECK(scram_keys_derive(SCRAM_HASH_SHA256, "p", 1, salt, 1, LIMIT_SCRAM_ITERATIONS_MAX + 1,
                            &keys) == SCRAM_ERROR_ITERATIONS);
    CHECK(scram_nonce_make(0, out, sizeof out, &len) == SCRAM_ERROR_BAD_NONCE);
    CHECK(scram_nonce_make(49, out, sizeof out, &len) == SCRAM_ERROR_BUFFER);
    CHECK(scram_nonce_make(LIMIT_SCRAM_NONCE_BYTES_MAX, out, sizeof out, &len) ==
          SCRAM_ERROR_TOO_LONG);
}

int main(void)
{
    test_rfc_examples();
    test_sha512();
    test_mechanisms();
    test_saslname();
    test_rejections();
    test_message_bounds();
    test_proof_bounds();
    test_builders();
    return check_finish();
}
