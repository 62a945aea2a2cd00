"""Issue 14: nothing lost, nothing trusted that is wrong — result identity, failures beside results, checked resume
state, data sets that never shrink silently, disk full, concurrent runs."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from PIL import Image

from tokbench import io as tio
from tokbench.data import BadImageError, ImageFolderDataset, open_dataset
from tokbench.data import datasets as ds_mod
from tokbench.result_identity import find_result, result_files
from tokbench.runner import Interrupted, RunOptions, Suite, run_suite, write_leaderboard
from tokbench.runner.resume import STATE_KIND
from tokbench.testing import ToyExtractor, ToyVQ, run_processes

TOK = "toy-vq-k32-s0"


def _suite(**kw) -> Suite:
    d = dict(name="toy", data="sample", num_images=16, resolution=16, tokenizers=[], batch_size=4, chunk_size=8,
             usage_window=8, metrics=["rfid", "pfid", "usage"],
             pfid={"alpha": [0.5], "delta": [6], "seeds": [0], "mode": "code"})
    d.update(kw)
    return Suite.from_dict(d)


def _opts(out, **kw) -> RunOptions:
    return RunOptions(out_dir=out, cache_dir=out.parent / "cache", progress=False, **kw)


def _folder(root, n=6, size=20, truncated=(), seed=0):
    """n small PNGs under root/cls/; `truncated` indices are cut short (undecodable)."""
    g = torch.Generator().manual_seed(seed)
    (root / "cls").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        arr = (torch.rand(size, size, 3, generator=g) * 255).to(torch.uint8).numpy()
        p = root / "cls" / f"{i:02d}.png"
        Image.fromarray(arr).save(p)
        if i in truncated:
            p.write_bytes(p.read_bytes()[:60])
    return root


def _tmp_files(folder):
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


# --- 1: result identity ---------------------------------------------------------------------------------------------
def test_a_failed_or_other_data_run_never_replaces_a_good_result(tmp_path):
    out, ex = tmp_path / "O", ToyExtractor()
    (good,) = run_suite(_suite(), _opts(out), tokenizers=[ToyVQ()], extractor=ex)
    assert good["status"] == "ok"
    good_file = find_result(out, TOK, "toy")
    good_bytes = good_file.read_bytes()
    assert good_file.name == f"{TOK}__toy__{good['protocol']['data']['content_hash'][:8]}-" \
                             f"{good['protocol']['hash'][:8]}.json"
    assert good_file.stat().st_mode & 0o777 == 0o666 & ~_umask()  # 0644 under the usual umask, not 0600

    bad_data = _folder(tmp_path / "bad", truncated=(3,))
    (failed,) = run_suite(_suite(data=str(bad_data), num_images=None), _opts(out), tokenizers=[ToyVQ()], extractor=ex)
    assert failed["status"] == "failed" and "03.png" in failed["reason"]
    assert good_file.read_bytes() == good_bytes  # the good result is untouched
    (failed_file,) = out.glob(f"{TOK}__toy__*.failed.json")
    assert json.loads(failed_file.read_text())["reason"] == failed["reason"]

    other = _folder(tmp_path / "other", seed=1)
    (ok2,) = run_suite(_suite(data=str(other), num_images=None), _opts(out), tokenizers=[ToyVQ()], extractor=ex)
    assert ok2["status"] == "ok" and good_file.read_bytes() == good_bytes
    assert len([p for p in result_files(out, TOK, "toy") if not p.name.endswith(".failed.json")]) == 2

    board = write_leaderboard(out, tmp_path / "lb", suite="toy")
    assert [r["tokenizer"] for r in board["rows"]] == [TOK]  # the other data set's result is refused, not mixed
    md = (tmp_path / "lb" / "leaderboard.md").read_text()
    assert "Refused" in md
    assert (tmp_path / "lb" / "leaderboard.json").stat().st_mode & 0o777 == 0o666 & ~_umask()


def test_the_leaderboard_keeps_the_last_success_and_shows_a_newer_failure_apart(tmp_path):
    out, ex = tmp_path / "O", ToyExtractor()
    (good,) = run_suite(_suite(), _opts(out), tokenizers=[ToyVQ()], extractor=ex)
    (bad,) = run_suite(_suite(), _opts(out), tokenizers=[ToyVQ(nan=False), ToyVQ(nan=True)][1:], extractor=ex)
    assert bad["status"] == "failed"  # a NaN tokenizer under the same suite: another name, listed as failed
    # the same tokenizer failing on missing data, after its success: the row stays, the failure is listed apart
    (missing,) = run_suite(_suite(data=str(tmp_path / "no-such-dir"), num_images=None), _opts(out),
                           tokenizers=[ToyVQ()], extractor=ex)
    assert missing["status"] == "failed"
    board = write_leaderboard(out, tmp_path / "lb", suite="toy")
    assert [r["tokenizer"] for r in board["rows"]] == [TOK]
    assert board["rows"][0]["rFID"] == good["metrics"]["rfid"]
    failed = {f["tokenizer"]: f for f in board["failed"]}
    assert failed[TOK]["has_successful_row"] and "no-such-dir" in failed[TOK]["reason"]
    assert "earlier successful result is in the table" in (tmp_path / "lb" / "leaderboard.md").read_text()
    # a later success hides the older failure again
    run_suite(_suite(), _opts(out, force=True), tokenizers=[ToyVQ()], extractor=ex)
    board = write_leaderboard(out, tmp_path / "lb", suite="toy")
    assert TOK not in {f["tokenizer"] for f in board["failed"]}


def test_results_under_the_old_file_names_are_still_read(tmp_path):
    from tokbench.report.inputs import rows_from_results

    out, ex = tmp_path / "O", ToyExtractor()
    (res,) = run_suite(_suite(), _opts(out), tokenizers=[ToyVQ()], extractor=ex)
    new = find_result(out, TOK, "toy")
    old = json.loads(new.read_text())
    old["run"]["finished"] = "2020-01-01T00:00:00+00:00"
    old["metrics"]["rfid"] = 123.0
    (out / f"{TOK}__toy.json").write_text(json.dumps(old))  # as committed before keys existed
    board = write_leaderboard(out, tmp_path / "lb", suite="toy")
    assert [r["rFID"] for r in board["rows"]] == [res["metrics"]["rfid"]]  # the newest of the same identity
    df = rows_from_results([out])
    assert list(df["rfid"]) == [res["metrics"]["rfid"]]
    assert any("superseded" in s["reason"] for s in df.attrs["skipped"])
    new.unlink()
    assert find_result(out, TOK, "toy") == out / f"{TOK}__toy.json"


CONCURRENT_RUN = textwrap.dedent("""
    import sys
    from pathlib import Path
    from tokbench.runner import RunOptions, Suite, run_suite
    from tokbench.testing import ToyExtractor, ToyVQ, run_processes
    out, n = Path(sys.argv[1]), int(sys.argv[2])
    suite = Suite.from_dict(dict(name="toy", data="sample", num_images=n, resolution=16, tokenizers=[], batch_size=4,
                                 chunk_size=4, usage_window=8, metrics=["rfid", "usage"]))
    for _ in range(2):
        (r,) = run_suite(suite, RunOptions(out_dir=out, cache_dir=out.parent / f"cache{n}", progress=False,
                                           force=True, leaderboard_dir=out.parent / "lb"),
                         tokenizers=[ToyVQ()], extractor=ToyExtractor())
        assert r["status"] == "ok", r.get("reason")
""")


def test_concurrent_runs_on_different_data_into_one_out_both_survive(tmp_path):
    """Three processes, two of them on the same data (same state folder, same result file), each running twice and
    writing the one leaderboard: none crashes, every distinct result survives, nothing half-written is left."""
    out = tmp_path / "O"
    res = run_processes(CONCURRENT_RUN, [(out, 12), (out, 16), (out, 16)], timeout=240)
    assert [rc for rc, _ in res] == [0, 0, 0], "\n".join(e[-2000:] for _, e in res)
    ns = sorted(json.loads(p.read_text())["protocol"]["num_images"] for p in result_files(out, TOK, "toy"))
    assert ns == [12, 16]
    assert json.loads((tmp_path / "lb" / "leaderboard.json").read_text())["rows"]
    assert not _tmp_files(tmp_path) and not (out / "state").exists()


def _umask() -> int:
    m = os.umask(0o022)
    os.umask(m)
    return m


# --- 6, 10: resume state --------------------------------------------------------------------------------------------
def _interrupted_state(out, ex):
    with pytest.raises(Interrupted):
        run_suite(_suite(), _opts(out, stop_after_chunks=1), tokenizers=[ToyVQ()], extractor=ex)
    (state,) = (out / "state").rglob("rank0of1.pt")
    return state


@pytest.mark.parametrize("damage", ["bitflip", "truncate", "missing-key", "old-format"])
def test_a_damaged_resume_state_is_named_discarded_and_the_run_restarts(tmp_path, caplog, damage):
    ex = ToyExtractor()
    (full,) = run_suite(_suite(), _opts(tmp_path / "full"), tokenizers=[ToyVQ()], extractor=ex)
    state = _interrupted_state(tmp_path / "O", ex)
    raw = state.read_bytes()
    if damage == "bitflip":
        b = bytearray(raw)
        b[len(b) // 2] ^= 0x10
        state.write_bytes(bytes(b))
    elif damage == "truncate":
        state.write_bytes(raw[: len(raw) // 2])
    elif damage == "missing-key":
        st = tio.read_checked_torch(state, kind=STATE_KIND)
        del st["sums"]
        tio.write_checked_torch(state, st, st["run_hash"], kind=STATE_KIND)
    else:
        torch.save(tio.read_checked_torch(state, kind=STATE_KIND), state)  # a pre-checksum state file
    with caplog.at_level(logging.WARNING):
        (res,) = run_suite(_suite(), _opts(tmp_path / "O"), tokenizers=[ToyVQ()], extractor=ex)
    assert res["status"] == "ok" and res["run"]["resumed_chunks"] == 0
    assert res["metrics"]["rfid"] == full["metrics"]["rfid"]
    assert any(str(state) in r.getMessage() and "restarts from scratch" in r.getMessage() for r in caplog.records)


def test_an_intact_state_still_resumes_and_stale_temporaries_are_cleaned(tmp_path):
    ex = ToyExtractor()
    (full,) = run_suite(_suite(), _opts(tmp_path / "full"), tokenizers=[ToyVQ()], extractor=ex)
    out = tmp_path / "O"
    state = _interrupted_state(out, ex)
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    host = tio._temp_name(state).split(".")[2]
    stale = [state.parent / f"{state.name}.{host}.{dead}.0badc0de.tmp", out / f"x.json.{host}.{dead}.0badc0de.tmp"]
    for p in stale:
        p.write_bytes(b"half")
    (res,) = run_suite(_suite(), _opts(out), tokenizers=[ToyVQ()], extractor=ex)
    assert res["run"]["resumed_chunks"] == 1 and res["metrics"] == full["metrics"]
    assert not any(p.exists() for p in stale) and not _tmp_files(out)


# --- 3, 8: data sets ------------------------------------------------------------------------------------------------
def test_symlinked_class_folders_are_followed_once_and_loops_are_not(tmp_path):
    root = _folder(tmp_path / "data", n=3)
    elsewhere = _folder(tmp_path / "elsewhere", n=2, seed=1)
    (root / "cls2").symlink_to(elsewhere / "cls", target_is_directory=True)
    (root / "cls" / "loop").symlink_to(root, target_is_directory=True)  # a loop back to the top
    ds = ImageFolderDataset(root, 16)
    assert len(ds) == 5 and ds.classes == ["cls", "cls2"]
    assert [s.split("/")[0] for s in ds.sources] == ["cls"] * 3 + ["cls2"] * 2


def _make_unreadable(monkeypatch, *paths):
    """chmod 000 where that denies reading (not root); as root, the same EACCES from the data layer's open."""
    if os.geteuid() != 0:
        for p in paths:
            p.chmod(0)
        return
    denied = {str(p) for p in paths}
    real_open, real_scandir = ds_mod._open_for_read, ds_mod.os.scandir

    def open_for_read(path):
        if str(path) in denied:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path)

    def scandir(path):
        if str(path) in denied:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)
    monkeypatch.setattr(ds_mod, "_open_for_read", open_for_read)
    monkeypatch.setattr(ds_mod.os, "scandir", scandir)


def test_unreadable_files_and_folders_are_named_and_skipped_only_when_asked(tmp_path, monkeypatch, capsys):
    root = _folder(tmp_path / "data", n=5)
    _folder(tmp_path / "data" / "sub", n=2, seed=2)
    bad_file, bad_dir = root / "cls" / "02.png", root / "sub" / "cls"
    _make_unreadable(monkeypatch, bad_file, bad_dir)
    with pytest.raises(BadImageError, match="02.png.*Permission denied.*1 more.*--skip-bad-images"):
        open_dataset(str(root), 16)
    ds = open_dataset(str(root), 16, skip_bad_images=True)
    assert len(ds) == 4 and {u["path"] for u in ds.unreadable} == {str(bad_file), str(bad_dir)}
    assert ds.content_hash  # hashing reads only what is listed: no crash on the unreadable file
    assert f"data {root}: 4 images (2 unreadable skipped)" in capsys.readouterr().err
    (res,) = run_suite(_suite(data=str(root), num_images=None, metrics=["rfid"]),
                       _opts(tmp_path / "O", skip_bad_images=True), tokenizers=[ToyVQ()], extractor=ToyExtractor())
    assert res["status"] == "ok" and res["protocol"]["num_images"] == 4
    rec = res["run"]["data"]
    assert rec["images_found"] == 4 and len(rec["unreadable_skipped"]) == 2
    assert set(res["protocol"]["data"]["unreadable_skipped"]) == {str(bad_file), str(bad_dir)}


def test_num_images_must_be_at_least_one_and_the_count_is_printed(tmp_path, capsys):
    root = _folder(tmp_path / "data", n=4)
    for bad in (-5, 0, 2.5, True):
        with pytest.raises(ValueError, match="num_images must be"):
            open_dataset("sample", 16, num_images=bad)
        with pytest.raises(ValueError, match="num_images must be"):
            ImageFolderDataset(root, 16, num_images=bad)
    (res,) = run_suite(_suite(num_images=-5), _opts(tmp_path / "O"), tokenizers=[ToyVQ()], extractor=ToyExtractor())
    assert res["status"] == "failed" and "num_images must be" in res["reason"]
    open_dataset(str(root), 16, num_images=3)
    assert f"data {root}: 3 images (of 4 found)" in capsys.readouterr().err


# --- 7: disk full ---------------------------------------------------------------------------------------------------
def test_disk_full_during_the_result_write_records_a_failure_and_leaves_no_temporary(tmp_path, monkeypatch, caplog):
    out, ex = tmp_path / "O", ToyExtractor()
    (good,) = run_suite(_suite(), _opts(out), tokenizers=[ToyVQ()], extractor=ex)
    good_file = find_result(out, TOK, "toy")
    good_bytes = good_file.read_bytes()
    real_fsync = tio.os.fsync
    full = {"on": True}

    def fsync(fd):
        if full["on"] and os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)
    monkeypatch.setattr(tio.os, "fsync", fsync)
    with caplog.at_level(logging.ERROR):
        (res,) = run_suite(_suite(), _opts(out, force=True), tokenizers=[ToyVQ()], extractor=ex)
    assert res["status"] == "failed" and "No space left" in res["reason"]
    assert any("could not be recorded" in r.getMessage() for r in caplog.records)
    assert good_file.read_bytes() == good_bytes and not _tmp_files(out)
    full["on"] = False  # space again: the next failure is recorded beside the good result
    from tokbench.runner.bench import _record_failure

    _record_failure(out, res)
    assert list(out.glob(f"{TOK}__toy__*.failed.json")) and good_file.read_bytes() == good_bytes


def test_disk_full_on_a_real_small_tmpfs(tmp_path):
    """A 2 MB tmpfs filled up: one-line error from the CLI, no temporary left, nothing good lost."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("TMPFS DISK-FULL TEST SKIPPED: needs root to mount a tmpfs (the ENOSPC unit tests still ran)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"TMPFS DISK-FULL TEST SKIPPED: mount refused here ({r.stderr.strip()[:120]})")
    try:
        out = mnt / "runs"
        out.mkdir()
        tio.write_json_atomic(out / "keep.json", {"good": True})
        fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)  # fill it: not even the state file fits
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        code = textwrap.dedent("""
            import sys
            from tokbench.runner import RunOptions, Suite, run_suite
            from tokbench.testing import ToyExtractor, ToyVQ, run_processes
            suite = Suite.from_dict(dict(name="toy", data="sample", num_images=8, resolution=16, tokenizers=[],
                                         batch_size=4, chunk_size=4, metrics=["rfid"]))
            (r,) = run_suite(suite, RunOptions(out_dir=sys.argv[1], cache_dir=sys.argv[2], progress=False),
                             tokenizers=[ToyVQ()], extractor=ToyExtractor())
            print(r["status"], r.get("reason"))
        """)
        p = subprocess.run([sys.executable, "-c", code, str(out), str(tmp_path / "cache")], capture_output=True,
                           text=True, timeout=180)
        assert p.returncode == 0, p.stderr[-2000:]
        assert p.stdout.startswith("failed") and "No space left" in p.stdout
        assert "Traceback" not in p.stderr
        assert json.loads((out / "keep.json").read_text()) == {"good": True}
        assert not _tmp_files(mnt)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# --- 9: one-line errors ---------------------------------------------------------------------------------------------
def test_non_checkpoint_files_and_bad_usage_window_give_one_clear_line(tmp_path, capsys):
    from tokbench.cli import main
    from tokbench.metrics import CodebookStats
    from tokbench.registry import load_tokenizer
    from tokbench.weights import CheckpointMismatchError, read_checkpoint

    text = tmp_path / "passwd"
    text.write_text("root:x:0:0:root:/root:/bin/bash\n" * 20)
    with pytest.raises(CheckpointMismatchError, match=str(text)):
        read_checkpoint(text)
    assert main(["convert", str(text), str(tmp_path / "x.safetensors")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(text) in err[0] and "could not be read as a torch checkpoint" in err[0]
    with pytest.raises(CheckpointMismatchError, match=str(text)):
        load_tokenizer("tokbench-zoo-conv-k64", weights=str(text))
    tok = ToyVQ()
    with pytest.raises(ValueError, match="usage_window .* ≥ 1, got 0"):
        CodebookStats(tok.token_spaces, tok.layout, window=0)
    (res,) = run_suite(_suite(usage_window=0), _opts(tmp_path / "O"), tokenizers=[tok], extractor=ToyExtractor())
    assert res["status"] == "failed" and "usage_window" in res["reason"]
