"""KID beside FID in the runner: the result file, the protocol, the leaderboard, the zoo report columns."""

from __future__ import annotations

import pytest
import torch

from tokbench.api import CodebookSpace, TokenLayout, Tokenizer, TokenizerInfo, Tokens
from tokbench.data import open_dataset
from tokbench.fid import compute_stats, frechet_distance, kernel_inception_distance
from tokbench.runner import RunOptions, Suite, build_leaderboard, run_suite
from tokbench.runner.leaderboard import to_markdown


class ToyExtractor:
    """A fixed random projection of 4x4-pooled images (12-d): cheap and deterministic."""

    dim = 12

    def __init__(self):
        self.w = torch.randn(48, self.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        self.protocol = {"extractor": "toy-projection-kid", "weights_sha256": "seed0", "random_weights": False,
                         "weights_source": "test"}

    def to(self, device):
        return self

    def __call__(self, images):
        x = torch.nn.functional.adaptive_avg_pool2d(images.to(torch.float64) / 255.0, 4).flatten(1)
        return torch.tanh(x @ self.w * 3.0)


class ToyVQ(Tokenizer):
    """4x4 pixel-patch VQ with a seeded random codebook, 16 px images."""

    def __init__(self, k: int = 32):
        super().__init__()
        self.register_buffer("codebook", torch.rand(k, 48, generator=torch.Generator().manual_seed(0)))
        self.layout = TokenLayout.grid(4, 4)
        self.info = TokenizerInfo(family="toy", preset=f"toy-kid-k{k}", resolution=16, value_range="[0,1]",
                                  vocab_size=k, tokens_per_image=16, quantizer="vq")

    @property
    def token_spaces(self):
        return [CodebookSpace(self.codebook.shape[0], codes=self.codebook, metric="l2")]

    def _encode(self, x):
        v = x.reshape(-1, 3, 4, 4, 4, 4).permute(0, 2, 4, 1, 3, 5).reshape(-1, 4, 4, 48)
        return [self.token_spaces[0].scores(v).argmax(-1)], [v]

    def decode_raw(self, tokens: Tokens):
        v = self.codebook[tokens.ids[0]]
        return v.reshape(-1, 4, 4, 3, 4, 4).permute(0, 3, 1, 4, 2, 5).reshape(-1, 3, 16, 16)


def test_runner_reports_kid_beside_fid(tmp_path):
    ext = ToyExtractor()
    suite = Suite.from_dict(dict(name="kidtoy", data="sample", num_images=30, resolution=16, tokenizers=[],
                                 batch_size=7, chunk_size=10, metrics=["rfid", "pfid", "kid"],
                                 pfid={"alpha": [0.5], "delta": [6], "seeds": [0, 1], "mode": "code"}))
    opts = RunOptions(out_dir=tmp_path / "runs", cache_dir=tmp_path / "cache", progress=False)
    tok = ToyVQ()
    (res,) = run_suite(suite, opts, tokenizers=[tok], extractor=ext)
    m = res["metrics"]
    # recompute independently: the clean reconstructions' features against the clean images' features
    ds = open_dataset("sample", 16, num_images=30)
    imgs = torch.stack([ds[i] for i in range(30)])
    from tokbench.data import to_uint8

    rec = to_uint8(tok.decode(tok.encode(imgs)))
    ref, ours = compute_stats([imgs], ext, keep="all"), compute_stats([rec], ext, keep="all")
    expect = kernel_inception_distance(ours.features(), ref.features())
    assert m["rkid"] == pytest.approx(expect["kid"], rel=1e-9, abs=1e-12)
    assert m["kid_subsets"]["subset_size"] == 30 and m["kid_subsets"]["subsets"] == 100
    assert m["rfid"] == pytest.approx(frechet_distance(ours, ref), rel=1e-9)
    assert m["frechet"]["method"] == "eigh" and m["frechet"]["small_sample"] is False  # N = 30 > d = 12
    (row,) = m["pfid"]
    assert len(row["kid_values"]) == 2 and row["kid_mean"] == pytest.approx(sum(row["kid_values"]) / 2)
    assert res["protocol"]["kid"]["subsets"] == 100
    board = build_leaderboard([res])
    assert "rKID" in board["columns"] and any(c.startswith("pKID") for c in board["columns"])
    md = to_markdown(board)
    assert "- KID: unbiased" in md and "(test)" in md  # the weights source is named
    assert "small sample" not in md  # N = 30 > d = 12


def test_zoo_report_has_kid_columns():
    from tokbench.experiments.report import zoo_rows

    res = {"tokenizer": {"info": {"tokens_per_image": 16}},
           "metrics": {"rfid": 3.0, "rkid": 0.012, "pfid": [{"alpha": 0.5, "mean": 4.0, "kid_mean": 0.02}]}}
    cols, rows = zoo_rows({"tokenizers": [{"name": "t", "axes": {}, "train": {}, "result": res}]})
    assert cols.index("rKID") == cols.index("rFID") + 1 and "pKID α=0.5" in cols
    assert rows[0]["rKID"] == 0.012 and rows[0]["pKID α=0.5"] == 0.02
