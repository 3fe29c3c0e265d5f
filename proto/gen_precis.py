#!/usr/bin/python3
"""gen_precis.py: generate the PRECIS code point tables from the Unicode data.

Usage: gen_precis.py UNICODE_DIR MAX_AGE OUTPUT

Reads the Unicode Character Database as Debian's `unicode-data` package
installs it (/usr/share/unicode) and writes a C header with:

  - the PRECIS derived property of every code point (RFC 8264 section 8,
    from the categories of RFC 8264 section 9 and RFC 5892 section 2),
  - what the context rules of RFC 5892 appendix A need (canonical combining
    class Virama, Joining_Type, the scripts Greek, Hebrew, Hiragana,
    Katakana and Han) and the Bidi_Class the Bidi Rule (RFC 5893) needs,
  - whether a code point is a space separator (Zs), for OpaqueString's
    additional mapping rule (RFC 8265 section 4.2.1),
  - the width mapping of fullwidth and halfwidth code points to their
    <wide> and <narrow> decompositions (RFC 8265 section 3.3.1).

MAX_AGE caps the Unicode version: a code point assigned after it counts as
unassigned. Normalization and case mapping come from libunistring, which
carries its own (possibly older) Unicode version; treating newer code points
as unassigned keeps the two in step, so that no code point is allowed whose
case mapping or composition the library does not know.

The tables are two-stage: a code point's high bits pick a 128-entry block,
identical blocks are stored once, and each entry indexes a small table of
distinct records. Nothing here is typed in from Unicode: only the
Exceptions list of RFC 5892 section 2.6 is (it is RFC data, not Unicode
data), and the BackwardCompatible list, which is empty.
"""
import os
import sys

CODE_POINTS = 0x110000
BLOCK_SHIFT = 7
BLOCK = 1 << BLOCK_SHIFT

# RFC 8264 section 8 derived property values, as the C enum numbers them.
PVALID, FREE_PVAL, CONTEXTJ, CONTEXTO, DISALLOWED, UNASSIGNED = range(6)

# RFC 5892 section 2.6 (Exceptions, category F), referenced by RFC 8264
# section 9.6. FREE_PVAL never occurs here.
EXCEPTIONS = {
    0x00DF: PVALID, 0x03C2: PVALID, 0x06FD: PVALID, 0x06FE: PVALID,
    0x0F0B: PVALID, 0x3007: PVALID,
    0x00B7: CONTEXTO, 0x0375: CONTEXTO, 0x05F3: CONTEXTO, 0x05F4: CONTEXTO,
    0x30FB: CONTEXTO,
    0x0640: DISALLOWED, 0x07FA: DISALLOWED, 0x302E: DISALLOWED,
    0x302F: DISALLOWED, 0x3031: DISALLOWED, 0x3032: DISALLOWED,
    0x3033: DISALLOWED, 0x3034: DISALLOWED, 0x3035: DISALLOWED,
    0x303B: DISALLOWED,
}
for cp in list(range(0x0660, 0x066A)) + list(range(0x06F0, 0x06FA)):
    EXCEPTIONS[cp] = CONTEXTO

# RFC 5892 section 2.7 (BackwardCompatible, category G): empty.
BACKWARD_COMPATIBLE = {}

BIDI_CLASSES = ["L", "R", "AL", "EN", "ES", "ET", "AN", "CS", "NSM", "BN", "B",
                "S", "WS", "ON", "LRE", "LRO", "RLE", "RLO", "PDF", "LRI",
                "RLI", "FSI", "PDI"]
JOINING_TYPES = ["U", "C", "D", "L", "R", "T"]
SCRIPTS = {"Greek": 1, "Hebrew": 2, "Hiragana": 3, "Katakana": 3, "Han": 3}


def ranges(path, with_missing=False):
    """Yields (first, last, fields) for each data line of a UCD file."""
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            fields = [field.strip() for field in line.split(";")]
            span = fields[0].split("..")
            first = int(span[0], 16)
            last = int(span[1], 16) if len(span) > 1 else first
            yield first, last, fields[1:]


def fill(table, path, convert, field=0):
    for first, last, fields in ranges(path):
        value = convert(fields[field])
        for cp in range(first, last + 1):
            table[cp] = value


def property_set(path, name):
    members = set()
    for first, last, fields in ranges(path):
        if fields[0] == name:
            members.update(range(first, last + 1))
    return members


def version(text):
    return tuple(int(part) for part in text.split("."))


def load(unicode_dir, max_age):
    def path(*names):
        return os.path.join(unicode_dir, *names)

    category = ["Cn"] * CODE_POINTS
    fill(category, path("extracted", "DerivedGeneralCategory.txt"), str)
    age_ok = [False] * CODE_POINTS
    for first, last, fields in ranges(path("DerivedAge.txt")):
        if version(fields[0]) <= max_age:
            for cp in range(first, last + 1):
                age_ok[cp] = True
    for cp in range(CODE_POINTS):
        if not age_ok[cp]:
            category[cp] = "Cn"
    bidi = ["L"] * CODE_POINTS
    fill(bidi, path("extracted", "DerivedBidiClass.txt"), str)
    combining = [0] * CODE_POINTS
    fill(combining, path("extracted", "DerivedCombiningClass.txt"), int)
    joining = ["U"] * CODE_POINTS
    fill(joining, path("extracted", "DerivedJoiningType.txt"), str)
    script = [0] * CODE_POINTS
    fill(script, path("Scripts.txt"), lambda name: SCRIPTS.get(name, 0))
    sets = {
        "noncharacter": property_set(path("PropList.txt"), "Noncharacter_Code_Point"),
        "join_control": property_set(path("PropList.txt"), "Join_Control"),
        "default_ignorable": property_set(path("DerivedCoreProperties.txt"),
                                          "Default_Ignorable_Code_Point"),
        "old_hangul_jamo": set(),
        "has_compat": set(),
    }
    for first, last, fields in ranges(path("HangulSyllableType.txt")):
        if fields[0] in ("L", "V", "T"):
            sets["old_hangul_jamo"].update(range(first, last + 1))
    # HasCompat (RFC 8264 section 9.17): toNFKC(cp) != cp. For a single
    # code point that is exactly NFKC_Quick_Check=No: such a code point
    # cannot occur in NFKC text, and every other one is its own NFKC.
    for first, last, fields in ranges(path("DerivedNormalizationProps.txt")):
        if fields[0] == "NFKC_QC" and fields[1] == "N":
            sets["has_compat"].update(range(first, last + 1))
    width = {}
    with open(path("UnicodeData.txt"), encoding="utf-8") as lines:
        for line in lines:
            fields = line.split(";")
            decomposition = fields[5].split()
            if decomposition and decomposition[0] in ("<wide>", "<narrow>"):
                cp = int(fields[0], 16)
                if age_ok[cp]:
                    assert len(decomposition) == 2, line
                    width[cp] = int(decomposition[1], 16)
                    # precis.c maps into a buffer the size of the input: a mapping
                    # must not lengthen a code point's encoding.
                    assert len(chr(width[cp]).encode()) <= len(chr(cp).encode()), line
    return category, bidi, combining, joining, script, sets, width


def derived_property(cp, category, sets):
    """RFC 8264 section 8, in its order."""
    if cp in EXCEPTIONS:
        return EXCEPTIONS[cp]
    if cp in BACKWARD_COMPATIBLE:
        return BACKWARD_COMPATIBLE[cp]
    gc = category[cp]
    if gc == "Cn" and cp not in sets["noncharacter"]:
        return UNASSIGNED
    if 0x21 <= cp <= 0x7E:
        return PVALID
    if cp in sets["join_control"]:
        return CONTEXTJ
    if cp in sets["old_hangul_jamo"]:
        return DISALLOWED
    if cp in sets["default_ignorable"] or cp in sets["noncharacter"]:
        return DISALLOWED
    if gc == "Cc":
        return DISALLOWED
    if cp in sets["has_compat"]:
        return FREE_PVAL
    if gc in ("Ll", "Lu", "Lo", "Nd", "Lm", "Mn", "Mc"):
        return PVALID
    if gc in ("Lt", "Nl", "No", "Me"):
        return FREE_PVAL
    if gc == "Zs":
        return FREE_PVAL
    if gc in ("Sm", "Sc", "Sk", "So"):
        return FREE_PVAL
    if gc in ("Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po"):
        return FREE_PVAL
    return DISALLOWED


def records(unicode_dir, max_age):
    category, bidi, combining, joining, script, sets, width = load(unicode_dir, max_age)
    per_code_point = []
    for cp in range(CODE_POINTS):
        flags = JOINING_TYPES.index(joining[cp])
        flags |= (combining[cp] == 9) << 3
        flags |= script[cp] << 4
        flags |= (category[cp] == "Zs") << 6
        per_code_point.append((derived_property(cp, category, sets),
                               BIDI_CLASSES.index(bidi[cp]), flags))
    return per_code_point, width


def emit(per_code_point, width, out):
    record_index = {}
    blocks = {}
    stage1 = []
    stage2 = []
    for start in range(0, CODE_POINTS, BLOCK):
        block = []
        for record in per_code_point[start:start + BLOCK]:
            block.append(record_index.setdefault(record, len(record_index)))
        key = tuple(block)
        if key not in blocks:
            blocks[key] = len(blocks)
            stage2.extend(block)
        stage1.append(blocks[key])
    entry_type = "uint8_t" if len(record_index) <= 256 else "uint16_t"
    block_type = "uint8_t" if len(blocks) <= 256 else "uint16_t"

    def array(kind, name, values, per_line=16):
        out.write("static const %s %s[%d] = {\n" % (kind, name, len(values)))
        for i in range(0, len(values), per_line):
            out.write("    " + ", ".join(str(v) for v in values[i:i + per_line]) + ",\n")
        out.write("};\n\n")

    out.write("/* Generated by proto/gen_precis.py from the Unicode data files; do not\n"
              " * edit. Included by proto/precis.c only. */\n\n")
    out.write("#define PRECIS_BLOCK_SHIFT %d\n\n" % BLOCK_SHIFT)
    array(block_type, "precis_stage1", stage1)
    array(entry_type, "precis_stage2", stage2)
    out.write("static const precis_record precis_records[%d] = {\n" % len(record_index))
    for record in sorted(record_index, key=record_index.get):
        out.write("    {%d, %d, %d},\n" % record)
    out.write("};\n\n")
    out.write("static const precis_width_pair precis_width_pairs[%d] = {\n" % len(width))
    for cp in sorted(width):
        out.write("    {0x%04X, 0x%04X},\n" % (cp, width[cp]))
    out.write("};\n")


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: gen_precis.py UNICODE_DIR MAX_AGE OUTPUT")
    unicode_dir, max_age, output = sys.argv[1], version(sys.argv[2]), sys.argv[3]
    per_code_point, width = records(unicode_dir, max_age)
    partial = output + ".partial"
    with open(partial, "w", encoding="utf-8") as out:
        emit(per_code_point, width, out)
    os.replace(partial, output)


if __name__ == "__main__":
    main()
