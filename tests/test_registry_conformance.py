"""Registry-wide conformance, in timm's manner: every preset, every family, one parametrised place.

1. Every preset builds from its config on the meta device; every adapter preset's official key layout (the parity
   fixtures' manifest.json rows, found from the preset's weights spec) goes through its family's checkpoint filter onto
   exactly the model's state-dict keys and shapes. A new adapter preset without a manifest row fails here.
2. Every family with a parity fixture honours the `tokbench.api.Tokenizer` contract on the fixture's reduced config
   and weights: id dtypes and shapes, layout consistency, decode range, `token_space`, `last_features`, and
   `check_tokens` refusing ids it cannot decode.

The per-family files (tests/test_adapter_*.py, tests/test_adapters_taming_lineage.py) keep what is specific to a
family (exact parity with upstream, official checkpoint wrappers, metadata); this file checks what every family owes.
Needs ../shared (TOKBENCH_FIXTURES overrides); skips loudly without it.
"""

from __future__ import annotations

import json
from functools import lru_cache

import pytest
import torch

from tokbench.api import BinarySpace, CodebookSpace, FSQSpace, TokenLayout, Tokens
from tokbench.registry import get_family, get_preset, load_tokenizer, presets
from tokbench.testing import fixture_dir, fixtures_root, layout_report, load_fixture, meta_state_dict

# Presets whose weights spec does not name the manifest's file (taming's heibox links name a folder, the manifest the
# file inside it): preset -> (fixture folder, manifest row).
MANIFEST_ROW = {
    "taming-vqgan-f16-1024": ("taming_vqgan", "f16-1024"),
    "taming-vqgan-f16-16384": ("taming_vqgan", "f16-16384"),
}

# Fixture folder (relative to fixtures_root) -> family it exercises.
FIXTURE_FAMILY = {
    "cosmos_di": "cosmos_di", "ibq": "ibq", "llamagen_vq": "llamagen_vq", "mage": "mage", "maskbit/lfq": "maskbit",
    "maskbit/vqgan_plus": "vqgan_plus", "maskgit_vq": "maskgit_vq", "open_magvit2": "open_magvit2",
    "taming_vqgan": "taming_vqgan", "titok": "titok", "titok_vq8k": "titok_vq8k", "unitok": "unitok", "var": "var",
    "vqgan_lc": "vqgan_lc", "xqgan/single": "xqgan", "xqgan/imagefolder": "imagefolder",
}


def _is_adapter(family: str) -> bool:
    return get_family(family).build.__module__.startswith("tokbench_adapters.")


@lru_cache(maxsize=1)
def _manifest_rows() -> dict[tuple[str, str], dict]:
    root = fixture_dir()  # skips loudly when ../shared is absent
    rows = {}
    for path in sorted(root.glob("**/manifest.json")):
        for name, row in json.loads(path.read_text()).items():
            if isinstance(row, dict) and "keys" in row:
                rows[(path.parent.relative_to(root).as_posix(), name)] = row
    return rows


def _official_file(spec: str) -> tuple[str | None, str | None]:
    """(hub repo, file in it) for `hf://org/repo[/file][@rev]`; (None, file name) for `URL#/file`."""
    if spec.startswith("hf://"):
        parts = spec[len("hf://"):].split("@")[0].split("/")
        return "/".join(parts[:2]).lower(), "/".join(parts[2:]) or None
    return None, spec.split("#/")[-1] if "#/" in spec else None


def manifest_rows_of(preset: str) -> list[tuple[str, str]]:
    """The manifest rows describing a preset's official checkpoint (several when fixtures repeat a row)."""
    if preset in MANIFEST_ROW:
        return [MANIFEST_ROW[preset]]
    spec = get_preset(preset).weights or ""
    repo, file = _official_file(spec)
    hits = []
    for key, row in _manifest_rows().items():
        row_file = str(row.get("file", "")).split(" ")[0]
        if repo is not None:
            if str(row.get("hf_repo", "")).lower() == repo and file in (None, row_file):
                hits.append(key)
        elif file is not None and row_file.split("/")[-1] == file:
            hits.append(key)
    return hits


ALL_PRESETS = sorted(presets())


@pytest.mark.parametrize("name", ALL_PRESETS)
def test_preset_builds_on_meta_and_maps_its_official_layout(name):
    preset = get_preset(name)
    family = get_family(preset.family)
    config = preset.get_config()
    with torch.device("meta"):
        model = family.build(config)
    assert model.info.family == preset.family
    assert model.layout.tokens_per_image == model.info.tokens_per_image
    if not _is_adapter(preset.family):
        return  # in-house / baseline presets have no official checkpoint to map
    rows = manifest_rows_of(name)
    assert rows, f"{name}: no manifest row in {fixtures_root()} names its weights {preset.weights!r}"
    for key in rows:
        row = _manifest_rows()[key]
        sd = family.checkpoint_filter(meta_state_dict(row["keys"]), config)
        assert layout_report(model, sd) == "", f"{name} vs {key}"


# ----------------------------------------------------------------------------------------------------------------------
# The API contract, on each family's reduced fixture
# ----------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=sorted(FIXTURE_FAMILY))
def loaded(request):
    """(model, uint8 images, tokens of a feature-keeping encode); module scope with params, so pytest groups the tests
    by fixture and holds one model at a time."""
    torch.set_num_threads(1)
    config, case, d = load_fixture(*request.param.split("/"))
    model = load_tokenizer(FIXTURE_FAMILY[request.param], weights=d / "weights.safetensors", upstream_config=config)
    images = case["images_uint8"]
    model.keep_features = True
    return model, images, model.encode(images)


def test_every_adapter_family_has_a_fixture():
    """So that the contract below covers every adapter family (a new one needs a fixture folder)."""
    families = {get_preset(n).family for n in ALL_PRESETS}
    assert sorted(f for f in families if _is_adapter(f)) == sorted(FIXTURE_FAMILY.values())


def test_encode_gives_int64_ids_in_the_declared_layout(loaded):
    model, images, tokens = loaded
    assert isinstance(tokens, Tokens) and tokens.layout == model.layout
    assert len(tokens.ids) == len(model.layout.groups)
    for ids, group in zip(tokens.ids, model.layout.groups):
        assert ids.dtype == torch.int64
        assert tuple(ids.shape) == (images.shape[0], *group.shape)
        assert all(0 <= s < len(model.token_spaces) for s in group.spaces)
        if group.has_sub_axis:
            assert group.shape[-1] == len(group.spaces)
    assert tokens.flat().shape == (images.shape[0], model.info.tokens_per_image)
    assert model.layout.tokens_per_image == model.info.tokens_per_image
    model.check_tokens(tokens)  # every id is in range of its space
    again = Tokens.from_flat(tokens.flat(), model.layout)
    assert all(torch.equal(a, b) for a, b in zip(again.ids, tokens.ids))
    assert model.info.resolution == images.shape[-1]


def test_decode_gives_unit_range_float_images(loaded):
    model, images, tokens = loaded
    out = model.decode(tokens)
    assert out.dtype == torch.float32 and tuple(out.shape) == tuple(images.shape)
    assert torch.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    assert torch.isfinite(model.decode_raw(tokens)).all()


def test_token_spaces_are_consistent(loaded):
    model, _, _ = loaded
    spaces = model.token_spaces
    assert spaces
    if len(spaces) == 1:
        one = model.token_space
        assert type(one) is type(spaces[0]) and one.vocab_size == spaces[0].vocab_size
    else:  # nn.Module.__getattr__ rewords the property's message, so only the type is checked
        with pytest.raises(AttributeError):
            model.token_space  # noqa: B018 - the property must refuse
    for s in spaces:
        assert s.vocab_size > 0
        if isinstance(s, CodebookSpace):
            assert s.codes.ndim == 2 and s.codes.shape[0] == s.vocab_size and s.codes.is_floating_point()
            assert s.metric in ("l2", "cosine", "dot")
        elif isinstance(s, BinarySpace):
            assert s.vocab_size == 2 ** s.bits
        elif isinstance(s, FSQSpace):
            assert s.vocab_size == int(torch.tensor(s.levels).prod())
        else:
            pytest.fail(f"{type(s).__name__}: unknown token space kind")


def test_last_features_give_the_ids(loaded):
    """B x group.shape x D per group, in the space the ids were chosen in (so the space's own rule gives the ids)."""
    model, images, tokens = loaded
    feats = model.last_features
    assert feats is not None and len(feats) == len(model.layout.groups)
    for f, ids, group in zip(feats, tokens.ids, model.layout.groups):
        assert tuple(f.shape[:-1]) == tuple(ids.shape), (tuple(f.shape), tuple(ids.shape))
        for j, s_idx in enumerate(group.spaces):
            space = model.token_spaces[s_idx]
            q = f[..., j, :] if group.has_sub_axis else f
            want = ids[..., j] if group.has_sub_axis else ids
            if isinstance(space, CodebookSpace):
                assert f.shape[-1] == space.dim
                assert torch.equal(space.scores(q.float()).argmax(-1), want)
            elif isinstance(space, BinarySpace):
                assert f.shape[-1] == space.bits
                got = ((q > 0).long() * (2 ** torch.arange(space.bits))).sum(-1)
                assert torch.equal(got, want)
            elif isinstance(space, FSQSpace):
                assert f.shape[-1] == len(space.levels)
    model.keep_features = False
    model.encode(images[:1])
    assert model.last_features is None
    model.keep_features = True


def test_check_tokens_refuses_ids_it_cannot_decode(loaded):
    model, _, tokens = loaded
    for k, group in enumerate(model.layout.groups):
        ids = tokens.ids[k].clone()
        j = len(group.spaces) - 1  # the last sub-codebook (or the only space)
        top = model.token_spaces[group.spaces[j]].vocab_size
        for bad in (top, -1):
            broken = ids.clone()
            broken[(0,) * (ids.ndim - 1) + ((j,) if group.has_sub_axis else (0,))] = bad
            with pytest.raises(ValueError, match="out of range"):
                model.check_tokens(tokens.replace_ids([*tokens.ids[:k], broken, *tokens.ids[k + 1:]]))
    other = TokenLayout.sequence(1)
    assert other != model.layout
    with pytest.raises(ValueError, match="layout"):
        model.check_tokens(Tokens([tokens.ids[0].reshape(tokens.batch_size, -1)[:, :1]], other))


def test_encode_refuses_non_uint8_images(loaded):
    model, images, _ = loaded
    with pytest.raises(TypeError, match="uint8"):
        model.encode(images[:1].float())
