"""Moved to `tokbench.dist` (issue 16); this name stays importable."""

from ..dist import (DistInfo, PeerFailed, agree, all_reduce_, broadcast_, broadcast_object, current, init_from_env,
                    shutdown)

__all__ = ["DistInfo", "PeerFailed", "agree", "all_reduce_", "broadcast_", "broadcast_object", "current",
           "init_from_env", "shutdown"]
