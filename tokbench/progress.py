"""Progress bars that name their stage and still report when stderr is a file (a log of a long job): there tqdm's
carriage-return redraws would become one endless line, so each refresh is written as its own line, at most every
`FILE_INTERVAL_S` seconds."""

from __future__ import annotations

import re
import sys
from typing import Any

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # tqdm's cursor moves for nested bars
FILE_INTERVAL_S = 15.0


class _Lines:
    """A stream that turns tqdm's `\\r`-redraws into plain lines."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, s: str) -> int:
        text = _ANSI.sub("", s.replace("\r", "")).strip()
        if text:
            self.stream.write(text + "\n")
        return len(s)

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable=None, *, desc: str, enabled: bool = True, **kw: Any):
    """A tqdm bar labelled `desc` (e.g. "rfid/pfid tokbench-zoo-conv-k64"); on a terminal it redraws in place,
    otherwise it logs a line every FILE_INTERVAL_S seconds."""
    from tqdm.auto import tqdm

    if not enabled:
        return tqdm(iterable, disable=True, **kw)
    if sys.stderr.isatty():
        return tqdm(iterable, desc=desc, disable=False, **kw)
    return tqdm(iterable, desc=desc, disable=False, file=_Lines(sys.stderr), mininterval=FILE_INTERVAL_S,
                ascii=True, dynamic_ncols=False, ncols=100, **kw)
