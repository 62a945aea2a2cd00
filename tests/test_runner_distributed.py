"""Two gloo processes (as torchrun would start them) give the numbers of one process."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket

import torch

from tokbench.api import Tokens
from tokbench.runner import Interrupted, RunOptions, Suite, run_suite
from tokbench.testing import ToyExtractor, ToyVQ


class FailsOnRank1(ToyVQ):
    """Decoding fails in process 1 only, in the middle of the chunk loop (an OOM on one GPU, say)."""

    def __init__(self):
        super().__init__()
        self.info.preset = "toy-fails-on-rank1"

    def decode_raw(self, tokens: Tokens):
        if os.environ.get("RANK") == "1":
            raise RuntimeError("boom on rank 1")
        return super().decode_raw(tokens)


SUITE = dict(name="dist", data="sample", num_images=22, resolution=16, tokenizers=[], batch_size=3, chunk_size=4,
             usage_window=8, pfid={"alpha": [0.7], "delta": [5], "seeds": [0, 1], "mode": "feature"})


def _numbers(res):
    m = res["metrics"]
    return {"rfid": m["rfid"], "pfid": [p["values"] for p in m["pfid"]], "rate": [p["replacement_rate"] for p in m["pfid"]],
            "psnr": m["psnr"], "ssim": m["ssim"], "cb": m["codebook"], "n": res["protocol"]["num_images"]}


def _worker(rank: int, port: int, out, with_failure: bool = False, stop_after: int | None = None) -> None:
    """Runs in a forked child (no re-import of torch): one rank of a 2-process gloo group."""
    import traceback

    code = 0
    try:
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(port))
        torch.set_num_threads(1)
        toks = [FailsOnRank1(), ToyVQ()] if with_failure else [ToyVQ()]
        try:
            *failed, res = run_suite(Suite.from_dict(SUITE), RunOptions(
                out_dir=out / "runs", cache_dir=out / "cache", progress=False, stop_after_chunks=stop_after),
                tokenizers=toks, extractor=ToyExtractor())
        except Interrupted:
            os._exit(0)
        if rank == 0:
            (out / "numbers.json").write_text(json.dumps(_numbers(res)))
            (out / "failed.json").write_text(json.dumps(failed))
    except BaseException:  # noqa: BLE001 - reported to the parent through a file
        (out / f"error{rank}.txt").write_text(traceback.format_exc())
        code = 1
    os._exit(code)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(out, with_failure: bool = False, stop_after: int | None = None) -> None:
    ctx = multiprocessing.get_context("fork")
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(rank, port, out, with_failure, stop_after)) for rank in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    hung = [p for p in procs if p.exitcode is None]
    for p in hung:
        p.kill()
    errors = [f.read_text() for f in sorted(out.glob("error*.txt"))]
    assert not hung, "a process hung (waiting at a collective?)"
    assert all(p.exitcode == 0 for p in procs) and not errors, "\n".join(errors)


def test_two_gloo_processes_equal_one(tmp_path):
    _two_processes(tmp_path)
    two = json.loads((tmp_path / "numbers.json").read_text())
    (res,) = run_suite(Suite.from_dict(SUITE), RunOptions(out_dir=tmp_path / "one", cache_dir=tmp_path / "cache",
                                                          progress=False), tokenizers=[ToyVQ()],
                       extractor=ToyExtractor())
    one = json.loads(json.dumps(_numbers(res)))
    assert two["n"] == one["n"] == 22
    # bit-identical: chunk sums are added in chunk order whatever the number of processes (runner/ordered.py)
    assert two == one


def test_a_failure_in_one_process_fails_that_tokenizer_everywhere_and_the_next_runs(tmp_path):
    """torchrun: process 1 fails in the middle of a tokenizer; process 0 hears of it instead of waiting forever at the
    next collective, the tokenizer is recorded as failed with process 1's reason, and the next tokenizer runs."""
    _two_processes(tmp_path, with_failure=True)
    (failed,) = json.loads((tmp_path / "failed.json").read_text())
    assert failed["status"] == "failed" and "process 1 of 2 failed" in failed["reason"]
    assert "boom on rank 1" in failed["reason"]
    ok = json.loads((tmp_path / "numbers.json").read_text())
    assert ok["n"] == 22 and ok["rfid"] is not None


def test_killed_two_process_run_resumes_bit_identically_even_with_one_process_a_round_behind(tmp_path):
    """Kill both processes after round 0, keep copies of their states; resume and kill after round 1; put process 1's
    round-0 state back (as if it was killed before saving round 1). The resumed run (process 1 adopts process 0's
    totals, redoes its chunk) still gives exactly the one-process numbers."""
    import shutil

    (one,) = run_suite(Suite.from_dict(SUITE), RunOptions(out_dir=tmp_path / "one", cache_dir=tmp_path / "cache",
                                                          progress=False), tokenizers=[ToyVQ()],
                       extractor=ToyExtractor())
    _two_processes(tmp_path, stop_after=1)
    (state_dir,) = (tmp_path / "runs" / "state").iterdir()
    shutil.copy(state_dir / "rank1of2.pt", tmp_path / "rank1-round0.pt")
    _two_processes(tmp_path, stop_after=1)
    shutil.copy(tmp_path / "rank1-round0.pt", state_dir / "rank1of2.pt")
    _two_processes(tmp_path)
    assert json.loads((tmp_path / "numbers.json").read_text()) == json.loads(json.dumps(_numbers(one)))


def test_a_state_lost_on_one_process_makes_every_process_start_afresh(tmp_path):
    """Process 1's state is gone (deleted or discarded as damaged) while process 0's is intact: mixing would count
    process 1's finished chunks twice or never, so both restart; the numbers stay the one-process numbers."""
    (one,) = run_suite(Suite.from_dict(SUITE), RunOptions(out_dir=tmp_path / "one", cache_dir=tmp_path / "cache",
                                                          progress=False), tokenizers=[ToyVQ()],
                       extractor=ToyExtractor())
    _two_processes(tmp_path, stop_after=2)
    (state_dir,) = (tmp_path / "runs" / "state").iterdir()
    (state_dir / "rank1of2.pt").unlink()
    _two_processes(tmp_path)
    assert json.loads((tmp_path / "numbers.json").read_text()) == json.loads(json.dumps(_numbers(one)))
