"""The static results page renders in a real browser (headless Chromium): its script runs, the protocol banner is
there (random Inception weights in bold), nothing scrolls sideways at 1,400 px, and every image loads. `.ci/run`
installs Debian's `chromium` when absent, so in CI these run; elsewhere they skip with the reason."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tokbench.cli import main

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


def _browser() -> str | None:
    for c in CANDIDATES:
        p = shutil.which(c)
        if p:
            return p
    return None


def _need_browser() -> str:
    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium found (looked for /usr/bin/chromium, chromium, chromium-browser, google-chrome); "
                    "install Debian's `chromium` package to run this check")
    return browser


def _dom(browser: str, page: Path, profile: Path, width: int = 1400) -> dict:
    """The page's <body> attributes after load: the inline script writes its measurements there."""
    r = subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},1800", "--dump-dom",
                        page.as_uri()], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", r.stdout)
    assert body, r.stdout[:500]
    return dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1))) | {"_html": r.stdout}


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    """A plain `tokbench run` (no --out) of two shipped zoo tokenizers on 8 held-out images with --save-images,
    started in an empty folder, stderr captured (not a terminal, as in a log file)."""
    cwd = tmp_path_factory.mktemp("plain")
    base = tmp_path_factory.getbasetemp()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               TOKBENCH_CACHE=str(base / "tokbench-cache"), TOKBENCH_WEIGHTS_DIR=str(base / "tokbench-weights"),
               HF_HUB_OFFLINE="1", TOKBENCH_OFFLINE="1")
    (base / "tokbench-cache").mkdir(exist_ok=True)
    r = subprocess.run([sys.executable, "-m", "tokbench", "run", "--tokenizer", "tokbench-zoo-conv-k64",
                        "--tokenizer", "tokbench-zoo-conv-k256", "--num-images", "8", "--metrics", "rfid,pfid",
                        "--save-images"], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return cwd, r


def test_plain_run_writes_to_its_own_folder_and_names_progress_stages(plain_run):
    cwd, r = plain_run
    out = cwd / "tokbench-results"
    names = sorted(p.name for p in (out / "runs").glob("*.json"))  # <tokenizer>__<suite>__<data8>-<protocol8>.json
    assert [n.split("__")[:2] for n in names] == [["tokbench-zoo-conv-k256", "sample"], ["tokbench-zoo-conv-k64", "sample"]]
    assert (out / "leaderboard.md").is_file() and (out / "index.html").is_file()
    assert sorted(p.name for p in cwd.iterdir()) == ["tokbench-results"]  # nothing else, no results/ rewritten
    # progress reaches a log file as plain lines naming the stage, no terminal escape codes
    assert "rfid/pfid tokbench-zoo-conv-k64" in r.stderr and "\x1b[" not in r.stderr
    assert "INFO httpx" not in r.stderr and "rFID" in r.stdout


def test_results_page_in_headless_chromium(plain_run, tmp_path):
    browser = _need_browser()
    cwd, _ = plain_run
    page = cwd / "tokbench-results" / "index.html"
    text = page.read_text()
    # order: the leaderboard and its banner first, then curves/ranks, galleries, diagnostics collapsed
    i_board, i_curves = text.index('id="protocol-banner"'), text.index("pFID versus α and ranks")
    assert i_board < text.index('id="leaderboard"') < i_curves < text.index("Failure galleries")
    assert '<details id="diagnostics">' in text
    # the FID network's weights in bold; flagged when random (the protocol's random_weights), else named
    board = json.loads((cwd / "tokbench-results" / "leaderboard.json").read_text())
    ex = board["protocol"]["fid"]["extractor"]
    if ex["random_weights"]:
        assert re.search(r'<p class="weights random">FID network: <b>RANDOM-WEIGHT Inception', text)
    else:
        assert f'<p class="weights">FID network: <b>{ex["extractor"]} with weights {ex["weights"]}' in text
        assert "RANDOM-WEIGHT" not in text
    # numbers as in the .md (two decimals, usage in %), not raw floats
    md = (cwd / "tokbench-results" / "leaderboard.md").read_text()
    row = next(r for r in board["rows"] if r["tokenizer"] == "tokbench-zoo-conv-k64")
    assert f"{row['rFID']:.2f}" in md and f">{row['rFID']:.2f}<" in text and f">{row['rFID']!r}<" not in text
    dom = _dom(browser, page, tmp_path / "profile")
    assert "protocol-banner" in dom["_html"]
    assert int(dom["data-images"]) == 24 and dom["data-broken-images"] == "0"  # 2 tokenizers × 6 clean/perturbed pairs
    assert int(dom["data-scroll-width"]) <= 1400 and dom["data-overflowing"] == "0", dom
    shot = tmp_path / "shot.png"
    r = subprocess.run([_browser(), *FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", "--window-size=1400,2400",
                        f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0 and shot.stat().st_size > 10_000, r.stderr[-2000:]


def test_leaderboard_and_correlate_regenerate_the_page_as_the_readme_writes_them(plain_run, monkeypatch):
    cwd, _ = plain_run
    monkeypatch.chdir(cwd)
    page = cwd / "tokbench-results" / "index.html"
    page.unlink()
    assert main(["leaderboard", "--runs", "tokbench-results/runs"]) == 0
    assert 'id="protocol-banner"' in page.read_text()
    page.unlink()
    # `tokbench correlate` with no arguments: the default run folder (no gFID here, so it reports the missing target)
    assert main(["correlate"]) == 1
    assert main(["correlate", "--target", "rfid", "--resamples", "200"]) == 0
    assert 'id="protocol-banner"' in page.read_text() and "Which metric predicts rfid?" in page.read_text()


def test_correlation_page_renders_in_headless_chromium(tmp_path):
    browser = _need_browser()
    table = tmp_path / "t.csv"
    table.write_text("tokenizer,rfid,pfid,gfid\na,1.0,2.0,1.5\nb,2.0,3.5,2.0\nc,0.8,7.0,2.6\nd,2.2,13.0,3.8\n"
                     "e,0.9,17.0,3.3\n")
    out = tmp_path / "out"
    assert main(["correlate", "--table", str(table), "--out", str(out), "--resamples", "1000"]) == 0
    text = (out / "index.html").read_text()
    assert "not measured here and not comparable with the leaderboard above" in text
    dom = _dom(browser, out / "index.html", tmp_path / "profile")
    # the sortable-table script ran and found every table (correlations, comparisons, data)
    assert dom["data-tables"] == "3", dom
    assert "<svg" in dom["_html"]
    assert int(dom["data-scroll-width"]) <= 1400 and dom["data-overflowing"] == "0", dom
