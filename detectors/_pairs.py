"""Two streams' updates at once: arithmetic on pairs of floats, one SIMD instruction per operation.

A bank fed an interleaved batch updates its streams value by value (``detectors._runs``). Each
update loads its stream's row and stores it back, on top of the arithmetic a lone detector does,
so value by value a bank ran at 0.7-0.9 of a lone detector's rate. Two consecutive values of two
different streams are independent, though: their updates can share instructions. A *pair* is a
tuple ``(a, b)`` of floats, lane 0 of one stream and lane 1 of another; the operations below act
on both lanes with one 2-wide instruction (``<2 x double>`` in LLVM, an SSE register on x86), so
a division, a square root or an addition costs two streams what it costs one. Each lane's result
is exactly the scalar operation's (IEEE 754 rounds lanes independently), so a detector's pair
update decides bit for bit as its scalar ``_step``.

Comparisons give a *mask*, a tuple ``(bool, bool)``; :func:`where` picks lanes with one. Branches
become masks, so a pair update covers a detector's common case only (no detection pending on
either stream, say) and the scalar ``_step`` takes the rest.

Each operation is a plain Python function, the specification and what runs under
``NUMBA_DISABLE_JIT``, with a numba overload that emits the vector instruction. numba's on-disk
cache only notices edits to a kernel's own file: after changing this module, delete the detector
modules' ``__pycache__/*.nbi`` and ``*.nbc`` files.

Examples
--------
>>> from detectors._pairs import add, greater, sqrt, where
>>> add((1.0, 2.0), (0.5, 0.25))
(1.5, 2.25)
>>> sqrt((4.0, 2.25))
(2.0, 1.5)
>>> where(greater((1.0, 5.0), (2.0, 2.0)), (1.0, 1.0), (0.0, 0.0))
(0.0, 1.0)
"""

from __future__ import annotations

import math

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

_VECTOR = ir.VectorType(ir.DoubleType(), 2)
_LANES = ir.VectorType(ir.IntType(1), 2)
_PAIR = types.UniTuple(types.float64, 2)
_MASK = types.UniTuple(types.boolean, 2)


@njit(inline="always")
def gather(states, a, b, column):
    """``(states[a, column], states[b, column])``."""
    return states[a, column], states[b, column]


@njit(inline="always")
def scatter(states, a, b, column, pair):
    """``states[a, column], states[b, column] = pair``."""
    states[a, column], states[b, column] = pair


@njit(inline="always")
def splat(x):
    """``(x, x)``: a constant for both lanes."""
    return x, x


def add(u, v):
    """Lane-wise ``u + v``."""
    return u[0] + v[0], u[1] + v[1]


def sub(u, v):
    """Lane-wise ``u - v``."""
    return u[0] - v[0], u[1] - v[1]


def mul(u, v):
    """Lane-wise ``u * v``."""
    return u[0] * v[0], u[1] * v[1]


def div(u, v):
    """Lane-wise ``u / v`` (no lane may divide by zero: numba's numpy error model has no check)."""
    return u[0] / v[0], u[1] / v[1]


def sqrt(u):
    """Lane-wise ``math.sqrt(u)`` (of non-negative lanes)."""
    return math.sqrt(u[0]), math.sqrt(u[1])


def less(u, v):
    """Lane-wise ``u < v``."""
    return u[0] < v[0], u[1] < v[1]


def less_equal(u, v):
    """Lane-wise ``u <= v``."""
    return u[0] <= v[0], u[1] <= v[1]


def greater(u, v):
    """Lane-wise ``u > v``."""
    return u[0] > v[0], u[1] > v[1]


def greater_equal(u, v):
    """Lane-wise ``u >= v``."""
    return u[0] >= v[0], u[1] >= v[1]


def not_equal(u, v):
    """Lane-wise ``u != v``."""
    return u[0] != v[0], u[1] != v[1]


def both(m, k):
    """Lane-wise ``m and k`` of two masks."""
    return m[0] and k[0], m[1] and k[1]


def either(m, k):
    """Lane-wise ``m or k`` of two masks."""
    return m[0] or k[0], m[1] or k[1]


def but_not(m, k):
    """Lane-wise ``m and not k`` of two masks."""
    return m[0] and not k[0], m[1] and not k[1]


def any_lane(m):
    """``m[0] or m[1]``, one test of both lanes of a mask."""
    return m[0] or m[1]


def where(m, u, v):
    """Lane-wise ``u if m else v``."""
    return (u[0] if m[0] else v[0]), (u[1] if m[1] else v[1])


def _vector(builder, pair):
    vector = ir.Constant(_VECTOR, ir.Undefined)
    for lane in range(2):
        vector = builder.insert_element(vector, builder.extract_value(pair, lane), ir.IntType(32)(lane))
    return vector


def _lanes(builder, mask):
    lanes = ir.Constant(_LANES, ir.Undefined)
    for lane in range(2):
        lanes = builder.insert_element(lanes, builder.extract_value(mask, lane), ir.IntType(32)(lane))
    return lanes


def _tuple(context, builder, typ, vector):
    return context.make_tuple(builder, typ, [builder.extract_element(vector, ir.IntType(32)(lane)) for lane in range(2)])


@intrinsic
def _any_lane(typingctx, m):
    def codegen(context, builder, sig, args):
        bits = builder.bitcast(_lanes(builder, args[0]), ir.IntType(2))
        return builder.icmp_unsigned("!=", bits, ir.IntType(2)(0))

    return types.boolean(_MASK), codegen


overload(any_lane, inline="always")(lambda m: lambda m: _any_lane(m))


def _overload(function, signature, emit):
    """Give ``function`` a numba implementation: ``emit(builder, *vector_arguments)`` for its body."""
    pack = {_PAIR: _vector, _MASK: _lanes}

    def codegen(context, builder, sig, llvm_args):
        vectors = [pack[t](builder, a) for t, a in zip(signature.args, llvm_args)]
        return _tuple(context, builder, signature.return_type, emit(builder, *vectors))

    # numba matches an overload's arguments by name and count: one definition per arity
    if len(signature.args) == 1:
        vectorized = intrinsic(lambda typingctx, u: (signature, codegen))
        overload(function, inline="always")(lambda u: lambda u: vectorized(u))
    elif len(signature.args) == 2:
        vectorized = intrinsic(lambda typingctx, u, v: (signature, codegen))
        overload(function, inline="always")(lambda u, v: lambda u, v: vectorized(u, v))
    else:
        vectorized = intrinsic(lambda typingctx, m, u, v: (signature, codegen))
        overload(function, inline="always")(lambda m, u, v: lambda m, u, v: vectorized(m, u, v))


for _function, _instruction in ((add, "fadd"), (sub, "fsub"), (mul, "fmul"), (div, "fdiv")):
    _overload(_function, _PAIR(_PAIR, _PAIR), lambda builder, u, v, name=_instruction: getattr(builder, name)(u, v))
# Python's comparisons of floats: ordered, but for "!=" (true when a lane is NaN)
for _function, _operator in ((less, "<"), (less_equal, "<="), (greater, ">"), (greater_equal, ">=")):
    _overload(_function, _MASK(_PAIR, _PAIR), lambda builder, u, v, op=_operator: builder.fcmp_ordered(op, u, v))
_overload(not_equal, _MASK(_PAIR, _PAIR), lambda builder, u, v: builder.fcmp_unordered("!=", u, v))
_overload(both, _MASK(_MASK, _MASK), lambda builder, m, k: builder.and_(m, k))
_overload(either, _MASK(_MASK, _MASK), lambda builder, m, k: builder.or_(m, k))
_overload(but_not, _MASK(_MASK, _MASK), lambda builder, m, k: builder.and_(m, builder.not_(k)))
_overload(where, _PAIR(_MASK, _PAIR, _PAIR), lambda builder, m, u, v: builder.select(m, u, v))
_overload(
    sqrt,
    _PAIR(_PAIR),
    lambda builder, u: builder.call(
        cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VECTOR, [_VECTOR]), "llvm.sqrt.v2f64"), [u]
    ),
)
