/* Composite ops' step sequences (see walk.h). */
#include "walk.h"

#include "runtime/error.h"

mcl_tensor mcl_walk_part(mcl_walk *walk, int part, size_t bytes)
{
    if (!walk->enqueue) {
        mcl_part_grow(&walk->bytes[part], bytes);
        return (mcl_tensor){NULL, 0};
    }
    return (mcl_tensor){walk->workspace, walk->offsets[part]};
}

mcl_status mcl_walk_step(const mcl_walk *walk, const char *step, mcl_status status)
{
    return step ? mcl_fail_within(status, "%s: %s", walk->op, step) : mcl_fail_within(status, "%s", walk->op);
}

mcl_status mcl_walk_size(mcl_context *ctx, const char *op, mcl_steps steps, const void *args, size_t *bytes)
{
    mcl_walk walk = {.ctx = ctx, .op = op};
    MCL_TRY(steps(&walk, args));
    *bytes = mcl_workspace_parts_size(walk.bytes, MCL_WALK_MAX_PARTS);
    return MCL_OK;
}

mcl_status mcl_walk_run(mcl_context *ctx, const char *op, mcl_steps steps, const void *args)
{
    mcl_walk walk = {.ctx = ctx, .op = op};
    MCL_TRY(steps(&walk, args));
    if (mcl_workspace_parts_size(walk.bytes, MCL_WALK_MAX_PARTS) > 0)
        MCL_TRY(mcl_fail_within(mcl_workspace_parts(ctx, walk.bytes, MCL_WALK_MAX_PARTS, &walk.workspace,
                                                    walk.offsets),
                                "%s", op));
    walk.enqueue = 1;
    return steps(&walk, args);
}

mcl_status mcl_walk_op(mcl_context *ctx, const char *op, mcl_steps steps, const void *args, cl_event *event)
{
    MCL_TRY(mcl_walk_run(ctx, op, steps, args));
    mcl_hand_event(ctx, event);
    return MCL_OK;
}
