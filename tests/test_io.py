"""tokbench.io: atomic writes (mode, no temporaries left, disk full), checked cache files, stale temporaries,
concurrent writers."""

import errno
import json
import os
import subprocess
import sys

import pytest
import torch

from tokbench import io as tio
from tokbench.testing import run_processes


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_gives_the_normal_file_mode_and_leaves_no_temporary(tmp_path):
    old = os.umask(0o022)
    try:
        tio.write_json_atomic(tmp_path / "a.json", {"x": 1})
        tio.write_text_atomic(tmp_path / "b.md", "hi\n")
        tio.torch_save_atomic({"t": torch.zeros(2)}, tmp_path / "c.pt")
        os.umask(0o027)
        tio.write_text_atomic(tmp_path / "d.txt", "x")
    finally:
        os.umask(old)
    for n in ("a.json", "b.md", "c.pt"):
        assert (tmp_path / n).stat().st_mode & 0o777 == 0o644, n
    assert (tmp_path / "d.txt").stat().st_mode & 0o777 == 0o640  # the umask is respected
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_disk_full_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, where):
    target = tmp_path / "r.json"
    tio.write_json_atomic(target, {"good": True})

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "write":
        real = os.fdopen

        def fdopen(fd, *a, **k):
            f = real(fd, *a, **k)
            f.write = full
            return f
        monkeypatch.setattr(tio.os, "fdopen", fdopen)
    else:
        monkeypatch.setattr(tio.os, "fsync", full)
    with pytest.raises(OSError) as e:
        tio.write_json_atomic(target, {"good": False})
    assert e.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"good": True}
    assert _leftovers(tmp_path) == []


def test_checked_file_detects_truncation_bitflip_foreign_kind_and_other_key(tmp_path):
    p = tmp_path / "s.state"
    tio.write_checked_torch(p, {"acc": torch.arange(5, dtype=torch.float64)}, "key-A", kind="resume-state")
    assert torch.equal(tio.read_checked_torch(p, "key-A", kind="resume-state")["acc"], torch.arange(5.0).double())
    raw = p.read_bytes()
    with pytest.raises(tio.KeyMismatchError, match=str(p)):
        tio.read_checked_torch(p, "key-B", kind="resume-state")
    with pytest.raises(tio.CorruptFileError, match="expected 'cache'"):
        tio.read_checked(p, kind="cache")
    p.write_bytes(raw[:-7])
    with pytest.raises(tio.CorruptFileError, match="truncated"):
        tio.read_checked_torch(p, "key-A", kind="resume-state")
    flipped = bytearray(raw)
    flipped[-20] ^= 0x01
    p.write_bytes(bytes(flipped))
    with pytest.raises(tio.CorruptFileError, match="checksum"):
        tio.read_checked_torch(p, "key-A", kind="resume-state")
    p.write_bytes(b"")
    with pytest.raises(tio.CorruptFileError, match=str(p)):
        tio.read_checked_torch(p, "key-A", kind="resume-state")
    with pytest.raises(FileNotFoundError):
        tio.read_checked(tmp_path / "absent", kind="resume-state")


def test_stale_temporaries_of_dead_processes_are_cleaned_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    host = tio._temp_name(tmp_path / "x").split(".")[1]
    stale = tmp_path / f"r.json.{host}.{dead_pid}.abcd1234.tmp"
    live = tmp_path / f"r.json.{host}.{os.getpid()}.abcd1234.tmp"
    other_host = tmp_path / f"r.json.elsewhere.{dead_pid}.abcd1234.tmp"
    for p in (stale, live, other_host):
        p.write_text("partial")
    removed = tio.clean_stale_temps(tmp_path, "r.json")
    assert removed == [stale]
    assert live.exists() and other_host.exists()


HAMMER = """
import sys
from tokbench import io as tio
from tokbench.testing import run_processes
path, k = sys.argv[1], int(sys.argv[2])
for i in range(40):
    tio.write_json_atomic(path, {"writer": k, "i": i, "pad": "x" * 2000})
"""


def test_concurrent_writers_of_one_file_never_corrupt_it(tmp_path):
    path = tmp_path / "leaderboard.json"
    res = run_processes(HAMMER, [(path, k) for k in range(4)])
    assert [rc for rc, _ in res] == [0, 0, 0, 0], [e for _, e in res]
    d = json.loads(path.read_text())
    assert d["i"] == 39 and d["pad"] == "x" * 2000
    assert _leftovers(tmp_path) == []
