"""Adapters for published tokenizers, one module per family (installed as `tokbench_adapters`).

Each module registers its `Family` and `Preset`s with `tokbench.registry` at import; `tokbench.registry` imports
every module of this package on first use. Shared building blocks live in `tokbench.nn`.
"""
