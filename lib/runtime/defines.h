/* Build options of a kernel: the -D defines of its tuning parameters and of what the host
 * derives per call. The text has a fixed room; adding past it marks the set as overflowed,
 * and building with an overflowed set fails with a message instead of truncating it. */
#ifndef MCL_RUNTIME_DEFINES_H
#define MCL_RUNTIME_DEFINES_H

#include "family.h"

#define MCL_DEFINES_CAP 1536

typedef struct mcl_defines {
    char text[MCL_DEFINES_CAP]; /* " -DNAME=VALUE -DNAME=VALUE" */
    size_t len;
    int overflow;
} mcl_defines;

/* Appends -D<name>=<value>. */
void mcl_define(mcl_defines *d, const char *name, long long value);

/* Appends -D<prefix><name>=<value> for each kernel parameter of the family that `kernel` reads,
 * from the values of its parameter struct; host choices are never defines. */
void mcl_define_params(mcl_defines *d, const mcl_family *family, const void *values, const char *kernel);

/* MCL_OK, or MCL_ERR_INVALID_ARGUMENT naming `what` when the defines did not fit. */
mcl_status mcl_defines_check(const mcl_defines *d, const char *what);

#endif
