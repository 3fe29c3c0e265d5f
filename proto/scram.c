/*
 * scram.c: SCRAM messages and keys (RFC 5802, RFC 7677).
 *
 * Parsing splits a message at its commas into fields and checks each field
 * against the grammar of RFC 5802 section 7 in order; nothing is copied but
 * the decoded base64 attributes, which land in fixed arrays bounded by
 * proto/limits.h. Building writes through a small bounded writer that
 * notes overflow instead of writing past the caller's buffer.
 *
 * The cryptography is BoringSSL's: PBKDF2-HMAC for Hi(), HMAC and digests
 * on stack contexts, CRYPTO_memcmp wherever a secret is compared so that
 * the time taken reveals nothing about how much of it matched.
 */
#include "proto/scram.h"

#include <assert.h>
#include <string.h>

#include <openssl/base64.h>
#include <openssl/digest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/rand.h>

/* ------------------------------------------------------------------ names */

const char *scram_result_name(scram_result result)
{
    switch (result) {
    case SCRAM_OK:
        return "ok";
    case SCRAM_ERROR_MALFORMED:
        return "malformed";
    case SCRAM_ERROR_TOO_LONG:
        return "too-long";
    case SCRAM_ERROR_BAD_BASE64:
        return "bad-base64";
    case SCRAM_ERROR_BAD_ESCAPE:
        return "bad-escape";
    case SCRAM_ERROR_BAD_NONCE:
        return "bad-nonce";
    case SCRAM_ERROR_EXTENSION:
        return "extension";
    case SCRAM_ERROR_ITERATIONS:
        return "iterations";
    case SCRAM_ERROR_NONCE_MISMATCH:
        return "nonce-mismatch";
    case SCRAM_ERROR_CHANNEL_BINDING:
        return "channel-binding";
    case SCRAM_ERROR_NOT_AUTHORIZED:
        return "not-authorized";
    case SCRAM_ERROR_SERVER_ERROR:
        return "server-error";
    case SCRAM_ERROR_BUFFER:
        return "buffer";
    case SCRAM_ERROR_CRYPTO:
        return "crypto";
    }
    return "unknown";
}

const char *scram_result_sasl_condition(scram_result result)
{
    switch (result) {
    case SCRAM_OK:
        return "";
    case SCRAM_ERROR_NONCE_MISMATCH:
    case SCRAM_ERROR_CHANNEL_BINDING:
    case SCRAM_ERROR_NOT_AUTHORIZED:
    case SCRAM_ERROR_SERVER_ERROR:
        return "not-authorized";
    case SCRAM_ERROR_BUFFER:
    case SCRAM_ERROR_CRYPTO:
        return "temporary-auth-failure";
    default:
        return "malformed-request";
    }
}

const char *scram_result_server_error(scram_result result)
{
    switch (result) {
    case SCRAM_ERROR_MALFORMED:
    case SCRAM_ERROR_TOO_LONG:
    case SCRAM_ERROR_BAD_BASE64:
    case SCRAM_ERROR_BAD_NONCE:
        return "invalid-encoding";
    case SCRAM_ERROR_BAD_ESCAPE:
        return "invalid-username-encoding";
    case SCRAM_ERROR_EXTENSION:
        return "extensions-not-supported";
    case SCRAM_ERROR_CHANNEL_BINDING:
        return "channel-bindings-dont-match";
    case SCRAM_ERROR_NONCE_MISMATCH:
    case SCRAM_ERROR_NOT_AUTHORIZED:
        return "invalid-proof";
    case SCRAM_ERROR_BUFFER:
    case SCRAM_ERROR_CRYPTO:
        return "no-resources";
    default:
        return "other-error";
    }
}

/* ------------------------------------------------------------- mechanisms */

static const char *const mechanism_names[3][2] = {
    {"SCRAM-SHA-1", "SCRAM-SHA-1-PLUS"},
    {"SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"},
    {"SCRAM-SHA-512", "SCRAM-SHA-512-PLUS"},
};

bool scram_mechanism_parse(const char *name, size_t name_len, scram_mechanism *out)
{
    for (int hash = SCRAM_HASH_SHA1; hash <= SCRAM_HASH_SHA512; hash++) {
        for (int plus = 0; plus < 2; plus++) {
            const char *candidate = mechanism_names[hash][plus];
            if (strlen(candidate) == name_len && memcmp(candidate, name, name_len) == 0) {
                out->hash = (scram_hash)hash;
                out->plus = plus != 0;
                return true;
            }
        }
    }
    return false;
}

const char *scram_mechanism_name(scram_mechanism mechanism)
{
    assert(mechanism.hash <= SCRAM_HASH_SHA512);
    return mechanism_names[mechanism.hash][mechanism.plus ? 1 : 0];
}

size_t scram_hash_bytes(scram_hash hash)
{
    switch (hash) {
    case SCRAM_HASH_SHA1:
        return 20;
    case SCRAM_HASH_SHA256:
        return 32;
    case SCRAM_HASH_SHA512:
        return 64;
    }
    return 0;
}

static const EVP_MD *hash_md(scram_hash hash)
{
    switch (hash) {
    case SCRAM_HASH_SHA1:
        return EVP_sha1();
    case SCRAM_HASH_SHA256:
        return EVP_sha256();
    case SCRAM_HASH_SHA512:
        return EVP_sha512();
    }
    return NULL;
}

/* ------------------------------------------------------------------ keys */

scram_result scram_keys_from_salted(scram_hash hash, const unsigned char *salted_password,
                                    scram_keys *out)
{
    const EVP_MD *md = hash_md(hash);
    size_t bytes = scram_hash_bytes(hash);
    unsigned int length;
    if (md == NULL)
        return SCRAM_ERROR_CRYPTO;
    /* The caller may pass out's own salted_password; copy it before clearing
     * out, so that the unused tail of every key is zero and keys compare. */
    unsigned char salted[SCRAM_HASH_BYTES_MAX];
    memcpy(salted, salted_password, bytes);
    memset(out, 0, sizeof *out);
    out->hash = hash;
    memcpy(out->salted_password, salted, bytes);
    OPENSSL_cleanse(salted, sizeof salted);
    if (!HMAC(md, out->salted_password, bytes, (const uint8_t *)"Client Key", 10, out->client_key,
              &length) ||
        !EVP_Digest(out->client_key, bytes, out->stored_key, &length, md, NULL) ||
        !HMAC(md, out->salted_password, bytes, (const uint8_t *)"Server Key", 10, out->server_key,
              &length))
        return SCRAM_ERROR_CRYPTO;
    return SCRAM_OK;
}

scram_result scram_keys_derive(scram_hash hash, const char *password, size_t password_len,
                               const unsigned char *salt, size_t salt_len, uint32_t iterations,
                               scram_keys *out)
{
    unsigned char salted[SCRAM_HASH_BYTES_MAX];
    const EVP_MD *md = hash_md(hash);
    if (md == NULL)
        return SCRAM_ERROR_CRYPTO;
    if (iterations == 0 || iterations > LIMIT_SCRAM_ITERATIONS_MAX)
        return SCRAM_ERROR_ITERATIONS;
    if (!PKCS5_PBKDF2_HMAC(password, password_len, salt, salt_len, iterations, md,
                           scram_hash_bytes(hash), salted))
        return SCRAM_ERROR_CRYPTO;
    scram_result result = scram_keys_from_salted(hash, salted, out);
    OPENSSL_cleanse(salted, sizeof salted);
    return result;
}

/* HMAC(key, AuthMessage), fed piece by piece so the AuthMessage is never
 * assembled in memory. */
static scram_result auth_hmac(scram_hash hash, const unsigned char *key,
                              const scram_auth_message *message, unsigned char *out)
{
    HMAC_CTX context;
    unsigned int length;
    const scram_slice *parts[3] = {&message->client_first_bare, &message->server_first,
                                   &message->client_final_without_proof};
    HMAC_CTX_init(&context);
    int ok = HMAC_Init_ex(&context, key, scram_hash_bytes(hash), hash_md(hash), NULL);
    for (int i = 0; ok && i < 3; i++) {
        if (i > 0)
            ok = HMAC_Update(&context, (const uint8_t *)",", 1);
        if (ok)
            ok = HMAC_Update(&context, (const uint8_t *)parts[i]->ptr, parts[i]->len);
    }
    if (ok)
        ok = HMAC_Final(&context, out, &length);
    HMAC_CTX_cleanup(&context);
    return ok ? SCRAM_OK : SCRAM_ERROR_CRYPTO;
}

/* --------------------------------------------------------------- checkers */

/* Well-formed UTF-8 (no overlongs, surrogates or code points past
 * U+10FFFF) without NUL: RFC 5802's UTF8-char minus %x00. */
static bool text_valid(const char *text, size_t length)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < length) {
        unsigned c = s[i], extra, code, minimum;
        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            extra = 1, code = c & 0x1F, minimum = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            extra = 2, code = c & 0x0F, minimum = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            extra = 3, code = c & 0x07, minimum = 0x10000;
        } else {
            return false;
        }
        if (length - i <= extra)
            return false;
        for (unsigned k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            code = (code << 6) | (s[i + k] & 0x3F);
        }
        if (code < minimum || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF))
            return false;
        i += extra + 1;
    }
    return true;
}

/* saslname: non-empty text without ',' whose every '=' starts =2C or =3D. */
static bool saslname_valid(scram_slice name)
{
    if (name.len == 0 || !text_valid(name.ptr, name.len))
        return false;
    for (size_t i = 0; i < name.len; i++) {
        if (name.ptr[i] == ',')
            return false;
        if (name.ptr[i] != '=')
            continue;
        if (name.len - i < 3 || !((name.ptr[i + 1] == '2' && name.ptr[i + 2] == 'C') ||
                                  (name.ptr[i + 1] == '3' && name.ptr[i + 2] == 'D')))
            return false;
    }
    return true;
}

/* printable = %x21-2B / %x2D-7E: a nonce's characters. */
static scram_result nonce_check(scram_slice nonce)
{
    if (nonce.len == 0)
        return SCRAM_ERROR_BAD_NONCE;
    if (nonce.len > LIMIT_SCRAM_NONCE_BYTES_MAX)
        return SCRAM_ERROR_TOO_LONG;
    for (size_t i = 0; i < nonce.len; i++) {
        unsigned char c = (unsigned char)nonce.ptr[i];
        if (c < 0x21 || c > 0x7E || c == ',')
            return SCRAM_ERROR_BAD_NONCE;
    }
    return SCRAM_OK;
}

/* cb-name = 1*(ALPHA / DIGIT / "." / "-") */
static bool cbind_name_valid(scram_slice name)
{
    if (name.len == 0)
        return false;
    for (size_t i = 0; i < name.len; i++) {
        char c = name.ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-'))
            return false;
    }
    return true;
}

/* Decodes non-empty base64 into out (capacity bytes): SCRAM_ERROR_TOO_LONG
 * when the decoded bytes would not fit. */
static scram_result base64_decode(scram_slice text, unsigned char *out, size_t capacity,
                                  size_t *out_len)
{
    unsigned char decoded[LIMIT_SCRAM_MESSAGE_BYTES_MAX];
    size_t maximum;
    if (text.len == 0 || !EVP_DecodedLength(&maximum, text.len))
        return SCRAM_ERROR_BAD_BASE64;
    if (maximum > sizeof decoded)
        return SCRAM_ERROR_TOO_LONG;
    if (!EVP_DecodeBase64(decoded, out_len, sizeof decoded, (const uint8_t *)text.ptr, text.len))
        return SCRAM_ERROR_BAD_BASE64;
    if (*out_len > capacity)
        return SCRAM_ERROR_TOO_LONG;
    memcpy(out, decoded, *out_len);
    return SCRAM_OK;
}

/* ----------------------------------------------------------------- fields */

/* Walks a message's comma-separated fields. */
typedef struct cursor {
    const char *text;
    size_t length;
    size_t position;
    bool done;
} cursor;

static void cursor_init(cursor *c, const char *text, size_t length)
{
    *c = (cursor){.text = text, .length = length, .position = 0, .done = false};
}

/* The next field (possibly empty); false once every field was taken. */
static bool next_field(cursor *c, scram_slice *field)
{
    if (c->done)
        return false;
    const char *start = c->text + c->position;
    size_t rest = c->length - c->position;
    const char *comma = rest > 0 ? memchr(start, ',', rest) : NULL;
    field->ptr = start;
    field->len = comma != NULL ? (size_t)(comma - start) : rest;
    if (comma != NULL) {
        c->position += field->len + 1;
    } else {
        c->position = c->length;
        c->done = true;
    }
    return true;
}

/* Takes the next field, which must be "NAME=value"; the value goes to value. */
static bool take_attribute(cursor *c, char name, scram_slice *value)
{
    scram_slice field;
    if (!next_field(c, &field) || field.len < 2 || field.ptr[0] != name || field.ptr[1] != '=')
        return false;
    *value = (scram_slice){field.ptr + 2, field.len - 2};
    return true;
}

/* The optional trailing extensions: each ALPHA "=" 1*value-char. */
static scram_result check_extensions(cursor *c)
{
    scram_slice field;
    while (next_field(c, &field)) {
        char name = field.len > 0 ? field.ptr[0] : 0;
        if (field.len < 3 || !((name >= 'a' && name <= 'z') || (name >= 'A' && name <= 'Z')) ||
            field.ptr[1] != '=' || !text_valid(field.ptr + 2, field.len - 2))
            return SCRAM_ERROR_MALFORMED;
    }
    return SCRAM_OK;
}

/* A mandatory extension "m=..." where one may appear: we support none. */
static bool is_mandatory_extension(const cursor *c)
{
    size_t rest = c->length - c->position;
    return !c->done && rest >= 2 && c->text[c->position] == 'm' && c->text[c->position + 1] == '=';
}

static scram_result message_check(const char *message, size_t message_len)
{
    if (message == NULL || message_len == 0)
        return SCRAM_ERROR_MALFORMED;
    if (message_len > LIMIT_SCRAM_MESSAGE_BYTES_MAX)
        return SCRAM_ERROR_TOO_LONG;
    return SCRAM_OK;
}

/* ----------------------------------------------------------------- writer */

typedef struct writer {
    char *buffer;
    size_t capacity;
    size_t length;
    bool overflow;
} writer;

static void put(writer *w, const void *bytes, size_t length)
{
    if (w->overflow || w->capacity - w->length < length) {
        w->overflow = true;
        return;
    }
    memcpy(w->buffer + w->length, bytes, length);
    w->length += length;
}

static void put_string(writer *w, const char *text)
{
    put(w, text, strlen(text));
}

static void put_slice(writer *w, scram_slice slice)
{
    put(w, slice.ptr, slice.len);
}

static void put_base64(writer *w, const unsigned char *bytes, size_t length)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < length; i += 3) {
        size_t left = length - i;
        uint32_t group = (uint32_t)bytes[i] << 16;
        if (left > 1)
            group |= (uint32_t)bytes[i + 1] << 8;
        if (left > 2)
            group |= bytes[i + 2];
        char quad[4] = {alphabet[(group >> 18) & 63], alphabet[(group >> 12) & 63],
                        left > 1 ? alphabet[(group >> 6) & 63] : '=',
                        left > 2 ? alphabet[group & 63] : '='};
        put(w, quad, 4);
    }
}

static void put_u32(writer *w, uint32_t value)
{
    char digits[10];
    size_t count = 0;
    do {
        digits[sizeof digits - 1 - count++] = (char)('0' + value % 10);
        value /= 10;
    } while (value > 0);
    put(w, digits + sizeof digits - count, count);
}

/* Escapes a saslname through the writer (the name is known valid). */
static void put_saslname(writer *w, const char *name, size_t length)
{
    for (size_t i = 0; i < length; i++) {
        if (name[i] == ',')
            put_string(w, "=2C");
        else if (name[i] == '=')
            put_string(w, "=3D");
        else
            put(w, name + i, 1);
    }
}

static scram_result writer_finish(const writer *w, size_t *out_len)
{
    if (w->overflow)
        return SCRAM_ERROR_BUFFER;
    if (w->length > LIMIT_SCRAM_MESSAGE_BYTES_MAX)
        return SCRAM_ERROR_TOO_LONG;
    *out_len = w->length;
    return SCRAM_OK;
}

/* ----------------------------------------------------------------- names */

scram_result scram_saslname_escape(const char *name, size_t name_len, char *out, size_t capacity,
                                   size_t *out_len)
{
    if (name_len == 0 || !text_valid(name, name_len))
        return SCRAM_ERROR_BAD_ESCAPE;
    writer w = {out, capacity, 0, false};
    put_saslname(&w, name, name_len);
    if (w.overflow)
        return SCRAM_ERROR_BUFFER;
    *out_len = w.length;
    return SCRAM_OK;
}

scram_result scram_saslname_unescape(const char *escaped, size_t escaped_len, char *out,
                                     size_t capacity, size_t *out_len)
{
    if (!saslname_valid((scram_slice){escaped, escaped_len}))
        return SCRAM_ERROR_BAD_ESCAPE;
    size_t length = 0;
    for (size_t i = 0; i < escaped_len; i++) {
        char c = escaped[i];
        if (c == '=') {
            c = escaped[i + 1] == '2' ? ',' : '=';
            i += 2;
        }
        if (length == capacity)
            return SCRAM_ERROR_BUFFER;
        out[length++] = c;
    }
    *out_len = length;
    return SCRAM_OK;
}

scram_result scram_nonce_make(size_t random_bytes, char *out, size_t capacity, size_t *out_len)
{
    unsigned char random[LIMIT_SCRAM_NONCE_BYTES_MAX];
    if (random_bytes == 0)
        return SCRAM_ERROR_BAD_NONCE;
    if ((random_bytes + 2) / 3 * 4 > LIMIT_SCRAM_NONCE_BYTES_MAX)
        return SCRAM_ERROR_TOO_LONG;
    if (!RAND_bytes(random, random_bytes))
        return SCRAM_ERROR_CRYPTO;
    writer w = {out, capacity, 0, false};
    put_base64(&w, random, random_bytes);
    return writer_finish(&w, out_len);
}

/* ----------------------------------------------------------- client-first */

scram_result scram_client_first_build(const scram_client_first_params *params, char *out,
                                      size_t capacity, size_t *out_len, size_t *gs2_header_len)
{
    scram_result result = nonce_check((scram_slice){params->nonce, params->nonce_len});
    if (result != SCRAM_OK)
        return result;
    if (params->username_len == 0 || !text_valid(params->username, params->username_len) ||
        (params->authzid != NULL &&
         (params->authzid_len == 0 || !text_valid(params->authzid, params->authzid_len))))
        return SCRAM_ERROR_BAD_ESCAPE;
    writer w = {out, capacity, 0, false};
    if (params->cbind == SCRAM_CBIND_REQUIRED) {
        if (params->cbind_name == NULL ||
            !cbind_name_valid((scram_slice){params->cbind_name, strlen(params->cbind_name)}))
            return SCRAM_ERROR_MALFORMED;
        put_string(&w, "p=");
        put_string(&w, params->cbind_name);
    } else {
        put_string(&w, params->cbind == SCRAM_CBIND_NOT_OFFERED ? "y" : "n");
    }
    put_string(&w, ",");
    if (params->authzid != NULL) {
        put_string(&w, "a=");
        put_saslname(&w, params->authzid, params->authzid_len);
    }
    put_string(&w, ",");
    size_t header = w.length;
    put_string(&w, "n=");
    put_saslname(&w, params->username, params->username_len);
    put_string(&w, ",r=");
    put(&w, params->nonce, params->nonce_len);
    result = writer_finish(&w, out_len);
    if (result == SCRAM_OK)
        *gs2_header_len = header;
    return result;
}

/* gs2-cbind-flag "," [authzid] "," */
static scram_result parse_gs2_header(cursor *c, scram_client_first *out)
{
    scram_slice flag, authzid;
    if (!next_field(c, &flag) || c->done)
        return SCRAM_ERROR_MALFORMED;
    out->cbind_name = (scram_slice){flag.ptr, 0};
    if (flag.len == 1 && flag.ptr[0] == 'n') {
        out->cbind = SCRAM_CBIND_NONE;
    } else if (flag.len == 1 && flag.ptr[0] == 'y') {
        out->cbind = SCRAM_CBIND_NOT_OFFERED;
    } else if (flag.len > 2 && flag.ptr[0] == 'p' && flag.ptr[1] == '=') {
        out->cbind = SCRAM_CBIND_REQUIRED;
        out->cbind_name = (scram_slice){flag.ptr + 2, flag.len - 2};
        if (!cbind_name_valid(out->cbind_name))
            return SCRAM_ERROR_MALFORMED;
    } else {
        return SCRAM_ERROR_MALFORMED;
    }
    if (!next_field(c, &authzid) || c->done)
        return SCRAM_ERROR_MALFORMED;
    out->authzid = (scram_slice){authzid.ptr, 0};
    if (authzid.len > 0) {
        if (authzid.len < 2 || authzid.ptr[0] != 'a' || authzid.ptr[1] != '=')
            return SCRAM_ERROR_MALFORMED;
        out->authzid = (scram_slice){authzid.ptr + 2, authzid.len - 2};
        if (!saslname_valid(out->authzid))
            return SCRAM_ERROR_BAD_ESCAPE;
    }
    return SCRAM_OK;
}

scram_result scram_client_first_parse(const char *message, size_t message_len,
                                      scram_client_first *out)
{
    cursor c;
    scram_result result = message_check(message, message_len);
    if (result != SCRAM_OK)
        return result;
    cursor_init(&c, message, message_len);
    result = parse_gs2_header(&c, out);
    if (result != SCRAM_OK)
        return result;
    out->gs2_header = (scram_slice){message, c.position};
    out->bare = (scram_slice){message + c.position, message_len - c.position};
    if (is_mandatory_extension(&c))
        return SCRAM_ERROR_EXTENSION;
    if (!take_attribute(&c, 'n', &out->username))
        return SCRAM_ERROR_MALFORMED;
    if (!saslname_valid(out->username))
        return SCRAM_ERROR_BAD_ESCAPE;
    if (!take_attribute(&c, 'r', &out->nonce))
        return SCRAM_ERROR_MALFORMED;
    result = nonce_check(out->nonce);
    if (result != SCRAM_OK)
        return result;
    return check_extensions(&c);
}

/* ----------------------------------------------------------- server-first */

scram_result scram_server_first_build(scram_slice client_nonce, scram_slice server_nonce,
                                      const unsigned char *salt, size_t salt_len,
                                      uint32_t iterations, char *out, size_t capacity,
                                      size_t *out_len)
{
    scram_result result = nonce_check(client_nonce);
    if (result == SCRAM_OK)
        result = nonce_check(server_nonce);
    if (result != SCRAM_OK)
        return result;
    if (client_nonce.len + server_nonce.len > LIMIT_SCRAM_NONCE_BYTES_MAX ||
        salt_len > LIMIT_SCRAM_SALT_BYTES_MAX)
        return SCRAM_ERROR_TOO_LONG;
    if (salt_len == 0)
        return SCRAM_ERROR_MALFORMED;
    if (iterations < LIMIT_SCRAM_ITERATIONS_MIN || iterations > LIMIT_SCRAM_ITERATIONS_MAX)
        return SCRAM_ERROR_ITERATIONS;
    writer w = {out, capacity, 0, false};
    put_string(&w, "r=");
    put_slice(&w, client_nonce);
    put_slice(&w, server_nonce);
    put_string(&w, ",s=");
    put_base64(&w, salt, salt_len);
    put_string(&w, ",i=");
    put_u32(&w, iterations);
    return writer_finish(&w, out_len);
}

/* iteration-count = posit-number, within the accepted range. */
static scram_result parse_iterations(scram_slice text, uint32_t *out)
{
    uint32_t value = 0;
    if (text.len == 0 || (text.len > 1 && text.ptr[0] == '0'))
        return SCRAM_ERROR_MALFORMED;
    for (size_t i = 0; i < text.len; i++) {
        if (text.ptr[i] < '0' || text.ptr[i] > '9')
            return SCRAM_ERROR_MALFORMED;
        if (value <= LIMIT_SCRAM_ITERATIONS_MAX)
            value = value * 10 + (uint32_t)(text.ptr[i] - '0');
    }
    if (value < LIMIT_SCRAM_ITERATIONS_MIN || value > LIMIT_SCRAM_ITERATIONS_MAX)
        return SCRAM_ERROR_ITERATIONS;
    *out = value;
    return SCRAM_OK;
}

scram_result scram_server_first_parse(const char *message, size_t message_len,
                                      scram_slice client_nonce, scram_server_first *out)
{
    cursor c;
    scram_slice salt, iterations;
    scram_result result = message_check(message, message_len);
    if (result != SCRAM_OK)
        return result;
    cursor_init(&c, message, message_len);
    if (is_mandatory_extension(&c))
        return SCRAM_ERROR_EXTENSION;
    if (!take_attribute(&c, 'r', &out->nonce))
        return SCRAM_ERROR_MALFORMED;
    result = nonce_check(out->nonce);
    if (result != SCRAM_OK)
        return result;
    if (out->nonce.len <= client_nonce.len ||
        memcmp(out->nonce.ptr, client_nonce.ptr, client_nonce.len) != 0)
        return SCRAM_ERROR_NONCE_MISMATCH;
    if (!take_attribute(&c, 's', &salt))
        return SCRAM_ERROR_MALFORMED;
    result = base64_decode(salt, out->salt, sizeof out->salt, &out->salt_len);
    if (result != SCRAM_OK)
        return result;
    if (!take_attribute(&c, 'i', &iterations))
        return SCRAM_ERROR_MALFORMED;
    result = parse_iterations(iterations, &out->iterations);
    if (result != SCRAM_OK)
        return result;
    return check_extensions(&c);
}

/* ----------------------------------------------------------- client-final */

scram_result scram_client_final_without_proof_build(scram_slice gs2_header,
                                                    const unsigned char *cbind_data,
                                                    size_t cbind_data_len, scram_slice nonce,
                                                    char *out, size_t capacity, size_t *out_len)
{
    unsigned char binding[LIMIT_SCRAM_MESSAGE_BYTES_MAX];
    scram_result result = nonce_check(nonce);
    if (result != SCRAM_OK)
        return result;
    if (gs2_header.len == 0)
        return SCRAM_ERROR_MALFORMED;
    if (gs2_header.len > sizeof binding || cbind_data_len > sizeof binding - gs2_header.len)
        return SCRAM_ERROR_TOO_LONG;
    memcpy(binding, gs2_header.ptr, gs2_header.len);
    if (cbind_data_len > 0)
        memcpy(binding + gs2_header.len, cbind_data, cbind_data_len);
    writer w = {out, capacity, 0, false};
    put_string(&w, "c=");
    put_base64(&w, binding, gs2_header.len + cbind_data_len);
    put_string(&w, ",r=");
    put_slice(&w, nonce);
    return writer_finish(&w, out_len);
}

scram_result scram_client_proof(const scram_keys *keys, const scram_auth_message *message,
                                unsigned char proof[SCRAM_HASH_BYTES_MAX])
{
    unsigned char signature[SCRAM_HASH_BYTES_MAX];
    scram_result result = auth_hmac(keys->hash, keys->stored_key, message, signature);
    if (result != SCRAM_OK)
        return result;
    for (size_t i = 0; i < scram_hash_bytes(keys->hash); i++)
        proof[i] = keys->client_key[i] ^ signature[i];
    return SCRAM_OK;
}

scram_result scram_client_final_build(const scram_keys *keys, scram_slice gs2_header,
                                      const unsigned char *cbind_data, size_t cbind_data_len,
                                      scram_slice nonce, scram_slice client_first_bare,
                                      scram_slice server_first, char *out, size_t capacity,
                                      size_t *out_len, size_t *without_proof_len)
{
    unsigned char proof[SCRAM_HASH_BYTES_MAX];
    size_t length;
    scram_result result = scram_client_final_without_proof_build(
        gs2_header, cbind_data, cbind_data_len, nonce, out, capacity, &length);
    if (result != SCRAM_OK)
        return result;
    scram_auth_message message = {client_first_bare, server_first, {out, length}};
    result = scram_client_proof(keys, &message, proof);
    if (result != SCRAM_OK)
        return result;
    writer w = {out, capacity, length, false};
    put_string(&w, ",p=");
    put_base64(&w, proof, scram_hash_bytes(keys->hash));
    result = writer_finish(&w, out_len);
    if (result == SCRAM_OK)
        *without_proof_len = length;
    return result;
}

scram_result scram_client_final_parse(const char *message, size_t message_len,
                                      scram_client_final *out)
{
    unsigned char binding[LIMIT_SCRAM_MESSAGE_BYTES_MAX];
    size_t binding_len;
    cursor c;
    scram_result result = message_check(message, message_len);
    if (result != SCRAM_OK)
        return result;
    /* The proof is the last attribute; extensions sit before it. */
    const char *last_comma = memrchr(message, ',', message_len);
    if (last_comma == NULL)
        return SCRAM_ERROR_MALFORMED;
    out->without_proof = (scram_slice){message, (size_t)(last_comma - message)};
    cursor_init(&c, last_comma + 1, message_len - out->without_proof.len - 1);
    scram_slice proof;
    if (!take_attribute(&c, 'p', &proof))
        return SCRAM_ERROR_MALFORMED;
    result = base64_decode(proof, out->proof, sizeof out->proof, &out->proof_len);
    if (result != SCRAM_OK)
        return result;
    cursor_init(&c, message, out->without_proof.len);
    if (!take_attribute(&c, 'c', &out->channel_binding))
        return SCRAM_ERROR_MALFORMED;
    result = base64_decode(out->channel_binding, binding, sizeof binding, &binding_len);
    if (result != SCRAM_OK)
        return result;
    if (!take_attribute(&c, 'r', &out->nonce))
        return SCRAM_ERROR_MALFORMED;
    result = nonce_check(out->nonce);
    if (result != SCRAM_OK)
        return result;
    return check_extensions(&c);
}

scram_result scram_client_final_check(const scram_client_final *final, scram_slice nonce,
                                      scram_slice gs2_header, const unsigned char *cbind_data,
                                      size_t cbind_data_len)
{
    unsigned char binding[LIMIT_SCRAM_MESSAGE_BYTES_MAX];
    size_t binding_len;
    if (final->nonce.len != nonce.len || memcmp(final->nonce.ptr, nonce.ptr, nonce.len) != 0)
        return SCRAM_ERROR_NONCE_MISMATCH;
    scram_result result =
        base64_decode(final->channel_binding, binding, sizeof binding, &binding_len);
    if (result != SCRAM_OK)
        return result;
    if (binding_len != gs2_header.len + cbind_data_len ||
        memcmp(binding, gs2_header.ptr, gs2_header.len) != 0 ||
        (cbind_data_len > 0 && memcmp(binding + gs2_header.len, cbind_data, cbind_data_len) != 0))
        return SCRAM_ERROR_CHANNEL_BINDING;
    return SCRAM_OK;
}

scram_result scram_server_verify_proof(scram_hash hash, const unsigned char *stored_key,
                                       const unsigned char *server_key,
                                       const scram_auth_message *message,
                                       const unsigned char *proof, size_t proof_len,
                                       unsigned char server_signature[SCRAM_HASH_BYTES_MAX])
{
    unsigned char signature[SCRAM_HASH_BYTES_MAX], client_key[SCRAM_HASH_BYTES_MAX];
    unsigned char computed[SCRAM_HASH_BYTES_MAX];
    size_t bytes = scram_hash_bytes(hash);
    unsigned int length;
    if (proof_len != bytes)
        return SCRAM_ERROR_NOT_AUTHORIZED;
    scram_result result = auth_hmac(hash, stored_key, message, signature);
    if (result != SCRAM_OK)
        return result;
    for (size_t i = 0; i < bytes; i++)
        client_key[i] = proof[i] ^ signature[i];
    if (!EVP_Digest(client_key, bytes, computed, &length, hash_md(hash), NULL))
        result = SCRAM_ERROR_CRYPTO;
    else if (CRYPTO_memcmp(computed, stored_key, bytes) != 0)
        result = SCRAM_ERROR_NOT_AUTHORIZED;
    OPENSSL_cleanse(client_key, sizeof client_key);
    if (result != SCRAM_OK)
        return result;
    return auth_hmac(hash, server_key, message, server_signature);
}

/* ----------------------------------------------------------- server-final */

scram_result scram_server_final_build(scram_hash hash, const unsigned char *server_signature,
                                      char *out, size_t capacity, size_t *out_len)
{
    writer w = {out, capacity, 0, false};
    put_string(&w, "v=");
    put_base64(&w, server_signature, scram_hash_bytes(hash));
    return writer_finish(&w, out_len);
}

scram_result scram_server_final_error_build(scram_result failure, char *out, size_t capacity,
                                            size_t *out_len)
{
    writer w = {out, capacity, 0, false};
    put_string(&w, "e=");
    put_string(&w, scram_result_server_error(failure));
    return writer_finish(&w, out_len);
}

scram_result scram_server_final_parse(const char *message, size_t message_len,
                                      scram_server_final *out)
{
    cursor c;
    scram_slice verifier;
    scram_result result = message_check(message, message_len);
    if (result != SCRAM_OK)
        return result;
    cursor_init(&c, message, message_len);
    out->is_error = message_len >= 2 && message[0] == 'e';
    out->verifier_len = 0;
    out->error = (scram_slice){message, 0};
    if (out->is_error) {
        if (!take_attribute(&c, 'e', &out->error) || out->error.len == 0 ||
            !text_valid(out->error.ptr, out->error.len))
            return SCRAM_ERROR_MALFORMED;
    } else {
        if (!take_attribute(&c, 'v', &verifier))
            return SCRAM_ERROR_MALFORMED;
        result = base64_decode(verifier, out->verifier, sizeof out->verifier, &out->verifier_len);
        if (result != SCRAM_OK)
            return result;
    }
    return check_extensions(&c);
}

scram_result scram_client_verify_server(const scram_keys *keys, const scram_auth_message *message,
                                        const scram_server_final *final)
{
    unsigned char expected[SCRAM_HASH_BYTES_MAX];
    size_t bytes = scram_hash_bytes(keys->hash);
    if (final->is_error)
        return SCRAM_ERROR_SERVER_ERROR;
    if (final->verifier_len != bytes)
        return SCRAM_ERROR_NOT_AUTHORIZED;
    scram_result result = auth_hmac(keys->hash, keys->server_key, message, expected);
    if (result != SCRAM_OK)
        return result;
    return CRYPTO_memcmp(expected, final->verifier, bytes) == 0 ? SCRAM_OK
                                                                : SCRAM_ERROR_NOT_AUTHORIZED;
}
