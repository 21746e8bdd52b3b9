"""Temporary module hooks that cannot outlive their ``with`` block (docs/design.md §1).

Masking (head/filter masks), the sparse parametrisation (delta terms) and the hook-based
Fisher pass all attach hooks to a model for the duration of one block. They share this one
mechanism: every handle is tracked and removed in ``finally``, also when the forward pass
raises, so no hook ever leaks into a later call. A ``copy.deepcopy`` of the model taken inside a
block carries the hook functions along, not their handles: they are switched off for good
when the block ends, so a copy never keeps a stale mask or tap.

    with temporary_hooks() as hooks:
        hooks.forward_pre(layer.attn_out, scale_heads)
        hooks.forward(layer.ffn_in, add_delta)
        model(**batch)
    # every hook is gone here
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

from torch import nn
from torch.utils.hooks import RemovableHandle

PreHook = Callable[[nn.Module, tuple], Any]
ForwardHook = Callable[[nn.Module, tuple, Any], Any]


class HookSet:
    """The hooks of one :func:`temporary_hooks` block (add with :meth:`forward_pre` /
    :meth:`forward`; all are removed when the block ends)."""

    def __init__(self) -> None:
        self._handles: list[RemovableHandle] = []
        self._live = True

    def _until_removed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn``, inert (returns None) once the block has ended."""
        def hook(*args: Any) -> Any:
            return fn(*args) if self._live else None
        return hook

    def forward_pre(self, module: nn.Module, fn: PreHook) -> None:
        """``fn(module, args) -> new args | None`` before ``module.forward``."""
        self._handles.append(module.register_forward_pre_hook(self._until_removed(fn)))

    def forward(self, module: nn.Module, fn: ForwardHook) -> None:
        """``fn(module, args, output) -> new output | None`` after ``module.forward``."""
        self._handles.append(module.register_forward_hook(self._until_removed(fn)))

    def __len__(self) -> int:
        return len(self._handles)

    def remove_all(self) -> None:
        self._live = False
        while self._handles:
            self._handles.pop().remove()


@contextmanager
def temporary_hooks() -> Iterator[HookSet]:
    """A :class:`HookSet` whose hooks are all removed when the block exits (even on error)."""
    hooks = HookSet()
    try:
        yield hooks
    finally:
        hooks.remove_all()
