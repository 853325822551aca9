/*
 * strbuf.h - a growing, always NUL-terminated string (JSON bodies, query strings,
 * the YAML dump, the metrics text). Out of memory sets failed and keeps what was
 * built; callers check failed once at the end instead of after every append.
 */
#ifndef AHOYD_STRBUF_H
#define AHOYD_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

struct strbuf {
    char *s; /* malloc'd, NULL until the first append */
    size_t len, cap;
    bool failed;
};

void strbuf_add(struct strbuf *b, const char *s, size_t n);
void strbuf_puts(struct strbuf *b, const char *s);
void strbuf_printf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * JSON string escaping, the one set of rules for the access log and the error bodies:
 * '"' '\\' and newline, return, tab as two-character escapes; every other byte below
 * 0x20, 0x7f and every byte >= 0x80 as \u00XX (or \xNN when high_as_x, for logfmt), so
 * no byte from a client can end a string, break a line or slip past a terminal.
 * Escapes bytes of s (up to its NUL or max bytes) into dst while fewer than room bytes
 * are written: dst must hold room + 6. Returns the bytes written; *used (may be NULL)
 * the bytes of s consumed. No quotes are added.
 */
size_t json_escape(char *dst, size_t room, const char *s, size_t max, bool high_as_x,
                   size_t *used);
/* s escaped by json_escape() between double quotes. */
void strbuf_json_string(struct strbuf *b, const char *s);

/* The same growth for a byte buffer kept as (*buf, *len, *cap) (request and response
 * bodies, not NUL-terminated): append n bytes, the capacity doubling from 4 KiB but
 * never past limit when limit is not 0 and holds the data. Returns 0, or -1 when out of
 * memory (nothing appended). */
int strbuf_bytes_append(char **buf, size_t *len, size_t *cap, const char *data, size_t n,
                        size_t limit);

/* Room for one more item in an array of n items of size bytes with capacity *cap:
 * when full, the array reallocated with its capacity doubled (first when 0). Returns
 * the array, or NULL when out of memory (the array and *cap unchanged). */
void *array_grow(void *items, size_t n, size_t *cap, size_t size, size_t first);

#endif
