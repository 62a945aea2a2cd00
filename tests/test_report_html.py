"""The static page renders in a real browser (headless Chromium) and its script runs. Skips where no Chromium is
installed: CI does not depend on a browser."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tokbench.cli import main

CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")


def _browser() -> str | None:
    for c in CANDIDATES:
        p = shutil.which(c)
        if p:
            return p
    return None


def test_page_renders_in_headless_chromium(tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium found (looked for /usr/bin/chromium, chromium, chromium-browser, google-chrome); "
                    "install Debian's `chromium` package to run this check")
    table = tmp_path / "t.csv"
    table.write_text("tokenizer,rfid,pfid,gfid\na,1.0,2.0,1.5\nb,2.0,3.5,2.0\nc,0.8,7.0,2.6\nd,2.2,13.0,3.8\n"
                     "e,0.9,17.0,3.3\n")
    out = tmp_path / "out"
    assert main(["correlate", "--table", str(table), "--out", str(out), "--resamples", "1000"]) == 0
    page = out / "index.html"
    shot = tmp_path / "shot.png"
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(base + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # the inline script ran and found every sortable table (data, correlations, comparisons)
    assert 'data-tables="3"' in dom.stdout, dom.stdout[:500]
    assert "<svg" in dom.stdout
    r = subprocess.run(base + ["--window-size=1400,1800", f"--screenshot={shot}", page.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and Path(shot).stat().st_size > 10_000, r.stderr[-2000:]
