/* ACSR backward's first step: delta = rowsum(dO * O) per (head, row), a work-item each. */
__kernel void acsr_delta(ACSR_ARGS)
{
    ACSR_OFFSETS;
    size_t id = get_global_id(0);
    if (id >= (size_t)BH * N) return;
    uint bh = (uint)(id / N), i = (uint)(id % N);
    float sum = 0.0f;
    for (uint d = 0; d < ACSR_D; d++) sum = fma(load_elem(dout, at(bh, i, d, N)), load_elem(o, at(bh, i, d, N)), sum);
    delta[id] = sum;
}
