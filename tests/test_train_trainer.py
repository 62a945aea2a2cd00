"""The trainer: VQ loss computed before the perturbation, exact resume, export → load_tokenizer, config errors."""

import json
from pathlib import Path

import pytest
import torch

import tokbench
from tokbench.tokenizer_training import Trainer, make_config
from tokbench.testing import fork_ranks
from tokbench.tokenizer_training.config import load_config
from tokbench.weights import safetensors_metadata


def _images(n=24, res=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, res), torch.linspace(0, 1, res), indexing="ij")
    out = []
    for _ in range(n):
        c = torch.rand(3, 3, generator=g)
        im = c[:, 0, None, None] * xx + c[:, 1, None, None] * yy + c[:, 2, None, None] * ((xx - .5) ** 2 + (yy - .5) ** 2 < .1)
        out.append((im.clamp(0, 1) * 255).to(torch.uint8))
    return out


def _cfg(**over):
    base = {
        "model": {"family": "tokbench_vitvq", "name": "test-vitvq", "constructor_kwargs": dict(
            image_size=16, patch_size=4, enc_width=32, enc_depth=1, enc_heads=2, dec_width=32, dec_depth=1,
            dec_heads=2, mlp_ratio=2.0, encoder_size=None, decoder_size=None, codebook_size=32, lookup_dim=8)},
        "data": {"resolution": 16, "holdout": 4},
        "train": {"batch_size": 4, "steps": 6, "lr": 1e-3, "warmup_steps": 2, "log_every": 1, "ckpt_every": 0,
                  "sample_every": 0, "ema_decay": 0.9},
        "loss": {"adv_weight": 0.1, "adv_start": 1, "disc_ch": 8, "disc_layers": 1, "lecam_weight": 0.1},
        "perturb": {"enabled": True, "alpha": 0.8, "beta": 0.5, "delta": 6, "start_epoch": 1, "end_epoch": 3},
        "regvq": {"prior_weight": 0.1, "mask_ratio": 0.4, "pcl_weight": 0.1},
        "eval": {"max_images": 4, "batch_size": 4, "runner": False},
    }
    for k, v in over.items():
        base.setdefault(k, {}).update(v)
    return make_config(base)


def test_vq_loss_unchanged_by_perturbation():
    data = _images()
    res = {}
    for on in (False, True):
        cfg = _cfg(perturb={"enabled": on, "alpha": 1.0, "beta": 1.0, "delta": 8})
        tr = Trainer(cfg, data, progress=False)
        x = torch.stack(data[:4]).double().div(127.5).sub(1).float()
        tr.gen.manual_seed(5)
        res[on] = tr.generator_losses(x, epoch=0)
    off, on = res[False], res[True]
    assert torch.equal(off["codebook"], on["codebook"]) and torch.equal(off["commit"], on["commit"])
    assert torch.equal(off["prior_kl"], on["prior_kl"]) and torch.equal(off["ids_clean"], on["ids_clean"])
    assert on["redrawn_share"] > 0.5 and not torch.equal(off["ids"], on["ids"])  # the perturbation did act …
    assert not torch.equal(off["rec"], on["rec"])  # … on what the decoder saw


def test_perturbation_is_straight_through_to_encoder_only():
    cfg = _cfg(perturb={"enabled": True, "alpha": 1.0, "beta": 1.0, "delta": 8}, regvq={"prior_weight": 0.0,
               "mask_ratio": 0.0, "pcl_weight": 0.0}, loss={"adv_weight": 0.0})
    tr = Trainer(cfg, _images(), progress=False)
    x = torch.stack(_images()[:4]).double().div(127.5).sub(1).float()
    out = tr.generator_losses(x, epoch=0)
    emb = tr.model.quantize.embedding.weight
    g_rec = torch.autograd.grad(out["rec"], [emb, tr.model.patch_embed.weight], allow_unused=True)
    assert g_rec[0] is None or g_rec[0].abs().sum() == 0  # the codebook learns only from the clean VQ loss
    assert g_rec[1].abs().sum() > 0  # the encoder gets the reconstruction gradient


def test_regvq_stochastic_positions_are_relaxed_not_hard_straight_through():
    """With every position stochastic, the reconstruction's gradient reaches the codebook (through the Gumbel-softmax
    relaxation), which the hard z + sg(e − z) of the deterministic positions never gives it."""
    grads = {}
    for ratio in (0.0, 1.0):
        cfg = _cfg(perturb={"enabled": False}, regvq={"prior_weight": 0.0, "mask_ratio": ratio, "pcl_weight": 0.0},
                   loss={"adv_weight": 0.0})
        tr = Trainer(cfg, _images(), progress=False)
        x = torch.stack(_images()[:4]).double().div(127.5).sub(1).float()
        out = tr.generator_losses(x, epoch=0)
        (g,) = torch.autograd.grad(out["rec"], [tr.model.quantize.embedding.weight], allow_unused=True)
        grads[ratio] = 0.0 if g is None else float(g.abs().sum())
    assert grads[0.0] == 0.0 and grads[1.0] > 0


def _state(tr):
    sd = {f"model.{k}": v for k, v in tr.model.state_dict().items()}
    sd.update({f"ema.{k}": v for k, v in tr.ema.module.state_dict().items()})
    sd.update({f"disc.{k}": v for k, v in tr.disc.state_dict().items()})
    return sd


def test_exact_resume_bit_for_bit(tmp_path):
    data = _images()
    cfg = _cfg(codebook={"dead_after": 2, "check_every": 2})  # dead-code restarts draw from the generator too
    full = Trainer(cfg, data, out_dir=tmp_path / "full", progress=False)
    full.fit(final=False)
    part = Trainer(cfg, data, out_dir=tmp_path / "part", progress=False)
    part.fit(until=3, final=False)
    ck = part.save_checkpoint()
    del part
    resumed = Trainer(cfg, data, out_dir=tmp_path / "part", progress=False)
    assert resumed.resume(ck) and resumed.step == 3
    resumed.fit(final=False)
    a, b = _state(full), _state(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert full.opt.state_dict()["state"][0]["exp_avg"].equal(resumed.opt.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(full.gen.get_state(), resumed.gen.get_state())
    assert full.restarts_total > 0 and full.restarts_total == resumed.restarts_total
    assert torch.equal(full.last_used, resumed.last_used)
    logs_full = [json.loads(l) for l in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    logs_part = [json.loads(l) for l in (tmp_path / "part" / "log.jsonl").read_text().splitlines()]
    loss = lambda logs: [r["loss"] for r in logs if "loss" in r]  # noqa: E731
    assert loss(logs_full) == loss(logs_part)
    # the perturbation schedule moved during these steps (epochs of 5 steps: 20 train images / 4)
    assert logs_full[-1]["epoch"] == 1 and logs_full[-1]["alpha"] == pytest.approx(0.8)


def test_resume_refuses_a_different_model(tmp_path):
    tr = Trainer(_cfg(), _images(), out_dir=tmp_path, progress=False)
    ck = tr.save_checkpoint()
    other = _cfg(model={"constructor_kwargs": dict(tr.model_config["constructor_kwargs"], codebook_size=16)})
    with pytest.raises(ValueError, match="different model config"):
        Trainer(other, _images(), out_dir=tmp_path, progress=False).resume(ck)


def test_fit_exports_a_loadable_tokenizer(tmp_path):
    cfg = _cfg(train={"steps": 3, "sample_every": 3}, model={"family": "tokbench_convvq", "constructor_kwargs": dict(
        image_size=16, ch=8, ch_mult=[1, 2], num_res_blocks=1, z_channels=16, codebook_size=32, lookup_dim=8,
        ema_codebook=True)})
    res = Trainer(cfg, _images(), out_dir=tmp_path, progress=False).fit()
    path = tmp_path / "tokenizer.safetensors"
    assert res["tokenizer"] == str(path)
    meta = safetensors_metadata(path)
    assert meta["tokbench.family"] == "tokbench_convvq" and meta["tokbench.preset"] == "test-vitvq"
    train_meta = json.loads(meta["tokbench.train"])
    assert train_meta["choices"]["perceptual"].startswith("off")
    tok = tokbench.load_tokenizer(str(path))
    assert tok.info.preset == "test-vitvq" and tok.info.resolution == 16
    x = torch.stack(_images()[:2])
    ids = tok.encode(x)
    assert ids.ids[0].shape == (2, 8, 8)
    assert tok.decode(ids).shape == (2, 3, 16, 16)
    ev = res["eval"]
    assert ev["images"] == 4 and 0 < ev["usage"] <= 1 and 1 <= ev["perplexity"] <= 32
    assert ev["mse_a0.5"] >= 0 and "skipped" in str(ev["fid"])  # eval.runner is off in _cfg
    assert (tmp_path / "samples" / "step0000003.png").exists()
    assert (tmp_path / "checkpoints" / "last.pt").exists()


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown config key 'perturb.alpah'"):
        make_config({"perturb": {"alpah": 0.1}})
    with pytest.raises(ValueError, match="mask_ratio"):
        make_config({"regvq": {"pcl_weight": 0.1}})
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yaml")


def test_smoke_config_parses():
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[1] / "benchmarks" / "experiments" / "train_robust"
                      / "smoke.yaml")
    assert cfg["data"]["resolution"] == 32 and cfg["perturb"]["enabled"]


class _ChannelStats:
    """A cheap stand-in feature extractor (per-channel means, stds and a few pixels), so the test runs in ms."""

    dim = 15
    protocol = {"extractor": "test-channel-stats", "weights": None, "random_weights": False}

    def __init__(self, weights=None, device="cpu"):
        pass

    def to(self, device):
        return self

    def __call__(self, images):
        x = images.double() / 255
        return torch.cat([x.mean((2, 3)), x.std((2, 3)), x[:, :, 0, :2].flatten(1), x[:, :, -1, -1]], 1)


def test_periodic_runner_evaluation_logs_rfid_pfid(tmp_path):
    from tokbench.fid import register_extractor

    register_extractor("test-channel-stats", _ChannelStats)
    cfg = _cfg(train={"steps": 4}, eval={"every": 2, "runner": True, "fid_extractor": "test-channel-stats",
                                         "perturb_alphas": [0.1, 0.5], "perturb_delta": 6})
    Trainer(cfg, _images(), out_dir=tmp_path, progress=False).fit()
    logs = [json.loads(l) for l in (tmp_path / "log.jsonl").read_text().splitlines()]
    evals = [e for e in logs if e.get("event") == "eval"]
    assert [e["step"] for e in evals] == [2, 4]
    for e in evals:
        fid = e["fid"]
        assert fid["images"] == 4 and fid["delta"] == 6 and fid["mode"] == "feature"
        assert fid["rfid"] >= 0 and fid["pfid_a0.1"] >= 0 and fid["pfid_a0.5"] >= 0
        assert fid["extractor"]["extractor"] == "test-channel-stats"
        # the runner's own codebook statistics and perturbation agree with the trainer's built-in ones
        assert fid["usage"] == pytest.approx(e["usage"]) and fid["perplexity"] == pytest.approx(e["perplexity"])
        assert fid["changed_a0.5"] == pytest.approx(e["changed_a0.5"]) and fid["changed_a0.5"] > 0
        assert Path(fid["result_file"]).exists()
    assert evals[0]["fid"]["rfid"] != evals[1]["fid"]["rfid"]  # re-evaluated, not a cached result


def test_dead_code_restart_reinitialises_unused_codes_from_batch_features():
    cfg = _cfg(codebook={"dead_after": 3, "check_every": 1}, loss={"adv_weight": 0.0},
               regvq={"prior_weight": 0.0, "mask_ratio": 0.0, "pcl_weight": 0.0}, perturb={"enabled": False})
    tr = Trainer(cfg, _images(), progress=False)
    data = tr.data
    for s in range(2):
        assert "restarted" not in tr.train_step(data.batch(s))  # within the grace period nothing restarts
    tr.train_step(data.batch(2))  # step 3: AdamW moments exist now
    q = tr.model.quantize
    x = to_native_batch(data.batch(3))
    zp = q.prep(tr.model.encode_features(x).float()).detach()
    ids = q.neg_sqdist(zp).argmax(-1)
    tr.last_used[:] = tr.step  # only codes 0..4 are stale
    tr.last_used[:5] = 0
    tr.gen.manual_seed(11)
    dead = tr.restart_dead_codes(zp, ids)
    assert sorted(dead.tolist()) == [c for c in range(5) if c not in ids.unique().tolist()]
    rows = zp.reshape(-1, zp.shape[-1])
    for c in dead.tolist():
        assert (rows == q.embedding.weight[c]).all(-1).any()  # the new code is one of the batch's features
        assert q.embedding.weight[c].norm() > 0
        st = tr.opt.state[q.embedding.weight]
        assert st["exp_avg"][c].abs().sum() == 0 and st["exp_avg_sq"][c].abs().sum() == 0
    assert len({tuple(q.embedding.weight[c].tolist()) for c in dead.tolist()}) == dead.numel()  # distinct features
    assert (tr.last_used[dead] == tr.step + 1).all()
    assert tr.restart_dead_codes(zp, ids) is None  # restarted codes have a fresh grace period


def to_native_batch(x):
    return x.double().div(127.5).sub(1).float()


def test_resume_trims_the_log_written_after_the_checkpoint(tmp_path):
    """Killed at step 5 with the checkpoint at step 3: steps 4-5 are run again, and logged once (issue 14 #5)."""
    data, cfg = _images(), _cfg()
    full = Trainer(cfg, data, out_dir=tmp_path / "full", progress=False)
    full.fit(final=False)
    part = Trainer(cfg, data, out_dir=tmp_path / "part", progress=False)
    part.fit(until=3, final=False)
    ck = part.save_checkpoint()
    part.fit(until=5, final=False)  # logged, then "killed" before the next checkpoint
    part._log_file.close()
    del part
    resumed = Trainer(cfg, data, out_dir=tmp_path / "part", progress=False)
    assert resumed.resume(ck) and resumed.step == 3
    resumed.fit(final=False)

    def steps(folder):
        return [(r["step"], r["loss"]) for r in map(json.loads, (folder / "log.jsonl").read_text().splitlines())
                if "loss" in r]

    assert steps(tmp_path / "part") == steps(tmp_path / "full")
    assert [s for s, _ in steps(tmp_path / "part")] == [1, 2, 3, 4, 5, 6]


def _ddp_rank(rank: int, out: Path) -> None:
    """One rank of a 2-process gloo group (as `torchrun … tokbench train-robust` starts it)."""
    from tokbench.dist import init_from_env, shutdown

    info = init_from_env("cpu")
    tr = Trainer(_cfg(codebook={"dead_after": 2, "check_every": 2}), _images(), out_dir=out, device="cpu",
                 progress=False)
    tr.fit(final=False)
    torch.save({"state": _state(tr), "restarts": tr.restarts_total, "world": tr.world}, out / f"rank{rank}.pt")
    shutdown(info)


def test_ddp_two_ranks_keep_identical_weights(tmp_path):
    """Gradients all-reduced and restarted codes broadcast through tokbench.dist: both ranks end with the same model."""
    errors = fork_ranks(_ddp_rank, tmp_path)
    assert not errors, errors
    a, b = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert a["world"] == b["world"] == 2 and a["restarts"] == b["restarts"] > 0
    for k in a["state"]:
        assert torch.equal(a["state"][k], b["state"][k]), k
