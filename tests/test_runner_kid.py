"""KID beside FID in the runner: the result file, the protocol, the leaderboard, the zoo report columns."""

from __future__ import annotations

import pytest
import torch

from tokbench.data import open_dataset
from tokbench.fid import compute_stats, frechet_distance, kernel_inception_distance
from tokbench.runner import RunOptions, Suite, build_leaderboard, run_suite
from tokbench.runner.leaderboard import to_markdown
from tokbench.testing import ToyExtractor, ToyVQ


def test_runner_reports_kid_beside_fid(tmp_path):
    ext = ToyExtractor()
    ext.protocol = dict(ext.protocol, weights_source="test")
    suite = Suite.from_dict(dict(name="kidtoy", data="sample", num_images=30, resolution=16, tokenizers=[],
                                 batch_size=7, chunk_size=10, metrics=["rfid", "pfid", "kid"],
                                 pfid={"alpha": [0.5], "delta": [6], "seeds": [0, 1], "mode": "code"}))
    opts = RunOptions(out_dir=tmp_path / "runs", cache_dir=tmp_path / "cache", progress=False)
    tok = ToyVQ()
    (res,) = run_suite(suite, opts, tokenizers=[tok], extractor=ext)
    m = res["metrics"]
    # recompute independently: the clean reconstructions' features against the clean images' features
    ds = open_dataset("sample", 16, num_images=30)
    imgs = torch.stack([ds[i] for i in range(30)])
    from tokbench.data import to_uint8

    rec = to_uint8(tok.decode(tok.encode(imgs)))
    ref, ours = compute_stats([imgs], ext, keep="all"), compute_stats([rec], ext, keep="all")
    expect = kernel_inception_distance(ours.features(), ref.features())
    assert m["rkid"] == pytest.approx(expect["kid"], rel=1e-9, abs=1e-12)
    assert m["kid_subsets"]["subset_size"] == 30 and m["kid_subsets"]["subsets"] == 100
    assert m["rfid"] == pytest.approx(frechet_distance(ours, ref), rel=1e-9)
    assert m["frechet"]["method"] == "eigh" and m["frechet"]["small_sample"] is False  # N = 30 > d = 12
    (row,) = m["pfid"]
    assert len(row["kid_values"]) == 2 and row["kid_mean"] == pytest.approx(sum(row["kid_values"]) / 2)
    assert res["protocol"]["kid"]["subsets"] == 100
    board = build_leaderboard([res])
    assert "rKID" in board["columns"] and any(c.startswith("pKID") for c in board["columns"])
    md = to_markdown(board)
    assert "- KID: unbiased" in md and "(test)" in md  # the weights source is named
    assert "small sample" not in md  # N = 30 > d = 12


def test_zoo_report_has_kid_columns():
    from tokbench.experiments.report import zoo_rows

    res = {"tokenizer": {"info": {"tokens_per_image": 16}},
           "metrics": {"rfid": 3.0, "rkid": 0.012, "pfid": [{"alpha": 0.5, "mean": 4.0, "kid_mean": 0.02}]}}
    cols, rows = zoo_rows({"tokenizers": [{"name": "t", "axes": {}, "train": {}, "result": res}]})
    assert cols.index("rKID") == cols.index("rFID") + 1 and "pKID α=0.5" in cols
    assert rows[0]["rKID"] == 0.012 and rows[0]["pKID α=0.5"] == 0.02
