/*
 * xml_tokenizer.c: the resumable scanner behind xml.h.
 *
 * The scanner is a state machine in the manner of nginx's HTTP parser: the
 * state names a position in the grammar, and each scan_* function runs
 * while bytes last, then either moves to the next state, yields an event,
 * fails, or saves its state and returns for more bytes. Nothing is ever
 * rescanned: a token cut by the end of a piece continues from the saved
 * state, and decisions that need a whole token (a name's colon, an end
 * tag's match, duplicate attributes, namespace binding) are taken once the
 * token ends, by reading its bytes through element_bytes(), which joins the
 * part held in the assembly buffer with the part in the current piece.
 *
 * Offsets in the index are relative to the element's '<', so the index
 * survives the element's bytes moving into the assembly buffer. When a
 * piece ends inside an element, park() appends the element's bytes from the
 * piece to the assembly buffer and parks the index beside them; the next
 * feed copies the index back into the (shared) scratch and carries on.
 *
 * Hot loops skip runs of ordinary bytes sixteen at a time (SSE2) and only
 * look at a byte individually when it may end the run: markup, a
 * reference, a control character or a byte of a multi-byte UTF-8 sequence.
 * A plain attribute within 32 bytes is read whole from masks of two loads
 * (quick_attribute), and the common end tag is matched directly.
 *
 * Most start tags bind nothing: an unprefixed element's namespace is left
 * for the view to resolve when asked (XML_NS_DEFAULT), and the attribute
 * checks (duplicates, declarations, prefixes) run only when what the scan
 * noted of the names (a prefix other than xml, a Bloom filter hit) says
 * they might find something. A prefixed name is still bound at once, so an
 * undeclared prefix fails where it did.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "proto/xml.h"
#include "proto/xml_index.h"

_Static_assert(LIMIT_STANZA_NODES_MAX < XML_NODE_NONE, "node ids are 16-bit");
_Static_assert(LIMIT_STANZA_ATTRIBUTES_MAX <= UINT16_MAX, "attribute ids are 16-bit");
_Static_assert(LIMIT_ELEMENT_ATTRIBUTES_MAX <= UINT8_MAX, "attribute counts are 8-bit");
_Static_assert(LIMIT_STANZA_DEPTH_MAX < UINT8_MAX, "depth is 8-bit");
_Static_assert(LIMIT_STREAM_HEADER_NAMESPACE_BYTES_MAX <= UINT8_MAX, "facts use 8-bit offsets");
_Static_assert(LIMIT_STREAM_HEADER_PREFIXES_MAX <= 8, "prefix use is an 8-bit mask");
_Static_assert(LIMIT_NAMESPACE_DECLS_MAX <= UINT16_MAX, "declaration counts are 16-bit");

enum phase { PHASE_START, PHASE_STREAM, PHASE_CLOSED, PHASE_ERROR };

enum state {
    ST_LEVEL0,       /* stream level: whitespace or '<' */
    ST_XMLDECL_NAME, /* after "<?" at the very start: matching "xml" */
    ST_XMLDECL_BODY, /* inside the XML declaration, up to "?>" */
    ST_LT,           /* after '<' */
    ST_BANG,         /* after "<!" */
    ST_CDATA_OPEN,   /* matching "CDATA[" */
    ST_CDATA,        /* CDATA section content */
    ST_STAG_NAME,    /* a start tag's name */
    ST_TAG_SPACE,    /* inside a start tag, between attributes */
    ST_ATTR_NAME,
    ST_ATTR_EQUALS, /* before '=' */
    ST_ATTR_QUOTE,  /* before the opening quote */
    ST_ATTR_VALUE,
    ST_EMPTY,     /* after the '/' of "/>" */
    ST_ETAG_NAME, /* an end tag's name */
    ST_ETAG_SPACE,
    ST_TEXT, /* element content */
    ST_REF,  /* a reference; return_state says where it sits */
};

/* scan_start_tag tells the states inside an attribute by their range. */
_Static_assert(ST_ATTR_VALUE == ST_ATTR_NAME + 3, "attribute states are contiguous");

enum reference_kind { REF_START, REF_HASH, REF_DECIMAL, REF_HEX, REF_NAME };

/* SCAN_DONE: a helper reached the end of its token; its caller carries on. */
enum scan_result { SCAN_CONTINUE, SCAN_SUSPEND, SCAN_EVENT, SCAN_ERROR, SCAN_DONE };

struct scan {
    xml_tokenizer *t;
    xml_scratch *x;
    const char *p;         /* next byte */
    const char *end;       /* last byte the element in progress may take, plus one */
    const char *piece_end; /* end of the fed piece */
    const char *origin;    /* the piece's byte at element offset held */
    uint32_t held;         /* t->assembly_bytes, kept at hand for element_bytes */
    uintptr_t base;        /* origin - held as an address: offset_of is one subtraction */
    xml_view *view;
    xml_event event;
};

enum { NAME_CHAR = 1, NAME_START = 2, NAME_COLON = 4 };
static const uint8_t name_class[256] = {
    ['A' ... 'Z'] = NAME_CHAR | NAME_START,
    ['a' ... 'z'] = NAME_CHAR | NAME_START,
    ['_'] = NAME_CHAR | NAME_START,
    [':'] = NAME_CHAR | NAME_START | NAME_COLON,
    ['0' ... '9'] = NAME_CHAR,
    ['-'] = NAME_CHAR,
    ['.'] = NAME_CHAR,
};

/* Bytes that never end a run: printable ASCII minus the run's delimiters
 * (text: & < ]; attribute value: " & ' <; CDATA: ]). */
static const uint8_t text_plain[256] = {
    [0x20 ... 0x25] = 1, [0x27 ... 0x3B] = 1, [0x3D ... 0x5C] = 1, [0x5E ... 0x7F] = 1};
static const uint8_t value_plain[256] = {
    [0x20 ... 0x21] = 1, [0x23 ... 0x25] = 1, [0x28 ... 0x3B] = 1, [0x3D ... 0x7F] = 1};
static const uint8_t cdata_plain[256] = {[0x20 ... 0x5C] = 1, [0x5E ... 0x7F] = 1};

static inline bool is_space(unsigned char c)
{
    return c <= ' ' && (c == ' ' || c == '\n' || c == '\r' || c == '\t');
}

/* Steps over bytes that table marks plain. The SSE2 loop stops at the
 * delimiters a, b and c, and at every byte < 0x20 or >= 0x80; the table may
 * stop at more (an attribute value's other quote), which the caller then
 * steps over. */
static inline const char *skip_plain(const char *p, const char *end, const uint8_t *table, char a,
                                     char b, char c)
{
#if defined(__SSE2__)
    const __m128i va = _mm_set1_epi8(a), vb = _mm_set1_epi8(b), vc = _mm_set1_epi8(c);
    const __m128i control = _mm_set1_epi8(0x20);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, va), _mm_cmpeq_epi8(v, vb)),
                                   _mm_cmpeq_epi8(v, vc));
        /* Signed compare: bytes >= 0x80 are negative, so this catches them too. */
        hit = _mm_or_si128(hit, _mm_cmplt_epi8(v, control));
        unsigned bits = (unsigned)_mm_movemask_epi8(hit);
        if (bits != 0)
            return p + __builtin_ctz(bits);
        p += 16;
    }
#else
    (void)a, (void)b, (void)c;
#endif
    while (p < end && table[(unsigned char)*p])
        p++;
    return p;
}

#if defined(__SSE2__)
/* Bytes of v in [low, low + count): moved to the bottom of the signed
 * range, one compare tells them apart. */
static inline __m128i in_range(__m128i v, char low, int count)
{
    __m128i shifted = _mm_add_epi8(v, _mm_set1_epi8((char)(0x80 - (unsigned char)low)));
    return _mm_cmplt_epi8(shifted, _mm_set1_epi8((char)(count - 0x80)));
}
#endif

/* Steps over ASCII name characters, gathering their classes in *seen (so
 * that a name without a colon need not be read again). */
static inline const char *skip_name(const char *p, const char *end, uint8_t *seen)
{
#if defined(__SSE2__)
    if (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i folded = _mm_or_si128(v, _mm_set1_epi8(0x20)); /* ASCII lower case */
        __m128i colon = _mm_cmpeq_epi8(v, _mm_set1_epi8(':'));
        __m128i name = _mm_or_si128(
            _mm_or_si128(in_range(folded, 'a', 26), in_range(v, '0', 11)), /* digits, ':' */
            _mm_or_si128(in_range(v, '-', 2), _mm_cmpeq_epi8(v, _mm_set1_epi8('_'))));
        unsigned stop = ~(unsigned)_mm_movemask_epi8(name) & 0xFFFFu;
        if (stop != 0) {
            unsigned length = (unsigned)__builtin_ctz(stop);
            unsigned colons = (unsigned)_mm_movemask_epi8(colon) & ((1u << length) - 1u);
            if (colons != 0) /* rare: spares a store to *seen per name */
                *seen |= NAME_COLON;
            return p + length;
        }
    }
#endif
    uint8_t classes = 0, c;
    while (p < end && ((c = name_class[(unsigned char)*p]) & NAME_CHAR)) {
        classes |= c;
        p++;
    }
    *seen |= classes;
    return p;
}

/*
 * Length of the valid UTF-8 sequence at p (1 < length <= 4), 0 when the
 * avail bytes are a valid but incomplete start of one, -1 when invalid:
 * overlong forms, surrogates, beyond U+10FFFF, and U+FFFE/U+FFFF (not XML
 * characters).
 */
static inline int utf8_sequence(const unsigned char *p, size_t avail)
{
    unsigned lead = p[0], low = 0x80, high = 0xBF;
    int length;
    if (lead < 0xC2)
        return -1;
    if (lead < 0xE0) {
        length = 2;
    } else if (lead < 0xF0) {
        length = 3;
        low = lead == 0xE0 ? 0xA0 : 0x80;
        high = lead == 0xED ? 0x9F : 0xBF;
    } else if (lead < 0xF5) {
        length = 4;
        low = lead == 0xF0 ? 0x90 : 0x80;
        high = lead == 0xF4 ? 0x8F : 0xBF;
    } else {
        return -1;
    }
    for (int i = 1; i < length; i++) {
        if ((size_t)i >= avail)
            return 0;
        if (p[i] < low || p[i] > high)
            return -1;
        low = 0x80, high = 0xBF;
    }
    if (lead == 0xEF && p[1] == 0xBF && p[2] >= 0xBE)
        return -1;
    return length;
}

/* Names and prefixes are short: a plain loop beats a call to memcmp. */
static inline bool same_bytes(const char *a, const char *b, size_t length)
{
    for (size_t i = 0; i < length; i++)
        if (a[i] != b[i])
            return false;
    return true;
}

/* Whether the words at a and b, of n bytes, are equal. */
static inline bool same_word(const char *a, const char *b, size_t n)
{
    uint64_t x = 0, y = 0;
    memcpy(&x, a, n);
    memcpy(&y, b, n);
    return x == y;
}

/* same_bytes for an end tag's name: a few word compares, the last two
 * overlapping, never reading past either name. */
static inline bool same_name(const char *a, const char *b, size_t length)
{
    if (length >= 8) {
        for (size_t i = 0; i + 8 < length; i += 8)
            if (!same_word(a + i, b + i, 8))
                return false;
        return same_word(a + length - 8, b + length - 8, 8);
    }
    if (length >= 4)
        return same_word(a, b, 4) && same_word(a + length - 4, b + length - 4, 4);
    if (length >= 2)
        return same_word(a, b, 2) && same_word(a + length - 2, b + length - 2, 2);
    return length == 0 || a[0] == b[0];
}

static inline uint32_t offset_of(const struct scan *s, const char *p)
{
    return (uint32_t)((uintptr_t)p - s->base);
}

/* Called whenever origin or held change. Unsigned arithmetic: base itself
 * may lie before the piece. */
static inline void rebase(struct scan *s)
{
    s->base = (uintptr_t)s->origin - s->held;
}

/* The element's bytes [offset, offset + length): in the assembly buffer, in
 * the piece, or (when they straddle the two) joined into spare, which must
 * hold length bytes. */
static inline const char *element_bytes(const struct scan *s, uint32_t offset, uint32_t length,
                                        char *spare)
{
    uint32_t held = s->held;
    if (offset + length <= held)
        return s->t->assembly + offset;
    if (offset >= held)
        return s->origin + (offset - held);
    memcpy(spare, s->t->assembly + offset, held - offset);
    memcpy(spare + (held - offset), s->origin, offset + length - held);
    return spare;
}

/* Cold: keeping the error paths out of line keeps the scanning loops tight. */
static __attribute__((cold, noinline)) int fail(struct scan *s, xml_error_condition condition)
{
    s->t->condition = (uint8_t)condition;
    s->t->phase = PHASE_ERROR;
    return SCAN_ERROR;
}

static int suspend(struct scan *s, const char *p, uint8_t state)
{
    assert(p == s->end);
    s->t->state = state;
    s->p = p;
    return SCAN_SUSPEND;
}

static int advance(struct scan *s, const char *p, uint8_t state)
{
    s->t->state = state;
    s->p = p;
    return SCAN_CONTINUE;
}

/* Steps over the UTF-8 sequences from p (a byte >= 0x80) to the next
 * ASCII byte and returns where it stopped; or parks the first bytes of the
 * last sequence when the bytes end inside it, or fails, and returns NULL
 * (utf8_stop tells which). A returned position rather than a pointer to
 * the caller's lets the inlined scanners keep theirs in a register. */
static const char *take_utf8(struct scan *s, const char *p, uint8_t state)
{
    do {
        size_t avail = (size_t)(s->end - p);
        int length = utf8_sequence((const unsigned char *)p, avail);
        if (length < 0) {
            fail(s, XML_ERR_NOT_WELL_FORMED);
            return NULL;
        }
        if (length == 0) {
            assert(avail < sizeof s->t->utf8_pending + 1);
            memcpy(s->t->utf8_pending, p, avail);
            s->t->utf8_pending_length = (uint8_t)avail;
            suspend(s, s->end, state);
            return NULL;
        }
        p += length;
    } while (p < s->end && (unsigned char)*p >= 0x80);
    return p;
}

/* What take_utf8 (or a scanner built on it) did when it returned NULL. */
static int utf8_stop(const struct scan *s)
{
    return s->t->phase == PHASE_ERROR ? SCAN_ERROR : SCAN_SUSPEND;
}

/* Completes a UTF-8 sequence parked by take_utf8 with the new bytes. */
static int resume_utf8(struct scan *s)
{
    xml_tokenizer *t = s->t;
    unsigned char sequence[4];
    size_t have = t->utf8_pending_length;
    size_t take = (size_t)(s->end - s->p);
    if (take > sizeof sequence - have)
        take = sizeof sequence - have;
    memcpy(sequence, t->utf8_pending, have);
    memcpy(sequence + have, s->p, take);
    int length = utf8_sequence(sequence, have + take);
    if (length < 0)
        return fail(s, XML_ERR_NOT_WELL_FORMED);
    if (length == 0) {
        memcpy(t->utf8_pending, sequence, have + take);
        t->utf8_pending_length = (uint8_t)(have + take);
        s->p = s->end;
        return SCAN_SUSPEND;
    }
    t->utf8_pending_length = 0;
    s->p += (size_t)length - have;
    return SCAN_CONTINUE;
}

static void release_assembly(xml_tokenizer *t)
{
    free(t->assembly);
    t->assembly = NULL;
    t->assembly_capacity = 0;
    t->release_pending = 0;
}

static bool reserve(xml_tokenizer *t, size_t need)
{
    if (need <= t->assembly_capacity)
        return true;
    size_t capacity = t->assembly_capacity ? 2u * t->assembly_capacity : 1024u;
    while (capacity < need)
        capacity *= 2;
    char *bytes = realloc(t->assembly, capacity);
    if (bytes == NULL)
        return false;
    t->assembly = bytes;
    t->assembly_capacity = (uint32_t)capacity;
    return true;
}

/* Where the parked index starts: after the bytes, aligned for its entries. */
static size_t parked_index_offset(uint32_t bytes)
{
    return ((size_t)bytes + 7u) & ~(size_t)7u;
}

static size_t parked_index_size(const xml_tokenizer *t)
{
    return t->node_count * sizeof(struct xml_index_node) +
           t->attribute_count * sizeof(struct xml_index_attribute) +
           t->declaration_count * sizeof(struct xml_index_declaration);
}

/* Copies the index between the scratch and the assembly buffer. */
static void move_index(xml_tokenizer *t, xml_scratch *x, bool to_scratch)
{
    char *parked = t->assembly + parked_index_offset(t->assembly_bytes);
    struct {
        void *scratch;
        size_t size;
    } parts[3] = {
        {x->nodes, t->node_count * sizeof x->nodes[0]},
        {x->attributes, t->attribute_count * sizeof x->attributes[0]},
        {x->declarations, t->declaration_count * sizeof x->declarations[0]},
    };
    for (size_t i = 0; i < 3; i++) {
        if (to_scratch)
            memcpy(parts[i].scratch, parked, parts[i].size);
        else
            memcpy(parked, parts[i].scratch, parts[i].size);
        parked += parts[i].size;
    }
}

/* Bounds the scan to the bytes the element in progress may still take. */
static void bound_element(struct scan *s)
{
    size_t room = s->t->element_limit - s->t->assembly_bytes;
    size_t avail = (size_t)(s->piece_end - s->origin);
    s->end = s->origin + (avail < room ? avail : room);
}

/* The piece ended inside an element: keep its bytes and index. */
static int park(struct scan *s)
{
    xml_tokenizer *t = s->t;
    if (!t->in_element)
        return SCAN_SUSPEND;
    if (s->end < s->piece_end)
        return fail(s, XML_ERR_POLICY_VIOLATION);
    size_t more = (size_t)(s->piece_end - s->origin);
    uint32_t bytes = t->assembly_bytes + (uint32_t)more;
    assert(bytes <= t->element_limit);
    if (!reserve(t, parked_index_offset(bytes) + parked_index_size(t)))
        return fail(s, XML_ERR_RESOURCE_CONSTRAINT);
    if (more > 0)
        memcpy(t->assembly + t->assembly_bytes, s->origin, more);
    t->assembly_bytes = s->held = bytes;
    rebase(s);
    move_index(t, s->x, false);
    return SCAN_SUSPEND;
}

static void begin_element(struct scan *s, const char *less_than)
{
    xml_tokenizer *t = s->t;
    assert(!t->in_element && t->assembly_bytes == 0 && s->held == 0);
    t->in_element = 1;
    s->origin = less_than;
    rebase(s);
    t->node_count = t->attribute_count = t->declaration_count = t->element_count = 0;
    t->depth = 0;
    t->current = t->previous = XML_NODE_NONE;
    t->header_prefixes_used = 0;
    t->tag_start = 0;
    t->element_limit =
        t->phase == PHASE_START ? LIMIT_STREAM_HEADER_BYTES_MAX : LIMIT_STANZA_BYTES_MAX;
    bound_element(s);
}

/* The element (or stream header, or stream end) ends just before after. */
static int complete_element(struct scan *s, const char *after, xml_event event)
{
    xml_tokenizer *t = s->t;
    uint32_t length = offset_of(s, after);
    const char *bytes = s->origin;
    if (t->assembly_bytes > 0) {
        if (!reserve(t, length))
            return fail(s, XML_ERR_RESOURCE_CONSTRAINT);
        memcpy(t->assembly + t->assembly_bytes, s->origin, (size_t)(after - s->origin));
        bytes = t->assembly;
        t->release_pending = 1;
    }
    t->assembly_bytes = s->held = 0;
    rebase(s);
    t->in_element = 0;
    *s->view = (xml_view){
        .bytes = bytes,
        .length = length,
        .node_count = event == XML_EVENT_STREAM_CLOSE ? 0 : t->node_count,
        .header_prefixes_used = t->header_prefixes_used,
        .scratch = s->x,
        .tokenizer = t,
    };
    s->event = event;
    s->end = s->piece_end;
    advance(s, after, ST_LEVEL0);
    return SCAN_EVENT;
}

/* Links node n as the open element's next child. t->previous, the last
 * child so far, spares keeping (and reading) a last child in every node. */
static inline __attribute__((always_inline)) bool add_node(struct scan *s, uint8_t kind,
                                                           uint32_t start, uint16_t *id)
{
    xml_tokenizer *t = s->t;
    if (t->node_count >= LIMIT_STANZA_NODES_MAX)
        return false;
    uint16_t n = t->node_count++;
    struct xml_index_node *node = &s->x->nodes[n];
    /* Field by field, not zeroed as a whole: the rest are written as they
     * become known (name at its end, namespace and start_tag_end at the
     * '>', end when the node ends, text_flags with a text's end). */
    node->start = start;
    node->kind = kind;
    node->parent = t->current;
    node->first_child = node->next_sibling = XML_NODE_NONE;
    node->attribute_first = t->attribute_count;
    node->attribute_count = 0;
    if (t->previous != XML_NODE_NONE)
        s->x->nodes[t->previous].next_sibling = n;
    else if (t->current != XML_NODE_NONE)
        s->x->nodes[t->current].first_child = n;
    /* An element opens: it has no child yet. */
    t->previous = kind == XML_NODE_TEXT ? n : XML_NODE_NONE;
    *id = n;
    return true;
}

/* Records a text node; callers skip empty ones (tags mostly adjoin). */
static int add_text(struct scan *s, uint32_t start, uint32_t end, uint8_t flags)
{
    uint16_t id;
    if (!add_node(s, XML_NODE_TEXT, start, &id))
        return fail(s, XML_ERR_POLICY_VIOLATION);
    s->x->nodes[id].end = end;
    s->x->nodes[id].text_flags = flags;
    return SCAN_CONTINUE;
}

static int scan_lt(struct scan *s);

static int scan_level0(struct scan *s)
{
    xml_tokenizer *t = s->t;
    const char *p = s->p;
    while (p < s->end && is_space((unsigned char)*p))
        p++;
    if (p != s->p)
        t->at_stream_start = 0;
    if (p == s->end)
        return suspend(s, p, ST_LEVEL0);
    if (*p != '<' || t->phase == PHASE_CLOSED)
        return fail(s, t->phase == PHASE_STREAM ? XML_ERR_BAD_FORMAT : XML_ERR_NOT_WELL_FORMED);
    begin_element(s, p);
    advance(s, p + 1, ST_LT);
    return scan_lt(s);
}

/* "<?" at the very start of the stream may open the XML declaration. */
static int begin_xml_declaration(struct scan *s, const char *p)
{
    xml_tokenizer *t = s->t;
    t->in_element = 0;
    t->assembly_bytes = s->held = 0;
    rebase(s);
    release_assembly(t);
    t->match = 0;
    t->declaration_bytes = 2;
    s->end = s->piece_end;
    return advance(s, p, ST_XMLDECL_NAME);
}

static int open_element(struct scan *s, const char *name)
{
    xml_tokenizer *t = s->t;
    uint16_t id;
    if (t->depth >= LIMIT_STANZA_DEPTH_MAX || t->element_count >= LIMIT_STANZA_ELEMENTS_MAX)
        return fail(s, XML_ERR_POLICY_VIOLATION);
    if (!add_node(s, XML_NODE_ELEMENT, t->tag_start, &id))
        return fail(s, XML_ERR_POLICY_VIOLATION);
    t->element_count++;
    t->depth++;
    t->current = id;
    t->token_start = offset_of(s, name);
    t->name_classes = 0;
    t->attribute_names = 0;
    t->attribute_check = t->default_declaration = 0;
    return advance(s, name, ST_STAG_NAME);
}

static int scan_start_tag(struct scan *s);
static int scan_end_tag(struct scan *s);
static int close_element(struct scan *s, const char *after);

/* The common end tag, "</name>" naming the open element with no space and
 * wholly in the bytes, is matched against that name directly. Returns the
 * byte after its '>', or NULL to leave it to scan_end_tag. */
static inline const char *matching_end_tag(const struct scan *s, const char *name)
{
    const struct xml_index_node *open = &s->x->nodes[s->t->current];
    uint32_t length = open->name_length, at = open->start + 1u;
    const char *open_name;
    if (s->end - name <= (ptrdiff_t)length || name[length] != '>')
        return NULL;
    if (at >= s->held)
        open_name = s->origin + (at - s->held);
    else if (at + length <= s->held)
        open_name = s->t->assembly + at;
    else
        return NULL;
    return same_name(name, open_name, length) ? name + length + 1 : NULL;
}

/* After '<'. The tag scanners are called directly rather than through
 * run()'s dispatch: this is the hottest transition. */
static int scan_lt(struct scan *s)
{
    xml_tokenizer *t = s->t;
    const char *p = s->p;
    if (p == s->end)
        return suspend(s, p, ST_LT);
    unsigned char c = (unsigned char)*p;
    bool at_start = t->at_stream_start;
    t->at_stream_start = 0;
    if (c == '/') {
        if (t->depth == 0 && t->phase != PHASE_STREAM)
            return fail(s, XML_ERR_NOT_WELL_FORMED);
        const char *after = t->depth > 0 ? matching_end_tag(s, p + 1) : NULL;
        if (after != NULL)
            return close_element(s, after);
        t->token_start = offset_of(s, p + 1);
        t->name_classes = 0;
        advance(s, p + 1, ST_ETAG_NAME);
        return scan_end_tag(s);
    }
    if (c == '!')
        return advance(s, p + 1, ST_BANG);
    if (c == '?') {
        /* The XML declaration is the one PI-like thing XMPP allows. */
        if (!at_start)
            return fail(s, XML_ERR_RESTRICTED_XML);
        return begin_xml_declaration(s, p + 1);
    }
    if (c < 0x80 && !(name_class[c] & NAME_START))
        return fail(s, XML_ERR_NOT_WELL_FORMED);
    int r = open_element(s, p);
    return r == SCAN_CONTINUE ? scan_start_tag(s) : r;
}

static int scan_xml_declaration(struct scan *s)
{
    xml_tokenizer *t = s->t;
    const char *p = s->p;
    size_t room = LIMIT_STREAM_HEADER_BYTES_MAX - t->declaration_bytes;
    const char *end = (size_t)(s->end - p) < room ? s->end : p + room;
    for (; t->state == ST_XMLDECL_NAME && p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (t->match < 3 && c != (unsigned char)"xml"[t->match])
            return fail(s, XML_ERR_RESTRICTED_XML);
        if (t->match == 3 && !is_space(c))
            return fail(s, XML_ERR_RESTRICTED_XML);
        if (++t->match > 3) {
            t->state = ST_XMLDECL_BODY;
            t->brackets = 0;
        }
    }
    for (; p < end && t->state == ST_XMLDECL_BODY; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '>' && t->brackets)
            t->state = ST_LEVEL0;
        else if (c >= 0x80 || (c < 0x20 && !is_space(c)))
            return fail(s, XML_ERR_NOT_WELL_FORMED);
        t->brackets = c == '?';
    }
    t->declaration_bytes += (uint32_t)(p - s->p);
    if (t->state == ST_LEVEL0)
        return advance(s, p, ST_LEVEL0);
    if (end < s->end)
        return fail(s, XML_ERR_POLICY_VIOLATION);
    return suspend(s, p, t->state);
}

/* After "<!": a CDATA section inside an element; anything else is a
 * comment or a DTD declaration (restricted) or not XML at all. */
static int scan_bang(struct scan *s)
{
    xml_tokenizer *t = s->t;
    const char *p = s->p;
    if (t->state == ST_BANG) {
        if (p == s->end)
            return suspend(s, p, ST_BANG);
        unsigned char c = (unsigned char)*p;
        if (c == '-' || (c >= 'A' && c <= 'Z'))
            return fail(s, XML_ERR_RESTRICTED_XML);
        if (c != '[' || t->depth == 0)
            return fail(s, XML_ERR_NOT_WELL_FORMED);
        p++;
        t->match = 0;
    }
    for (; t->match < 6; t->match++, p++) {
        if (p == s->end)
            return suspend(s, p, ST_CDATA_OPEN);
        if (*p != "CDATA["[t->match])
            return fail(s, XML_ERR_NOT_WELL_FORMED);
    }
    t->token_start = offset_of(s, p);
    t->brackets = 0;
    return advance(s, p, ST_CDATA);
}

static int scan_cdata(struct scan *s)
{
    xml_tokenizer *t = s->t;
    const char *p = s->p;
    int r;
    for (;;) {
        if (t->brackets == 0)
            p = skip_plain(p, s->end, cdata_plain, ']', ']', ']');
        if (p == s->end)
            return suspend(s, p, ST_CDATA);
        unsigned char c = (unsigned char)*p;
        if (c == ']') {
            t->brackets += t->brackets < 2;
            p++;
            continue;
        }
        if (c == '>' && t->brackets == 2)
            break;
        t->brackets = 0;
        if (c >= 0x80) {
            if ((p = take_utf8(s, p, ST_CDATA)) == NULL)
                return utf8_stop(s);
            continue;
        }
        if (c < 0x20 && !is_space(c))
            return fail(s, XML_ERR_NOT_WELL_FORMED);
        p++;
    }
    uint32_t text_end = offset_of(s, p) - 2;
    if (text_end != t->token_start &&
        (r = add_text(s, t->token_start, text_end, XML_TEXT_CDATA)) != SCAN_CONTINUE)
        return r;
    p++;
    t->token_start = offset_of(s, p);
    t->text_flags = 0;
    t->brackets = 0;
    return advance(s, p, ST_TEXT);
}

static int begin_reference(struct scan *s, const char *p, uint8_t return_state)
{
    s->t->reference_kind = REF_START;
    s->t->reference_length = 0;
    s->t->reference_value = 0;
    s->t->return_state = return_state;
    return advance(s, p, ST_REF);
}

/* Length of a predefined entity reference after its '&' when wholly in
 * the bytes: the common case, taken without the resumable states. 0 for
 * anything else, which scan_reference then reads (and judges). */
static inline size_t quick_reference(const char *p, const char *end)
{
    size_t avail = (size_t)(end - p);
    if (avail >= 4 && memcmp(p, "amp;", 4) == 0)
        return 4;
    if (avail >= 3 && (memcmp(p, "lt;", 3) == 0 || memcmp(p, "gt;", 3) == 0))
        return 3;
    if (avail >= 5 && (memcmp(p, "quot;", 5) == 0 || memcmp(p, "apos;", 5) == 0))
        return 5;
    return 0;
}

/* Steps over character data up to the next '<' (SCAN_DONE, *p at it). */
static inline int scan_character_data(struct scan *s, const char **p)
{
    xml_tokenizer *t = s->t;
    /* Tags mostly follow each other with no text between. */
    if (*p < s->end && **p == '<')
        return SCAN_DONE;
    for (;;) {
        if (t->brackets == 0)
            *p = skip_plain(*p, s->end, text_plain, '<', '&', ']');
        if (*p == s->end)
            return suspend(s, *p, ST_TEXT);
        unsigned char c = (unsigned char)**p;
        if (c == '<')
            return SCAN_DONE;
        if (c == ']') {
            t->brackets += t->brackets < 2;
            ++*p;
            continue;
        }
        if (c == '>' && t->brackets == 2)
            return fail(s, XML_ERR_NOT_WELL_FORMED); /* "]]>" in text */
        t->brackets = 0;
        if (c == '&') {
            size_t quick = quick_reference(*p + 1, s->end);
            t->text_flags |= XML_TEXT_NEEDS_UNESCAPE;
            if (quick == 0)
                return begin_reference(s, *p + 1, ST_TEXT);
            *p += 1 + quick;
            continue;
        }
        if (c >= 0x80) {
            if ((*p = take_utf8(s, *p, ST_TEXT)) == NULL)
                return utf8_stop(s);
            continue;
        }
        if (c < 0x20 && !is_space(c))
            return fail(s, XML_ERR_NOT_WELL_FORMED);
        ++*p;
    }
}

/* Element content: character data, then a tag, again while an element
 * stays open. Looping here rather than in run() spares a dispatch per tag. */
static int scan_text(struct scan *s)
{
    xml_tokenizer *t = s->t;
    int r;
    do {
        const char *p = s->p;
        if ((r = scan_character_data(s, &p)) != SCAN_DONE)
            return r;
        uint32_t at = offset_of(s, p);
        if (at != t->token_start &&
            (r = add_text(s, t->token_start, at, t->text_flags)) != SCAN_CONTINUE)
            return r;
        t->tag_start = at;
        advance(s, p + 1, ST_LT);
        r = scan_lt(s);
    } while (r == SCAN_CONTINUE && t->state == ST_TEXT);
    return r;
}

static bool is_xml_char(uint32_t c)
{
    return c == 0x9 || c == 0xA || c == 0xD || (c >= 0x20 && c <= 0xD7FF) ||
           (c >= 0xE000 && c <= 0xFFFD) || (c >= 0x10000 && c <= 0x10FFFF);
}

static int hex_digit(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The ';' of a reference: only the five predefined entities and character
 * references to XML characters are allowed. */
static int end_reference(struct scan *s, const char *p)
{
    xml_tokenizer *t = s->t;
    if (t->reference_kind == REF_NAME) {
        static const char *const predefined[] = {"amp", "lt", "gt", "quot", "apos"};
        for (size_t i = 0; i < 5; i++)
            if (strlen(predefined[i]) == t->reference_length &&
                memcmp(predefined[i], t->reference_name, t->reference_length) == 0)
                return advance(s, p, t->return_state);
        return fail(s, XML_ERR_RESTRICTED_XML);
    }
    if ((t->reference_kind != REF_DECIMAL && t->reference_kind != REF_HEX) ||
        t->reference_length == 0 || !is_xml_char(t->reference_value))
        return fail(s, XML_ERR_NOT_WELL_FORMED);
    return advance(s, p, t->return_state);
}

static int scan_reference(struct scan *s)
{
    xml_tokenizer *t = s->t;
    const char *p = s->p;
    while (p < s->end) {
        unsigned char c = (unsigned char)*p++;
        int digit = hex_digit(c);
        if (c == ';' && t->reference_kind != REF_START && t->reference_kind != REF_HASH)
            return end_reference(s, p);
        if (t->reference_kind == REF_START && c == '#') {
            t->reference_kind = REF_HASH;
        } else if (t->reference_kind == REF_HASH && c == 'x') {
            t->reference_kind = REF_HEX;
        } else if ((t->reference_kind == REF_HASH || t->reference_kind == REF_DECIMAL) &&
                   digit >= 0 && digit < 10) {
            t->reference_kind = REF_DECIMAL;
            t->reference_value = t->reference_value * 10 + (uint32_t)digit;
            t->reference_length = 1;
        } else if (t->reference_kind == REF_HEX && digit >= 0) {
            t->reference_value = t->reference_value * 16 + (uint32_t)digit;
            t->reference_length = 1;
        } else if ((t->reference_kind == REF_START && (name_class[c] & NAME_START)) ||
                   (t->reference_kind == REF_NAME && (name_class[c] & NAME_CHAR))) {
            /* Longer than "quot": not a predefined entity, so restricted. */
            if (t->reference_length == sizeof t->reference_name)
                return fail(s, XML_ERR_RESTRICTED_XML);
            t->reference_kind = REF_NAME;
            t->reference_name[t->reference_length++] = (char)c;
        } else {
            return fail(s, XML_ERR_NOT_WELL_FORMED);
        }
        /* Saturate above the last code point so the value cannot wrap. */
        if (t->reference_value > 0x10FFFF)
            t->reference_value = 0x110000;
    }
    return suspend(s, p, ST_REF);
}

/* A name with a colon (or over the bound): Namespaces in XML allow at
 * most one colon, neither first nor last. */
static int end_prefixed_name(struct scan *s, uint32_t name_length, uint16_t *prefix_length)
{
    char spare[LIMIT_NAME_BYTES_MAX];
    if (name_length > LIMIT_NAME_BYTES_MAX)
        return fail(s, XML_ERR_POLICY_VIOLATION);
    const char *name = element_bytes(s, s->t->token_start, name_length, spare);
    uint32_t colons = 0, at = 0;
    for (uint32_t i = 0; i < name_length; i++) {
        if (name[i] == ':') {
            colons++;
            at = i;
        }
    }
    if (colons != 1 || at == 0 || at + 1 == name_length)
        return fail(s, XML_ERR_NOT_WELL_FORMED);
    *prefix_length = (uint16_t)at;
    return SCAN_CONTINUE;
}

/* Ends the name that began at t->token_start, which ends just before p. */
static inline __attribute__((always_inline)) int end_name(struct scan *s, const char *p,
                                                          uint16_t *length, uint16_t *prefix_length)
{
    uint32_t name_length = offset_of(s, p) - s->t->token_start;
    *length = (uint16_t)name_length;
    *prefix_length = 0;
    if (name_length <= LIMIT_NAME_BYTES_MAX && !(s->t->name_classes & NAME_COLON))
        return SCAN_CONTINUE;
    return end_prefixed_name(s, name_length, prefix_length);
}

/* Records a resolved namespace in a node (written field by field: a
 * namespace kept in a separate struct and copied over cost a store-forward
 * stall on every element). */
static inline void set_namespace(struct xml_index_node *target, uint8_t source, uint32_t offset,
                                 uint32_t length)
{
    target->ns_source = length > 0 || source == XML_NS_XML ? source : XML_NS_NONE;
    target->ns_offset = offset;
    target->ns_length = length;
}

static int resolve_header_prefix(struct scan *s, const char *prefix, uint16_t prefix_length,
                                 struct xml_index_node *target)
{
    const struct xml_stream_facts *f = &s->t->facts;
    if (prefix_length == 0) {
        set_namespace(target, XML_NS_HEADER, f->default_offset, f->default_length);
        return SCAN_CONTINUE;
    }
    for (size_t k = 0; k < f->prefix_count; k++) {
        if (f->prefixes[k].prefix_length == prefix_length &&
            same_bytes(f->strings + f->prefixes[k].prefix_offset, prefix, prefix_length)) {
            s->t->header_prefixes_used |= (uint8_t)(1u << k);
            set_namespace(target, XML_NS_HEADER, f->prefixes[k].uri_offset,
                          f->prefixes[k].uri_length);
            return SCAN_CONTINUE;
        }
    }
    return fail(s, XML_ERR_INVALID_NAMESPACE);
}

/* Binds a prefix (empty: the default namespace) through the declarations
 * in scope, innermost first, then the stream header's. */
static int resolve_prefix(struct scan *s, uint32_t prefix_start, uint16_t prefix_length,
                          struct xml_index_node *target)
{
    char spare[LIMIT_NAME_BYTES_MAX], other_spare[LIMIT_NAME_BYTES_MAX];
    if (prefix_length == 0) {
        /* The common case, with no bytes to compare. */
        for (size_t i = s->t->declaration_count; i-- > 0;) {
            const struct xml_index_declaration *d = &s->x->declarations[i];
            if (d->prefix_length == 0) {
                set_namespace(target, XML_NS_ELEMENT, d->uri_start, d->uri_length);
                return SCAN_CONTINUE;
            }
        }
        return resolve_header_prefix(s, "", 0, target);
    }
    const char *prefix = element_bytes(s, prefix_start, prefix_length, spare);
    if (prefix_length == 3 && memcmp(prefix, "xml", 3) == 0) {
        set_namespace(target, XML_NS_XML, 0, 0);
        return SCAN_CONTINUE;
    }
    for (size_t i = s->t->declaration_count; i-- > 0;) {
        const struct xml_index_declaration *d = &s->x->declarations[i];
        if (d->prefix_length != prefix_length ||
            !same_bytes(prefix, element_bytes(s, d->prefix_start, prefix_length, other_spare),
                        prefix_length))
            continue;
        set_namespace(target, XML_NS_ELEMENT, d->uri_start, d->uri_length);
        return SCAN_CONTINUE;
    }
    return resolve_header_prefix(s, prefix, prefix_length, target);
}

/* Rejects a duplicate attribute (same qualified name) and records a
 * namespace declaration. */
static int check_attribute(struct scan *s, const struct xml_index_attribute *attributes, size_t i)
{
    xml_tokenizer *t = s->t;
    const struct xml_index_attribute *a = &attributes[i];
    char spare[LIMIT_NAME_BYTES_MAX], other_spare[LIMIT_NAME_BYTES_MAX];
    const char *name = NULL; /* read only when a comparison needs it */
    for (size_t j = 0; j < i; j++) {
        const struct xml_index_attribute *b = &attributes[j];
        if (b->name_length != a->name_length)
            continue;
        if (name == NULL)
            name = element_bytes(s, a->name_start, a->name_length, spare);
        if (same_bytes(name, element_bytes(s, b->name_start, b->name_length, other_spare),
                       a->name_length))
            return fail(s, XML_ERR_NOT_WELL_FORMED);
    }
    if (a->name_length != 5 && a->prefix_length != 5)
        return SCAN_CONTINUE;
    if (name == NULL)
        name = element_bytes(s, a->name_start, a->name_length, spare);
    bool is_default = a->name_length == 5 && memcmp(name, "xmlns", 5) == 0;
    bool is_prefixed = a->prefix_length == 5 && memcmp(name, "xmlns", 5) == 0;
    if (!is_default && !is_prefixed)
        return SCAN_CONTINUE;
    if (is_prefixed && a->value_end == a->value_start)
        return fail(s, XML_ERR_NOT_WELL_FORMED); /* no prefix undeclaring in XML 1.0 */
    if (t->facts.prefix_count + t->declaration_count >= LIMIT_NAMESPACE_DECLS_MAX)
        return fail(s, XML_ERR_POLICY_VIOLATION);
    s->x->declarations[t->declaration_count++] = (struct xml_index_declaration){
        .prefix_start = is_prefixed ? a->name_start + 6 : 0,
        .prefix_length = (uint16_t)(is_prefixed ? a->name_length - 6 : 0),
        .uri_start = a->value_start,
        .uri_length = a->value_end - a->value_start,
        .depth = t->depth,
    };
    return SCAN_CONTINUE;
}

static int bind_namespaces(struct scan *s, struct xml_index_node *element)
{
    const struct xml_index_attribute *attributes = &s->x->attributes[element->attribute_first];
    struct xml_index_node attribute_ns; /* attributes' namespaces are checked, not kept */
    int r;
    if (element->attribute_count == 0)
        return resolve_prefix(s, element->start + 1, element->prefix_length, element);
    for (size_t i = 0; i < element->attribute_count; i++)
        if ((r = check_attribute(s, attributes, i)) != SCAN_CONTINUE)
            return r;
    if ((r = resolve_prefix(s, element->start + 1, element->prefix_length, element)) !=
        SCAN_CONTINUE)
        return r;
    for (size_t i = 0; i < element->attribute_count; i++) {
        const struct xml_index_attribute *a = &attributes[i];
        char spare[LIMIT_NAME_BYTES_MAX];
        if (a->prefix_length == 0 ||
            (a->prefix_length == 5 &&
             memcmp(element_bytes(s, a->name_start, 5, spare), "xmlns", 5) == 0))
            continue;
        if ((r = resolve_prefix(s, a->name_start, a->prefix_length, &attribute_ns)) !=
            SCAN_CONTINUE)
            return r;
    }
    return SCAN_CONTINUE;
}

static int keep_fact(struct scan *s, uint32_t offset, uint32_t length, uint8_t *fact_offset,
                     uint8_t *fact_length)
{
    struct xml_stream_facts *f = &s->t->facts;
    char spare[LIMIT_STREAM_HEADER_NAMESPACE_BYTES_MAX];
    if (length > sizeof f->strings - f->strings_used)
        return fail(s, XML_ERR_POLICY_VIOLATION);
    memcpy(f->strings + f->strings_used, element_bytes(s, offset, length, spare), length);
    *fact_offset = f->strings_used;
    *fact_length = (uint8_t)length;
    f->strings_used = (uint8_t)(f->strings_used + length);
    return SCAN_CONTINUE;
}

/* Copies what stanzas need from the header: its namespace declarations and
 * its prefix (to match </stream:stream>). */
static int keep_header_facts(struct scan *s, const struct xml_index_node *header)
{
    struct xml_stream_facts *f = &s->t->facts;
    int r = SCAN_CONTINUE;
    for (size_t i = 0; i < s->t->declaration_count && r == SCAN_CONTINUE; i++) {
        const struct xml_index_declaration *d = &s->x->declarations[i];
        if (d->prefix_length == 0) {
            r = keep_fact(s, d->uri_start, d->uri_length, &f->default_offset, &f->default_length);
            continue;
        }
        if (f->prefix_count == LIMIT_STREAM_HEADER_PREFIXES_MAX)
            return fail(s, XML_ERR_POLICY_VIOLATION);
        size_t k = f->prefix_count++;
        r = keep_fact(s, d->prefix_start, d->prefix_length, &f->prefixes[k].prefix_offset,
                      &f->prefixes[k].prefix_length);
        if (r == SCAN_CONTINUE)
            r = keep_fact(s, d->uri_start, d->uri_length, &f->prefixes[k].uri_offset,
                          &f->prefixes[k].uri_length);
    }
    if (r != SCAN_CONTINUE)
        return r;
    if (f->default_length == 0)
        return fail(s, XML_ERR_INVALID_NAMESPACE); /* RFC 6120 4.8.2: required */
    return keep_fact(s, header->start + 1, header->prefix_length, &f->element_prefix_offset,
                     &f->element_prefix_length);
}

/* RFC 6120 4.9.3.10: the header must be <stream> in the streams namespace. */
static int finish_header(struct scan *s, const char *after, bool empty)
{
    xml_tokenizer *t = s->t;
    const struct xml_index_node *header = &s->x->nodes[0];
    static const char streams[] = XML_NS_STREAMS_URI;
    char spare[sizeof streams];
    uint32_t local_start =
        header->start + 1u + (header->prefix_length ? header->prefix_length + 1u : 0u);
    uint32_t local_length = header->name_length - (local_start - header->start - 1u);
    if (local_length != 6 || memcmp(element_bytes(s, local_start, 6, spare), "stream", 6) != 0)
        return fail(s, XML_ERR_INVALID_NAMESPACE);
    if (header->ns_source != XML_NS_ELEMENT || header->ns_length != sizeof streams - 1 ||
        memcmp(element_bytes(s, header->ns_offset, header->ns_length, spare), streams,
               sizeof streams - 1) != 0)
        return fail(s, XML_ERR_INVALID_NAMESPACE);
    if (empty)
        return fail(s, XML_ERR_BAD_FORMAT);
    int r = keep_header_facts(s, header);
    if (r != SCAN_CONTINUE)
        return r;
    t->phase = PHASE_STREAM;
    t->depth = 0;
    t->current = XML_NODE_NONE;
    return complete_element(s, after, XML_EVENT_STREAM_OPEN);
}

static int close_element(struct scan *s, const char *after)
{
    xml_tokenizer *t = s->t;
    struct xml_index_node *element = &s->x->nodes[t->current];
    element->end = offset_of(s, after);
    while (t->declaration_count > 0 &&
           s->x->declarations[t->declaration_count - 1].depth >= t->depth)
        t->declaration_count--;
    t->depth--;
    t->previous = t->current;
    t->current = element->parent;
    if (t->depth == 0)
        return complete_element(s, after, XML_EVENT_STANZA);
    t->token_start = element->end;
    t->text_flags = 0;
    t->brackets = 0;
    return advance(s, after, ST_TEXT);
}

/* Records the start tag's xmlns attribute (known to be its only
 * declaration) as bind_namespaces would; false when too many are in scope. */
static bool declare_default(struct scan *s)
{
    xml_tokenizer *t = s->t;
    const struct xml_index_attribute *a = &s->x->attributes[t->default_declaration - 1];
    if (t->facts.prefix_count + t->declaration_count >= LIMIT_NAMESPACE_DECLS_MAX)
        return false;
    s->x->declarations[t->declaration_count++] = (struct xml_index_declaration){
        .uri_start = a->value_start,
        .uri_length = a->value_end - a->value_start,
        .depth = t->depth,
    };
    return true;
}

/* After a start tag's '>' (or "/>"): into the element's content. */
static inline int enter_content(struct scan *s, const char *after, bool empty)
{
    xml_tokenizer *t = s->t;
    if (empty)
        return close_element(s, after);
    t->token_start = offset_of(s, after);
    t->text_flags = 0;
    t->brackets = 0;
    return advance(s, after, ST_TEXT);
}

/* The start tags that bind something: kept out of line so that the usual
 * path through finish_start_tag needs few registers. */
static __attribute__((noinline)) int finish_binding_start_tag(struct scan *s, const char *after,
                                                              bool empty)
{
    int r = bind_namespaces(s, &s->x->nodes[s->t->current]);
    if (r != SCAN_CONTINUE)
        return r;
    if (s->t->phase == PHASE_START)
        return finish_header(s, after, empty);
    return enter_content(s, after, empty);
}

static inline int finish_start_tag(struct scan *s, const char *after, bool empty)
{
    xml_tokenizer *t = s->t;
    struct xml_index_node *element = &s->x->nodes[t->current];
    element->start_tag_end = offset_of(s, after);
    if (t->attribute_check || element->prefix_length > 0 || t->phase == PHASE_START)
        return finish_binding_start_tag(s, after, empty);
    /* Most start tags bind nothing: an unprefixed name whose namespace the
     * view resolves when asked, and attributes needing no check. */
    element->ns_source = XML_NS_DEFAULT;
    if (t->default_declaration && !declare_default(s))
        return fail(s, XML_ERR_POLICY_VIOLATION);
    return enter_content(s, after, empty);
}

/* Opens the attribute whose name starts at name, after the whitespace that
 * began at t->space_start; NULL when it may not start there (no
 * whitespace, not a name) or is over a bound. */
static inline struct xml_index_attribute *
add_attribute(struct scan *s, struct xml_index_node *element, const char *name)
{
    xml_tokenizer *t = s->t;
    unsigned char c = (unsigned char)*name;
    if (offset_of(s, name) == t->space_start || (c < 0x80 && !(name_class[c] & NAME_START))) {
        fail(s, XML_ERR_NOT_WELL_FORMED);
        return NULL;
    }
    if (element->attribute_count >= LIMIT_ELEMENT_ATTRIBUTES_MAX ||
        t->attribute_count >= LIMIT_STANZA_ATTRIBUTES_MAX) {
        fail(s, XML_ERR_POLICY_VIOLATION);
        return NULL;
    }
    t->token_start = offset_of(s, name);
    t->name_classes = 0;
    element->attribute_count++;
    struct xml_index_attribute *a = &s->x->attributes[t->attribute_count++];
    /* The other fields are all written before the tag ends. */
    a->space_start = t->space_start;
    a->name_start = t->token_start;
    a->needs_unescape = 0;
    return a;
}

/*
 * Notes what bind_namespaces will have to do for the attribute whose name
 * ends just before p, so that a start tag without declarations, prefixed
 * attributes (other than xml:) or possibly equal names can skip it. A name
 * cut by the end of a piece is not looked at: it just asks for the check.
 */
static inline void note_attribute_name(struct scan *s, const char *p,
                                       const struct xml_index_attribute *a)
{
    xml_tokenizer *t = s->t;
    const char *name = p - a->name_length;
    if (a->name_start < s->held) {
        t->attribute_check = 1;
        return;
    }
    bool xml_prefix = a->prefix_length == 3 && name[0] == 'x' && name[1] == 'm' && name[2] == 'l';
    if (a->prefix_length > 0 && !xml_prefix)
        t->attribute_check = 1;
    else if (a->name_length == 5 && same_bytes(name, "xmlns", 5))
        t->default_declaration = t->attribute_count; /* one past its index */
    /* A Bloom filter of the names: equal names set the same bit. */
    unsigned hash = ((unsigned char)name[0] + (unsigned char)p[-1] + 2u * a->name_length) & 63u;
    uint64_t bit = (uint64_t)1 << hash, names = t->attribute_names;
    t->attribute_names = names | bit;
    if (names & bit)
        t->attribute_check = 1;
}

/* Steps over name characters up to the first other byte and returns it;
 * NULL when suspended or failed (utf8_stop tells which). Always inlined,
 * and returning the position, so that callers keep theirs in a register. */
static inline __attribute__((always_inline)) const char *scan_name(struct scan *s, const char *p,
                                                                   const char *end, uint8_t state)
{
    for (;;) {
        p = skip_name(p, end, &s->t->name_classes);
        if (p == end) {
            suspend(s, p, state);
            return NULL;
        }
        if ((unsigned char)*p < 0x80)
            return p;
        if ((p = take_utf8(s, p, state)) == NULL)
            return NULL;
    }
}

/* Steps over an attribute value and its closing quote (SCAN_DONE). */
static inline int scan_value(struct scan *s, const char **p, const char *end, unsigned char quote,
                             struct xml_index_attribute *attribute)
{
    for (;;) {
        *p = skip_plain(*p, end, value_plain, '<', '&', (char)quote);
        if (__builtin_expect(*p == end, 0))
            return suspend(s, *p, ST_ATTR_VALUE);
        unsigned char c = (unsigned char)**p;
        if (__builtin_expect(c == quote, 1)) {
            attribute->value_end = offset_of(s, *p);
            ++*p;
            return SCAN_DONE;
        }
        if (c == '<')
            return fail(s, XML_ERR_NOT_WELL_FORMED);
        if (c == '&') {
            size_t quick = quick_reference(*p + 1, end);
            attribute->needs_unescape = 1;
            if (quick == 0)
                return begin_reference(s, *p + 1, ST_ATTR_VALUE);
            *p += 1 + quick;
            continue;
        }
        if (c >= 0x80) {
            if ((*p = take_utf8(s, *p, ST_ATTR_VALUE)) == NULL)
                return utf8_stop(s);
            continue;
        }
        if (c < 0x20 && !is_space(c))
            return fail(s, XML_ERR_NOT_WELL_FORMED);
        ++*p;
    }
}

#if defined(__SSE2__)
/* Masks of 32 bytes for quick_attribute, filled 16 at a time: bit i
 * describes byte i. */
struct attribute_masks {
    uint32_t name, colon, apostrophe, quote, stop;
};

static inline void attribute_masks(__m128i v, unsigned shift, struct attribute_masks *m)
{
    __m128i folded = _mm_or_si128(v, _mm_set1_epi8(0x20));
    __m128i name = _mm_or_si128(
        _mm_or_si128(in_range(folded, 'a', 26), in_range(v, '0', 11)), /* digits, ':' */
        _mm_or_si128(in_range(v, '-', 2), _mm_cmpeq_epi8(v, _mm_set1_epi8('_'))));
    __m128i stop = _mm_or_si128(
        _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)), /* and >= 0x80 */
        _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('<')), _mm_cmpeq_epi8(v, _mm_set1_epi8('&'))));
    m->name |= (uint32_t)_mm_movemask_epi8(name) << shift;
    m->colon |= (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(':'))) << shift;
    m->apostrophe |= (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('\''))) << shift;
    m->quote |= (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('"'))) << shift;
    m->stop |= (uint32_t)_mm_movemask_epi8(stop) << shift;
}
#endif

/*
 * Reads a whole plain attribute, name="value" with at most one colon in
 * the name and no reference, control or non-ASCII byte in the value, from
 * the 32 bytes at p (its name's first byte), as the labels of
 * scan_start_tag would; returns the byte after its closing quote, or NULL
 * to leave the attribute to them. Every delimiter is found from masks of
 * the same two loads: the labels' token-by-token scan makes each search
 * wait for the one before.
 */
static inline const char *quick_attribute(struct scan *s, const char *p, const char *end,
                                          struct xml_index_attribute *a)
{
#if defined(__SSE2__)
    struct attribute_masks m = {0, 0, 0, 0, 0};
    if (end - p < 32)
        return NULL;
    attribute_masks(_mm_loadu_si128((const __m128i *)(const void *)p), 0, &m);
    attribute_masks(_mm_loadu_si128((const __m128i *)(const void *)(p + 16)), 16, &m);
    unsigned length = (unsigned)__builtin_ctz(~m.name | 0x80000000u); /* name bytes */
    if (length == 0 || length > 29 || p[length] != '=')
        return NULL;
    uint32_t quotes = (m.apostrophe >> (length + 1)) & 1u ? m.apostrophe
                      : (m.quote >> (length + 1)) & 1u    ? m.quote
                                                          : 0;
    unsigned value = length + 2, colon = (unsigned)__builtin_ctz(m.colon | 0x80000000u);
    if ((quotes >>= value) == 0)
        return NULL;
    unsigned close = value + (unsigned)__builtin_ctz(quotes);
    if ((m.stop >> value) & ((1u << (close - value)) - 1u))
        return NULL;
    if ((m.colon & ((1u << length) - 1u)) != 0 && /* one colon, neither first nor last */
        ((m.colon & ((1u << length) - 1u) & ~(1u << colon)) != 0 || colon == 0 ||
         colon + 1 == length))
        return NULL;
    a->name_length = (uint16_t)length;
    a->prefix_length = (uint16_t)(colon < length ? colon : 0);
    a->value_start = offset_of(s, p + value);
    a->value_end = offset_of(s, p + close);
    note_attribute_name(s, p + length, a);
    return p + close + 1;
#else
    (void)s, (void)p, (void)end, (void)a;
    return NULL;
#endif
}

static inline const char *skip_space(const char *p, const char *end)
{
    while (p < end && is_space((unsigned char)*p))
        p++;
    return p;
}

/* A start tag from its name to its '>'. The labels follow the grammar;
 * the switch resumes at the one the state names. end is kept in a local:
 * the byte-sized stores into the tokenizer could alias s->end. */
static int scan_start_tag(struct scan *s)
{
    xml_tokenizer *t = s->t;
    struct xml_index_node *element = &s->x->nodes[t->current];
    /* The attribute being read, when the state is inside one. */
    struct xml_index_attribute *attribute = NULL;
    const char *p = s->p, *const end = s->end, *after;
    int r;
    if (t->state == ST_STAG_NAME) /* from scan_lt: the common entry */
        goto element_name;
    if (t->state >= ST_ATTR_NAME && t->state <= ST_ATTR_VALUE)
        attribute = &s->x->attributes[t->attribute_count - 1];
    switch (t->state) {
    case ST_TAG_SPACE:
        goto space;
    case ST_ATTR_NAME:
        goto attribute_name;
    case ST_ATTR_EQUALS:
        goto equals;
    case ST_ATTR_QUOTE:
        goto quote;
    case ST_ATTR_VALUE:
        goto value;
    default:
        assert(t->state == ST_EMPTY);
        goto empty;
    }
element_name:
    if ((p = scan_name(s, p, end, ST_STAG_NAME)) == NULL)
        return utf8_stop(s);
    if ((r = end_name(s, p, &element->name_length, &element->prefix_length)) != SCAN_CONTINUE)
        return r;
    t->space_start = offset_of(s, p);
space:
    if ((p = skip_space(p, end)) == end)
        return suspend(s, p, ST_TAG_SPACE);
    if (*p == '>')
        return finish_start_tag(s, p + 1, false);
    if (*p == '/') {
        p++;
        goto empty;
    }
    if ((attribute = add_attribute(s, element, p)) == NULL)
        return SCAN_ERROR;
    if ((after = quick_attribute(s, p, end, attribute)) != NULL) {
        p = after;
        goto value_end;
    }
attribute_name:
    if ((p = scan_name(s, p, end, ST_ATTR_NAME)) == NULL)
        return utf8_stop(s);
    if ((r = end_name(s, p, &attribute->name_length, &attribute->prefix_length)) != SCAN_CONTINUE)
        return r;
    note_attribute_name(s, p, attribute);
equals:
    /* Mostly name='value': test for the '=' before stepping over spaces. */
    if ((p == end || *p != '=') && (p = skip_space(p, end)) == end)
        return suspend(s, p, ST_ATTR_EQUALS);
    if (*p++ != '=')
        return fail(s, XML_ERR_NOT_WELL_FORMED);
quote:
    if ((p == end || (*p != '\'' && *p != '"')) && (p = skip_space(p, end)) == end)
        return suspend(s, p, ST_ATTR_QUOTE);
    if (*p != '\'' && *p != '"')
        return fail(s, XML_ERR_NOT_WELL_FORMED);
    t->quote = (uint8_t)*p++;
    attribute->value_start = offset_of(s, p);
value:
    if ((r = scan_value(s, &p, end, t->quote, attribute)) != SCAN_DONE)
        return r;
value_end:
    t->space_start = offset_of(s, p);
    goto space;
empty:
    if (p == end)
        return suspend(s, p, ST_EMPTY);
    if (*p != '>')
        return fail(s, XML_ERR_NOT_WELL_FORMED);
    return finish_start_tag(s, p + 1, true);
}

/* Matches an end tag's name with the open element's, or at stream level
 * with the header's qualified name. */
static int match_end_tag(struct scan *s, uint32_t name_end)
{
    xml_tokenizer *t = s->t;
    uint32_t length = name_end - t->token_start;
    char spare[LIMIT_NAME_BYTES_MAX], open_spare[LIMIT_NAME_BYTES_MAX];
    if (length > LIMIT_NAME_BYTES_MAX)
        return fail(s, XML_ERR_NOT_WELL_FORMED);
    const char *name = element_bytes(s, t->token_start, length, spare);
    if (t->depth == 0) {
        const struct xml_stream_facts *f = &t->facts;
        size_t prefix_length = f->element_prefix_length;
        size_t local_at = prefix_length ? prefix_length + 1 : 0;
        if (length != local_at + 6 || memcmp(name + local_at, "stream", 6) != 0 ||
            (prefix_length > 0 &&
             (memcmp(name, f->strings + f->element_prefix_offset, prefix_length) != 0 ||
              name[prefix_length] != ':')))
            return fail(s, XML_ERR_NOT_WELL_FORMED);
        return SCAN_CONTINUE;
    }
    const struct xml_index_node *open = &s->x->nodes[t->current];
    if (length != open->name_length ||
        !same_bytes(name, element_bytes(s, open->start + 1, length, open_spare), length))
        return fail(s, XML_ERR_NOT_WELL_FORMED);
    return SCAN_CONTINUE;
}

static int scan_end_tag(struct scan *s)
{
    xml_tokenizer *t = s->t;
    const char *p = s->p;
    int r;
    if (t->state == ST_ETAG_NAME) {
        if ((p = scan_name(s, p, s->end, ST_ETAG_NAME)) == NULL)
            return utf8_stop(s);
        if ((r = match_end_tag(s, offset_of(s, p))) != SCAN_CONTINUE)
            return r;
    }
    if ((p = skip_space(p, s->end)) == s->end)
        return suspend(s, p, ST_ETAG_SPACE);
    if (*p != '>')
        return fail(s, XML_ERR_NOT_WELL_FORMED);
    if (t->depth > 0)
        return close_element(s, p + 1);
    t->phase = PHASE_CLOSED;
    return complete_element(s, p + 1, XML_EVENT_STREAM_CLOSE);
}

static int run(struct scan *s)
{
    for (;;) {
        int r;
        switch (s->t->state) {
        case ST_LEVEL0:
            r = scan_level0(s);
            break;
        case ST_XMLDECL_NAME:
        case ST_XMLDECL_BODY:
            r = scan_xml_declaration(s);
            break;
        case ST_LT:
            r = scan_lt(s);
            break;
        case ST_BANG:
        case ST_CDATA_OPEN:
            r = scan_bang(s);
            break;
        case ST_CDATA:
            r = scan_cdata(s);
            break;
        case ST_ETAG_NAME:
        case ST_ETAG_SPACE:
            r = scan_end_tag(s);
            break;
        case ST_TEXT:
            r = scan_text(s);
            break;
        case ST_REF:
            r = scan_reference(s);
            break;
        case ST_STAG_NAME:
        case ST_TAG_SPACE:
        case ST_ATTR_NAME:
        case ST_ATTR_EQUALS:
        case ST_ATTR_QUOTE:
        case ST_ATTR_VALUE:
        case ST_EMPTY:
            r = scan_start_tag(s);
            break;
        default:
            assert(!"unknown scanner state");
            r = fail(s, XML_ERR_NOT_WELL_FORMED);
            break;
        }
        if (r != SCAN_CONTINUE)
            return r;
    }
}

xml_event xml_tokenizer_feed(xml_tokenizer *t, xml_scratch *x, const char *data, size_t length,
                             size_t *consumed, xml_view *view)
{
    assert(t != NULL && x != NULL && consumed != NULL && view != NULL);
    assert(data != NULL || length == 0);
    if (t->release_pending)
        release_assembly(t);
    *consumed = 0;
    if (t->phase == PHASE_ERROR)
        return XML_EVENT_ERROR;
    if (length == 0)
        return XML_EVENT_NEED_MORE;
    struct scan s = {.t = t, .x = x, .p = data, .end = data + length, .piece_end = data + length};
    s.origin = data;
    s.held = t->assembly_bytes;
    s.view = view;
    rebase(&s);
    if (t->in_element) {
        assert(t->assembly != NULL && t->assembly_bytes > 0);
        move_index(t, x, true);
        bound_element(&s);
    }
    int r = SCAN_CONTINUE;
    if (t->utf8_pending_length > 0)
        r = resume_utf8(&s);
    if (r == SCAN_CONTINUE)
        r = run(&s);
    if (r == SCAN_SUSPEND)
        r = park(&s);
    switch (r) {
    case SCAN_EVENT:
        *consumed = (size_t)(s.p - data);
        return s.event;
    case SCAN_SUSPEND:
        *consumed = length;
        return XML_EVENT_NEED_MORE;
    default:
        assert(t->phase == PHASE_ERROR);
        return XML_EVENT_ERROR;
    }
}

xml_scratch *xml_scratch_create(void)
{
    return malloc(sizeof(xml_scratch));
}

void xml_scratch_destroy(xml_scratch *scratch)
{
    free(scratch);
}

void xml_tokenizer_init(xml_tokenizer *t)
{
    memset(t, 0, sizeof *t);
    t->phase = PHASE_START;
    t->state = ST_LEVEL0;
    t->at_stream_start = 1;
    t->current = XML_NODE_NONE;
}

void xml_tokenizer_reset(xml_tokenizer *t)
{
    free(t->assembly);
    xml_tokenizer_init(t);
}

void xml_tokenizer_fini(xml_tokenizer *t)
{
    free(t->assembly);
    memset(t, 0, sizeof *t);
}

xml_error_condition xml_tokenizer_error(const xml_tokenizer *t)
{
    return (xml_error_condition)t->condition;
}

const char *xml_error_condition_name(xml_error_condition condition)
{
    switch (condition) {
    case XML_ERR_NONE:
        return "";
    case XML_ERR_BAD_FORMAT:
        return "bad-format";
    case XML_ERR_INVALID_NAMESPACE:
        return "invalid-namespace";
    case XML_ERR_NOT_WELL_FORMED:
        return "not-well-formed";
    case XML_ERR_POLICY_VIOLATION:
        return "policy-violation";
    case XML_ERR_RESOURCE_CONSTRAINT:
        return "resource-constraint";
    case XML_ERR_RESTRICTED_XML:
        return "restricted-xml";
    }
    return "undefined-condition";
}

xml_slice xml_stream_default_namespace(const xml_tokenizer *t)
{
    const struct xml_stream_facts *f = &t->facts;
    return (xml_slice){f->strings + f->default_offset, f->default_length};
}

size_t xml_stream_prefix_count(const xml_tokenizer *t)
{
    return t->facts.prefix_count;
}

void xml_stream_prefix(const xml_tokenizer *t, size_t index, xml_slice *prefix, xml_slice *uri)
{
    const struct xml_stream_facts *f = &t->facts;
    assert(index < f->prefix_count);
    *prefix = (xml_slice){f->strings + f->prefixes[index].prefix_offset,
                          f->prefixes[index].prefix_length};
    *uri = (xml_slice){f->strings + f->prefixes[index].uri_offset, f->prefixes[index].uri_length};
}
