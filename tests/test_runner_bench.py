"""Benchmark runner: result files, resume after a kill, protocol changes, failures, leaderboard, suites, CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from tokbench.api import Tokens
from tokbench.runner import (Interrupted, RunOptions, Suite, build_leaderboard, load_suite, packaged_suites,
                             read_result, run_suite, suite_definition, write_leaderboard)
from tokbench.result_identity import find_result
from tokbench.testing import ToyExtractor, ToyVQ


def _suite(**kw) -> Suite:
    d = dict(name="toy", data="sample", num_images=24, resolution=16, tokenizers=[], batch_size=5, chunk_size=8,
             usage_window=16, pfid={"alpha": [0.5, 1.0], "delta": [6], "seeds": [0, 1], "mode": "code"})
    d.update(kw)
    return Suite.from_dict(d)


def _opts(tmp_path, sub, **kw) -> RunOptions:
    return RunOptions(out_dir=tmp_path / sub, cache_dir=tmp_path / "cache", progress=False, **kw)


def _numbers(res: dict) -> dict:
    m = res["metrics"]
    return {"rfid": m["rfid"], "pfid": [p["values"] for p in m["pfid"]], "rate": [p["replacement_rate"] for p in m["pfid"]],
            "psnr": m["psnr"], "ssim": m["ssim"], "cb": m["codebook"]}


@pytest.fixture(scope="module")
def extractor():
    return ToyExtractor()


def test_run_writes_result_and_leaderboard(tmp_path, extractor):
    from tokbench.data import open_dataset
    from tokbench.metrics import histogram_stats

    suite = _suite()
    tok = ToyVQ()
    (res,) = run_suite(suite, _opts(tmp_path, "runs", leaderboard_dir=tmp_path / "lb"), tokenizers=[tok],
                       extractor=extractor)
    assert res["status"] == "ok"
    on_disk = read_result(find_result(tmp_path / "runs", "toy-vq-k32-s0", "toy"))
    assert on_disk["metrics"]["rfid"] == res["metrics"]["rfid"] and math.isfinite(res["metrics"]["rfid"])
    p = res["protocol"]
    assert p["num_images"] == 24 and p["resolution"] == 16 and p["data"]["content_hash"]
    assert p["fid"]["extractor"]["extractor"] == "toy-projection"
    assert {"tokbench", "torch", "torch_fidelity"} <= set(res["run"]["versions"])
    pf = res["metrics"]["pfid"]
    assert [(x["alpha"], x["seeds"]) for x in pf] == [(0.5, [0, 1]), (1.0, [0, 1])]
    assert pf[0]["delta_abs"] == {"space0": 6} and len(pf[0]["values"]) == 2 and pf[0]["std"] >= 0
    assert all(x["mean"] > res["metrics"]["rfid"] for x in pf)  # wrong tokens hurt
    assert abs(pf[1]["replacement_rate_mean"] - 5 / 6) < 0.08
    assert res["metrics"]["pfid_curve"]["delta=6,mode=code"][0][0] == 0.5
    assert pf[0]["rule"] == "code" and pf[0]["rules"] == {"space0": "code"} and pf[0]["exclude_self"] is False
    assert all(x["exclude_self"] is False for x in p["pfid"]["settings"]) and "alpha*(delta-1)/delta" in \
        p["pfid"]["realised_share"]
    # codebook statistics equal direct counting on the clean tokens
    ds = open_dataset("sample", 16, num_images=24)
    ids = tok.encode(torch.stack([ds[i] for i in range(24)])).ids[0]
    direct = histogram_stats(torch.bincount(ids.flatten(), minlength=32))
    cb = res["metrics"]["codebook"]
    assert cb["usage"] == pytest.approx(direct["usage"]) and cb["perplexity"] == pytest.approx(direct["perplexity"])
    assert cb["usage_per_window"] == pytest.approx(len(ids[:16].unique()) / 32)  # one full window of 16 images
    # PSNR from the result equals a direct computation
    from tokbench.data import to_uint8
    from tokbench.metrics import psnr

    rec = to_uint8(tok.decode(Tokens([ids], tok.layout)))
    ref = torch.stack([ds[i] for i in range(24)])
    assert res["metrics"]["psnr"] == pytest.approx(float(psnr(ref, rec).mean()))
    lb = json.loads((tmp_path / "lb" / "leaderboard.json").read_text())
    assert lb["rows"][0]["tokenizer"] == "toy-vq-k32-s0" and lb["rows"][0]["rFID"] == res["metrics"]["rfid"]
    md = (tmp_path / "lb" / "leaderboard.md").read_text()
    assert "RANDOM WEIGHTS" in md and "pFID α=0.5 δ=6 (code)" in md
    assert (tmp_path / "lb" / "leaderboard.csv").read_text().startswith("tokenizer,family")
    assert not (tmp_path / "runs" / "state").exists() or not any((tmp_path / "runs" / "state").iterdir())


def test_resume_after_kill_gives_identical_numbers(tmp_path, extractor):
    suite = _suite()
    (full,) = run_suite(suite, _opts(tmp_path, "a"), tokenizers=[ToyVQ()], extractor=extractor)
    with pytest.raises(Interrupted):
        run_suite(suite, _opts(tmp_path, "b", stop_after_chunks=1), tokenizers=[ToyVQ()], extractor=extractor)
    with pytest.raises(Interrupted):  # a second kill, later
        run_suite(suite, _opts(tmp_path, "b", stop_after_chunks=1), tokenizers=[ToyVQ()], extractor=extractor)
    assert find_result(tmp_path / "b", "toy-vq-k32-s0", "toy") is None
    (resumed,) = run_suite(suite, _opts(tmp_path, "b"), tokenizers=[ToyVQ()], extractor=extractor)
    assert resumed["run"]["resumed_chunks"] == 2
    assert _numbers(resumed) == _numbers(full)
    # a different batch size gives the same tokens and (up to float summation order) the same numbers
    (rebatched,) = run_suite(_suite(batch_size=8), _opts(tmp_path, "c"), tokenizers=[ToyVQ()], extractor=extractor)
    assert rebatched["metrics"]["pfid"][0]["replacement_rate"] == full["metrics"]["pfid"][0]["replacement_rate"]
    assert rebatched["metrics"]["rfid"] == pytest.approx(full["metrics"]["rfid"], rel=1e-9)


def test_changed_protocol_starts_afresh(tmp_path, extractor):
    with pytest.raises(Interrupted):
        run_suite(_suite(), _opts(tmp_path, "r", stop_after_chunks=1), tokenizers=[ToyVQ()], extractor=extractor)
    changed = _suite(pfid={"alpha": [0.25], "delta": [6], "seeds": [0], "mode": "code"})
    (res,) = run_suite(changed, _opts(tmp_path, "r"), tokenizers=[ToyVQ()], extractor=extractor)
    assert res["run"]["resumed_chunks"] == 0 and [p["alpha"] for p in res["metrics"]["pfid"]] == [0.25]
    # an up-to-date result is reused, not recomputed
    (again,) = run_suite(changed, _opts(tmp_path, "r"), tokenizers=[ToyVQ()], extractor=extractor)
    assert again["run"]["finished"] == res["run"]["finished"]


def test_failures_are_reported_and_others_run(tmp_path, extractor, monkeypatch):
    monkeypatch.setenv("TOKBENCH_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    suite = _suite(metrics=["rfid", "usage"])
    res = run_suite(suite, _opts(tmp_path, "f", leaderboard_dir=tmp_path / "lb"),
                    tokenizers=[ToyVQ(nan=True), "no-such-tokenizer", ToyVQ(k=16, seed=1)], extractor=extractor)
    assert [r["status"] for r in res] == ["failed", "failed", "ok"]
    assert "NaN" in res[0]["reason"] and "no-such-tokenizer" in res[1]["reason"]
    (failed,) = (tmp_path / "f").glob("no-such-tokenizer__toy__*.failed.json")
    assert read_result(failed)["status"] == "failed"
    md = (tmp_path / "lb" / "leaderboard.md").read_text()
    assert "Failed (" in md and "no-such-tokenizer" in md and "toy-vq-k16-s1" in md


def test_leaderboard_refuses_other_protocols(tmp_path, extractor):
    a = run_suite(_suite(metrics=["rfid"]), _opts(tmp_path, "l"), tokenizers=[ToyVQ(), ToyVQ(k=16, seed=2)],
                  extractor=extractor)
    b = run_suite(_suite(metrics=["rfid"], num_images=20), _opts(tmp_path, "l2"), tokenizers=[ToyVQ(seed=3)],
                  extractor=extractor)
    board = build_leaderboard(a + b)
    assert [r["tokenizer"] for r in board["rows"]] == sorted([r["tokenizer"]["name"] for r in a],
                                                              key=lambda n: [x for x in a if x["tokenizer"]["name"] == n][0]["metrics"]["rfid"])
    assert [r["tokenizer"] for r in board["refused"]] == ["toy-vq-k32-s3"]
    assert "data" in board["refused"][0]["reason"]
    with pytest.raises(ValueError):
        write_leaderboard(tmp_path / "nothing-here", tmp_path / "out")


def test_suites_load_by_name_or_path_and_sample_is_the_packaged_file(tmp_path):
    from tokbench.runner.suite import SUITES_DIR

    assert {"sample", "imagenet256", "robusttok-pfid"} <= set(packaged_suites())
    s = load_suite(None)
    assert s.name == "sample" and s.pfid_settings() and s.file == "tokbench/suites/sample.yaml"
    assert s.to_dict() == load_suite("sample").to_dict() == Suite.from_dict(suite_definition("sample")).to_dict()
    assert s.to_dict() == Suite.from_dict(yaml.safe_load((SUITES_DIR / "sample.yaml").read_text())).to_dict()
    suite_definition("sample")["name"] = "changed"  # a fresh copy each time: the cached definition is not shared
    assert load_suite(None).name == "sample"
    big = load_suite("imagenet256")
    assert big.num_images == 50000 and big.resolution == 256 and len(big.pfid_settings()) == 12
    mine = tmp_path / "benchmarks" / "mine.yaml"  # a path is a path, wherever it is
    mine.parent.mkdir()
    mine.write_text(yaml.safe_dump(dict(suite_definition("imagenet256"), name="mine")))
    assert load_suite(str(mine)).name == "mine" and load_suite(str(mine)).file == str(mine)
    with pytest.raises(ValueError, match="unknown"):
        Suite.from_dict({"name": "x", "metrics": ["rfid", "lpips"]})
    with pytest.raises(FileNotFoundError, match="packaged suite"):
        load_suite("no-such-suite")
    with pytest.raises(FileNotFoundError, match="--suite imagenet256"):  # the suites' old place in the repository
        load_suite("benchmarks/imagenet256.yaml")


def test_packaged_suites_are_package_data():
    """A plain (non-editable) `pip install .` ships every suite: each file in tokbench/suites/ matches a package-data
    glob of pyproject.toml."""
    import fnmatch

    from tokbench.runner.suite import SUITES_DIR
    from tokbench.testing import project_root

    tomllib = pytest.importorskip("tomllib")  # Python ≥ 3.11
    globs = tomllib.loads((project_root() / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    files = [p.relative_to(SUITES_DIR.parent).as_posix() for p in SUITES_DIR.iterdir()]
    assert files and all(any(fnmatch.fnmatch(f, g) for g in globs["tokbench"]) for f in files), files


def test_cli_run_with_a_registered_toy(tmp_path, monkeypatch, capsys):
    from tokbench.cli import main
    from tokbench.fid import register_extractor
    from tokbench.registry import Family, Preset, _FAMILIES, _PRESETS, register_family, register_preset

    if "toy_cli" not in _FAMILIES:
        register_family(Family("toy_cli", lambda cfg: ToyVQ(**cfg.get("constructor_kwargs", {})), needs_weights=False))
    if "toy-cli-vq" not in _PRESETS:
        register_preset(Preset("toy-cli-vq", "toy_cli", {"constructor_kwargs": {"k": 24}}))
    register_extractor("toy-test", lambda weights=None, device="cpu", **kw: ToyExtractor())
    suite = tmp_path / "s.yaml"
    suite.write_text("name: clitoy\ndata: sample\nnum_images: 12\nresolution: 16\ntokenizers: [toy-cli-vq]\n"
                     "pfid: {alpha: [1.0], delta: [4], seeds: [0]}\nfid: {extractor: toy-test}\n"
                     "batch_size: 6\nchunk_size: 6\n")
    rc = main(["run", "--suite", str(suite), "--out", str(tmp_path / "runs"), "--leaderboard-dir", str(tmp_path / "lb"),
               "--cache-dir", str(tmp_path / "cache"), "--pfid-delta", "0.25", "--no-progress", "--save-images"])
    out = capsys.readouterr().out
    assert rc == 0 and "toy-cli-vq" in out and "rFID" in out
    res = read_result(find_result(tmp_path / "runs", "toy-cli-vq", "clitoy"))
    assert res["metrics"]["pfid"][0]["delta_abs"] == {"space0": 6}
    pngs = sorted((tmp_path / "runs" / "images" / "toy-cli-vq").rglob("*.png"))
    assert len(pngs) == 24 and not list((tmp_path / "runs").rglob("*.jp*g"))
    assert main(["leaderboard", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "lb2")]) == 0
    assert (tmp_path / "lb2" / "leaderboard.csv").exists()
