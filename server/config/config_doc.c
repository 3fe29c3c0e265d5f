/*
 * config_doc.c: starling-config-doc, the generator of deploy/CONFIG.md.
 *
 * With no argument it writes the reference of every configuration key to
 * stdout. With --check FILE it compares FILE with what it would write and
 * exits 1 when they differ, which is how a test keeps the checked-in
 * reference from drifting away from the schema table.
 */
#include "server/config/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads the whole of path (a checked-in document, far under this bound). */
#define CONFIG_DOC_BYTES_MAX (1024u * 1024u)

static int check(const char *path)
{
    char *generated = NULL;
    size_t generated_length = 0;
    FILE *memory = open_memstream(&generated, &generated_length);
    if (memory == NULL || config_write_reference(memory) != 0 || fclose(memory) != 0) {
        fprintf(stderr, "starling-config-doc: cannot generate the reference\n");
        return 2;
    }
    FILE *file = fopen(path, "rb");
    char *existing = malloc(CONFIG_DOC_BYTES_MAX);
    size_t existing_length = 0;
    if (file != NULL && existing != NULL)
        existing_length = fread(existing, 1, CONFIG_DOC_BYTES_MAX, file);
    int status = 0;
    if (file == NULL || existing == NULL) {
        fprintf(stderr, "starling-config-doc: cannot read %s\n", path);
        status = 2;
    } else if (existing_length != generated_length ||
               memcmp(existing, generated, generated_length) != 0) {
        fprintf(stderr,
                "starling-config-doc: %s differs from the schema table; regenerate it with "
                "starling-config-doc > %s\n",
                path, path);
        status = 1;
    } else {
        printf("%s: up to date\n", path);
    }
    if (file != NULL)
        fclose(file);
    free(existing);
    free(generated);
    return status;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--check") == 0)
        return check(argv[2]);
    if (argc != 1) {
        fprintf(stderr, "usage: starling-config-doc [--check FILE]\n");
        return 2;
    }
    return config_write_reference(stdout) == 0 && fflush(stdout) == 0 ? 0 : 1;
}
