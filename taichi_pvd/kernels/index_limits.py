"""Row blocks for per-sample kernels over more values than Taichi indexes in one launch.

Taichi 1.7 computes the element offsets of an ndarray, and the flat iteration count of a
``ti.ndrange`` loop, in int32; past 2^31 it only warns ("Ndarray index might be out of int32
boundary"). A kernel over ``[N, C]`` per-sample values with ``N * C >= 2^31`` then runs no
iteration at all, and its ``torch.empty`` output keeps whatever the allocator handed back. On
CUDA the limit is lower still: each thread strides through the loop by the launch's grid size
in int32, so a loop that ends within one stride of 2^31 wraps to negative indices and reads and
writes outside its arrays (an illegal memory access). The per-sample kernels therefore launch on
row blocks of at most 2^30 values, leaving 2^30 iterations of room for the stride.
"""

#: Values one launch of a per-sample kernel may index: half of Taichi's int32 offsets and loop
#: counts, the other half being room for a CUDA thread's last stride past the end of the loop.
MAX_VALUES_PER_LAUNCH = 2**30


def row_blocks(n_rows: int, values_per_row: int) -> list[slice]:
    """Consecutive slices covering rows ``0 .. n_rows - 1``, each of at most
    :data:`MAX_VALUES_PER_LAUNCH` values at ``values_per_row`` values a row (a kernel's widest
    per-row array or loop); one slice for rows that fit, none for no rows."""
    rows = max(1, MAX_VALUES_PER_LAUNCH // max(values_per_row, 1))
    return [slice(start, min(start + rows, n_rows)) for start in range(0, n_rows, rows)]
