/*
 * dashboard.h - the admin listener's page (GET /): src/dashboard.html, compiled in.
 *
 * make generates dashboard_html.c from the HTML file (the bytes, with od and sed), so
 * the page is one self-contained resource inside the binary.
 */
#ifndef AHOYD_DASHBOARD_H
#define AHOYD_DASHBOARD_H

#include <stddef.h>

extern const unsigned char dashboard_html[]; /* NUL-terminated */
extern const size_t dashboard_html_len;      /* without the NUL */

#endif
