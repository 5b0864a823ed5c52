"""Four float64 lanes as one Numba value, for kernels that LLVM would not vectorise by itself.

``f64x4`` is a Numba type whose LLVM representation is the vector ``<4 x double>`` (one AVX2 ``ymm``
register; two SSE registers on older x86-64), so a loop that carries f64x4 values keeps them in
registers. The operations are intrinsics, each a single LLVM instruction or intrinsic:

    vzero()            (0, 0, 0, 0)
    vload(A, e)        A's elements e, e + 1, e + 2, e + 3 in memory order (e: an element offset from
                       A's data pointer, strides included by the caller; unaligned is fine)
    vstore(A, e, v)    the reverse
    vfma(a, b, c)      a b + c lane by lane for a float64 a, rounded once per lane (llvm.fma.v4f64)
    load(A, e), store(A, e, x)   one element, likewise

Nothing is checked: offsets must lie inside A (the caller's loops guarantee it). Each lane of a
``vfma`` is exactly the scalar ``tanh.fma`` of the same operands, so a kernel built on these gives
the same floats as one written with scalars, on every CPU (without an FMA unit LLVM calls the C
library's correctly rounded ``fma``: slow, but the same bits).
"""

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic, models, register_model

V4 = ir.VectorType(ir.DoubleType(), 4)


class F64x4(types.Type):
    """Four float64 lanes in one LLVM vector value."""

    def __init__(self):
        super().__init__(name="f64x4")


f64x4 = F64x4()


@register_model(F64x4)
class _F64x4Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, V4)


def _element_pointer(context, builder, array_type, array, offset):
    """Pointer to the element ``offset`` elements past ``array``'s data pointer."""
    return builder.gep(context.make_array(array_type)(context, builder, array).data, [offset])


@intrinsic
def vzero(typingctx):
    """(0.0, 0.0, 0.0, 0.0)."""
    def codegen(context, builder, signature, args):
        return ir.Constant(V4, [0.0] * 4)
    return f64x4(), codegen


@intrinsic
def vload(typingctx, array, offset):
    """Elements offset .. offset + 3 of a float64 array's memory, as an f64x4."""
    def codegen(context, builder, signature, args):
        pointer = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load(builder.bitcast(pointer, V4.as_pointer()), align=8)
    return f64x4(array, offset), codegen


@intrinsic
def vstore(typingctx, array, offset, value):
    """Write an f64x4 to elements offset .. offset + 3 of a float64 array's memory."""
    def codegen(context, builder, signature, args):
        pointer = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        builder.store(args[2], builder.bitcast(pointer, V4.as_pointer()), align=8)
        return context.get_dummy_value()
    return types.none(array, offset, value), codegen


@intrinsic
def load(typingctx, array, offset):
    """Element ``offset`` of a float64 array's memory (no wraparound, no bounds check)."""
    def codegen(context, builder, signature, args):
        return builder.load(_element_pointer(context, builder, signature.args[0], args[0], args[1]))
    return types.float64(array, offset), codegen


@intrinsic
def store(typingctx, array, offset, value):
    """Write a float64 to element ``offset`` of an array's memory."""
    def codegen(context, builder, signature, args):
        builder.store(args[2], _element_pointer(context, builder, signature.args[0], args[0], args[1]))
        return context.get_dummy_value()
    return types.none(array, offset, types.float64), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    """a b + c in every lane, each rounded once, for a float64 a and f64x4 b, c."""
    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(V4, [V4, V4, V4]),
                                            "llvm.fma.v4f64")
        lane0 = builder.insert_element(ir.Constant(V4, ir.Undefined), args[0], ir.Constant(ir.IntType(32), 0))
        splat = builder.shuffle_vector(lane0, ir.Constant(V4, ir.Undefined),
                                       ir.Constant(ir.VectorType(ir.IntType(32), 4), [0, 0, 0, 0]))
        return builder.call(fn, [splat, args[1], args[2]])
    return f64x4(types.float64, f64x4, f64x4), codegen
