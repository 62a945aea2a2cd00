"""benchmarks/perf/gpu_check.{sh,py} cannot be run here (no GPU): the shell script must parse, and every Python part
must run end to end on the CPU with --tiny sizes (figures meaningless; a moments extractor replaces Inception)."""

import importlib.util
import json
import shutil
import subprocess
import sys

import pytest
import torch

from tokbench.testing import fixture_dir, project_root

BENCH = project_root() / "benchmarks" / "perf"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", BENCH / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_shell_script_parses():
    assert subprocess.run(["bash", "-n", str(BENCH / "gpu_check.sh")], capture_output=True).returncode == 0


def test_python_parts_smoke_on_cpu(tmp_path, monkeypatch):
    from tokbench.fid import register_extractor

    torch.set_num_threads(1)
    fixture_dir("taming_vqgan")
    monkeypatch.setenv("TOKBENCH_CACHE", str(tmp_path / "cache"))

    class Moments:
        dim = 6
        protocol = {"extractor": "gpu-check-moments"}

        def __call__(self, images):
            x = images.double() / 255.0
            return torch.cat([x.mean((2, 3)), x.std((2, 3))], 1)

        def to(self, device):
            return self

    register_extractor("gpu-check-moments", lambda weights=None, device="cpu", **kw: Moments())
    gc = _module()
    dev = torch.device("cpu")
    parity = gc.parity(dev, tiny=True)
    assert len(parity) == 3 and all(r["ok"] and r["ids_exact"] for r in parity)  # CPU vs CPU: exact by construction
    runner = gc.runner_speed(dev, tiny=True, extractor="gpu-check-moments")
    assert runner["images"] == 4 and runner["end_to_end_img_s"] > 0 and 0 < runner["ratio"]
    kv = gc.kv_cache(dev, tiny=True)
    assert [r["arch"] for r in kv] == ["gpt", "rar"] and all(r["speedup"] > 0 for r in kv)
    out = tmp_path / "gc.json"
    out.write_text(json.dumps({"parity": parity, "runner": runner, "kvcache": kv}))
    res = subprocess.run([sys.executable, str(BENCH / "gpu_check.py"), "--json", str(out), "--table-only"],
                         capture_output=True, text=True, cwd=project_root())
    assert res.returncode == 0 and "KV cache rar" in res.stdout and "parity fp32 titok" in res.stdout
