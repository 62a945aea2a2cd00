"""tokbench's own experiment pipelines: the in-house zoo here and the paper experiment (`tokbench paper`, `paper.py`).

The zoo (`tokbench zoo`): tokenizers of our own that differ along one axis at a time, each with its own
generator, all measured with one protocol, then correlated. It tests the RobustTok claim that pFID predicts gFID
where rFID does not, end to end and offline. See `pipeline.py` for the stages and how they resume."""

from .config import axes, deep_merge, load, resolve
from .pipeline import STAGES, ZooInterrupted, ZooOptions, run_zoo

__all__ = ["axes", "deep_merge", "load", "resolve", "STAGES", "ZooInterrupted", "ZooOptions", "run_zoo"]
