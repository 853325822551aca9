/*
 * config_addr.c - listen addresses ("host:port", "[v6]:port", "unix:/path",
 * "off") and upstream URLs (http(s)://host[:port][/base/path]).
 *
 * Strict on purpose: no userinfo, query or fragment in a URL, only pchar in
 * its path, numeric IPv6 in brackets; the scheme decides TLS, never the port.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_int.h"
#include "units.h"

static bool host_name_ok(const char *h, size_t len)
{
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)h[i]) && h[i] != '.' && h[i] != '-' && h[i] != '_')
            return false;
    return true;
}

static bool parse_port(const char *s, size_t len, int min, int *port)
{
    char buf[8];
    int64_t v;
    if (len == 0 || len >= sizeof buf)
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (units_parse_int(buf, min, 65535, &v) != 0)
        return false;
    *port = (int)v;
    return true;
}

void cfg_listen_clear(struct listen_addr *l)
{
    free(l->text);
    free(l->host);
    free(l->path);
    memset(l, 0, sizeof(*l));
}

/* "host:port", "[v6]:port", "unix:/path", or (off_ok) off/false/no.
 * Over 80 lines because each form is checked in one left-to-right pass with
 * its own message for each way it can be wrong. */
static bool parse_listen(const char *s, bool off_ok, struct listen_addr *out, const char **why)
{
    bool b;
    memset(out, 0, sizeof(*out));
    if (off_ok && units_parse_bool(s, &b) == 0 && !b) {
        out->kind = LISTEN_OFF;
        out->text = xstrdup("off");
        return true;
    }
    if (strncmp(s, "unix:", 5) == 0) {
        const char *path = s + 5;
        if (path[0] != '/') {
            *why = "a unix socket path must be absolute";
            return false;
        }
        if (strlen(path) >= 108) {
            *why = "unix socket path too long";
            return false;
        }
        out->kind = LISTEN_UNIX;
        out->text = xstrdup(s);
        out->path = xstrdup(path);
        out->loopback = true;
        return true;
    }
    const char *host, *port;
    size_t host_len;
    bool v6 = false;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') {
            *why = "expected [address]:port";
            return false;
        }
        host = s + 1;
        host_len = (size_t)(close - host);
        port = close + 2;
        v6 = true;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon) {
            *why = "expected host:port, [address]:port or unix:/path";
            return false;
        }
        host = s;
        host_len = (size_t)(colon - s);
        port = colon + 1;
        if (memchr(host, ':', host_len) != NULL) {
            *why = "an IPv6 address needs brackets: [::1]:8080";
            return false;
        }
    }
    char hbuf[256];
    if (host_len == 0 || host_len >= sizeof hbuf) {
        *why = "missing host";
        return false;
    }
    memcpy(hbuf, host, host_len);
    hbuf[host_len] = '\0';
    if (!parse_port(port, strlen(port), 0, &out->port)) {
        *why = "port must be a number from 0 to 65535";
        return false;
    }
    unsigned char addr[16];
    if (v6) {
        if (inet_pton(AF_INET6, hbuf, addr) != 1) {
            *why = "bad IPv6 address";
            return false;
        }
        static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        static const unsigned char one[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        out->loopback =
            memcmp(addr, one, 16) == 0 || (memcmp(addr, v4mapped, 12) == 0 && addr[12] == 127);
    } else if (inet_pton(AF_INET, hbuf, addr) == 1) {
        out->loopback = addr[0] == 127;
    } else if (host_name_ok(hbuf, host_len)) {
        out->loopback = strcasecmp(hbuf, "localhost") == 0;
    } else {
        *why = "bad host name";
        return false;
    }
    out->kind = LISTEN_INET;
    out->text = xstrdup(s);
    out->host = xstrdup(hbuf);
    return true;
}

static bool is_unreserved_or_sub(char ch)
{
    return isalnum((unsigned char)ch) || strchr("-._~!$&'()*+,;=:@/", ch) != NULL;
}

void cfg_endpoint_clear(struct endpoint_conf *e)
{
    free(e->url);
    free(e->origin);
    free(e->host);
    free(e->base_path);
    memset(e, 0, sizeof(*e));
}

/* http(s)://host[:port][/base/path], no userinfo, query or fragment.
 * Over 80 lines because the URL is checked in one left-to-right pass (scheme,
 * bytes, authority, port, path), each step with its own message. */
bool cfg_parse_url(const char *s, struct endpoint_conf *e, const char **why)
{
    memset(e, 0, sizeof(*e));
    const char *rest;
    if (strncasecmp(s, "http://", 7) == 0) {
        rest = s + 7;
    } else if (strncasecmp(s, "https://", 8) == 0) {
        rest = s + 8;
        e->tls = true;
    } else {
        *why = "the scheme must be http:// or https://";
        return false;
    }
    for (const char *p = s; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
            *why = "spaces, control and non-ASCII characters are not allowed";
            return false;
        }
    }
    if (strpbrk(s, "?#") != NULL) {
        *why = "a query or fragment is not allowed";
        return false;
    }
    const char *path = strchr(rest, '/');
    size_t auth_len = path ? (size_t)(path - rest) : strlen(rest);
    if (memchr(rest, '@', auth_len) != NULL) {
        *why = "user info (user@) is not allowed";
        return false;
    }
    const char *host = rest, *port = NULL;
    size_t host_len;
    if (rest[0] == '[') {
        const char *close = memchr(rest, ']', auth_len);
        if (!close) {
            *why = "unbalanced '[' in host";
            return false;
        }
        char buf[64];
        unsigned char addr[16];
        size_t len = (size_t)(close - rest - 1);
        if (len >= sizeof buf) {
            *why = "bad IPv6 address";
            return false;
        }
        memcpy(buf, rest + 1, len);
        buf[len] = '\0';
        if (inet_pton(AF_INET6, buf, addr) != 1) {
            *why = "bad IPv6 address";
            return false;
        }
        host_len = (size_t)(close - rest) + 1;
        if (host_len < auth_len) {
            if (rest[host_len] != ':') {
                *why = "expected ':' after ']'";
                return false;
            }
            port = rest + host_len + 1;
        }
    } else {
        const char *colon = memchr(rest, ':', auth_len);
        host_len = colon ? (size_t)(colon - rest) : auth_len;
        if (colon)
            port = colon + 1;
        if (!host_name_ok(host, host_len)) {
            *why = host_len == 0 ? "missing host" : "bad host name";
            return false;
        }
    }
    e->port = e->tls ? 443 : 80;
    if (port && !parse_port(port, (size_t)(rest + auth_len - port), 1, &e->port)) {
        *why = "port must be a number from 1 to 65535";
        return false;
    }
    if (path) {
        for (const char *p = path; *p != '\0'; p++) {
            if (*p == '%') {
                if (!isxdigit((unsigned char)p[1]) || !isxdigit((unsigned char)p[2])) {
                    *why = "bad %-escape in path";
                    return false;
                }
                p += 2;
            } else if (!is_unreserved_or_sub(*p)) {
                *why = "character not allowed in path";
                return false;
            }
        }
    }
    /* kept as written: "/svc" forwards to the base path exactly (SPEC 3.1); the join
     * drops its trailing '/' when a rest follows */
    size_t plen = path ? strlen(path) : 0;
    e->url = xstrdup(s);
    e->host = strndup(host, host_len);
    e->base_path = strndup(path ? path : "", plen);
    e->origin = xasprintf("%s://%.*s", e->tls ? "https" : "http", (int)auth_len, rest);
    if (!e->host || !e->base_path)
        abort();
    e->weight = 1;
    return true;
}

/* A listen address; k->arg non-NULL: "off" (false, no) turns it off. */
static void read_listen(struct ctx *c, const struct key *k, struct node *map, struct sect *s,
                        struct dnode *d)
{
    struct node *n = node_get(map, k->name);
    const char *why = NULL;
    const char *t = n ? cfg_text(c, n, k->name, "an address") : NULL;
    struct listen_addr addr;
    (void)d;
    if (!t)
        return;
    if (!parse_listen(t, k->arg != NULL, &addr, &why)) {
        cfg_err(c, n, k->name, "bad address '%s': %s", cfg_show(c, t), why);
        return;
    }
    struct listen_addr *out = schema_field(s, k);
    cfg_listen_clear(out);
    *out = addr;
    schema_set_origin(s, k, cfg_origin(c, n));
}

static void dump_listen(struct ctx *c, const struct key *k, const struct sect *s, struct dnode *d)
{
    const struct listen_addr *l = schema_field(s, k);
    dump_leaf(c, d, k->name, l->kind == LISTEN_OFF ? "off" : dump_str(c, l->text),
              schema_origin(s, k));
}

const struct key_type type_listen = {read_listen, dump_listen};
