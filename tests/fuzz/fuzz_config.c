/*
 * fuzz_config.c: libFuzzer target for the configuration loader.
 *
 * The input is a YAML file, except that when it starts with "STARLING_" its
 * first line is taken as one environment variable (NAME=value) and the rest
 * as the file, so the environment path is fuzzed beside the YAML walk. The
 * load either succeeds or fails with a message; it must never crash, leak
 * or read out of bounds, and a failed load must leave the struct as it was.
 */
#include "server/config/config.h"

#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Room for one environment entry taken from the input. */
#define FUZZ_VARIABLE_BYTES 512u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static config loaded;
    static config before;
    static const char prefix[] = "STARLING_";
    char variable[FUZZ_VARIABLE_BYTES];
    char *environment[2] = {NULL, NULL};
    const char *text = (const char *)data;
    if (size >= sizeof prefix - 1 && memcmp(data, prefix, sizeof prefix - 1) == 0) {
        const uint8_t *newline = memchr(data, '\n', size);
        size_t length = newline != NULL ? (size_t)(newline - data) : size;
        if (length >= sizeof variable)
            return 0;
        memcpy(variable, data, length);
        variable[length] = '\0';
        environment[0] = variable;
        size_t consumed = newline != NULL ? length + 1 : length;
        text += consumed;
        size -= consumed;
    }
    memset(&loaded, 0x5a, sizeof loaded);
    memcpy(&before, &loaded, sizeof before);
    config_error error;
    if (config_load_buffer(&loaded, "fuzz.yaml", text, size, environment, &error) != 0) {
        assert(memchr(error.message, '\0', sizeof error.message) != NULL);
        assert(memcmp(&loaded, &before, sizeof before) == 0);
    } else {
        assert(loaded.domain_count >= 1 && loaded.domain_count <= LIMIT_CONFIG_DOMAINS_MAX);
        assert(loaded.listener_count <= LIMIT_LISTENERS_PER_REACTOR);
    }
    return 0;
}
