"""Peak memory of a computation, counted on meta or fake tensors (no weights, no GPU, no real arithmetic).

`StorageCounter` adds the bytes of every new tensor storage an operator returns and subtracts them when the
storage is freed (a weakref callback), so its peak is what a caching allocator would have to hold at once, minus
rounding and fragmentation. The same counter runs on real tensors, which is how tests check it.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from videogen.plan.components import Component, default_dtype, instantiate

log = logging.getLogger("videogen")
T = TypeVar("T")


class StorageCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._sizes: dict[int, int] = {}  # id of a live storage -> its bytes

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        operands: set[int] | None = None
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                if id(storage) in self._sizes:
                    continue
                if operands is None:
                    operands = {id(a.untyped_storage()) for a in tree_leaves((args, kwargs))
                                if isinstance(a, torch.Tensor)}
                # A view of an operand allocates nothing: `linear` runs as t(weight) + addmm, and counting the
                # transposed weight's storage added every block's weights to the activations.
                if id(storage) not in operands:
                    self._add(storage)
        return out

    def _add(self, storage: torch.UntypedStorage) -> None:
        key = id(storage)
        if key in self._sizes:
            return
        n = storage.nbytes()
        self._sizes[key] = n
        self.live += n
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._free, key)

    def _free(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)


def _random_ops() -> set[Any]:
    aten = torch.ops.aten
    return {aten.uniform_.default, aten.normal_.default, aten.random_.default, aten.exponential_.default,
            aten.bernoulli_.float, aten.log_normal_.default, aten.geometric_.default, aten.cauchy_.default}


class _SkipInit(TorchDispatchMode):
    """Random initialisation is pointless on fake tensors (and some decompositions of it fail): skip it."""

    def __init__(self) -> None:
        super().__init__()
        self.skip = _random_ops()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in self.skip:
            return args[0]
        return func(*args, **(kwargs or {}))


@contextmanager
def fake_mode() -> Iterator[Any]:
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        yield mode


def fake_module(comp: Component, dtype: torch.dtype, overrides: dict[str, Any]) -> torch.nn.Module:
    """Build `comp` (with config `overrides`, e.g. one block) as fake CPU tensors in `dtype`.

    Built under torch.set_default_dtype because `.to()` on fake parameters fails; fake CPU tensors because
    fake CUDA ones still reach real CUDA code on a CPU-only torch (rotary tables indexed at run time).
    """
    with default_dtype(dtype), _SkipInit():
        return instantiate(comp, overrides)


def peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak bytes of the new storages `fn` creates (call it inside `fake_mode()` for a prediction)."""
    counter = StorageCounter()
    with torch.no_grad(), counter:
        result = fn()
        del result
    return counter.peak


class _FusedAttentionOnMeta(TorchFunctionMode):
    """Attention on meta tensors as a fused kernel, the way a GPU (and a fake-tensor trace) runs it.

    On the meta device `scaled_dot_product_attention` falls back to its math form, which holds the whole
    attention matrix (97 GiB instead of 1.7 for one Wan 1.3B step at 480p); the fused CPU kernel's meta function
    gives the output and its log-sum-exp, as flash attention does on a GPU."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is torch.nn.functional.scaled_dot_product_attention and not kwargs.get("enable_gqa"):
            names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")
            given = {**dict(zip(names, args, strict=False)), **kwargs}
            q, k, v = given["query"], given["key"], given["value"]
            if q.device.type == "meta" and q.shape[-1] == v.shape[-1]:
                mask = given.get("attn_mask")
                if mask is not None and mask.dtype == torch.bool:
                    # torch turns a boolean mask into an additive one of the query's dtype before the CPU and
                    # math kernels (S^2 values for a full [B, 1, S, S] mask); CUDA's memory-efficient kernel may
                    # take the boolean one as it is: counted all the same, so the plan errs high, never low
                    zero, minus = torch.zeros((), dtype=q.dtype), torch.full((), -torch.inf, dtype=q.dtype)
                    mask = torch.where(mask, zero, minus)
                return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                    q, k, v, given.get("dropout_p", 0.0), bool(given.get("is_causal", False)),
                    attn_mask=mask, scale=given.get("scale"))[0]
        return func(*args, **kwargs)


NONZERO = "nonzero"  # a tensor none of whose elements is zero (random normal values)
# Operators that keep a tensor's uniform value: conversions, views, copies, pieces.
_KEEPS = {"bool", "long", "int", "float", "half", "bfloat16", "to", "type", "clone", "contiguous", "detach", "view",
          "reshape", "expand", "expand_as", "repeat", "unsqueeze", "squeeze", "flatten", "unflatten", "transpose",
          "permute", "select", "narrow", "__getitem__", "unbind", "chunk", "split"}


class _UniformValues(TorchFunctionMode):
    """The values of uniform tensors (masks, fills, random inputs) where meta and fake tensors hold none.

    Some denoisers gather their valid text tokens by their masks (`x[mask]`, `torch.nonzero(mask)`) and test their
    inputs (`torch.all(image_embeds == 0)`): both need values. The planner's inputs are uniform (full masks,
    random embeddings, fills of zeros or ones), so this mode follows each tensor that is all one value through
    conversions, views, negations, comparisons with 0 and reductions, and answers those questions from it. A
    tensor it cannot follow stays unknown: on meta the trace then falls back to fake tensors, as before."""

    def __init__(self) -> None:
        super().__init__()
        self._known: dict[int, tuple[weakref.ref[torch.Tensor], Any]] = {}

    def value(self, x: Any) -> Any:
        entry = self._known.get(id(x)) if isinstance(x, torch.Tensor) else None
        return entry[1] if entry is not None and entry[0]() is x else None

    def _note(self, out: Any, v: Any) -> Any:
        if v is not None:
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    self._known[id(t)] = (weakref.ref(t), v)
        return out

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        first = args[0] if args else None
        v = self.value(first)
        if name == "__bool__" and v is not None:
            return v is not False
        if name == "__getitem__" and isinstance(args[1], torch.Tensor) and args[1].dtype == torch.bool:
            keep = self.value(args[1])
            if keep is not None:  # all of the masked rows, or none of them
                rows = first.reshape(-1, *first.shape[args[1].dim():])
                return self._note(rows.clone() if keep is not False else rows[:0].clone(), v)
        if name == "nonzero" and v is not None and not kwargs.get("as_tuple"):  # every index, or none: [n, dims]
            grid = torch.meshgrid(*(torch.arange(n, device=first.device) for n in first.shape), indexing="ij")
            index = torch.stack(grid, -1).reshape(-1, first.dim())
            return index if v is not False else index[:0]
        out = func(*args, **kwargs)
        if name in ("ones", "ones_like", "new_ones"):
            return self._note(out, True)
        if name in ("zeros", "zeros_like", "new_zeros"):
            return self._note(out, False)
        if name in ("randn", "randn_like"):
            return self._note(out, NONZERO)
        if v is None:
            if name in ("cat", "stack") and first:  # pieces of one value (empty ones aside) make that value
                seen = {self.value(t) for t in first if t.numel()}
                return self._note(out, seen.pop() if len(seen) == 1 else None)
            return out
        if name in _KEEPS:
            return self._note(out, True if v is NONZERO and out.dtype == torch.bool else v)
        if name == "logical_not" or (name in ("__invert__", "bitwise_not") and first.dtype == torch.bool):
            return self._note(out, v is False)
        if name in ("eq", "__eq__", "ne", "__ne__") and len(args) > 1 and isinstance(args[1], (int, float)) \
                and args[1] == 0:
            return self._note(out, (v is False) == name.startswith(("eq", "__eq")))
        if name in ("all", "any"):
            return self._note(out, v is not False)
        if name in ("__and__", "logical_and", "bitwise_and", "__or__", "logical_or", "bitwise_or"):
            w = self.value(args[1])
            if w is not None:
                a, b = v is not False, w is not False
                return self._note(out, (a and b) if "and" in name else (a or b))
        if name == "pad" and bool(kwargs.get("value", 0)) == (v is not False):
            return self._note(out, v)
        return out


def traced(comp: Component, dtype: torch.dtype, overrides: dict[str, Any],
           work: Callable[[torch.nn.Module], T]) -> T:
    """`work(module)` on `comp` built without memory: on the meta device, or on fake tensors where that fails.

    Meta tensors go straight to torch's meta kernels, about twice as fast as fake tensors, whose Python layer
    costs most of a trace (measured on the Wan VAE's decode: 2.9 s against 6.6 s, the same peak to the byte).
    They cannot give a value (`.item()` in the text encoders' masks and position buckets) and autocast refuses
    them (Mochi), so those components are traced on fake tensors, which carry small constants. Factory calls
    (`torch.randn` in `work`) follow the default device, so inputs are made on the same device as the module.
    """
    try:
        with torch.device("meta"), default_dtype(dtype), _FusedAttentionOnMeta(), _UniformValues():
            return work(instantiate(comp, overrides))
    except (RuntimeError, NotImplementedError) as e:
        log.debug("plan: %s on the meta device failed (%s); tracing on fake tensors", comp.name, e)
    with fake_mode(), _UniformValues():
        return work(fake_module(comp, dtype, overrides))
