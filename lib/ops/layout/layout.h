/* The layout family: the pair representation's layout changes (cl/layout/). */
#ifndef MCL_OPS_LAYOUT_H
#define MCL_OPS_LAYOUT_H

#include "runtime/family.h"

/* vec: values a work-item moves (shrunk to divide the width and every offset); wg: work-items per
 * group. */
typedef struct layout_params {
    int vec, wg;
} layout_params;

extern const mcl_family mcl_family_layout;

#endif
