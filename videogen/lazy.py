"""torch, imported on first use.

The checks made before a model loads (a family's declared facts, its geometry, the fields it takes) live in the
same modules as the family's torch code. Importing torch costs about 4 s of CPU on a small machine, which a
`batch --dry-run` of 10,000 prompts or a refused flag must not pay: those modules write

    if TYPE_CHECKING:
        import torch
    else:
        from videogen.lazy import torch

and torch is imported the first time one of its attributes is read (type checkers see the real module)."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class LazyModule:
    """Stands for a module until an attribute is read, then imports it and forwards every read to it."""

    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:  # only called for names not set in __init__
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}{'' if self._module is None else ' (imported)'}>"


torch: Any = LazyModule("torch")


def no_grad(fn: F) -> F:
    """`@torch.no_grad()` without importing torch when the class is defined."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            return fn(*args, **kwargs)

    return call  # type: ignore[return-value]
