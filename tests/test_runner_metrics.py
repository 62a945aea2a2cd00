"""The runner's metric objects and chunk plan: sharding covers every image once, the metric set's state survives a
round trip bit for bit, and saved images are the reconstructions the metrics measured."""

from __future__ import annotations

import contextlib
from collections import defaultdict

import numpy as np
import pytest
import torch
from PIL import Image

from tokbench.api import Tokens
from tokbench.data import open_dataset, to_uint8
from tokbench.fid import StatsAccumulator
from tokbench.perturb import Perturber
from tokbench.runner import RunOptions, Suite, run_suite
from tokbench.dist import DistInfo
from tokbench.runner.metrics import EvalBatch, MetricSet
from tokbench.runner.resume import ChunkPlan
from tokbench.testing import ToyExtractor, ToyVQ


def _suite(**kw) -> Suite:
    d = dict(name="toy", data="sample", num_images=10, resolution=16, tokenizers=[], batch_size=4, chunk_size=4,
             usage_window=8, metrics=["rfid", "pfid", "kid", "psnr", "ssim", "usage"],
             pfid={"alpha": [0.5, 1.0], "delta": [6], "seeds": [0], "mode": "code"})
    d.update(kw)
    return Suite.from_dict(d)


@pytest.mark.parametrize("n,chunk,world", [(10, 4, 1), (10, 4, 2), (9, 3, 3), (5, 8, 2)])
def test_chunk_plan_gives_every_image_to_exactly_one_process(n, chunk, world):
    plans = [ChunkPlan(n, chunk, DistInfo(rank=r, world=world)) for r in range(world)]
    images = sorted(i for p in plans for c in p.mine() for i in p.images(c))
    assert images == list(range(n))
    for p in plans:
        assert [p.chunk_of_round(r) for r in range(p.rounds) if p.chunk_of_round(r) < p.nchunks] == p.mine()


def test_windows_close_only_when_all_their_chunks_are_this_process_s_and_done():
    one = ChunkPlan(10, 4, DistInfo())
    assert one.windows_done(0, [0], window=8) == []  # window 0 = images 0..7 = chunks 0, 1
    assert one.windows_done(1, [0, 1], window=8) == [0]
    two = ChunkPlan(10, 4, DistInfo(rank=0, world=2))
    assert two.windows_done(0, [0], window=8) == []  # chunk 1 is the other process's: closed at the all-reduce


class _NoTimer:
    totals: dict = defaultdict(float)

    def __call__(self, key):
        return contextlib.nullcontext()


def _metric_set(suite: Suite, tok, extractor, ref_acc) -> MetricSet:
    return MetricSet(set(suite.metrics), suite.pfid_settings(), tok, extractor, ref_acc, DistInfo(), _NoTimer(),
                     suite.usage_window)


def _feed(ms: MetricSet, tok, images: torch.Tensor, idx: torch.Tensor, settings) -> None:
    perturber = Perturber.for_tokenizer(tok, torch.device("cpu"))
    perturber.prepare(settings)
    tokens = tok.encode(images)
    rec = to_uint8(tok.decode(tokens))

    def perturb(s):
        pr = perturber(tokens, s, idx, tok.last_features)
        return pr, to_uint8(tok.decode(pr.tokens))

    ms.update(EvalBatch(images, idx, tokens, rec, perturb))


def test_metric_set_state_round_trip_gives_the_same_summary():
    suite, tok, extractor = _suite(), ToyVQ(), ToyExtractor()
    ds = open_dataset("sample", 16, num_images=10)
    images = torch.stack([ds[i] for i in range(10)])
    ref_acc = StatsAccumulator(extractor.dim, keep="all")
    ref_acc.update(extractor(images.flip(-1)))
    a = _metric_set(suite, tok, extractor, ref_acc)
    for c in range(3):  # three chunks, folded in order
        a.begin_chunk()
        idx = torch.arange(c * 4, min(10, c * 4 + 4))
        _feed(a, tok, images[idx], idx, suite.pfid_settings())
        a.sums.fold(a.end_chunk())
    b = _metric_set(suite, tok, extractor, ref_acc)
    b.load_state_dict(a.state_dict())
    a.all_reduce(DistInfo())
    b.all_reduce(DistInfo())
    sa, sb = a.summary(), b.summary()
    assert sa == sb and a.num_images == b.num_images == 10
    assert list(sa) == ["rfid", "frechet", "rkid", "rkid_std", "kid_subsets", "pfid", "pfid_curve", "psnr", "ssim",
                        "image_quality", "codebook"]
    assert sa["pfid"][0]["replacement_rate"][0] is not None and sa["codebook"]["usage"] > 0


def test_saved_images_are_the_reconstructions(tmp_path):
    suite, tok = _suite(metrics=["rfid", "pfid"]), ToyVQ()
    opts = RunOptions(out_dir=tmp_path / "runs", cache_dir=tmp_path / "cache", progress=False, save_images=True)
    (res,) = run_suite(suite, opts, tokenizers=[tok], extractor=ToyExtractor())
    assert res["status"] == "ok"
    folder = tmp_path / "runs" / "images" / "toy-vq-k32-s0"
    labels = ["clean"] + [s.label for s in suite.pfid_settings()]
    assert sorted(p.name for p in folder.iterdir()) == sorted(labels)
    assert all(len(list((folder / lab).glob("*.png"))) == 10 for lab in labels)
    ds = open_dataset("sample", 16, num_images=10)
    images = torch.stack([ds[i] for i in range(10)])
    tokens = tok.encode(images)
    rec = to_uint8(tok.decode(Tokens(tokens.ids, tok.layout)))
    saved = np.array(Image.open(folder / "clean" / "000003.png"))
    assert torch.equal(torch.from_numpy(saved).permute(2, 0, 1), rec[3])
