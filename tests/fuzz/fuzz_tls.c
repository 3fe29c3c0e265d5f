/*
 * fuzz_tls.c: libFuzzer target for what a client sends a server TLS
 * session (server/tls) before and during its handshake.
 *
 * The first input byte picks the mode (bit 0: direct TLS, where the ALPN
 * callback walks the offered list; else STARTTLS) and how the rest is cut
 * before it reaches tls_session_receive (bits 1-2: whole, 1-byte, 7-byte
 * or 300-byte pieces). Whatever the bytes, a call must return one of the
 * documented results, a failed session must say why, and no session may
 * report established with channel bindings it cannot have. BoringSSL
 * itself is not instrumented; our BIO, callbacks and loops are. Seeds
 * (seeds-tls/) are ClientHellos of a BoringSSL client with and without
 * SNI and ALPN, behind each mode byte.
 */
#include <ftw.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/tls/cert.h"
#include "server/tls/tls.h"

static tls_context *context;
static uint8_t scratch[LIMIT_TLS_PLAINTEXT_BUFFER_BYTES];

static bool on_ciphertext(void *argument, const uint8_t *bytes, size_t length)
{
    size_t *total = argument;
    if (length == 0 || bytes == NULL)
        abort();
    *total += length;
    return true;
}

static bool on_plaintext(void *argument, const uint8_t *bytes, size_t length)
{
    (void)argument;
    if (length == 0 || length > sizeof scratch || bytes != scratch)
        abort();
    return true;
}

static int remove_entry(const char *path, const struct stat *status, int type, struct FTW *walk)
{
    (void)status;
    (void)type;
    (void)walk;
    return remove(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char directory[] = "/tmp/fuzz_tls_XXXXXX";
    tls_cert_paths paths;
    bool generated = false;
    char error[TLS_ERROR_BYTES] = "";
    if (mkdtemp(directory) == NULL ||
        !tls_cert_self_signed(directory, "a.example", &paths, &generated, error, sizeof error))
        abort();
    tls_certificate certificate = {"a.example", paths.cert_file, paths.key_file};
    context = tls_context_create(&certificate, 1, error, sizeof error);
    if (context == NULL)
        abort();
    nftw(directory, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t pieces[] = {SIZE_MAX, 1, 7, 300};
    if (size == 0)
        return 0;
    tls_mode mode = (data[0] & 1) != 0 ? TLS_MODE_DIRECT : TLS_MODE_STARTTLS;
    size_t piece = pieces[(data[0] >> 1) & 3];
    data++;
    size--;
    tls_session *session = tls_session_create(context, mode);
    if (session == NULL)
        return 0;
    size_t sent = 0;
    tls_io io = {.plaintext = scratch,
                 .plaintext_capacity = sizeof scratch,
                 .argument = &sent,
                 .on_ciphertext = on_ciphertext,
                 .on_plaintext = on_plaintext};
    tls_result result = TLS_OK;
    for (size_t at = 0; at < size && result == TLS_OK; at += piece) {
        size_t length = size - at < piece ? size - at : piece;
        result = tls_session_receive(session, data + at, length, &io);
    }
    if (result != TLS_OK && result != TLS_CLOSED && result != TLS_ERROR)
        abort();
    if (result == TLS_ERROR && tls_session_error(session)[0] == '\0')
        abort();
    /* Random bytes cannot finish a handshake: the client Finished needs
     * keys only a real client has. */
    uint8_t binding[TLS_END_POINT_BYTES_MAX];
    if (tls_session_established(session) ||
        tls_session_server_end_point(session, binding, sizeof binding) != 0 ||
        tls_session_exporter(session, binding))
        abort();
    tls_session_destroy(session);
    return 0;
}
