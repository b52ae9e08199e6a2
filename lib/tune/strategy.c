/* Search strategies (see strategy.h). */
#include "strategy.h"

#include "runtime/error.h"
#include "runtime/random.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define COOLING 0.97

double tune_uniform(uint64_t *state) { return (double)(mcl_splitmix64(state) >> 11) * 0x1.0p-53; }

static size_t below(uint64_t *state, size_t n) { return (size_t)(tune_uniform(state) * (double)n); }

mcl_status tune_strategy_init(tune_strategy *s, mcl_tune_strategy kind, const tune_space *space,
                              const mcl_tune_stage *stage, size_t budget, uint64_t seed, size_t start)
{
    size_t n = space->count;
    if (kind == MCL_TUNE_AUTO) kind = n <= budget ? MCL_TUNE_EXHAUSTIVE : MCL_TUNE_ANNEALING;
    *s = (tune_strategy){.kind = kind, .space = space, .stage = stage, .rng = seed, .current = TUNE_NONE,
                         .temperature = 1.0};
    s->budget = kind == MCL_TUNE_EXHAUSTIVE ? n : (budget < n ? budget : n);
    if (kind == MCL_TUNE_ANNEALING) {
        s->visited = calloc(n ? n : 1, 1);
        if (!s->visited) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "tuner: annealing over %zu candidates", n);
        s->current = start; /* measured first, then its neighbours */
        return MCL_OK;
    }
    s->order = malloc((n ? n : 1) * sizeof *s->order);
    if (!s->order) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "tuner: an order of %zu candidates", n);
    for (size_t i = 0; i < n; i++) s->order[i] = i;
    if (kind == MCL_TUNE_RANDOM)
        for (size_t i = n; i > 1; i--) {
            size_t j = below(&s->rng, i), t = s->order[i - 1];
            s->order[i - 1] = s->order[j], s->order[j] = t;
        }
    return MCL_OK;
}

/* A random unvisited candidate, or TUNE_NONE when every one was visited. */
static size_t random_unvisited(tune_strategy *s)
{
    size_t n = s->space->count, left = 0;
    for (size_t i = 0; i < n; i++) left += !s->visited[i];
    if (!left) return TUNE_NONE;
    size_t pick = below(&s->rng, left);
    for (size_t i = 0; i < n; i++)
        if (!s->visited[i] && pick-- == 0) return i;
    return TUNE_NONE;
}

static size_t propose_annealing(tune_strategy *s, size_t *batch, size_t cap)
{
    size_t n = s->space->count, count = 0;
    if (!s->current_measured) {
        if (s->current == TUNE_NONE) s->current = random_unvisited(s);
        if (s->current == TUNE_NONE) return 0;
        s->visited[s->current] = 1;
        batch[count++] = s->current;
        return count;
    }
    /* unvisited neighbours of the current candidate, from a random place in the list */
    size_t first = below(&s->rng, n ? n : 1);
    for (size_t k = 0; k < n && count < cap; k++) {
        size_t i = (first + k) % n;
        if (s->visited[i] || !tune_space_neighbours(s->stage, &s->space->items[i], &s->space->items[s->current]))
            continue;
        s->visited[i] = 1;
        batch[count++] = i;
    }
    if (count == 0) {
        size_t jump = random_unvisited(s);
        if (jump == TUNE_NONE) return 0;
        s->visited[jump] = 1;
        batch[count++] = jump;
    }
    return count;
}

size_t tune_strategy_propose(tune_strategy *s, size_t *batch, size_t cap)
{
    if (s->proposed >= s->budget) return 0;
    if (cap > s->budget - s->proposed) cap = s->budget - s->proposed;
    size_t count;
    if (s->kind == MCL_TUNE_ANNEALING) {
        count = propose_annealing(s, batch, cap);
    } else {
        for (count = 0; count < cap && s->proposed + count < s->budget; count++)
            batch[count] = s->order[s->proposed + count];
    }
    s->proposed += count;
    return count;
}

void tune_strategy_report(tune_strategy *s, size_t index, double ms)
{
    if (s->kind != MCL_TUNE_ANNEALING) return;
    if (!s->current_measured) {
        if (index == s->current) s->current_ms = ms, s->current_measured = 1;
        return;
    }
    int accepted = ms < s->current_ms ||
                   (isfinite(ms) && tune_uniform(&s->rng) <
                                        exp(-(ms - s->current_ms) / (s->current_ms * s->temperature)));
    if (accepted) s->current = index, s->current_ms = ms;
    s->temperature *= COOLING;
}

void tune_strategy_free(tune_strategy *s)
{
    free(s->order);
    free(s->visited);
    s->order = NULL;
    s->visited = NULL;
}
