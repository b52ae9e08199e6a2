/* The registry of kernel families (data, BLIS-style): the runtime finds every family here.
 * Adding a family is adding its unit (lib/ops/<family>/, cl/<family>/) and one line below. */
#include "ops/acsr/acsr.h"
#include "ops/evoattn/evoattn.h"
#include "ops/flurka/flurka.h"
#include "ops/gemm/gemm.h"
#include "ops/glu/glu.h"
#include "ops/layernorm/layernorm.h"
#include "ops/layout/layout.h"
#include "ops/trimul/trimul.h"

const mcl_family *const mcl_family_registry[] = {
    &mcl_family_layernorm, &mcl_family_evoattn, &mcl_family_glu, &mcl_family_gemm, &mcl_family_trimul, &mcl_family_layout,
    &mcl_family_acsr, &mcl_family_flurka,
};
const size_t mcl_family_registry_count = MCL_COUNT(mcl_family_registry);
