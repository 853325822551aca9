/*
 * template.h - checking method templates ("GET /payments/{payment_id}").
 */
#ifndef AHOYD_TEMPLATE_H
#define AHOYD_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

/* Is "VERB /path" a valid method template (an HTTP token as the verb, balanced
 * whole-segment {name} placeholders, no ? or #)? On false, *why (if why is not
 * NULL) says what is wrong. */
bool template_valid(const char *spec, const char **why);

/* The path part alone (len bytes): starts with '/', pchar segments and valid
 * %XX escapes, no "." or ".." segment, each {name} filling a segment, once. */
bool template_path_valid(const char *path, size_t len, const char **why);

#endif
