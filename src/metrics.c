/* metrics.c - placeholder until written */
#include "metrics.h"
void metrics_note_request(struct service_state *st, int status, const char *error_code,
                          int64_t duration_us)
{
}
void metrics_service_free(struct service_metrics *m)
{
}
