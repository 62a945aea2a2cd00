"""tokbench: the open benchmarking suite for discrete image tokenizers."""

__version__ = "0.1.0"

from .api import (  # noqa: E402
    BinarySpace,
    CodebookSpace,
    FSQSpace,
    TokenGroup,
    TokenLayout,
    Tokenizer,
    TokenizerInfo,
    Tokens,
    TokenSpace,
)
from .registry import (  # noqa: E402
    Family,
    Preset,
    build_tokenizer,
    list_tokenizers,
    load_tokenizer,
    register_family,
    register_preset,
)

__all__ = [
    "__version__", "BinarySpace", "CodebookSpace", "FSQSpace", "TokenGroup", "TokenLayout", "Tokenizer",
    "TokenizerInfo", "Tokens", "TokenSpace", "Family", "Preset", "build_tokenizer", "list_tokenizers",
    "load_tokenizer", "register_family", "register_preset",
]
