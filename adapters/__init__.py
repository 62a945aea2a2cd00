"""Adapters for published tokenizers, one module per family (installed as `tokbench_adapters`).

Each module registers its `Family` and `Preset`s with `tokbench.registry` at import; `tokbench.registry` imports
every module of this package on first use (private `_`-modules excepted). Networks only adapters use live in
`_nn`; building blocks shared with the core live in `tokbench.nn`.
"""
