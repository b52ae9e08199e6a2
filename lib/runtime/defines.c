/* Kernel build options (see defines.h). */
#include "defines.h"

#include "error.h"

#include <stdio.h>
#include <string.h>

static void append(mcl_defines *d, const char *prefix, const char *name, long long value)
{
    if (d->overflow) return;
    int n = snprintf(d->text + d->len, sizeof d->text - d->len, " -D%s%s=%lld", prefix, name, value);
    if (n < 0 || (size_t)n >= sizeof d->text - d->len) {
        d->overflow = 1;
        d->text[d->len] = '\0';
        return;
    }
    d->len += (size_t)n;
}

void mcl_define(mcl_defines *d, const char *name, long long value) { append(d, "", name, value); }

void mcl_define_params(mcl_defines *d, const mcl_family *family, const void *values, const char *kernel)
{
    for (size_t i = 0; i < family->param_count; i++) {
        const char *reader = family->params[i].kernel;
        if (reader && strcmp(reader, kernel) == 0)
            append(d, family->define_prefix, family->params[i].name, mcl_param_get(family, values, i));
    }
}

mcl_status mcl_defines_check(const mcl_defines *d, const char *what)
{
    return d->overflow ? mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: build options exceed %d bytes", what,
                                  MCL_DEFINES_CAP)
                       : MCL_OK;
}
