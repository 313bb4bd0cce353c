"""A leaner launch path for Taichi kernels called with torch tensors.

Taichi's ``Kernel.__call__`` re-derives the compiled instance and converts every argument in
Python on every call, hundreds of microseconds per launch (``benchmarks/launch_overhead.py``
measures it). The wrapper below lets Taichi compile and launch the first call of each argument
signature (dtypes, dimensions, device, template values) as usual, keeps what that call
compiled, and from then on fills the launch context directly: one pybind call per argument.

It relies on the launch API of Taichi 1.7 (``make_launch_context``, ``compile_kernel``,
``launch_kernel``); a kernel it cannot serve that way (an unknown argument type, a return
value, another Taichi) keeps Taichi's own path.
"""

from __future__ import annotations

from typing import Any, Callable

from taichi.lang import impl

_TENSOR, _FLOAT, _INT, _UINT, _TEMPLATE, _FLOAT_VECTOR = range(6)


def _argument_kinds(primal: Any) -> list[tuple[int, int]] | None:
    """How each argument of the Taichi kernel ``primal`` is passed, as ``(kind, vector
    length)``, or None when one is of a kind this launcher does not handle."""
    import taichi as ti
    from taichi.lang.matrix import VectorType
    from taichi.types import ndarray_type, primitive_types

    kinds = []
    for argument in primal.arguments:
        annotation = argument.annotation
        if isinstance(annotation, ti.template):
            kinds.append((_TEMPLATE, 0))
        elif isinstance(annotation, ndarray_type.NdarrayType):
            if annotation.dtype is None or id(annotation.dtype) not in primitive_types.type_ids:
                return None
            kinds.append((_TENSOR, 0))
        elif isinstance(annotation, VectorType):
            if annotation.dtype not in primitive_types.real_types:
                return None
            kinds.append((_FLOAT_VECTOR, annotation.n))
        elif id(annotation) in primitive_types.real_type_ids:
            kinds.append((_FLOAT, 0))
        elif id(annotation) in primitive_types.integer_type_ids:
            signed = annotation in (ti.i8, ti.i16, ti.i32, ti.i64)
            kinds.append((_INT if signed else _UINT, 0))
        else:
            return None
    return kinds


class FastKernel:
    """Callable like the ``@ti.kernel`` function it wraps (positional arguments only).

    Tensor arguments must be contiguous and on the backend's device; the first call with each
    signature goes through Taichi, which checks them.
    """

    def __init__(self, kernel: Callable):
        self._kernel = kernel
        self._primal = kernel._primal
        self._kinds = _argument_kinds(self._primal)
        if self._primal.return_type is not None:
            self._kinds = None
        self._compiled: dict[tuple, tuple[Any, Any, Any]] = {}
        self.__doc__ = kernel.__doc__
        self.__name__ = getattr(kernel, "__name__", "kernel")

    def _signature(self, args: tuple) -> tuple:
        return tuple(
            (a.dtype, a.dim(), a.is_cuda) if kind == _TENSOR else a if kind == _TEMPLATE else None
            for (kind, _), a in zip(self._kinds, args)
        )

    def __call__(self, *args: Any) -> None:
        if self._kinds is None or len(args) != len(self._kinds):
            return self._kernel(*args)
        signature = self._signature(args)
        compiled = self._compiled.get(signature)
        if compiled is None:
            self._kernel(*args)
            self._compiled[signature] = self._compiled_instance(args)
            return None
        kernel_cpp, kernel_data, program = compiled
        if program is not impl.get_runtime().prog:  # Taichi was reset: compile again
            del self._compiled[signature]
            return self(*args)
        context = kernel_cpp.make_launch_context()
        slot = 0
        for (kind, length), value in zip(self._kinds, args):
            if kind == _TEMPLATE:
                continue
            if kind == _TENSOR:
                if not value.is_contiguous():
                    raise ValueError(f"{self.__name__}: tensor arguments must be contiguous")
                context.set_arg_external_array_with_shape(
                    (slot,), value.data_ptr(), value.element_size() * value.numel(), tuple(value.shape), 0)
            elif kind == _FLOAT:
                context.set_arg_float((slot,), float(value))
            elif kind == _FLOAT_VECTOR:
                if len(value) != length:
                    raise ValueError(f"{self.__name__}: expected a vector of {length} numbers, got {value!r}")
                for j in range(length):
                    context.set_struct_arg_float((slot, j), float(value[j]))
            elif kind == _INT:
                context.set_arg_int((slot,), int(value))
            else:
                context.set_arg_uint((slot,), int(value))
            slot += 1
        program.launch_kernel(kernel_data, context)
        return None

    def _compiled_instance(self, args: tuple) -> tuple[Any, Any, Any]:
        key = self._primal.ensure_compiled(*args)
        kernel_cpp = self._primal.compiled_kernels[key]
        program = impl.get_runtime().prog
        kernel_data = program.compile_kernel(program.config(), program.get_device_caps(), kernel_cpp)
        return kernel_cpp, kernel_data, program


def fast_launch(kernel: Callable) -> FastKernel:
    """Decorator over ``@ti.kernel``: the same kernel with the lean launch path."""
    return FastKernel(kernel)
