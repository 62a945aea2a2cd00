"""results/published.csv: every row names a preset, every number is found in the source text it cites
(results/published-sources/), every number carries its protocol; presets carry their published numbers; the
`--protocol paper` suites follow the family's protocol or refuse."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from tokbench.published import FAMILY_PROTOCOLS, PROTOCOLS, SOURCES_DIR, headline, paper_suite, published_rows
from tokbench.registry import get_preset, list_tokenizers

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "results" / "published.csv"
SOURCE_OF = {"rfid": "rfid_source", "pfid": "pfid_source", "gfid": "gfid_source", "usage": "other_source",
             "psnr": "other_source", "ssim": "other_source", "lpips": "other_source"}
PROTOCOL_OF = {"rfid": "rfid_protocol", "pfid": "pfid_protocol", "gfid": "gfid_protocol"}


def _rows() -> list[dict]:
    with PUBLISHED.open(newline="") as f:
        return list(csv.DictReader(f))


def _forms(metric: str, text: str) -> set[str]:
    """The ways a value may be written in a source: as given, and usage also as a percentage."""
    v = float(text)
    forms = {text, f"{v:g}", f"{v:.2f}", f"{v:.1f}", f"{v:.4f}"}
    if metric == "usage":
        forms |= {f"{100 * v:g}%", f"{100 * v:.0f}%"}
    return forms


def _quoted(source: str) -> str:
    path = SOURCES_DIR / f"{source}.md"
    assert path.is_file(), f"cited source {path} is not in the repository"
    return path.read_text()


def test_names_are_preset_names():
    presets = set(list_tokenizers())
    bad = sorted({r["tokenizer"] for r in _rows()} - presets)
    assert not bad, f"rows that name no preset: {bad}"


@pytest.mark.parametrize("row", _rows(), ids=lambda r: f"{r['tokenizer']}:{r['gfid'] or r['rfid']}")
def test_each_number_is_in_its_cited_source(row):
    """Not 'somewhere in the docs': in the one source file this row cites for this metric, as a whole number."""
    found_any = False
    for metric, col in SOURCE_OF.items():
        value = row[metric]
        if not value:
            continue
        found_any = True
        assert row[col], f"{row['tokenizer']} {metric} {value}: no {col}"
        text = _quoted(row[col])
        pattern = "|".join(rf"(?<![\d.]){re.escape(s)}(?![\d])" for s in _forms(metric, value))
        assert re.search(pattern, text), f"{row['tokenizer']} {metric} {value} not in {row[col]}.md"
    assert found_any, f"{row['tokenizer']}: a row without any number"
    assert row["source"], "every row cites its source in words too"


@pytest.mark.parametrize("row", _rows(), ids=lambda r: f"{r['tokenizer']}:{r['gfid'] or r['rfid']}")
def test_each_number_carries_its_protocol(row):
    for metric, col in PROTOCOL_OF.items():
        if not row[metric]:
            continue
        code = row[col].split(":")[0]
        assert code in PROTOCOLS and PROTOCOLS[code].metric == metric, (row["tokenizer"], metric, row[col])
        for part in ("reference", "N ", "crop", "evaluator"):
            assert part in row[col], (row["tokenizer"], metric, part)
    if row["gfid"]:
        assert row["generator"] and "CFG" in row["gfid_protocol"], "a gFID needs its generator and CFG"


def test_robusttok_generation_numbers_sit_on_the_right_models():
    """1.83 is RAR-B before decoder post-training (robusttok-zero / robustok-main); after post-training RAR-B is
    1.60 (robustok-post); the abstract's 3.45 is without CFG."""
    rows = _rows()
    b = {(r["tokenizer"], r["gfid"]) for r in rows if r["generator"] == "RAR-B"}
    assert ("robusttok-zero", "1.83") in b and ("robustok-main", "1.83") in b and ("robustok-post", "1.60") in b
    assert not any(t == "robustok-post" and g == "1.83" for t, g in b)
    no_cfg = [r for r in rows if r["gfid"] == "3.45"]
    assert len(no_cfg) == 1 and no_cfg[0]["tokenizer"] == "robusttok-zero" and "without CFG" in no_cfg[0]["cfg"]


def test_the_issue_pfid_pairs_are_all_there():
    pairs = {(r["tokenizer"], r["rfid"], r["pfid"]) for r in _rows() if r["pfid"]}
    for p in [("robusttok-zero", "1.02", "2.28"), ("xqgan-4096", "0.91", "6.98"), ("xqgan-8192", "0.81", "7.91"),
              ("imagefolder-msvr10p2-4096", "0.80", "7.23"), ("maskgit-vq", "2.28", "5.03"),
              ("llamagen-vq16", "2.19", "13.12"), ("var-vq-256", "0.90", "17.46")]:
        assert p in pairs, p


def test_presets_carry_their_published_numbers():
    assert get_preset("llamagen-vq16").published and headline("llamagen-vq16", "rfid")["value"] == 2.19
    assert headline("llamagen-vq16", "pfid")["protocol"].startswith("P-RT")
    assert get_preset("tokbench-zoo-conv-k64").published == []
    assert published_rows(path=ROOT / "nonexistent.csv") == []


def test_every_published_family_has_its_protocol():
    fams = {r["family"] for r in _rows()}
    assert fams <= set(FAMILY_PROTOCOLS), sorted(fams - set(FAMILY_PROTOCOLS))


def test_paper_suite_follows_or_refuses():
    s = paper_suite("llamagen-vq16", "llamagen_vq", data="/x/val")
    assert s["crop"] == "adm" and s["num_images"] == 50000 and "pfid" in s["metrics"]
    assert s["pfid"]["mode"] == "feature" and s["pfid"]["exclude_self"] is False
    assert "pfid" not in paper_suite("llamagen-vq8", "llamagen_vq")["metrics"]
    with pytest.raises(ValueError, match="crop"):
        paper_suite("titok-l32", "titok")  # torchvision Resize + CenterCrop: tokbench has only the ADM crop


def _result(name: str, rfid: float, pfid: float, num: int = 50000) -> dict:
    return {"status": "ok", "suite": {"name": "paper-R-LG"}, "run": {"versions": {}},
            "tokenizer": {"name": name, "info": {"family": "llamagen_vq"}, "weights": None},
            "protocol": {"hash": "h", "crop": "adm", "num_images": num},
            "metrics": {"rfid": rfid, "pfid": [{"alpha": 1.0, "delta": 900, "mode": "feature", "rule": "feature",
                                                 "values": [pfid], "mean": pfid, "std": 0.0}]}}


def test_leaderboard_shows_ours_the_papers_the_difference_and_the_protocol_gap():
    from tokbench.runner.leaderboard import build

    board = build([_result("llamagen-vq16", 2.5, 14.0), _result("tokbench-zoo-conv-k64", 1.0, 2.0)])
    row = next(r for r in board["rows"] if r["tokenizer"] == "llamagen-vq16")
    assert row["rFID (paper)"] == 2.19 and row["ΔrFID (ours − paper)"] == pytest.approx(0.31)
    assert row["pFID (paper)"] == 13.12 and row["ΔpFID (ours − paper)"] == pytest.approx(0.88)
    assert row["paper protocol"] == "R-LG / P-RT" and "TensorFlow" in row["protocol differences"]
    assert "unpublished" in row["protocol differences"] and "ΔrFID (ours − paper)" in board["columns"]
    zoo = next(r for r in board["rows"] if r["tokenizer"] == "tokbench-zoo-conv-k64")
    assert zoo.get("rFID (paper)") is None
    small = build([_result("llamagen-vq16", 2.5, 14.0, num=1000)])["rows"][0]
    assert "N 1000" in small["protocol differences"]


def test_run_protocol_paper_is_clear_about_what_it_cannot_do(capsys):
    from tokbench.cli import main
    from tokbench.commands.run import paper_suites

    (s,) = paper_suites(["llamagen-vq16"], "/data/val")
    assert s.name == "paper-R-LG" and s.pfid.mode == "feature" and s.tokenizers == ["llamagen-vq16"]
    assert main(["run", "--protocol", "paper"]) != 0
    assert "--tokenizer" in capsys.readouterr().err
    assert main(["run", "--protocol", "paper", "--tokenizer", "titok-l32"]) != 0
    assert "crop" in capsys.readouterr().err


def test_protocols_doc_is_current():
    from tokbench.published import protocols_markdown

    assert (ROOT / "docs" / "published-protocols.md").read_text() == protocols_markdown(), \
        "regenerate docs/published-protocols.md from tokbench.published.protocols_markdown()"
