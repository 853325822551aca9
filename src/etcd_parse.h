/*
 * etcd_parse.h - the etcd v3 JSON gateway's wire format (SPEC 4.6): base64
 * keys, the prefix's range_end, the range and watch request bodies, range
 * answers, watch stream messages and the endpoint value stored under a key.
 *
 * Pure: strings in, structs out; the transfer (libcurl) lives elsewhere.
 * Every struct filled here is owned by the caller and freed with its _free.
 */
#ifndef AHOYD_ETCD_PARSE_H
#define AHOYD_ETCD_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Standard base64 with padding. Returns the encoded length; writes it and a
 * NUL when size is larger than that (like snprintf). */
size_t etcd_base64_encode(const void *in, size_t n, char *out, size_t size);

/* Decodes (padding optional, no whitespace). out needs room for n / 4 * 3 + 3
 * bytes and a NUL, which is appended. Returns the decoded length or -1. */
long etcd_base64_decode(const char *in, size_t n, unsigned char *out);

/* The range_end that covers every key starting with prefix (etcd's
 * GetPrefixRangeEnd): the prefix with its last byte below 0xff incremented
 * and what follows dropped; "\0" (all keys) when there is no such byte.
 * out needs room for n bytes (at least 1). Returns the length written. */
size_t etcd_range_end(const unsigned char *prefix, size_t n, unsigned char *out);

/* Request bodies, malloc'd (free()), NULL when out of memory:
 *   {"key":b64(prefix),"range_end":b64(range_end)}
 *   {"create_request":{"key":...,"range_end":...,"start_revision":"N"}}
 * (start_revision left out when <= 0: the watch starts now). */
char *etcd_range_body(const char *prefix);
char *etcd_watch_body(const char *prefix, int64_t start_revision);

/* One key/value, decoded from base64 and NUL-terminated. */
struct etcd_kv {
    char *key;
    size_t key_len;
    char *value;
    size_t value_len;
    int64_t mod_revision;
};

/* POST /v3/kv/range answer. */
struct etcd_range {
    int64_t revision; /* header.revision: the store revision the range was read at */
    int64_t count;
    bool more; /* more keys than returned (never with no limit) */
    struct etcd_kv *kvs;
    int n_kvs;
};

enum etcd_event_type { ETCD_EVENT_PUT = 0, ETCD_EVENT_DELETE };

struct etcd_event {
    enum etcd_event_type type; /* an absent "type" is PUT (proto3 leaves defaults out) */
    struct etcd_kv kv;
};

/* One message of the POST /v3/watch stream (one JSON object per line). */
struct etcd_watch_msg {
    int64_t revision; /* header.revision, 0 when absent */
    bool created;
    bool canceled;
    int64_t compact_revision; /* > 0: the start revision was compacted away */
    bool error;               /* the gateway's {"error":{...}}: the stream is over */
    char *reason;             /* cancel_reason or the error's message, or NULL */
    struct etcd_event *events;
    int n_events;
};

/* 0 on success; -1 with a message in err (the answer is then unusable).
 * On failure *out is left empty (nothing to free, freeing is harmless). */
int etcd_parse_range(const char *body, size_t len, struct etcd_range *out, char *err,
                     size_t errsize);
int etcd_parse_watch(const char *line, size_t len, struct etcd_watch_msg *out, char *err,
                     size_t errsize);
void etcd_range_free(struct etcd_range *r);
void etcd_watch_msg_free(struct etcd_watch_msg *m);
void etcd_kv_free(struct etcd_kv *kv);

/* The value under an endpoint key: {"url":"http://10.0.0.7:8080/api","weight":2}.
 * url: a string starting http:// or https://, printable ASCII, no spaces, at most
 * ETCD_URL_MAX bytes (the wiring checks it further with the config's URL rules);
 * weight: optional, an integer from 1 to 1000000, default 1. Returns 0 and a
 * malloc'd *url, or -1 with a message in err. */
#define ETCD_URL_MAX 2048
int etcd_parse_endpoint(const char *value, size_t len, char **url, int *weight, char *err,
                        size_t errsize);

#endif
