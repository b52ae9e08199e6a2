/* The glu family: sigmoid gating, SwiGLU and the add, elementwise kernels in a grid-stride loop. */
#ifndef MCL_OPS_GLU_H
#define MCL_OPS_GLU_H

#include "runtime/family.h"

/* vec elements per work-item step (shrunk to divide the element count or features and every
 * offset), wg work-items per group, groups_per_cu groups per compute unit in the loop's grid. */
typedef struct glu_params {
    int vec, wg, groups_per_cu;
} glu_params;

extern const mcl_family mcl_family_glu;

#endif
