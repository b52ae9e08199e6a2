/* Compiling candidates ahead of timing them, on host threads: each thread owns a context on the
 * tuning context's queue that prepares calls (ops build their programs and plans but enqueue
 * nothing and take no workspace), with the candidate as its bucket's override. The programs
 * built then move into the tuning context's cache, so timing never waits for a compiler. A
 * candidate whose build fails costs only that candidate: its status and message are kept. */
#ifndef MCL_TUNE_COMPILE_H
#define MCL_TUNE_COMPILE_H

#include "runtime/context.h"
#include "runtime/family.h"

typedef struct tune_compiler {
    mcl_context *ctx;
    const mcl_tune_target *target;
    const mcl_family *family;
    const char *bucket;
    mcl_context **workers;
    unsigned count;
} tune_compiler;

mcl_status tune_compiler_init(tune_compiler *c, mcl_context *ctx, const mcl_tune_target *target,
                              const mcl_family *family, const char *bucket, unsigned threads);

/* Prepares values[i] (the family's parameter structs) on the threads; status[i] and
 * why[i] (256 bytes each) say how each went. */
void tune_compiler_prepare(tune_compiler *c, const mcl_param_block *const *values, size_t count,
                           mcl_status *status, char (*why)[256]);

void tune_compiler_free(tune_compiler *c);

#endif
