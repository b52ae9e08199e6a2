/* SplitMix64 (Steele, Lea and Flood, 2014): the library's one generator of reproducible
 * pseudo-random numbers (the tuner's sampling and annealing, the loader's MSA sampling). */
#ifndef MCL_RUNTIME_RANDOM_H
#define MCL_RUNTIME_RANDOM_H

#include <stdint.h>

/* The finaliser: a bijective mix of 64 bits. */
static inline uint64_t mcl_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The next value of a SplitMix64 stream. */
static inline uint64_t mcl_splitmix64(uint64_t *state)
{
    *state += 0x9e3779b97f4a7c15ull;
    return mcl_mix64(*state);
}

#endif
