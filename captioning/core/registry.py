"""A small name → constructor registry (one per kind of component)."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to constructors so configs and checkpoints can refer to components by name.

    Args:
        kind: What the registry holds, used in error messages (e.g. ``"encoder"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator that registers a constructor under ``name``."""

        def wrap(fn: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = fn
            return fn

        return wrap

    def get(self, name: str) -> Callable[..., T]:
        """Returns the constructor registered under ``name``."""
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} {name!r}; available: {', '.join(self.list())}")
        return self._entries[name]

    def list(self) -> list[str]:
        """Returns the registered names, sorted."""
        return sorted(self._entries)

    def build(self, config: dict, default: str | None = None) -> T:
        """Builds a component from its config: ``config["name"]`` (or ``default`` when absent, e.g. in older
        checkpoints) picks the constructor, the other keys are its arguments."""
        kwargs = dict(config)
        name = kwargs.pop("name", default)
        if name is None:
            raise KeyError(f"{self.kind} config {sorted(config)} names no {self.kind} ('name')")
        return self.get(name)(**kwargs)
