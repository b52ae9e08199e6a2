/* A stage's candidates on a device: the union of its alternative sub-spaces (see
 * mcl_tune_stage), each the product of its axes' values over the stage's starting point, kept
 * where the family's legality check and the SIMD rule accept them, without repeats. */
#ifndef MCL_TUNE_SPACE_H
#define MCL_TUNE_SPACE_H

#include "runtime/family.h"

/* The most candidates a stage may propose before legality: a space larger than this is a
 * declaration to narrow, not one to search. */
#define TUNE_MAX_PROPOSED ((size_t)1 << 20)

typedef struct tune_candidate {
    mcl_param_block values;
    unsigned alternative;
    unsigned char coords[MCL_MAX_PARAMS]; /* the index of each axis's value */
} tune_candidate;

typedef struct tune_space {
    tune_candidate *items;
    size_t count, capacity;
    size_t proposed; /* before legality and repeats were taken out */
} tune_space;

/* Enumerates the stage over `start` (the family's parameter struct) on the device. */
mcl_status tune_space_enumerate(const mcl_family *family, const mcl_tune_stage *stage, const void *start,
                                const mcl_device_info *device, tune_space *space);

void tune_space_free(tune_space *space);

/* Whether candidates a and b are neighbours: the same alternative, one axis one value apart. */
int tune_space_neighbours(const mcl_tune_stage *stage, const tune_candidate *a, const tune_candidate *b);

/* The values an axis takes on the device (its CPU values on a CPU where it has some). */
const int *tune_axis_values(const mcl_tune_axis *axis, const mcl_device_info *device, size_t *count);

#endif
