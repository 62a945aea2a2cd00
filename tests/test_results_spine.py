"""The typed result spine (`tokbench.results.result`): every committed result file reads into a `Result` and writes
back byte for byte; metrics flatten into canonical keys whose labels come from the metric registry; the leaderboard,
`tokbench correlate` and the zoo table spell a pFID column one way each, from `PfidEntry`."""

import json
from pathlib import Path

import pytest

from tokbench.io import write_json_atomic
from tokbench.report.inputs import pfid_column, rows_from_results
from tokbench.results.metrics import BY_KEY, lookup
from tokbench.results.result import (SCHEMA, GfidEntry, NotAResultError, PfidEntry, Result, newest, read,
                                     result_files, write)
from tokbench.runner.leaderboard import build
from tokbench.experiments.report import zoo_rows

ROOT = Path(__file__).resolve().parents[1]


def _is_result_file(p: Path) -> bool:
    d = json.loads(p.read_text())
    return isinstance(d, dict) and d.get("schema") == SCHEMA


RESULT_FILES = sorted(p for p in (ROOT / "results").rglob("*.json") if _is_result_file(p))


def _result(name="tok-a", *, pfid=None, gfid=None, status="ok", finished="2026-01-01T00:00:00", rkid=None):
    d = {"schema": SCHEMA, "status": status, "suite": {"name": "s"}, "run": {"finished": finished, "versions": {}},
         "tokenizer": {"name": name, "info": {"family": "f", "tokens_per_image": 16, "vocab_size": 64},
                       "weights": None},
         "protocol": {"hash": "h" * 16, "data": {"content_hash": "c" * 16}, "crop": "center", "num_images": 8},
         "metrics": {"rfid": 3.0, "psnr": 20.0, "ssim": 0.5, "codebook": {"usage": 0.5, "perplexity": 10.0,
                                                                          "entropy_norm": 0.9, "usage_per_window": 0.4},
                     "pfid": pfid if pfid is not None else [
                         {"alpha": 0.5, "delta": 0.1, "mode": "code", "rule": "code", "beta": 1.0, "seeds": [0, 1],
                          "values": [4.0, 6.0], "mean": 5.0, "std": 1.41, "kid_mean": 0.002}]}}
    if rkid is not None:
        d["metrics"]["rkid"] = rkid
    if gfid is not None:
        d["gfid"] = gfid
    return d


def test_there_are_committed_result_files():
    assert len(RESULT_FILES) >= 40  # results/runs, results/zoo*, results/train-robust/*


@pytest.mark.parametrize("path", RESULT_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_committed_result_round_trips(path, tmp_path):
    d = json.loads(path.read_text())
    r = read(path)
    assert r.to_dict() == d and Result.from_dict(d).to_dict() == d
    assert [p.to_dict() for p in r.pfid] == (d["metrics"].get("pfid") or [])
    written = write(r, tmp_path)  # where result_identity names it, the runner's writer: the same bytes
    assert written.name.startswith(f"{r.tokenizer}__{r.suite}__")
    ref = tmp_path / "ref.json"
    write_json_atomic(ref, d)
    assert written.read_bytes() == ref.read_bytes()


def test_read_refuses_other_json_naming_the_file(tmp_path):
    f = tmp_path / "x.json"
    f.write_text(json.dumps({"schema": "tokbench.correlation/1"}))
    with pytest.raises(NotAResultError, match="x.json"):
        read(f)
    f.write_text("[1, 2]")
    with pytest.raises(NotAResultError):
        read(f)
    f.write_text("{oops")
    with pytest.raises(json.JSONDecodeError):
        read(f)
    with pytest.raises(FileNotFoundError):
        result_files([tmp_path / "missing"])


def test_canonical_keys_and_their_labels():
    r = Result.from_dict(_result(rkid=0.01, gfid={"value": 7.5, "generator": "g", "num_samples": 10}))
    v = r.metric_values()
    assert list(v) == ["rfid", "rkid", "pfid@alpha=0.5,delta=0.1,mode=code", "pkid@alpha=0.5,delta=0.1,mode=code",
                       "usage", "perplexity", "entropy_norm", "usage_per_window", "psnr", "ssim", "gfid"]
    assert v["rfid"] == 3.0 and v["rkid"] == 0.01 and v["gfid"] == 7.5 and v["usage_per_window"] == 0.4
    assert v["pfid@alpha=0.5,delta=0.1,mode=code"] == 5.0 and v["pkid@alpha=0.5,delta=0.1,mode=code"] == 0.002
    for k in v:  # every canonical key is a registered metric
        assert lookup(k) is not None and lookup(k).key == k.split("@")[0]
    # unmeasured scalars are None, never a number; no gFID key without a gFID
    bare = Result.from_dict(_result(pfid=[])).metric_values()
    assert bare["rkid"] is None and "gfid" not in bare


def test_pfid_spellings_come_from_one_entry():
    p = PfidEntry.from_dict({"alpha": 0.5, "delta": 280, "mode": "feature", "exclude_self": True, "scales": [1, 2],
                             "beta": 0.5, "mean": 1.0, "std": 0.0, "values": [1.0]})
    assert p.key == "pfid@alpha=0.5,delta=280,mode=feature,exclude_self,scales=[1, 2],beta=0.5"
    assert p.kid_key == "pkid@alpha=0.5,delta=280,mode=feature,exclude_self,scales=[1, 2],beta=0.5"
    assert p.label() == "pFID α=0.5 δ=280 (feature, excl. self scales=[1, 2])"
    assert p.label(detail=False) == "pFID α=0.5" and p.label(detail=False, metric="pkid") == "pKID α=0.5"
    assert p.label().startswith(BY_KEY["pfid"].label) and p.std_if_seeds is None
    assert pfid_column(p.to_dict()) == p.key


def test_gfid_record_or_bare_number():
    assert GfidEntry.from_raw(None) is None
    g = GfidEntry.from_raw(4.2)
    assert g.value == 4.2 and not g.is_record and g.generator is None
    g = GfidEntry.from_raw({"value": 3.0, "generator": "ar", "num_samples": 50})
    assert g.value == 3.0 and g.is_record and g.generator == "ar" and g.num_samples == 50
    r = Result.from_dict(dict(_result(), gfid_all=[{"value": 2.0, "generator": "a", "reference": "val split (8 images)",
                                                    "num_samples": 4}, {"value": 3.0, "generator": "b"}]))
    assert [(e.generator, e.value) for e in r.gfid_all] == [("a", 2.0), ("b", 3.0)]
    assert r.gfid_all[0].reference.startswith("val split") and Result.from_dict(_result()).gfid_all == []


def test_newest_keeps_the_latest_success_and_newer_failures():
    old = Result.from_dict(_result(finished="2026-01-01T00:00:00"))
    new = Result.from_dict(_result(finished="2026-01-02T00:00:00"))
    fail = Result.from_dict(dict(_result(status="failed", finished="2026-01-03T00:00:00"), reason="oom"))
    ok, failed = newest([old, new, fail])
    assert ok == [new] and failed == [fail]


def test_each_reader_spells_a_metric_one_way(tmp_path):
    """The leaderboard heads columns with registry labels, correlate with canonical keys, the zoo with the short
    label; all three get their values from the same Result."""
    d = _result(gfid={"value": 7.5, "generator": "g"}, rkid=0.01)
    write(d, tmp_path)
    board = build([Result.from_dict(d)])
    row = board["rows"][0]
    assert row["rFID"] == 3.0 and row["rKID"] == 0.01 and row["gFID"] == 7.5 and row["usage/256img"] == 0.4
    assert row["pFID α=0.5 δ=0.1 (code)"] == 5.0 and row["pKID α=0.5 δ=0.1 (code)"] == 0.002
    assert row["pFID α=0.5 δ=0.1 (code) std"] == 1.41
    assert board["pfid_columns"] == ["pFID α=0.5 δ=0.1 (code)"]
    df = rows_from_results([tmp_path])
    assert list(df.columns) == ["tokenizer", "family", "tokens", "vocab", "rfid",
                                "pfid@alpha=0.5,delta=0.1,mode=code", "usage", "perplexity", "entropy_norm", "psnr",
                                "ssim", "gfid", "generator", "protocol_hash", "source"]
    assert df.iloc[0]["gfid"] == 7.5 and df.iloc[0]["generator"] == "g"
    cols, rows = zoo_rows({"tokenizers": [{"name": "tok-a", "axes": {}, "train": {}, "result": d}]})
    assert rows[0]["pFID α=0.5"] == 5.0 and rows[0]["pKID α=0.5"] == 0.002 and rows[0]["gFID"] == 7.5
    assert rows[0]["rKID"] == 0.01 and "pFID α=0.5" in cols
