"""Image reading: odd kinds become 8-bit RGB correctly, bad files are named, the ADM crop and the sample set."""

import numpy as np
import pytest
import torch
from PIL import Image

from tokbench.data import BadImageError, center_crop_adm, iter_batches, open_dataset, read_image, to_uint8


def _save(path, arr, mode=None, **kw):
    Image.fromarray(arr, mode=mode).save(path, **kw) if mode else Image.fromarray(arr).save(path, **kw)
    return path


def test_odd_image_kinds_become_rgb8(tmp_path):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (20, 24), dtype=np.uint8)
    rgba = rng.integers(0, 256, (20, 24, 4), dtype=np.uint8)
    g16 = (rng.integers(0, 65536, (20, 24))).astype(np.uint16)

    im = read_image(_save(tmp_path / "gray.png", gray))
    assert im.mode == "RGB" and np.array_equal(np.asarray(im)[..., 0], gray) and np.array_equal(np.asarray(im)[..., 2], gray)

    im = read_image(_save(tmp_path / "rgba.png", rgba))
    assert im.mode == "RGB" and np.array_equal(np.asarray(im), rgba[..., :3])  # alpha dropped, colours kept

    Image.fromarray(g16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    im = read_image(tmp_path / "g16.png")
    expected = np.floor(g16.astype(np.float64) * 255 / 65535 + 0.5).astype(np.uint8)
    assert np.array_equal(np.asarray(im)[..., 1], expected)  # scaled, not clipped to 255

    pal = Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).convert("P", palette=Image.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pal.png", transparency=0)
    im = read_image(tmp_path / "pal.png")
    assert im.mode == "RGB"
    assert np.array_equal(np.asarray(im), np.asarray(Image.open(tmp_path / "pal.png").convert("RGBA"))[..., :3])

    rgb = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    assert read_image(tmp_path / "cmyk.jpg").mode == "RGB"
    Image.fromarray(rgb).save(tmp_path / "x.webp", lossless=True)
    assert np.array_equal(np.asarray(read_image(tmp_path / "x.webp")), rgb)


def _photo_folder(tmp_path, n=4, size=40):
    rng = np.random.default_rng(1)
    for i in range(n):
        _save(tmp_path / f"img{i}.png", rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8))
    return tmp_path


def test_truncated_file_is_named_and_skippable(tmp_path):
    folder = _photo_folder(tmp_path)
    data = (folder / "img2.png").read_bytes()
    (folder / "img2.png").write_bytes(data[: len(data) // 2])
    ds = open_dataset(folder, 32)
    with pytest.raises(BadImageError, match="img2.png"):
        list(iter_batches(ds, 2))
    ds = open_dataset(folder, 32, skip_bad_images=True)
    got = torch.cat([b.indices for b in iter_batches(ds, 2)])
    assert got.tolist() == [0, 1, 3]
    assert [b["path"].endswith("img2.png") for b in ds.bad_images] == [True]


def test_folder_is_sorted_recursive_and_subset(tmp_path):
    rng = np.random.default_rng(2)
    for cls in ("b_cls", "a_cls"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            _save(tmp_path / cls / f"{i}.JPG", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    ds = open_dataset(tmp_path, 16, num_images=4)
    assert ds.sources == ["a_cls/0.JPG", "a_cls/1.JPG", "a_cls/2.JPG", "b_cls/0.JPG"]
    assert ds.labels == [0, 0, 0, 1] and ds.classes == ["a_cls", "b_cls"]
    h1 = ds.content_hash
    assert open_dataset(tmp_path, 16, num_images=4).content_hash == h1
    assert open_dataset(tmp_path, 16, num_images=5).content_hash != h1


def test_adm_crop_matches_the_reference_procedure():
    rng = np.random.default_rng(3)
    im = Image.fromarray(rng.integers(0, 256, (600, 1100, 3), dtype=np.uint8))
    out = center_crop_adm(im, 256)
    assert out.size == (256, 256)
    # by hand: 600 ≥ 512 → one BOX halving to 550×300, then bicubic to round(550·256/300)=469 × 256, centre crop
    ref = im.resize((550, 300), resample=Image.BOX).resize((469, 256), resample=Image.BICUBIC)
    left = (469 - 256) // 2
    assert np.array_equal(np.asarray(out), np.asarray(ref)[:, left : left + 256])


def test_sample_set_is_deterministic_and_labelled():
    a = open_dataset("sample", 32, num_images=20)
    b = open_dataset("sample", 32, num_images=20)
    assert len(a) == 20 and a.content_hash == b.content_hash
    assert torch.equal(a[5], b[5]) and a[5].dtype == torch.uint8 and a[5].shape == (3, 32, 32)
    assert "NOT a research-grade" in a.describe()["note"]
    assert len(set(a.sources)) == 3  # 9 crops per photograph


def test_sample_split_specs_are_disjoint_by_photograph():
    """`sample:train` / `sample:heldout`: the split the zoo trains with; num_images = the first N of the part."""
    full = open_dataset("sample", 16)
    train, held = open_dataset("sample:train", 16), open_dataset("sample:heldout", 16)
    assert len(train) + len(held) == len(full) and not set(train.sources) & set(held.sources)
    five = open_dataset("sample:heldout", 16, num_images=5)
    assert len(five) == 5 and torch.equal(five[4], held[4])
    d = five.describe()
    assert d["split"]["part"] == "heldout" and d["num_images"] == 5 and d["content_hash"] != held.content_hash


def test_uint8_rounding_is_half_up_and_rejects_nan():
    x = torch.tensor([0.0, 0.5 / 255, 1.49 / 255, 1.5 / 255, 1.0, 1.2, -0.3])
    assert to_uint8(x).tolist() == [0, 1, 1, 2, 255, 255, 0]
    with pytest.raises(FloatingPointError):
        to_uint8(torch.tensor([float("nan")]))
