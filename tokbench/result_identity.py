"""Which file a result goes to, and which results count: a result is identified by what it measured.

A successful result is `<out>/<tokenizer>__<suite>__<data8>-<protocol8>.json`: another data set or another protocol
gives another file, so runs never replace each other's results (concurrent runs into one folder included); a rerun of
the same measurement replaces its own file. A failed run is `<tokenizer>__<suite>__<data8>.failed.json`, beside the
successes, never over one. Readers (leaderboard, correlate, zoo reports) take the newest success per (tokenizer,
suite, data) and list failures newer than it apart; files with the names of before (`<tokenizer>__<suite>.json`) are
read the same way.

Light on purpose (no torch): the report and CLI layers import it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .io import stable_hash


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name)


def data_key(content_hash: str | None = None, spec: str | None = None) -> str:
    """8 hex characters naming the data measured: the data set's content hash, or (when the data could not even be
    opened) a hash of how it was asked for."""
    if content_hash:
        return str(content_hash)[:8]
    return stable_hash({"data_spec": str(spec)})[:8]


def result_key(protocol: dict) -> str:
    """`<data8>-<protocol8>`: what a result file measured. Runs on other data or under another protocol get another
    file, so they never replace each other; a rerun of the same measurement replaces its own file."""
    return f"{data_key(protocol['data'].get('content_hash'))}-{protocol['hash'][:8]}"


def result_path(out_dir: str | os.PathLike, tokenizer: str, suite: str, key: str | None = None, *,
                failed: bool = False) -> Path:
    """`<out>/<tokenizer>__<suite>__<key>.json` (`result_key`), a failed run as `<tokenizer>__<suite>__<data8>.failed
    .json` beside it (never over a good result). Without key: the name results had before keys
    (`<tokenizer>__<suite>.json`), still read everywhere."""
    stem = f"{safe_name(tokenizer)}__{safe_name(suite)}"
    if key is None:
        return Path(out_dir) / f"{stem}.json"
    return Path(out_dir) / f"{stem}__{safe_name(key)}{'.failed' if failed else ''}.json"


def result_file(out_dir: str | os.PathLike, result: dict) -> Path:
    """Where `result` (a successful one, or a failed one carrying its `data_key`) is written in out_dir."""
    name, suite = result["tokenizer"]["name"], result["suite"]["name"]
    if result.get("status") == "ok":
        return result_path(out_dir, name, suite, result_key(result["protocol"]))
    return result_path(out_dir, name, suite, result.get("data_key") or data_key(spec=None), failed=True)


def identity(result: dict) -> tuple:
    """(tokenizer, suite, data) of a result: the leaderboard and correlate keep the newest success per identity."""
    proto = result.get("protocol") or {}
    data = (proto.get("data") or {}).get("content_hash") or result.get("data_key")
    return ((result.get("tokenizer") or {}).get("name"), (result.get("suite") or {}).get("name"), data)


def latest_per_identity(results: list[dict]) -> tuple[list[dict], list[dict]]:
    """(the newest successful result per `identity`, the failures newer than their tokenizer's newest success in
    that suite), each in input order. Old and new file names are read alike; ties go to the later file name."""
    def when(r: dict) -> tuple:  # finish time (seconds), then the file's modification time (ties within a second)
        f = r.get("_file")
        try:
            mtime = os.stat(f).st_mtime_ns if f else 0
        except OSError:
            mtime = 0
        return (str((r.get("run") or {}).get("finished") or ""), mtime, str(f or ""))

    best: dict[tuple, dict] = {}
    newest_fail: dict[tuple, dict] = {}
    for r in results:
        pick = best if r.get("status") == "ok" else newest_fail
        k = identity(r)
        if k not in pick or when(r) > when(pick[k]):
            pick[k] = r
    last_ok: dict[tuple, tuple] = {}
    for r in best.values():
        k = identity(r)[:2]
        last_ok[k] = max(last_ok.get(k, ("", 0, "")), when(r))
    keep = {id(r) for r in best.values()}
    keep_fail = {id(r) for r in newest_fail.values() if when(r) > last_ok.get(identity(r)[:2], ("", 0, ""))}
    return [r for r in results if id(r) in keep], [r for r in results if id(r) in keep_fail]


def result_files(out_dir: str | os.PathLike, tokenizer: str, suite: str) -> list[Path]:
    """Every result file of (tokenizer, suite) in out_dir, successful or failed, new names and old."""
    stem = f"{safe_name(tokenizer)}__{safe_name(suite)}"
    out = Path(out_dir)
    return sorted({*out.glob(f"{glob_escape(stem)}__*.json"), *([out / f"{stem}.json"] if (out / f"{stem}.json")
                                                               .is_file() else [])})


def find_result(out_dir: str | os.PathLike, tokenizer: str, suite: str, data: str | None = None) -> Path | None:
    """The file of the newest successful result of (tokenizer, suite) in out_dir (on data with this content hash,
    when given); None when there is none. Unreadable files are passed over."""
    found = []
    for p in result_files(out_dir, tokenizer, suite):
        try:
            r = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(r, dict) or r.get("status") != "ok" or r.get("tokenizer", {}).get("name") != tokenizer:
            continue
        if data is not None and (r.get("protocol") or {}).get("data", {}).get("content_hash") != data:
            continue
        r["_file"] = str(p)
        found.append(r)
    ok, _ = latest_per_identity(found)
    return Path(max(ok, key=lambda r: (str(r["run"].get("finished") or ""), os.stat(r["_file"]).st_mtime_ns))["_file"]) \
        if ok else None


def glob_escape(s: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", s)
