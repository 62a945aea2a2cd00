"""The paper experiment (`tokbench paper`, benchmarks/experiments/papers/robusttok-11x2*.yaml) end to end on CPU: the
dry-run override (two fixture tokenizers, tiny GPT and RAR, the sample set) writes its table and correlation report,
and a re-run skips every finished stage."""

import csv
import json
from pathlib import Path

import pytest
import torch

from tokbench.testing import fixture_dir, project_root
from tokbench.experiments.paper import PaperOptions, load, run_paper

PAPERS = project_root() / "benchmarks" / "experiments" / "papers"


class _Moments:
    """A deterministic stand-in for Inception (FID exactness is tested elsewhere)."""

    dim = 6
    protocol = {"extractor": "paper-test-moments"}

    def __call__(self, images):
        x = images.double() / 255.0
        return torch.cat([x.mean((2, 3)), x.std((2, 3))], 1)


def test_full_config_resolves_to_eleven_frozen_presets_and_two_archs():
    cfg = load(PAPERS / "robusttok-11x2.yaml")
    assert len(cfg["tokenizers"]) == 11 and all(t.get("preset") for t in cfg["tokenizers"])
    assert {a: g["model"]["size"] for a, g in cfg["generators"].items()} == {"gpt": "gpt-l", "rar": "rar-l"}
    assert cfg["pretokenize"]["aug"] == "tencrop" and cfg["gfid"]["num"] == 50000 and cfg["lacks"]
    from tokbench.registry import presets

    assert {t["preset"] for t in cfg["tokenizers"]} <= set(presets())


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"base: {PAPERS / 'robusttok-11x2.yaml'}\ngfid: {{bogus: 1}}\n")
    with pytest.raises(ValueError, match="bogus"):
        load(bad)
    bad.write_text(f"base: {PAPERS / 'robusttok-11x2.yaml'}\ntokenizers: [{{name: x}}]\n")
    with pytest.raises(ValueError, match="exactly one of preset / family"):
        load(bad)


def test_dry_run_end_to_end_and_resume(tmp_path):
    torch.set_num_threads(1)
    fixture_dir("llamagen_vq")  # loud skip without ../shared
    cfg = load(PAPERS / "robusttok-11x2-dryrun.yaml")
    logs = []
    opts = PaperOptions(out=tmp_path / "out", device="cpu", progress=False, extractor=_Moments(), log=logs.append)
    summary = run_paper(cfg, opts)
    rows = list(csv.DictReader((tmp_path / "out" / "paper.csv").open()))
    assert [(r["tokenizer"], r["generator"]) for r in rows] == [
        ("llamagen-fixture", "gpt:tiny"), ("llamagen-fixture", "rar:tiny"),
        ("titok-fixture", "gpt:tiny"), ("titok-fixture", "rar:tiny")]
    assert all(float(r["gfid"]) >= 0 and float(r["rfid"]) >= 0 and r["pfid@alpha=1,delta=4,mode=code"] for r in rows)
    assert summary["correlate"]["exit_code"] == 0 and (tmp_path / "out" / "correlation.md").exists()
    for t in summary["tokenizers"]:
        assert t["frozen"] and "train" not in t
        proto = t["gfid"]["rar"]["protocol"]
        assert proto["generator"]["arch"] == "rar" and proto["sampling"]["cfg"] == 3.0
        assert proto["num_samples"] == 8
    tokens_meta = json.loads((Path(summary["tokenizers"][0]["pretokenize"]["tokens"]) / "meta.json").read_text())
    assert tokens_meta["aug"] == "tencrop" and tokens_meta["variants"] == 10
    logs.clear()
    again = run_paper(cfg, opts)  # every stage has its marker: nothing is redone, same numbers
    assert not [m for m in logs if m.startswith("[")]
    assert again["table"] == summary["table"]
