"""The shipped zoo presets now live in `tokbench.models.shipped_zoo` (a registry plugin); kept importable here for
scripts that name the old place."""

from ..models.shipped_zoo import WEIGHTS_DIR, generator_path, manifest, register_all

__all__ = ["WEIGHTS_DIR", "generator_path", "manifest", "register_all"]
