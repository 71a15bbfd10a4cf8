/* Input framing: cut a client's byte stream into top-level JSON texts.
 *
 * QMP has no length prefix or mandatory separator: a read may carry several
 * messages or part of one.  A message ends when the braces and brackets it
 * opened are balanced again, counting only those outside strings.  A
 * top-level scalar ("3", "true", "\"x\"") is a message too, so that the
 * dispatcher can answer it with "QMP input must be a JSON object". */
#include "qmp-internal.h"

#include <string.h>

struct QmpSplitter {
    GString *buf;           /* the message being collected */
    bool in_message;
    bool scalar;            /* a top-level number/keyword, ends at a delimiter */
    bool in_string;
    bool escape;            /* previous byte was a backslash inside a string */
    int depth;              /* open braces + brackets */
    bool discarding;        /* over a limit: skipping to the message's end */
    QmpTextFn on_text;
    QmpFramingErrorFn on_error;
    void *opaque;
};

QmpSplitter *qmp_splitter_new(QmpTextFn on_text, QmpFramingErrorFn on_error, void *opaque)
{
    QmpSplitter *s = g_new0(QmpSplitter, 1);
    s->buf = g_string_new(NULL);
    s->on_text = on_text;
    s->on_error = on_error;
    s->opaque = opaque;
    return s;
}

void qmp_splitter_free(QmpSplitter *s)
{
    if (s) {
        g_string_free(s->buf, TRUE);
        g_free(s);
    }
}

static bool is_json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool ends_scalar(char c)
{
    return is_json_space(c) || strchr("{}[]\",:", c) != NULL;
}

static void start_discarding(QmpSplitter *s, const char *why)
{
    s->discarding = true;
    g_string_truncate(s->buf, 0);
    s->on_error(why, s->opaque);
}

static void append(QmpSplitter *s, char c)
{
    if (s->discarding) {
        return;
    }
    if (s->buf->len >= QMP_MAX_MESSAGE) {
        start_discarding(s, "JSON parse error, message larger than 1 MiB");
        return;
    }
    g_string_append_c(s->buf, c);
}

/* The message is complete: hand it over (unless it was over a limit). */
static void finish(QmpSplitter *s)
{
    if (!s->discarding) {
        s->on_text(s->buf->str, s->buf->len, s->opaque);
    }
    g_string_truncate(s->buf, 0);
    s->in_message = s->scalar = s->in_string = s->escape = s->discarding = false;
    s->depth = 0;
}

static void open_nesting(QmpSplitter *s)
{
    s->depth++;
    if (s->depth > QMP_MAX_NESTING && !s->discarding) {
        start_discarding(s, "JSON parse error, too many nested data structures");
    }
}

static void start(QmpSplitter *s, char c)
{
    s->in_message = true;
    append(s, c);
    switch (c) {
    case '{':
    case '[':
        open_nesting(s);
        break;
    case '"':
        s->in_string = true;
        break;
    case '}':
    case ']':
        finish(s);      /* a stray closer: let the parser name the error */
        break;
    default:
        s->scalar = true;
        break;
    }
}

static void string_byte(QmpSplitter *s, char c)
{
    append(s, c);
    if (s->escape) {
        s->escape = false;
    } else if (c == '\\') {
        s->escape = true;
    } else if (c == '"') {
        s->in_string = false;
        if (s->depth == 0) {
            finish(s);
        }
    }
}

static void structure_byte(QmpSplitter *s, char c)
{
    append(s, c);
    switch (c) {
    case '"':
        s->in_string = true;
        break;
    case '{':
    case '[':
        open_nesting(s);
        break;
    case '}':
    case ']':
        if (--s->depth == 0) {
            finish(s);
        }
        break;
    default:
        break;
    }
}

static void feed_byte(QmpSplitter *s, char c)
{
    if (!s->in_message) {
        if (!is_json_space(c)) {
            start(s, c);
        }
    } else if (s->scalar) {
        if (ends_scalar(c)) {
            finish(s);
            feed_byte(s, c);    /* the delimiter may start the next message */
        } else {
            append(s, c);
        }
    } else if (s->in_string) {
        string_byte(s, c);
    } else {
        structure_byte(s, c);
    }
}

void qmp_splitter_feed(QmpSplitter *s, const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        feed_byte(s, buf[i]);
    }
}
