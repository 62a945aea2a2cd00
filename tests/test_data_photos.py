"""The `photos` data spec: every bundled photograph, 87 grid crops each, sources grouped by scene."""

import pytest

from tokbench.data import open_dataset, split_by_source
from tokbench.data.photos import PHOTO_SCALES, PHOTOS, crop_boxes, photo_path


def test_crop_grid_covers_the_photo_inside_its_bounds():
    boxes = crop_boxes(300, 451)
    assert len(boxes) == sum(k * k for _, k in PHOTO_SCALES) == 87
    assert all(0 <= t and 0 <= left and t + s <= 300 and left + s <= 451 for t, left, s in boxes)
    assert boxes[0] == (0, 76, 300)  # the full centre square
    smallest = boxes[-36:]
    assert {s for _, _, s in smallest} == {75} and (0, 0, 75) in smallest and (225, 376, 75) in smallest


def test_every_listed_photo_is_bundled_and_stereo_pairs_share_a_source():
    for _, package, name in PHOTOS:
        assert photo_path(package, name).is_file(), name
    sources = [s for s, _, _ in PHOTOS]
    assert sources.count("motorcycle") == 2 and len(set(sources)) == 17


def test_photos_spec_opens_and_splits_by_source():
    ds = open_dataset("photos", 16, num_images=100)  # the first two files: astronaut (87) and 13 brick crops
    assert len(ds) == 100 and ds[0].shape == (3, 16, 16)
    assert ds.sources[:87] == ["astronaut"] * 87 and set(ds.sources[87:]) == {"brick"}
    train, held = split_by_source(ds, 0.5, 0)
    assert not set(train.sources) & set(held.sources) and len(train) + len(held) == 100
    assert ds.describe()["kind"] == "photos" and len(ds.content_hash) == 64
    with pytest.raises(ValueError, match="unknown photo package"):
        photo_path("nope", "x.png")
