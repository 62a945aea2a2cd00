"""The suite files shipped in the package (`tokbench/suites/<name>.yaml`, package data, so a plain `pip install .`
finds them): their names and their YAML, read and checked once. Torch-free and below every user: `runner.suite` builds
`Suite`s from them, `published` reads the RobustTok pFID settings from one."""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path

import yaml

SUITES_DIR = Path(__file__).resolve().parent / "suites"


def packaged_suites() -> list[str]:
    """Names of the suites shipped in the package (`--suite <name>`)."""
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def read_suite_yaml(p: Path) -> dict:
    """A suite file's mapping; a clear one-line error naming the file (and line) otherwise."""
    try:
        d = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        raise ValueError(f"suite {where}: not valid YAML: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(d, dict):
        raise ValueError(f"suite {p} is not a YAML mapping")
    return d


def suite_definition(name: str) -> dict:
    """A packaged suite's definition as a fresh dict (each file read once per process): `suite_definition("sample")`."""
    if not (SUITES_DIR / f"{name}.yaml").is_file():
        raise FileNotFoundError(f"suite {name!r} not found: neither a YAML file nor a packaged suite "
                                f"({', '.join(packaged_suites())})")
    return copy.deepcopy(_packaged(name))


@lru_cache(maxsize=None)
def _packaged(name: str) -> dict:
    return read_suite_yaml(SUITES_DIR / f"{name}.yaml")
