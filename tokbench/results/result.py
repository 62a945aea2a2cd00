"""The result file as typed objects: `Result`, its `PfidEntry`s and `GfidEntry`, read one way (`read`) and flattened
one way (`Result.metric_values`) into canonical metric keys (`rfid`, `rkid`, `pfid@alpha=…,delta=…,mode=…`,
`pkid@…`, `usage`, …, `gfid`). The leaderboard, `tokbench correlate` and the zoo's reports read results through
here, so a column is spelled in one place (`PfidEntry.key` / `PfidEntry.label`, labels from `results.metrics`).

The dict a result was read from is kept (`Result.raw`) and written back unchanged: `Result.from_dict(d).to_dict() == d`
for every result file, so nothing a reader does not know about is lost. The schema is documented in
`tokbench/runner/schema.py`; file naming and "newest result per measurement" live in `tokbench.result_identity`.
Light on purpose (no torch, no pandas).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..io import write_json_atomic
from ..result_identity import latest_per_identity, result_file
from .metrics import BY_KEY

SCHEMA = "tokbench.result/1"


class NotAResultError(ValueError):
    """A JSON file that is not a `tokbench.result/1` result (another schema, or not an object)."""


def _num_text(v: Any) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) else f"{v}"


@dataclass(frozen=True)
class PfidEntry:
    """One pFID setting of a result (mean and std over seeds; pKID beside it when the suite measured KID)."""
    alpha: Any
    delta: Any
    mode: str | None
    mean: float | None
    std: float | None
    values: list = field(default_factory=list)
    exclude_self: bool = False
    scales: Any = None
    beta: Any = None
    rule: str | None = None
    kid_mean: float | None = None
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, p: dict) -> "PfidEntry":
        return cls(alpha=p.get("alpha"), delta=p.get("delta"), mode=p.get("mode"), mean=p.get("mean"),
                   std=p.get("std"), values=list(p.get("values") or []), exclude_self=bool(p.get("exclude_self")),
                   scales=p.get("scales"), beta=p.get("beta"), rule=p.get("rule"), kid_mean=p.get("kid_mean"),
                   raw=p)

    def to_dict(self) -> dict:
        return self.raw

    @property
    def key(self) -> str:
        """Canonical column key, e.g. `pfid@alpha=0.5,delta=280,mode=code` (`,exclude_self`, `,scales=…`,
        `,beta=…` when they differ from the defaults)."""
        parts = [f"alpha={_num_text(self.alpha)}", f"delta={_num_text(self.delta)}"]
        if self.mode:
            parts.append(f"mode={self.mode}")
        if self.exclude_self:
            parts.append("exclude_self")
        if self.scales:
            parts.append(f"scales={self.scales}")
        if self.beta not in (None, 1, 1.0):
            parts.append(f"beta={self.beta:g}")
        return "pfid@" + ",".join(parts)

    @property
    def kid_key(self) -> str:
        return "pkid@" + self.key.split("@", 1)[1]

    def label(self, detail: bool = True, metric: str = "pfid") -> str:
        """As a table heads the column: `pFID α=0.5 δ=0.1 (code, excl. self scales=…)` (the codebook rule is part of
        it, so a column never mixes rules), or only `pFID α=0.5` (detail=False: tables of one δ and rule)."""
        head = f"{BY_KEY[metric].label} α={self.alpha:g}"
        if not detail:
            return head
        sc = f" scales={self.scales}" if self.scales else ""
        xs = ", excl. self" if self.exclude_self else ""
        return f"{head} δ={self.delta:g} ({self.mode}{xs}{sc})"

    @property
    def std_if_seeds(self) -> float | None:
        """The std over seeds, None with a single seed (a std of one value says nothing)."""
        return self.std if len(self.values) > 1 else None


@dataclass(frozen=True)
class GfidEntry:
    """The result's gFID: a record {value, generator, num_samples, reference, key, protocol}, or (older files) a bare
    number. The zoo's `gfid_all` holds one record per generator × reference."""
    value: float | None
    generator: str | None = None
    num_samples: int | None = None
    reference: Any = None
    protocol: dict | None = None
    raw: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def from_raw(cls, g: Any) -> "GfidEntry | None":
        if g is None:
            return None
        if isinstance(g, dict):
            return cls(value=g.get("value"), generator=g.get("generator"), num_samples=g.get("num_samples"),
                       reference=g.get("reference"), protocol=g.get("protocol"), raw=g)
        return cls(value=g, raw=g)

    @property
    def is_record(self) -> bool:
        return isinstance(self.raw, dict)


@dataclass(frozen=True)
class Result:
    """One result file of `tokbench run` (successful or failed)."""
    raw: dict = field(repr=False)
    path: Path | None = None

    @classmethod
    def from_dict(cls, d: dict, path: str | os.PathLike | None = None) -> "Result":
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            schema = d.get("schema") if isinstance(d, dict) else None
            raise NotAResultError(f"{path or 'result'}: not a tokbench result file (schema {schema!r}, expected "
                             f"{SCHEMA!r})")
        return cls(raw=d, path=Path(path) if path is not None else None)

    def to_dict(self) -> dict:
        return self.raw

    # --- identity and provenance ---------------------------------------------------------------------------------
    @property
    def ok(self) -> bool:
        return self.raw.get("status") == "ok"

    @property
    def status(self) -> str | None:
        return self.raw.get("status")

    @property
    def reason(self) -> str:
        return self.raw.get("reason", "")

    @property
    def tokenizer(self) -> str | None:
        return (self.raw.get("tokenizer") or {}).get("name")

    @property
    def info(self) -> dict:
        return (self.raw.get("tokenizer") or {}).get("info") or {}

    @property
    def weights(self) -> dict:
        return (self.raw.get("tokenizer") or {}).get("weights") or {}

    @property
    def suite(self) -> str | None:
        return (self.raw.get("suite") or {}).get("name")

    @property
    def protocol(self) -> dict:
        return self.raw.get("protocol") or {}

    @property
    def protocol_hash(self) -> str:
        return self.protocol.get("hash") or ""

    @property
    def run(self) -> dict:
        return self.raw.get("run") or {}

    @property
    def finished(self) -> str | None:
        return self.run.get("finished")

    # --- metrics -------------------------------------------------------------------------------------------------
    @property
    def metrics(self) -> dict:
        return self.raw.get("metrics") or {}

    @property
    def codebook(self) -> dict:
        return self.metrics.get("codebook") or {}

    @property
    def pfid(self) -> list[PfidEntry]:
        return [PfidEntry.from_dict(p) for p in self.metrics.get("pfid") or []]

    @property
    def pfid_curve(self) -> dict | None:
        return self.metrics.get("pfid_curve")

    @property
    def gfid(self) -> GfidEntry | None:
        return GfidEntry.from_raw(self.raw.get("gfid"))

    @property
    def gfid_all(self) -> list[GfidEntry]:
        """Every gFID of the zoo's generators × references (empty when the result has only `gfid`)."""
        return [GfidEntry.from_raw(g) for g in self.raw.get("gfid_all") or []]

    @property
    def small_sample(self) -> bool:
        return bool((self.metrics.get("frechet") or {}).get("small_sample"))

    def metric_values(self) -> dict[str, Any]:
        """Every metric under its canonical key, in a fixed order: rfid, rkid, one `pfid@…` per setting (mean over
        seeds), one `pkid@…` per setting that measured KID, usage, perplexity, entropy_norm, usage_per_window, psnr,
        ssim, and gfid when the result has one. Unmeasured scalar metrics are None (never a number)."""
        m, cb = self.metrics, self.codebook
        out: dict[str, Any] = {"rfid": m.get("rfid"), "rkid": m.get("rkid")}
        entries = self.pfid
        for p in entries:
            out[p.key] = p.mean
        for p in entries:
            if p.kid_mean is not None:
                out[p.kid_key] = p.kid_mean
        out.update(usage=cb.get("usage"), perplexity=cb.get("perplexity"), entropy_norm=cb.get("entropy_norm"),
                   usage_per_window=cb.get("usage_per_window"), psnr=m.get("psnr"), ssim=m.get("ssim"))
        g = self.gfid
        if g is not None:
            out["gfid"] = g.value
        return out


def read(path: str | os.PathLike) -> Result:
    """The result file at path (new `<tok>__<suite>__<key>.json` names and the older `<tok>__<suite>.json` alike).
    OSError when unreadable, json.JSONDecodeError when not JSON, NotAResultError (naming the file) when not a
    result file (both are ValueErrors)."""
    d = json.loads(Path(path).read_text())
    return Result.from_dict(d, path)


def write(result: Result | dict, out_dir: str | os.PathLike) -> Path:
    """Write a result (atomically) where `result_identity` names it in out_dir; the JSON is the dict as given."""
    d = result.to_dict() if isinstance(result, Result) else result
    path = result_file(out_dir, d)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, d)
    return path


def result_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The `*.json` files of each folder (sorted; not recursing), and each file given as such."""
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files += sorted(p.glob("*.json"))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"no result file or folder at {p}")
    return files


def newest(results: list[Result]) -> tuple[list[Result], list[Result]]:
    """`result_identity.latest_per_identity` on Results: (the newest success per (tokenizer, suite, data), the
    failures newer than their tokenizer's newest success), each in input order."""
    tagged = [dict(r.raw, _file=str(r.path) if r.path is not None else None) for r in results]
    by_id = {id(t): r for t, r in zip(tagged, results)}
    ok, failed = latest_per_identity(tagged)
    return [by_id[id(t)] for t in ok], [by_id[id(t)] for t in failed]
