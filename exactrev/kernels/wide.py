"""The one 128-bit operation the lanes need, as a Numba intrinsic for the CPU target.

``mulhi_shr(a, b, k) = floor(floor(a * b / 2**64) / 2**k)`` with ``a`` and ``b`` read as unsigned
64-bit integers (their int64 bit patterns) and ``0 <= k < 64``; the result's bits are returned as int64.
LLVM lowers it to one widening multiply and one logical shift (``mulx``/``shrx`` on x86-64).

It is the CPU argument of ``lanes.build_lanes``; targets without it (CUDA, and the CUDA simulator,
which runs device functions as Python) use the portable limb version that ``build_lanes`` defines.
"""

from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic


@intrinsic
def mulhi_shr(typingctx, a, b, k):
    """High 64 bits of the unsigned product a * b, shifted right (logically) by k."""
    sig = types.int64(types.int64, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        x, y, shift = args
        wide = ir.IntType(128)
        product = builder.mul(builder.zext(x, wide), builder.zext(y, wide))
        high = builder.trunc(builder.lshr(product, ir.Constant(wide, 64)), ir.IntType(64))
        return builder.lshr(high, shift)

    return sig, codegen
