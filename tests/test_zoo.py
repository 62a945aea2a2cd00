"""The zoo end to end with --quick-sized models: every artefact written; an interrupted run resumes (tokenizer
training, generator training and measurement each cut in the middle) and reproduces the uninterrupted numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "benchmarks" / "experiments" / "zoo-quick.yaml"


class StandInFeatures:
    """A cheap deterministic extractor (pooled pixels through a fixed random projection) instead of Inception."""

    dim = 24

    def __init__(self, weights=None, device="cpu"):
        g = torch.Generator().manual_seed(0)
        self.w = torch.randn(3 * 16, self.dim, generator=g, dtype=torch.float64)
        self.protocol = {"extractor": "zoo-test-features", "dim": self.dim, "random_weights": True}

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        f = F.adaptive_avg_pool2d(images.double() / 255.0, 4).flatten(1)
        return torch.tanh(f @ self.w * 3.0)

    def to(self, device):
        return self


@pytest.fixture
def quick_cfg():
    from tokbench.fid import register_extractor
    from tokbench.experiments import resolve

    register_extractor("zoo-test-features", StandInFeatures)
    raw = yaml.safe_load(QUICK.read_text())
    raw["measure"]["fid"]["extractor"] = "zoo-test-features"
    return resolve(raw, where="zoo-quick (test)")


def _numbers(out: Path) -> dict:
    s = json.loads((out / "summary.json").read_text())
    return {r["tokenizer"]: {k: v for k, v in r.items() if k not in ("params",)} for r in s["table"]}


def _run(cfg, out: Path, **kw):
    from tokbench.experiments import ZooOptions, run_zoo

    return run_zoo(cfg, ZooOptions(out=out, progress=False, log=lambda s: None, **kw))


def test_quick_zoo_writes_everything_and_resumes_exactly(quick_cfg, tmp_path, monkeypatch):
    from tokbench.experiments import ZooInterrupted

    monkeypatch.chdir(tmp_path)
    a = tmp_path / "a"
    summary = _run(quick_cfg, a)
    names = [t["name"] for t in quick_cfg["tokenizers"]]
    for f in ("README.md", "summary.json", "config.resolved.yaml", "commands.sh", "zoo.md", "zoo.csv",
              "leaderboard.md", "leaderboard.csv", "leaderboard.json", "correlation.md", "correlation.json",
              "index.html", "configs/generator.yaml"):
        assert (a / f).is_file(), f
    assert list((a / "plots").glob("*.png")), "no figures"
    for n in names:
        assert (a / "configs" / f"{n}.train-robust.yaml").is_file()
        r = json.loads(next((a / "runs").glob(f"{n}__*.json")).read_text())
        assert r["status"] == "ok" and r["metrics"]["rfid"] is not None and len(r["metrics"]["pfid"]) == 3
        assert r["gfid"]["value"] > 0 and r["gfid"]["num_samples"] == summary["data"]["train_images"]
        assert r["protocol"]["num_images"] == summary["data"]["heldout_images"]
    # no held-out source is trained on, and the README says how small this is
    d = summary["data"]
    assert not set(d["train_sources"]) & set(d["heldout_sources"])
    readme = (a / "README.md").read_text()
    assert "what it can and cannot show" in readme and "Does pFID predict gFID?" in readme
    corr = json.loads((a / "correlation.json").read_text())
    assert corr["sections"][0]["metrics"][0]["n"] == len(names)
    # a second invocation redoes nothing (figures off from here on: they cost time and are checked above)
    quick_cfg["correlate"].update(plots=False, html=False)
    stamp = {p: p.stat().st_mtime_ns for p in (a / "state").rglob("*.json")}
    _run(quick_cfg, a)
    assert stamp == {p: p.stat().st_mtime_ns for p in (a / "state").rglob("*.json")}

    # the smallest tokenizers and generators export as loadable files within the size budget
    from tokbench.gen import load_generator
    from tokbench.registry import load_tokenizer
    from tokbench.experiments.export import export

    rows = export(a, tmp_path / "weights", budget_mb=2.0)
    assert rows and sum(r["bytes"] for r in rows) <= 2.0 * 1024 * 1024
    tok = load_tokenizer(str(tmp_path / "weights" / rows[0]["tokenizer"]))
    img = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    assert tok.decode(tok.encode(img)).shape == (1, 3, 32, 32)
    _, meta = load_generator(tmp_path / "weights" / rows[0]["generator"])
    assert meta.tokenizer.name == rows[0]["preset"]
    # or exactly the named ones, replacing the earlier export; a name not in the zoo or over the budget is refused
    picked = export(a, tmp_path / "weights", budget_mb=2.0, names=[names[-1]])
    assert [r["name"] for r in picked] == [names[-1]]
    assert sorted(p.name for p in (tmp_path / "weights").glob("*.safetensors")) == sorted(
        [picked[0]["tokenizer"], picked[0]["generator"]])
    with pytest.raises(ValueError, match="not in this zoo"):
        export(a, tmp_path / "weights", names=["no-such"])
    with pytest.raises(ValueError, match="budget"):
        export(a, tmp_path / "weights", budget_mb=1e-3, names=[names[0]])

    # interrupted in the middle of three different stages, then resumed: the same numbers
    b = tmp_path / "b"
    for tok, stage in ((names[1], "train"), (names[2], "generator"), (names[3], "measure")):
        with pytest.raises(ZooInterrupted):
            _run(quick_cfg, b, interrupt={"tokenizer": tok, "stage": stage})
    _run(quick_cfg, b)
    assert _numbers(b) == _numbers(a)

    # a training-seed replicate pools with the first zoo; two zoos with the same seed are refused
    from tokbench.experiments import resolve
    from tokbench.experiments.config import with_seed
    from tokbench.experiments.pool import pool

    raw = yaml.safe_load(QUICK.read_text())
    raw["measure"]["fid"]["extractor"] = "zoo-test-features"
    raw["correlate"] = dict(raw.get("correlate") or {}, plots=False, html=False)
    c = tmp_path / "c"
    _run(resolve(with_seed(raw, 1), where="zoo-quick seed 1 (test)"), c)
    with pytest.raises(ValueError, match="distinct training seeds"):
        pool([a, b], tmp_path / "bad")
    res = pool([a, c], tmp_path / "pooled")
    for f in ("README.md", "pooled.csv", "replicates.csv", "consistency.md", "consistency.json", "correlation.json",
              "commands.sh"):
        assert (tmp_path / "pooled" / f).is_file(), f
    pooled = {r["tokenizer"]: r for r in __import__("csv").DictReader(open(tmp_path / "pooled" / "pooled.csv"))}
    s_a, s_c = (json.loads((x / "summary.json").read_text())["table"] for x in (a, c))
    for ra, rc in zip(s_a, s_c):  # the pooled value is the mean of the replicates' values
        assert float(pooled[ra["tokenizer"]]["gfid"]) == pytest.approx((ra["gFID"] + rc["gFID"]) / 2, rel=1e-12)
    assert res["correlate"]["exit_code"] == 0
    assert "Does a metric's ordering survive retraining?" in (tmp_path / "pooled" / "README.md").read_text()


def test_config_errors_are_clear():
    from tokbench.experiments import resolve

    raw = yaml.safe_load(QUICK.read_text())
    with pytest.raises(ValueError, match="unknown keys"):
        resolve(dict(raw, typo=1))
    bad = dict(raw, tokenizers=[{"name": "x"}, {"name": "x"}])
    with pytest.raises(ValueError, match="duplicate"):
        resolve(bad)
    bad = dict(raw, tokenizers=[{"name": "x", "config": {"train": {"stepz": 3}}}])
    with pytest.raises(ValueError, match="tokenizer 'x'"):
        resolve(bad)
    with pytest.raises(ValueError, match="quick"):
        resolve(raw, quick=True)


def test_tokenizer_entries_extend_the_defaults():
    """A partial constructor override keeps the other defaults (same architecture), another family replaces them."""
    from tokbench.experiments import resolve

    cfg = resolve(yaml.safe_load(QUICK.read_text()))
    kw = {t["name"]: t["train_config"]["model"]["constructor_kwargs"] for t in cfg["tokenizers"]}
    assert kw["conv-k256"] == dict(kw["conv-k64"], codebook_size=256)
    assert "ch" not in kw["vit-k64"] and kw["vit-k64"]["patch_size"] == 8


def test_every_shipped_zoo_config_resolves():
    from tokbench.experiments import resolve
    from tokbench.experiments.config import read_raw

    for p in sorted(q for q in (ROOT / "benchmarks" / "experiments").glob("zoo*.yaml") if "suite" not in q.name):
        raw = read_raw(p)
        cfg = resolve(raw, where=str(p))
        assert len(cfg["tokenizers"]) >= (4 if "quick" in p.name else 8), p
        if raw.get("quick"):
            resolve(raw, quick=True, where=str(p))


def test_shipped_zoo_presets_load_and_generate():
    """The zoo weights committed in tokbench/zoo_weights/ load as presets and their generators sample images."""
    from tokbench.gen import SamplingConfig, load_generator, sample_images
    from tokbench.models import shipped_zoo as presets
    from tokbench.registry import get_preset, load_tokenizer

    rows = presets.manifest()
    if not rows:
        pytest.skip("no zoo weights shipped in tokbench/zoo_weights/ (run `tokbench zoo --export-weights`)")
    total = sum((presets.WEIGHTS_DIR / r[k]).stat().st_size for r in rows for k in ("tokenizer", "generator"))
    assert total <= 4 * 1024 * 1024, "the shipped zoo weights must stay a few MB"
    assert set(presets.register_all()) == {r["preset"] for r in rows}
    r = rows[0]
    tok = load_tokenizer(r["preset"])
    assert tok.info.resolution == 32 and tok.info.preset == r["preset"]
    assert get_preset(r["preset"]).generator == str(presets.generator_path(r["preset"]))  # the preset carries it
    gen, meta = load_generator(get_preset(r["preset"]).generator)
    assert meta.tokenizer.name == r["preset"]
    (idx, _, images), = list(sample_images(gen, meta.tokenizer.load(), num=2, settings=SamplingConfig(), seed=0,
                                           progress=False))
    assert images.shape == (2, 3, 32, 32) and images.dtype == torch.uint8


def test_default_suite_runs_the_shipped_zoo_weights():
    """A plain `tokbench run` benchmarks exactly the shipped zoo presets (their native 32 px), on the held-out part of
    the sample split they were trained without, with gFID of their shipped generators."""
    from tokbench.data import open_dataset
    from tokbench.registry import load_tokenizer
    from tokbench.runner import load_suite
    from tokbench.runner.bench import resolve_tokenizer_names
    from tokbench.runner.gfid_step import suite_generators
    from tokbench.models.shipped_zoo import generator_path, manifest

    shipped = sorted(r["preset"] for r in manifest())
    if not shipped:
        pytest.skip("no zoo weights shipped")
    suite = load_suite(None)
    names = resolve_tokenizer_names(suite.tokenizers, suite.resolution)
    assert sorted(names) == shipped
    for n in names:
        assert load_tokenizer(n).info.resolution == suite.resolution
    ok = [{"status": "ok", "tokenizer": {"name": n}} for n in names] + [{"status": "failed", "tokenizer": {"name": "x"}}]
    assert suite_generators(suite, ok) == [str(generator_path(n)) for n in names]
    held, train = open_dataset(suite.data, 32), open_dataset(suite.gfid["reference"], 32)
    assert not set(held.sources) & set(train.sources) and len(held) + len(train) == 126


def test_seed_replicate_changes_only_training_seeds():
    """`tokbench zoo --seed N`: every tokenizer and the generator train with N; split, pFID and gFID seeds stay."""
    import yaml

    from tokbench.experiments.config import resolve, with_seed

    raw = yaml.safe_load((ROOT / "benchmarks" / "experiments" / "zoo.yaml").read_text())
    base, rep = resolve(raw), resolve(with_seed(raw, 1))
    assert rep["name"] == "zoo-seed1" and base["name"] == "zoo"
    assert {t["train_config"]["seed"] for t in rep["tokenizers"]} == {1}
    assert {t["train_config"]["seed"] for t in base["tokenizers"]} == {0}
    assert rep["generator"]["train"]["seed"] == 1
    for k in ("data", "measure", "gfid"):
        assert rep[k] == base[k]
    assert resolve(with_seed(raw, 1), quick=True)["name"] == "zoo-quick-seed1"


def test_readme_zoo_table_quotes_the_committed_results():
    """The README's "Does pFID predict gFID?" table is read from the committed per-generator correlation files of
    results/zoo-v2-cpu, not typed in: a regenerated zoo with other numbers fails here until the README says what the new
    run found."""
    readme = (ROOT / "README.md").read_text().replace("−", "-")
    zoo = ROOT / "results" / "zoo-v2-cpu"
    files = {"training": "correlation_by_generator.json", "held-out": "correlation_by_generator_heldout.json"}
    if not all((zoo / f).is_file() for f in files.values()):
        pytest.skip("committed zoo-v2-cpu results absent")
    pfid = "pfid@alpha=0.5,delta=0.1,mode=feature"

    def cell(c: dict) -> str:
        return f"{c['value']:+.2f} [{c['interval']['ci_low']:+.2f}, {c['interval']['ci_high']:+.2f}]"

    rows = 0
    for ref, f in files.items():
        for sec in json.loads((zoo / f).read_text())["sections"]:
            if not sec["key"].startswith("generator-"):
                continue
            gen = "GPT" if " gpt " in sec["generators"][0] else "RAR"
            rho = {m["metric"]: m["coefficients"]["spearman"] for m in sec["metrics"]}
            d = next(c for c in sec["comparisons"] if c["a"] == pfid and c["b"] == "rfid")["methods"]["spearman"]
            row = (f"| {gen} | {ref} | {sec['n_with_target']} | {cell(rho[pfid])} | {cell(rho['rfid'])} | "
                   f"{d['delta']:+.2f} [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}] |")
            assert row in readme, row
            rows += 1
    assert rows == 4


def test_zoo_with_two_generators_and_two_gfid_references(quick_cfg, tmp_path, monkeypatch):
    """Each generator recipe (here the LlamaGen-style GPT and RAR) is trained per tokenizer and gets its own stages;
    one sampling pass gives gFID and KID against the training and the held-out images; correlate runs per generator
    on gfid_all.csv."""
    from tokbench.experiments import resolve

    monkeypatch.chdir(tmp_path)
    raw = yaml.safe_load(QUICK.read_text())
    raw["measure"]["fid"]["extractor"] = "zoo-test-features"
    raw["tokenizers"] = raw["tokenizers"][:3]
    gen = raw["generator"]
    raw["generators"] = [dict(gen, name="gpt"), dict(gen, name="rar", model=dict(gen["model"], arch="rar"))]
    raw["gfid"] = {"reference": ["train", "heldout"], "num": 12, "kid": True}
    cfg = resolve(raw, where="two generators (test)")
    out = tmp_path / "z"
    summary = _run(cfg, out)
    for t in summary["tokenizers"]:
        for stage in ("generator-gpt", "gfid-gpt", "generator-rar", "gfid-rar"):
            assert (out / "state" / t["name"] / f"{stage}.json").is_file()
        r = json.loads(next((out / "runs").glob(f"{t['name']}__*.json")).read_text())
        assert r["gfid"]["generator_name"] == "gpt" and r["gfid"]["reference"].startswith("train split")
        got = {(e["generator_name"], e["reference"].split(" ")[0]): e["value"] for e in r["gfid_all"]}
        assert set(got) == {(g, ref) for g in ("gpt", "rar") for ref in ("train", "heldout")}
        assert got[("gpt", "train")] == r["gfid"]["value"] and got[("gpt", "heldout")] != got[("gpt", "train")]
        kid = {(e["generator_name"], e["reference"].split(" ")[0]): e["kid"] for e in r["gfid_all"]}  # gfid.kid
        assert all(math.isfinite(v) for v in kid.values()) and kid[("gpt", "train")] != kid[("gpt", "heldout")]
        assert r["gfid"]["kid"] == kid[("gpt", "train")]
        assert r["gfid"]["protocol"]["kid"]["protocol"]["subset_size"] == 12  # min(1000, samples, reference)
    assert (out / "configs" / "generator-rar.yaml").is_file()
    assert "rar" in (out / "configs" / "generator-rar.yaml").read_text()
    table = (out / "gfid_all.csv").read_text().splitlines()
    assert len(table) == 1 + 2 * 3 and "gfid_heldout" in table[0]
    assert "gkid" in table[0] and "gkid_heldout" in table[0]
    for name in ("correlation_by_generator", "correlation_by_generator_heldout", "correlation_by_generator_gkid",
                 "correlation_by_generator_gkid_heldout"):
        assert (out / f"{name}.json").is_file(), name
    gkid = json.loads((out / "correlation_by_generator_gkid.json").read_text())
    assert gkid["target"] == "gkid" and gkid["target_direction"] == "lower"
    assert "Spearman ρ between the gpt and the rar gFID over tokenizers" in (out / "README.md").read_text()
    before = {f.name: json.loads(f.read_text())["gfid_all"] for f in (out / "runs").glob("*.json")}
    _run(cfg, out)  # everything resumes from its markers: identical numbers
    assert before == {f.name: json.loads(f.read_text())["gfid_all"] for f in (out / "runs").glob("*.json")}

    # a seed replicate pools per generator too: the mean per (tokenizer, generator), correlated per generator
    import csv

    from tokbench.experiments.config import with_seed
    from tokbench.experiments.pool import pool

    out1 = tmp_path / "z1"
    _run(resolve(with_seed(raw, 1), where="two generators, seed 1 (test)"), out1)
    res = pool([out, out1], tmp_path / "pooled")
    assert [c["target"] for c in res["correlate_by_generator"]] == ["gfid", "gfid_heldout", "gkid", "gkid_heldout"]
    rows = {(r["tokenizer"], r["generator"]): r for r in csv.DictReader(open(tmp_path / "pooled" / "pooled_by_generator.csv"))}
    single = [{(r["tokenizer"], r["generator"]): r for r in csv.DictReader(open(o / "gfid_all.csv"))} for o in (out, out1)]
    assert len(rows) == 6
    for k, r in rows.items():
        for col in ("gfid", "gkid_heldout"):
            assert float(r[col]) == pytest.approx((float(single[0][k][col]) + float(single[1][k][col])) / 2, rel=1e-12)
    assert (tmp_path / "pooled" / "correlation_by_generator_gkid_heldout.json").is_file()


def test_gfid_references_must_be_distinct():
    from tokbench.experiments import resolve

    raw = yaml.safe_load(QUICK.read_text())
    raw["gfid"] = {"reference": ["train", "train"]}
    with pytest.raises(ValueError, match="distinct"):
        resolve(raw)


def test_sharded_zoo_matches_one_process(quick_cfg, tmp_path, monkeypatch):
    """`--shard K/N`: each process runs only its tokenizers and writes no report; the unsharded command then redoes
    no stage and reports the numbers one process would have measured."""
    import copy

    monkeypatch.chdir(tmp_path)
    cfg = copy.deepcopy(quick_cfg)
    cfg["tokenizers"] = cfg["tokenizers"][:3]
    cfg["correlate"].update(plots=False, html=False)
    _run(cfg, tmp_path / "one")
    out = tmp_path / "sharded"
    for k in (1, 0):
        part = _run(cfg, out, shard=(k, 2))
        assert [t["name"] for t in part["tokenizers"]] == [t["name"] for t in cfg["tokenizers"][k::2]]
        assert not (out / "summary.json").exists()
    stamp = {p: p.stat().st_mtime_ns for p in (out / "state").rglob("*.json")}
    assert len({p.parent.name for p in stamp}) == 3
    _run(cfg, out)
    assert stamp == {p: p.stat().st_mtime_ns for p in (out / "state").rglob("*.json")}
    assert _numbers(out) == _numbers(tmp_path / "one")


def test_config_extends_a_larger_zoo_and_selects_tokenizers(tmp_path):
    """`extends:` deep-merges a file onto the one it names (relative path; lists replaced); `select:` keeps the named
    tokenizers in its order; unknown names and cycles are refused."""
    from tokbench.experiments.config import load, read_raw

    base = yaml.safe_load(QUICK.read_text())
    names = [t["name"] for t in base["tokenizers"]]
    (tmp_path / "sub").mkdir()
    (tmp_path / "base.yaml").write_text(QUICK.read_text())
    child = tmp_path / "sub" / "child.yaml"
    child.write_text(yaml.safe_dump({"extends": "../base.yaml", "name": "child", "select": [names[2], names[0]],
                                     "measure": {"batch_size": 7}}))
    cfg = load(child)
    assert cfg["name"] == "child" and [t["name"] for t in cfg["tokenizers"]] == [names[2], names[0]]
    assert cfg["measure"]["batch_size"] == 7
    assert cfg["measure"]["pfid"] == load(tmp_path / "base.yaml")["measure"]["pfid"]  # merged, not replaced
    assert "extends" not in read_raw(child) and "select" not in cfg
    child.write_text(yaml.safe_dump({"extends": "../base.yaml", "select": ["no-such"]}))
    with pytest.raises(ValueError, match="no-such"):
        load(child)
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ValueError, match="cycle"):
        read_raw(tmp_path / "a.yaml")
