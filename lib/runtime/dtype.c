/* Storage dtypes. */
#include "megacl.h"

size_t mcl_dtype_size(mcl_dtype dtype)
{
    switch (dtype) {
    case MCL_F32: return 4;
    case MCL_BF16:
    case MCL_F16: return 2;
    }
    return 0;
}

const char *mcl_dtype_name(mcl_dtype dtype)
{
    switch (dtype) {
    case MCL_F32: return "f32";
    case MCL_BF16: return "bf16";
    case MCL_F16: return "f16";
    }
    return "?";
}
