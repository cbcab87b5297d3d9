"""Registering our builders with Model Garden's factories, once per process."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

LOG = logging.getLogger(__name__)


def _same(a: Any, b: Any) -> bool:
    """True for the same function, also across a module reload."""
    return (getattr(a, "__module__", None) == getattr(b, "__module__", None)
            and getattr(a, "__qualname__", None) == getattr(b, "__qualname__", None))


def register_once(register: Callable[[str], Callable], registry: dict, key: str,
                  builder: Callable) -> None:
    """Calls Model Garden's ``register(key)(builder)``; a repeat with the same builder is a
    no-op (Model Garden raises KeyError on any repeat).

    Raises:
        KeyError: a different builder already holds ``key``.
    """
    try:
        register(key)(builder)
    except KeyError:
        registered = registry.get(key)
        if registered is not None and not _same(registered, builder):
            raise KeyError(f"Model Garden key {key!r} is taken by {registered!r}") from None
        LOG.debug("%s already registered under %r", builder.__qualname__, key)
