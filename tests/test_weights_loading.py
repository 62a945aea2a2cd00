"""Checkpoint loading: mismatches name the key, unsafe pickles are refused without trust, clear offline errors."""

import argparse
import json

import pytest
import torch
from torch import nn

import tokbench
from tokbench.cli import main as cli
from tokbench.weights import (
    CheckpointMismatchError,
    UnsafeCheckpointError,
    WeightsNotFoundError,
    load_strict,
    read_checkpoint,
    resolve_weights,
    safetensors_metadata,
    save_safetensors,
    unwrap_state_dict,
)


class Tiny(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3)
        self.norm = nn.GroupNorm(1, width)


def test_wrong_shape_names_key_and_both_shapes():
    sd = Tiny(8).state_dict()
    with pytest.raises(CheckpointMismatchError) as e:
        load_strict(Tiny(4), sd)
    msg = str(e.value)
    assert "'conv.weight'" in msg and "(8, 3, 3, 3)" in msg and "(4, 3, 3, 3)" in msg


def test_missing_and_unexpected_keys_are_named():
    sd = Tiny().state_dict()
    sd["extra.weight"] = sd.pop("norm.bias")
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \(1\): norm.bias[\s\S]*unexpected keys \(1\): extra.weight"):
        load_strict(Tiny(), sd)


def test_nan_weights_are_refused():
    sd = Tiny().state_dict()
    sd["conv.bias"][0] = float("nan")
    with pytest.raises(CheckpointMismatchError, match="non-finite.*conv.bias"):
        load_strict(Tiny(), sd)


def test_unsafe_pickle_refused_without_trust_and_converted_with_it(tmp_path):
    sd = Tiny().state_dict()
    path = tmp_path / "train.ckpt"
    torch.save({"state_dict": sd, "args": argparse.Namespace(lr=1e-4), "loss.disc": torch.ones(1)}, path)
    with pytest.raises(UnsafeCheckpointError, match="trust"):
        read_checkpoint(path)
    raw = read_checkpoint(path, trust_checkpoint=True)
    assert torch.equal(unwrap_state_dict(raw)["conv.weight"], sd["conv.weight"])
    out = tmp_path / "train.safetensors"
    assert cli(["convert", str(path), str(out)]) == 1  # refused without the flag
    assert cli(["convert", str(path), str(out), "--trust-checkpoint"]) == 0
    flat = read_checkpoint(out)
    assert torch.equal(unwrap_state_dict(flat)["conv.weight"], sd["conv.weight"])  # prefix form unwraps too
    assert safetensors_metadata(out)["tokbench.converted_from"] == str(path)


def test_plain_pickle_of_tensors_loads_safely(tmp_path):
    torch.save(Tiny().state_dict(), tmp_path / "plain.pt")
    assert "conv.weight" in read_checkpoint(tmp_path / "plain.pt")


def test_corrupt_files_give_clear_errors(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointMismatchError, match="bad.safetensors"):
        read_checkpoint(tmp_path / "bad.safetensors")
    (tmp_path / "bad.pt").write_bytes(b"\x00\x01garbage")
    with pytest.raises((CheckpointMismatchError, UnsafeCheckpointError), match="bad.pt"):
        read_checkpoint(tmp_path / "bad.pt")


def test_offline_hub_and_manual_urls_say_where_to_put_the_file(tmp_path, monkeypatch):
    import huggingface_hub.constants as hfc

    monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(WeightsNotFoundError) as e:
        resolve_weights("hf://some-org/some-repo/model.ckpt@abc123", what="demo")
    msg = str(e.value)
    assert "model.ckpt" in msg and "TOKBENCH_WEIGHTS_DIR" in msg and "--weights" not in msg  # run has no --weights
    assert "hf download some-org/some-repo model.ckpt --revision abc123 --local-dir" in msg
    assert "huggingface-cli" not in msg  # huggingface-hub >= 1.0 installs only `hf`
    with pytest.raises(WeightsNotFoundError, match=r"vq\.ckpt"):
        resolve_weights("https://drive.google.com/uc?id=XYZ#/vq.ckpt")
    with pytest.raises(WeightsNotFoundError, match="no file"):
        resolve_weights(tmp_path / "absent.pt")


def test_weights_dir_override_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKBENCH_WEIGHTS_DIR", str(tmp_path))
    (tmp_path / "vq.ckpt").write_bytes(b"x")
    assert resolve_weights("https://example.org/files/vq.ckpt?dl=1").path == tmp_path / "vq.ckpt"
    (tmp_path / "org--repo" / "sub").mkdir(parents=True)
    (tmp_path / "org--repo" / "sub" / "vq.ckpt").write_bytes(b"y")
    assert resolve_weights("hf://org/repo/sub/vq.ckpt").path == tmp_path / "org--repo" / "sub" / "vq.ckpt"


def test_tokbench_checkpoint_loads_by_path(tmp_path):
    """A safetensors file with tokbench metadata is a loadable tokenizer by itself."""
    model = tokbench.load_tokenizer("pixel-vq-p4-k64")
    cfg = {"constructor_kwargs": {"patch": 4, "codebook_size": 64, "resolution": 64}, "fit": False}
    save_safetensors(model.state_dict(), tmp_path / "mine.safetensors",
                     {"tokbench.family": "pixel_vq", "tokbench.config": json.dumps(cfg), "tokbench.preset": "mine"})
    again = tokbench.load_tokenizer(str(tmp_path / "mine.safetensors"))
    assert torch.equal(again.codebook, model.codebook) and again.info.preset == "mine"


def test_every_preset_has_its_own_destination_and_a_command_that_fetches_it(tmp_path, monkeypatch):
    """Three ImageFolder presets share the base name best_ckpt.pt: each still gets its own path, and the advice is a
    command that exists (`hf download` of huggingface-hub >= 1.0) or a manual URL."""
    from tokbench.registry import presets
    from tokbench.weight_files import destination, fetch_command

    monkeypatch.setenv("TOKBENCH_WEIGHTS_DIR", str(tmp_path))
    by_dest: dict = {}
    for name, p in presets().items():
        if p.weights and destination(p.weights) is not None:
            by_dest.setdefault(destination(p.weights), set()).add(p.weights)
            cmd = fetch_command(p.weights, p.manual_url)
            assert cmd.startswith(("hf download ", "download by hand from http")), (name, cmd)
            assert str(destination(p.weights)) in cmd or "--local-dir" in cmd, (name, cmd)
    assert all(len(specs) == 1 for specs in by_dest.values()), {d: s for d, s in by_dest.items() if len(s) > 1}
    folder = {destination(presets()[f"imagefolder-msvr10p2-{k}"].weights) for k in (4096, 8192, 16384)}
    assert len(folder) == 3
