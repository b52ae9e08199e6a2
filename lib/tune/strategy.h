/* Search strategies over a stage's candidates: the order in which candidates are proposed, in
 * batches (one candidate per compile thread), and what a measured time changes.
 *   exhaustive  every candidate, in declaration order
 *   random      a seeded sample without repeats
 *   annealing   simulated annealing as Kernel Tuner runs it, batched: each step proposes
 *               unvisited neighbours of the current candidate (one axis moved one value); a
 *               worse one is accepted with probability exp(-(t - t_current) / (t_current T)),
 *               T falling by 3% a measurement; with no unvisited neighbour left it jumps to a
 *               random unvisited candidate. */
#ifndef MCL_TUNE_STRATEGY_H
#define MCL_TUNE_STRATEGY_H

#include "space.h"

#define TUNE_NONE ((size_t)-1)

typedef struct tune_strategy {
    mcl_tune_strategy kind;
    const tune_space *space;
    const mcl_tune_stage *stage;
    size_t budget, proposed;
    uint64_t rng;
    size_t *order;          /* exhaustive and random */
    unsigned char *visited; /* annealing */
    size_t current;
    int current_measured;
    double current_ms, temperature;
} tune_strategy;

/* `kind` MCL_TUNE_AUTO resolves to exhaustive when the space fits `budget`, else annealing.
 * `start` is the candidate annealing starts from (TUNE_NONE: a random one). */
mcl_status tune_strategy_init(tune_strategy *s, mcl_tune_strategy kind, const tune_space *space,
                              const mcl_tune_stage *stage, size_t budget, uint64_t seed, size_t start);

/* Up to `cap` candidates to measure next (indices into the space); 0 when the search is over. */
size_t tune_strategy_propose(tune_strategy *s, size_t *batch, size_t cap);

/* The median time of a proposed candidate; INFINITY for one that failed. */
void tune_strategy_report(tune_strategy *s, size_t index, double ms);

void tune_strategy_free(tune_strategy *s);

/* A uniform draw in [0, 1) from a splitmix64 state. */
double tune_uniform(uint64_t *state);

#endif
