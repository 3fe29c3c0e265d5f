/*
 * make_xml_seeds.c: writes the fuzz seed corpus for fuzz_xml from the
 * real-traffic corpus (one stanza per line): one file per stanza, each a
 * client stream header plus the stanza, prefixed by the byte fuzz_xml reads
 * as its piece-cutting choice. Usage: make_xml_seeds stanzas.txt out_dir.
 * A missing corpus is not an error: the checked-in seeds still run.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define HEADER                                                                                     \
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "                                   \
    "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"

int main(int argc, char **argv)
{
    static char line[1 << 16];
    char path[4096];
    if (argc != 3) {
        fprintf(stderr, "usage: %s stanzas.txt out_dir\n", argv[0]);
        return 2;
    }
    /* The directory must exist either way: the fuzz test names it. */
    mkdir(argv[2], 0755);
    FILE *in = fopen(argv[1], "rb");
    if (in == NULL) {
        printf("corpus %s absent: fuzzing the checked-in seeds only\n", argv[1]);
        return 0;
    }
    unsigned count = 0;
    while (fgets(line, sizeof line, in) != NULL) {
        size_t length = strcspn(line, "\n");
        snprintf(path, sizeof path, "%s/stanza-%04u", argv[2], count);
        FILE *out = fopen(path, "wb");
        if (out == NULL) {
            perror(path);
            fclose(in);
            return 1;
        }
        fputc((int)(count % 61u), out);
        fputs(HEADER, out);
        fwrite(line, 1, length, out);
        fclose(out);
        count++;
    }
    fclose(in);
    printf("wrote %u seeds to %s\n", count, argv[2]);
    return 0;
}
