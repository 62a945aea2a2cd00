"""Inputs of `tokbench correlate`: result files of `tokbench run` and CSV tables, turned into one DataFrame with one
row per tokenizer (or per tokenizer × generator), a `tokenizer` column, numeric metric columns and a `source` column.

Result files are read through `tokbench.results.result` (`Result`, canonical metric keys); `rows_from_results` is
the only place here that turns them into rows.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..results.result import SCHEMA as RESULT_SCHEMA
from ..results.result import NotAResultError, PfidEntry, newest, read, result_files
from ..results.metrics import direction  # the metric registry decides directions (also read from here)

NAME_COLUMN = "tokenizer"

# Metric columns that are not metrics: kept as text, never correlated.
TEXT_COLUMNS = {"tokenizer", "family", "preset", "generator", "generator_params", "gfid_protocol", "rfid_protocol",
                "pfid_protocol", "protocol", "protocol_hash", "source", "notes", "quantizer", "sampler", "cfg",
                "set", "suite", "weights", "rfid_source", "pfid_source", "gfid_source", "other_source"}
# Numeric columns that describe a tokenizer rather than measure it (never a default metric).
DESCRIPTIVE_COLUMNS = {"tokens", "vocab", "vocab_size", "tokens_per_image", "params", "generator_params_m",
                       "resolution"}


def expected_sign(metric: str, target: str) -> float | None:
    """+1 when agreement shows as a positive coefficient (both lower-better, or both higher-better), −1 when the
    directions differ (e.g. PSNR vs gFID), None when a direction is unknown."""
    a, b = direction(metric), direction(target)
    if "unknown" in (a, b):
        return None
    return 1.0 if a == b else -1.0


# --- result files -----------------------------------------------------------------------------------------------

# The canonical metric keys (`Result.metric_values`) a run contributes, besides every `pfid@…` setting.
RUN_METRICS = ("rfid", "usage", "perplexity", "entropy_norm", "psnr", "ssim")


def pfid_column(entry: dict) -> str:
    """Column name of one pFID setting, e.g. `pfid@alpha=0.5,delta=280,mode=code` (`PfidEntry.key`)."""
    return PfidEntry.from_dict(entry).key


def rows_from_results(paths: Sequence[str | Path]) -> pd.DataFrame:
    """One row per successful result file: tokenizer, family, tokens, vocab, rfid, one `pfid@…` column per pFID
    setting (mean over seeds), usage, perplexity, entropy_norm, psnr, ssim, gfid (+ generator), protocol_hash, source.

    Files that are not result files, or failed runs, are not rows; they are listed in `df.attrs['skipped']` so the
    report can name them. pFID-versus-α curves go to `df.attrs['curves']` ({tokenizer: {key: [[α, mean, std]…]}}).
    """
    rows, skipped, curves, results = [], [], {}, []
    for f in result_files(paths):
        try:
            r = read(f)
        except (OSError, json.JSONDecodeError) as e:
            skipped.append({"file": str(f), "reason": f"unreadable JSON: {e}"})
            continue
        except NotAResultError:
            skipped.append({"file": str(f), "reason": f"not a {RESULT_SCHEMA} result file"})
            continue
        r.raw.setdefault("tokenizer", {}).setdefault("name", f.stem)
        r.raw.setdefault("suite", {})
        results.append(r)
    keep = {id(r) for r in newest(results)[0]}
    for r in results:
        f, name = r.path, r.tokenizer
        if not r.ok:
            skipped.append({"file": str(f), "tokenizer": name, "reason": f"run {r.status}: {r.reason}"})
            continue
        if id(r) not in keep:
            skipped.append({"file": str(f), "tokenizer": name,
                            "reason": "superseded by a newer result of the same tokenizer, suite and data"})
            continue
        info = r.info
        row = {NAME_COLUMN: name, "family": info.get("family"), "tokens": info.get("tokens_per_image"),
               "vocab": info.get("vocab_size")}
        row.update({k: v for k, v in r.metric_values().items() if k in RUN_METRICS or k.startswith("pfid@")})
        g = r.gfid
        if g is not None:
            row["gfid"] = g.value
            if g.is_record:
                row["generator"] = g.generator
        row["protocol_hash"] = r.protocol_hash[:16]
        row["source"] = f"run:{f.name}"
        rows.append(row)
        if r.pfid_curve:
            curves[name] = r.pfid_curve
    df = pd.DataFrame(rows)
    df.attrs["skipped"] = skipped
    df.attrs["curves"] = curves
    return df


# --- CSV tables -------------------------------------------------------------------------------------------------

def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV with one row per tokenizer (or tokenizer × generator). Empty cells are missing values; a cell that is
    neither empty nor a number in a metric column is an error naming the cell (never coerced to NaN silently)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no table at {path}")
    df = pd.read_csv(path, dtype=str, keep_default_na=False, comment=None)
    df.columns = [c.strip() for c in df.columns]
    if NAME_COLUMN not in df.columns:
        if "name" in df.columns:
            df = df.rename(columns={"name": NAME_COLUMN})
        else:
            raise ValueError(f"{path}: needs a '{NAME_COLUMN}' column (found: {', '.join(df.columns)})")
    if "source" not in df.columns:
        df["source"] = f"table:{path.name}"
    df = df.apply(lambda s: s.str.strip())
    for c in df.columns:
        if c in TEXT_COLUMNS:
            continue
        df[c] = _numeric(df[c], c, path, df[NAME_COLUMN])
    df.attrs["skipped"] = []
    df.attrs["curves"] = {}
    return df


def _numeric(col: pd.Series, name: str, path: Path, names: pd.Series) -> pd.Series:
    vals = col.replace({"": None, "NA": None, "NaN": None, "nan": None, "—": None, "-": None})
    out = pd.to_numeric(vals, errors="coerce")
    bad = out.isna() & vals.notna()
    if bad.all() and vals.notna().any():
        return col  # a text column we do not know: keep it as text, it is never a metric
    if bad.any():
        i = int(bad.idxmax())
        raise ValueError(f"{path}: column {name!r}, row {i + 2} ({names.iloc[i]}): {col.iloc[i]!r} is not a number "
                         "(leave the cell empty for an unknown value)")
    if any(isinstance(v, float) and math.isinf(v) for v in out.dropna()):
        raise ValueError(f"{path}: column {name!r} holds an infinite value")
    return out.astype(float)


def metric_columns(df: pd.DataFrame, target: str) -> list[str]:
    """Numeric columns that measure a tokenizer, except the target."""
    out = []
    for c in df.columns:
        if c in TEXT_COLUMNS or c in DESCRIPTIVE_COLUMNS or c == target or c.startswith("_"):
            continue
        if pd.api.types.is_numeric_dtype(df[c]):
            out.append(c)
    return out


def select_metrics(df: pd.DataFrame, wanted: Sequence[str] | None, target: str) -> list[str]:
    """`rfid,pfid` → the columns; a name without '@' also selects every `name@…` setting column."""
    avail = metric_columns(df, target)
    if not wanted:
        return avail
    out = []
    for w in wanted:
        hits = [c for c in df.columns if c == w or c.startswith(w + "@")]
        if not hits:
            raise ValueError(f"no metric column {w!r}; available: {', '.join(avail) or '(none)'}")
        for c in hits:
            if c == target:
                continue
            if not pd.api.types.is_numeric_dtype(df[c]):
                raise ValueError(f"column {c!r} is not numeric")
            if c not in out:
                out.append(c)
    return out


def parse_where(exprs: Sequence[str] | None) -> list[tuple[str, str, list[str]]]:
    """`col=a,b` (one of) and `col!=a` (none of); an empty value matches empty cells."""
    out = []
    for e in exprs or []:
        m = re.fullmatch(r"\s*([^=!]+?)\s*(!=|=)\s*(.*)", e)
        if not m:
            raise ValueError(f"--where {e!r}: expected COLUMN=VALUE[,VALUE…] or COLUMN!=VALUE")
        out.append((m.group(1), m.group(2), [v.strip() for v in m.group(3).split(",")]))
    return out


def apply_where(df: pd.DataFrame, filters: list[tuple[str, str, list[str]]]) -> pd.DataFrame:
    for col, op, values in filters:
        if col not in df.columns:
            raise ValueError(f"--where: no column {col!r} (columns: {', '.join(df.columns)})")
        s = df[col].map(_cell_text)
        hit = s.isin(values)
        df = df[hit] if op == "=" else df[~hit]
    return df


def _cell_text(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def merge_sources(runs: pd.DataFrame | None, table: pd.DataFrame | None) -> tuple[pd.DataFrame, list[str]]:
    """Measured rows first; a table fills the columns the runs lack (e.g. gFID) for the same tokenizer. A value
    present in both and different is a conflict: the measured one is kept and the conflict reported."""
    notes: list[str] = []
    if runs is None or runs.empty:
        return (table if table is not None else pd.DataFrame()), notes
    if table is None or table.empty:
        return runs, notes
    common = set(runs[NAME_COLUMN]) & set(table[NAME_COLUMN])
    if not common:
        df = pd.concat([runs, table], ignore_index=True)
        notes.append("runs and table share no tokenizer name: their rows are analysed side by side")
        return df, notes
    merged = runs.merge(table, on=NAME_COLUMN, how="outer", suffixes=("", "__table"))
    for c in [c for c in merged.columns if c.endswith("__table")]:
        base = c[: -len("__table")]
        both = merged[base].notna() & merged[c].notna()
        diff = both & (merged[base].astype(str) != merged[c].astype(str))
        if base != "source":
            for _, r in merged[diff].iterrows():
                notes.append(f"{r[NAME_COLUMN]}: {base} measured {r[base]} but table says {r[c]}; kept the measured")
        merged[base] = merged[base].where(merged[base].notna(), merged[c])
        if base == "source":
            merged[base] = merged[base].where(~both, merged[base].astype(str) + "+" + merged[c].astype(str))
        merged = merged.drop(columns=c)
    return merged, notes
