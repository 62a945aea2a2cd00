"""`tokbench run --metrics …,gfid --generator CKPT`: gFID lands in the tokenizer's result and the leaderboard."""

import json

import pytest
import torch
import yaml

from tokbench.cli import main
from tokbench.result_identity import find_result


class _Moments:
    """A cheap deterministic stand-in for Inception (12 colour moments)."""

    dim = 12
    protocol = {"extractor": "runner-gfid-test", "weights_sha256": "none", "random_weights": False}

    def __call__(self, images):
        x = images.double() / 255.0
        return torch.cat([x.mean((2, 3)), x.std((2, 3)), x.amax((2, 3)), x.amin((2, 3))], 1)

    def to(self, device):
        return self


def test_run_adds_gfid_to_result_and_leaderboard(tmp_path, monkeypatch):
    from tokbench.fid import register_extractor

    register_extractor("runner-gfid-test", lambda weights=None, device="cpu", **kw: _Moments())
    suite = {"name": "gfidtest", "data": "sample", "num_images": 6, "resolution": 64,
             "tokenizers": ["pixel-vq-p4-k64"], "metrics": ["rfid", "usage"],
             "fid": {"extractor": "runner-gfid-test", "weights": None}, "batch_size": 6, "chunk_size": 6}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    tokens, gen = tmp_path / "tokens", tmp_path / "gen"
    assert main(["pretokenize", "--tokenizer", "pixel-vq-p4-k64", "--data", "sample", "--num-images", "9",
                 "--out", str(tokens), "--no-progress"]) == 0
    cfg = yaml.safe_load(open("benchmarks/experiments/gen/tiny.yaml"))
    cfg["train"].update(steps=4, batch_size=4, warmup_steps=1, ckpt_every=4, log_every=2)
    (tmp_path / "gen.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train-gen", "--tokens", str(tokens), "--config", str(tmp_path / "gen.yaml"), "--out", str(gen),
                 "--no-progress"]) == 0
    out, board = tmp_path / "runs", tmp_path / "board"
    base = ["run", "--suite", str(tmp_path / "suite.yaml"), "--out", str(out), "--leaderboard-dir", str(board),
            "--no-progress", "--device", "cpu"]
    assert main([*base, "--metrics", "rfid,usage,gfid"]) == 2  # gfid without a generator: a usage error, nothing run
    assert main([*base, "--metrics", "rfid,usage,gfid", "--generator", str(gen / "generator.safetensors"),
                 "--temperature", "0.9"]) == 0
    res = json.loads(find_result(out, "pixel-vq-p4-k64", "gfidtest").read_text())
    g = res["gfid"]
    assert g["value"] > 0 and g["num_samples"] == 6  # same N as the reference
    assert g["protocol"]["sampling"]["temperature"] == 0.9
    assert res["metrics"]["rfid"] is not None
    rows = json.loads((board / "leaderboard.json").read_text())
    text = json.dumps(rows)
    assert "gFID" in text and f"{g['value']:.2f}"[:3] in text


def test_default_suite_samples_the_shipped_generators_once(tmp_path, monkeypatch):
    """The default suite's `gfid` section: each shipped zoo tokenizer's own generator, against `sample:train`; an
    unchanged gFID is not recomputed; `--metrics` without gfid skips it."""
    import tokbench.gen
    from tokbench.fid import register_extractor
    from tokbench.models.shipped_zoo import manifest
    from tokbench.runner.suite import suite_definition

    rows = manifest()
    if not rows:
        pytest.skip("no zoo weights shipped in tokbench/zoo_weights/")
    register_extractor("runner-gfid-test", lambda weights=None, device="cpu", **kw: _Moments())
    preset = rows[0]["preset"]
    suite = dict(suite_definition("sample"), name="defaultgfid", tokenizers=[preset], metrics=["rfid"],
                 fid={"extractor": "runner-gfid-test", "weights": None})
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    out, board = tmp_path / "runs", tmp_path / "board"
    base = ["run", "--suite", str(tmp_path / "suite.yaml"), "--out", str(out), "--leaderboard-dir", str(board),
            "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--device", "cpu", "--gfid-num", "6"]
    assert main(base) == 0
    res = json.loads(find_result(out, preset, "defaultgfid").read_text())
    g = res["gfid"]
    assert g["num_samples"] == 6 and g["reference"]["data"] == "sample:train" and g["reference"]["n"] == 90
    assert g["generator"] == f"tokbench/zoo_weights/{rows[0]['generator']}"
    assert res["protocol"]["data"]["split"]["part"] == "heldout" and res["protocol"]["num_images"] == 36
    assert "gFID: 6 samples" in (board / "leaderboard.md").read_text()

    def boom(*a, **k):
        raise AssertionError("an up-to-date gFID was recomputed")

    monkeypatch.setattr(tokbench.gen, "gfid", boom)
    assert main(base) == 0  # up to date: nothing sampled
    assert json.loads(find_result(out, preset, "defaultgfid").read_text())["gfid"]["value"] == g["value"]
    assert main([*base, "--metrics", "rfid"]) == 0  # gfid not asked for
    assert main([*base, "--gfid-seed", "1"]) == 3  # a changed protocol recomputes (here: the patched sampler fails)


def test_run_suite_alone_measures_the_suite_generators(tmp_path):
    """The Python API, no CLI: `run_suite(load_suite(None), opts)` runs the gFID stage of the default suite's `gfid`
    section (each preset's shipped generator), writes it into the result file, and isolates a failing generator."""
    from tokbench.models.shipped_zoo import manifest
    from tokbench.registry import get_preset
    from tokbench.runner import GfidOptions, RunOptions, apply_overrides, load_suite, run_suite

    rows = manifest()
    if len(rows) < 2:
        pytest.skip("fewer than two zoo weights shipped in tokbench/zoo_weights/")
    names = [r["preset"] for r in rows[:2]]
    suite = apply_overrides(load_suite(None), tokenizers=names, metrics=["rfid"], num_images=6, batch_size=6)
    assert suite.gfid["generators"] == "shipped"
    opts = RunOptions(out_dir=tmp_path / "runs", cache_dir=tmp_path / "cache", progress=False,
                      gfid=GfidOptions(num=4))
    results = run_suite(suite, opts, extractor=_Moments())
    assert [r["tokenizer"]["name"] for r in results] == names
    for r in results:
        g = r["gfid"]
        assert g["value"] > 0 and g["num_samples"] == 4 and g["reference"]["data"] == "sample:train"
        on_disk = json.loads(find_result(tmp_path / "runs", r["tokenizer"]["name"], "sample").read_text())
        assert on_disk["gfid"] == json.loads(json.dumps(g))  # written into the result as it was produced
    assert [g["tokenizer"] for g in results.gfid_log] == names and results.gfid_failed == 0

    # a generator that cannot load is logged and counted; the other one's gFID is kept (up to date, not resampled)
    suite.gfid = dict(suite.gfid, generators={names[0]: str(tmp_path / "missing.safetensors"),
                                              names[1]: get_preset(names[1]).generator})
    again = run_suite(suite, opts, extractor=_Moments())
    assert again.gfid_failed == 1 and again.gfid_log[0]["generator"].endswith("missing.safetensors")
    assert again[1]["gfid"]["value"] == results[1]["gfid"]["value"]

    off = run_suite(suite, RunOptions(out_dir=tmp_path / "off", cache_dir=tmp_path / "cache", progress=False,
                                      gfid=GfidOptions(enabled=False)), extractor=_Moments())
    assert all("gfid" not in r for r in off) and off.gfid_log == []
