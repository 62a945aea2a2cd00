"""The README works as written: its Python API example runs (offline, a shipped zoo preset), and it cites only
files a user of the repository has."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _python_blocks(section: str) -> list[str]:
    body = README.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def test_python_api_example_runs_as_written(capsys):
    blocks = _python_blocks("Python API")
    assert len(blocks) == 1
    exec(compile(blocks[0], "README.md#python-api", "exec"), {"__name__": "readme_example"})
    out = capsys.readouterr().out
    m = re.search(r"rFID (\d+\.\d+)  pFID\(α=0.5\) (\d+\.\d+)", out)
    assert m, out
    # a perturbed decode is further from the clean images than the plain reconstruction
    assert float(m.group(1)) > 0 and float(m.group(2)) > 0  # (at 32 px and 36 images pFID need not exceed rFID)


def test_readme_cites_only_files_users_have():
    assert "../shared" not in README and "fid-protocol.md" not in README and "algorithms.md" not in README
    for path in set(re.findall(r"`((?:benchmarks|results|tokbench|tests)/[\w./-]+\.(?:yaml|py|md|csv))`", README)):
        assert (ROOT / path).is_file(), path


def test_cpu_install_hint_and_output_folder_are_documented():
    assert "--index-url https://download.pytorch.org/whl/cpu" in README
    assert "tokbench-results/" in README and "about a minute" not in README
