"""PSNR/SSIM against scikit-image; codebook statistics against direct counting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tokbench.api import BinarySpace, CodebookSpace, TokenGroup, TokenLayout, Tokens
from tokbench.metrics import CodebookStats, ImageQuality, psnr, ssim


def _pairs(seed=0, b=3, size=24):
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, 256, (b, 3, size, size), generator=g, dtype=torch.uint8)
    smooth = torch.nn.functional.avg_pool2d(a.double(), 5, 1, 2).round().to(torch.uint8)  # structured images
    noise = torch.randint(-20, 21, smooth.shape, generator=g)
    return smooth, (smooth.long() + noise).clamp(0, 255).to(torch.uint8)


def test_psnr_ssim_match_scikit_image():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a, b = _pairs()
    ours_p, ours_s = psnr(a, b), ssim(a, b)
    for i in range(a.shape[0]):
        x, y = a[i].permute(1, 2, 0).numpy(), b[i].permute(1, 2, 0).numpy()
        assert ours_p[i].item() == pytest.approx(peak_signal_noise_ratio(x, y, data_range=255), abs=1e-9)
        assert ours_s[i].item() == pytest.approx(structural_similarity(x, y, channel_axis=-1, data_range=255), abs=1e-9)
    q = ImageQuality()
    q.update(a[:2], b[:2])
    q.update(a[2:], a[2:])  # lossless image: counted apart, not an infinite mean
    s = q.summary()
    assert s["psnr_lossless_images"] == 1 and s["psnr"] == pytest.approx(float(ours_p[:2].mean()))
    assert s["ssim"] == pytest.approx((float(ours_s[:2].sum()) + 1.0) / 3)


def test_codebook_stats_match_direct_counts():
    K = 16
    sp = CodebookSpace(K, codes=torch.randn(K, 4))
    lay = TokenLayout.grid(4, 4)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 10, (20, 4, 4), generator=g)
    st = CodebookStats([sp], lay, window=8)
    for s in range(0, 20, 6):  # batches that straddle windows
        st.update(Tokens([ids[s:s + 6]], lay), torch.arange(s, min(s + 6, 20)))
    st.close_windows(range(3))
    out = st.summary()
    c = np.bincount(ids.flatten().numpy(), minlength=K)
    p = c[c > 0] / c.sum()
    h = -(p * np.log(p)).sum()
    assert out["usage"] == pytest.approx((c > 0).sum() / K)
    assert out["perplexity"] == pytest.approx(math.exp(h))
    assert out["entropy_norm"] == pytest.approx(h / math.log(K))
    assert out["units"]["space0"]["tokens"] == ids.numel()
    full = [len(ids[w * 8:(w + 1) * 8].unique()) / K for w in range(2)]  # the partial third window is left out
    assert out["usage_per_window"] == pytest.approx(np.mean(full)) and out["windows_counted"] == 2


def test_codebook_stats_per_scale_bits_and_state_roundtrip():
    lay = TokenLayout((TokenGroup((2, 2), scale=0, spaces=(0,)), TokenGroup((4, 4, 2), scale=1, spaces=(0, 1))))
    spaces = [BinarySpace(2**6, bits=6), CodebookSpace(8, codes=torch.randn(8, 3))]
    ids0 = torch.randint(0, 64, (5, 2, 2))
    ids1 = torch.stack([torch.randint(0, 64, (5, 4, 4)), torch.randint(0, 8, (5, 4, 4))], -1)
    st = CodebookStats(spaces, lay)
    st.update(Tokens([ids0[:3], ids1[:3]], lay), torch.arange(3))
    st2 = CodebookStats(spaces, lay).load_state_dict(st.state_dict())
    for s in (st, st2):
        s.update(Tokens([ids0[3:], ids1[3:]], lay), torch.arange(3, 5))
    a, b = st.summary(), st2.summary()
    assert a == b
    assert set(a["units"]) == {"space0", "space1", "scale0/space0", "scale1/space0", "scale1/space1"}
    all0 = torch.cat([ids0.flatten(), ids1[..., 0].flatten()])
    ones = torch.stack([(all0 >> k) & 1 for k in range(6)]).double().mean(1)
    h = -(ones * ones.log2() + (1 - ones) * (1 - ones).log2())
    assert a["units"]["space0"]["bit_entropy_mean"] == pytest.approx(float(h.mean()))
    assert a["units"]["scale1/space1"]["used"] == len(ids1[..., 1].unique())
    assert a["headline_over"] == "mean over 2 token spaces"
