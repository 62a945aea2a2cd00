"""tokbench: the open benchmarking suite for discrete image tokenizers.

The public names are imported on first use (PEP 562), so that `tokbench --help` and `tokbench list` start without
importing torch."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "BinarySpace": "api", "CodebookSpace": "api", "FSQSpace": "api", "TokenGroup": "api", "TokenLayout": "api",
    "Tokenizer": "api", "TokenizerInfo": "api", "Tokens": "api", "TokenSpace": "api",
    "Family": "registry", "Preset": "registry", "build_tokenizer": "registry", "list_tokenizers": "registry",
    "load_tokenizer": "registry", "register_family": "registry", "register_preset": "registry",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from .api import (BinarySpace, CodebookSpace, FSQSpace, TokenGroup, TokenLayout, Tokenizer, TokenizerInfo,
                      Tokens, TokenSpace)
    from .registry import (Family, Preset, build_tokenizer, list_tokenizers, load_tokenizer, register_family,
                           register_preset)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tokbench' has no attribute {name!r}")
