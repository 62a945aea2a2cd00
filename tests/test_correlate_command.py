"""`tokbench correlate` end to end: bad tables give clear messages, duplicates/filters/groups, the result-file
adapter, the outputs (md, json, plots, self-contained html), and `results/published.csv` against the docs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tokbench.cli import main
from tokbench.report import analysis, inputs

ROOT = Path(__file__).resolve().parents[1]


def _csv(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    p = tmp_path / name
    p.write_text(text.strip() + "\n")
    return p


GOOD = """
tokenizer,rfid,pfid,psnr,gfid,generator,source
a,1.0,2.0,24.0,1.5,G1,paper A
b,2.0,3.5,22.0,2.0,G1,paper B
c,0.8,7.0,25.0,2.6,G1,paper C
d,2.2,13.0,20.5,3.8,G1,paper D
e,0.9,17.0,23.0,3.3,G1,paper E
f,1.3,5.0,21.0,,G1,paper F
"""


def _run(tmp_path, table, *extra, out="out"):
    return main(["correlate", "--table", str(table), "--out", str(tmp_path / out), "--resamples", "2000",
                 "--no-plots", *extra])


def test_end_to_end_outputs(tmp_path, capsys):
    t = _csv(tmp_path, GOOD)
    assert _run(tmp_path, t) == 0
    printed = capsys.readouterr().out
    assert "pfid vs rfid" in printed and "lower-is-better" in printed
    rep = json.loads((tmp_path / "out" / "correlation.json").read_text())
    assert rep["schema"] == analysis.SCHEMA and rep["settings"]["n_resamples"] == 2000
    sec = rep["sections"][0]
    by = {m["metric"]: m for m in sec["metrics"]}
    assert set(by) == {"rfid", "pfid", "psnr"}
    assert by["pfid"]["n"] == 5 and by["pfid"]["missing"] == [{"tokenizer": "f", "missing": ["gfid"]}]
    assert by["psnr"]["expected_sign"] == -1 and by["pfid"]["expected_sign"] == 1
    c = by["psnr"]["coefficients"]["spearman"]
    assert c["agreement"] == pytest.approx(-c["value"])
    assert sec["comparisons"][0]["a"] == "pfid" and sec["comparisons"][0]["b"] == "rfid"
    md = (tmp_path / "out" / "correlation.md").read_text()
    assert "Spearman" in md and "f (no gfid)" not in md and "no gfid: f" in md
    html = (tmp_path / "out" / "index.html").read_text()
    assert "<table" in html and "sortable" in html


def test_two_rows_clear_message(tmp_path, capsys):
    t = _csv(tmp_path, "tokenizer,rfid,gfid\na,1,2\nb,2,3\n")
    assert _run(tmp_path, t) == 0
    out = capsys.readouterr().out
    assert "only 2 tokenizer(s) have both rfid and gfid" in out
    assert "Traceback" not in out


def test_three_rows_point_estimates_only(tmp_path, capsys):
    t = _csv(tmp_path, "tokenizer,rfid,gfid\na,1,2\nb,2,3\nc,3,3.5\n")
    assert _run(tmp_path, t) == 0
    rep = json.loads((tmp_path / "out" / "correlation.json").read_text())
    m = rep["sections"][0]["metrics"][0]
    assert m["status"] == "few" and "bootstrap" not in m["coefficients"]["spearman"]
    assert "no bootstrap CI" in capsys.readouterr().out


def test_constant_column_clear_message(tmp_path, capsys):
    t = _csv(tmp_path, "tokenizer,rfid,usage,gfid\na,1,1,2\nb,2,1,3\nc,3,1,3.5\nd,4,1,5\n")
    assert _run(tmp_path, t) == 0
    out = capsys.readouterr().out
    assert "usage is constant (1) over the 4 tokenizers: correlation undefined" in out


def test_ties_and_nans_reported(tmp_path):
    t = _csv(tmp_path, "tokenizer,rfid,gfid\na,1,2\nb,1,3\nc,,3.5\nd,4,\ne,5,6\nf,6,6\n")
    df = inputs.read_table(t)
    r = analysis.analyse_pair(df, "rfid", "gfid", n_resamples=1000)
    assert r["n"] == 4 and [m["tokenizer"] for m in r["missing"]] == ["c", "d"]
    assert r["ties_metric"] == [{"value": 1.0, "tokenizers": ["a", "b"]}]
    assert r["ties_target"] == [{"value": 6.0, "tokenizers": ["e", "f"]}]
    assert any("tie in rfid: a, b" in m for m in r["messages"])


def test_bad_cell_is_a_clear_error(tmp_path, capsys):
    t = _csv(tmp_path, "tokenizer,rfid,gfid\na,1,2\nb,n/a?,3\nc,3,4\n")
    assert _run(tmp_path, t) == 1
    err = capsys.readouterr().err
    assert "column 'rfid', row 3 (b)" in err and "Traceback" not in err


def test_missing_inputs_and_columns_are_clear(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no tokbench-results/runs here: nothing to correlate is a usage error
    assert main(["correlate", "--out", str(tmp_path)]) == 2
    assert "give --runs" in capsys.readouterr().err
    t = _csv(tmp_path, GOOD)
    assert _run(tmp_path, t, "--target", "nope") == 1
    assert "no target column 'nope'" in capsys.readouterr().err
    assert _run(tmp_path, t, "--where", "generator=G9") == 1
    assert "no rows left" in capsys.readouterr().err


DUP = """
tokenizer,rfid,pfid,gfid,generator
a,1.0,2.0,1.8,RAR-B
a,1.0,2.0,1.6,RAR-L
b,2.0,5.0,1.9,RAR-B
b,2.0,5.0,1.7,RAR-L
c,0.8,7.0,2.6,RAR-B
c,0.8,7.0,2.4,RAR-L
d,2.2,13.0,3.8,RAR-B
e,0.9,17.0,3.3,VAR
"""


def test_duplicates_where_and_groups(tmp_path, capsys):
    t = _csv(tmp_path, DUP)
    assert _run(tmp_path, t, "--collapse", "error", "--by", "none") == 1
    assert "have more than one row" in capsys.readouterr().err
    assert _run(tmp_path, t) == 0  # default: best gFID per tokenizer, plus each generator on its own
    rep = json.loads((tmp_path / "out" / "correlation.json").read_text())
    labels = [s["label"] for s in rep["sections"]]
    assert rep["by"] == "generator" and "generator = RAR-B" in labels and "generator = RAR-L" in labels
    pooled = rep["sections"][0]
    assert pooled["n_rows"] == 5 and any(n.startswith("a: 2 rows; kept generator RAR-L") for n in pooled["collapsed"])
    assert any("generator = VAR: 1 tokenizer(s)" in n for n in rep["notes"])
    rarb = next(s for s in rep["sections"] if s["label"] == "generator = RAR-B")
    assert rarb["metrics"][0]["n"] == 4
    assert _run(tmp_path, t, "--where", "generator=RAR-L,VAR", "--by", "none", out="o2") == 0
    rep = json.loads((tmp_path / "o2" / "correlation.json").read_text())
    assert len(rep["sections"]) == 1 and rep["sections"][0]["n_rows"] == 4


def test_direction_rules():
    assert inputs.direction("pfid@alpha=0.5,delta=280") == "lower"
    assert inputs.direction("gfid") == "lower" and inputs.direction("usage/256img") == "higher"
    assert inputs.direction("entropy_norm") == "higher" and inputs.direction("tokens") == "unknown"
    assert inputs.expected_sign("psnr", "gfid") == -1 and inputs.expected_sign("rfid", "gfid") == 1
    assert inputs.expected_sign("mystery", "gfid") is None
    # the metric registry decides: KIDs are FID-like, labels and keys name the same metric
    assert inputs.direction("rkid") == inputs.direction("pkid@alpha=0.5") == "lower"
    assert inputs.direction("inception_score") == inputs.direction("IS") == "higher"


def test_metric_registry_labels_and_formats():
    from tokbench.results.metrics import BY_KEY, lookup

    assert lookup("pFID α=0.5 δ=0.1 (code)") is BY_KEY["pfid"] is lookup("pfid@alpha=0.5,delta=0.1,mode=code")
    assert lookup("usage/256img") is BY_KEY["usage_per_window"] and lookup("tokens") is None
    assert lookup("usage").format(0.4321) == "43.2%" and lookup("SSIM").format(0.81234) == "0.8123"
    assert lookup("rKID (paper)").format(0.001234) == "0.0012" and lookup("perplexity").format(812.35) == "812.4"


def _result(name, rfid, pfids, gfid=None, status="ok"):
    pf = [{"alpha": a, "delta": 8, "mode": "code", "beta": 1.0, "seeds": [0, 1], "values": [v, v + 0.2],
           "mean": v + 0.1, "std": 0.14} for a, v in pfids]
    d = {"schema": inputs.RESULT_SCHEMA, "status": status, "reason": "no weights" if status != "ok" else None,
         "tokenizer": {"name": name, "info": {"family": "x", "tokens_per_image": 64, "vocab_size": 256}},
         "protocol": {"hash": "abc"},
         "metrics": {"rfid": rfid, "pfid": pf, "psnr": 20 + rfid, "ssim": 0.5,
                     "pfid_curve": {"delta=8,mode=code": [[a, v + 0.1, 0.14] for a, v in pfids]},
                     "codebook": {"usage": 0.9, "perplexity": 100.0 + rfid, "entropy_norm": 0.8}}}
    if gfid is not None:
        d["gfid"] = {"value": gfid, "generator": "tiny-ar"}
    return d


def test_runs_adapter_plots_and_page(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    data = [("t1", 5.0, 11.0, 7.0), ("t2", 9.0, 14.0, 9.5), ("t3", 4.0, 20.0, 12.0), ("t4", 7.0, 12.5, 8.0),
            ("t5", 6.0, 16.0, 10.0)]
    for name, r, p, g in data:
        (runs / f"{name}__s.json").write_text(json.dumps(_result(name, r, [(0.1, p / 2), (0.5, p)], g)))
    (runs / "broken__s.json").write_text(json.dumps(_result("broken", 1.0, [], status="failed")))
    (runs / "other.json").write_text("{}")
    df = inputs.rows_from_results([runs])
    assert sorted(df["tokenizer"]) == [d[0] for d in data]
    assert "pfid@alpha=0.5,delta=8,mode=code" in df.columns and df["gfid"].notna().all()
    assert {s["file"].split("/")[-1] for s in df.attrs["skipped"]} == {"broken__s.json", "other.json"}
    assert set(df.attrs["curves"]) == {d[0] for d in data}
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "leaderboard.json").write_text(json.dumps(
        {"suite": "s", "columns": ["tokenizer", "rFID"], "rows": [{"tokenizer": "t1", "rFID": 5.0}]}))
    rc = main(["correlate", "--runs", str(runs), "--out", str(tmp_path / "out"), "--resamples", "2000",
               "--metrics", "rfid,pfid"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "not used:" in out and "broken__s.json" in out
    plots = tmp_path / "out" / "plots"
    for stem in ("all__rfid_vs_gfid", "all__pfid_alpha0.5_delta8_modecode_vs_gfid", "pfid_vs_alpha"):
        assert (plots / f"{stem}.png").stat().st_size > 1000
        assert (plots / f"{stem}.svg").read_text().lstrip().startswith("<?xml")
    rep = json.loads((tmp_path / "out" / "correlation.json").read_text())
    assert len(rep["sections"][0]["comparisons"]) == 2  # both pFID settings against rFID
    page = (tmp_path / "out" / "index.html").read_text()
    # rfid + two pFID settings, plus the pFID-vs-α figure
    assert page.count("<svg") == 4 and "leaderboard" in page and "t1" in page
    # self-contained: nothing loaded from elsewhere
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", page)
    assert "<link" not in page and "<script src" not in page


PUBLISHED = ROOT / "results" / "published.csv"


def test_published_table_runs(tmp_path):
    assert main(["correlate", "--table", str(PUBLISHED), "--out", str(tmp_path), "--resamples", "1000",
                 "--no-plots", "--no-html"]) == 0
    rep = json.loads((tmp_path / "correlation.json").read_text())
    assert rep["by"] == "generator"
    assert rep["coverage"]["with_rfid_pfid_and_target"] == 6  # robusttok-zero, robustok-main, imagefolder, maskgit, llamagen, var


def test_library_call_writes_what_the_command_writes(tmp_path, capsys):
    """The zoo, pool and paper call `tokbench.report.correlate` directly: same report as the CLI, and the command line
    it records for provenance parses back (through the CLI's own parser) into the same request."""
    import argparse

    from tokbench.commands import correlate as command
    from tokbench.report.correlate import CorrelateRequest, run

    table = _csv(tmp_path, GOOD)
    req = CorrelateRequest(out=tmp_path / "lib", tables=[table], metrics=["rfid", "pfid"], where=["generator=G1"],
                           compare=[("pfid", "rfid")], methods=["spearman", "kendall"], resamples=500, seed=3,
                           name="corr", plots=False, html=False)
    p = argparse.ArgumentParser()
    command.add_arguments(p)
    assert command.request(p.parse_args(req.argv())) == CorrelateRequest(
        **{**req.__dict__, "out": str(req.out), "tables": [str(table)]})
    assert req.command().startswith("tokbench correlate --table ")
    res = run(req, log=None)
    assert capsys.readouterr().out == ""
    argv = req.argv()
    argv[argv.index("--out") + 1] = str(tmp_path / "cli")
    assert main(["correlate", *argv]) == 0
    lib, cli = (json.loads((tmp_path / d / "corr.json").read_text()) for d in ("lib", "cli"))
    assert lib["sections"] == cli["sections"] == json.loads(json.dumps(res.report, default=str))["sections"]
    assert (tmp_path / "lib" / "corr.md").read_text() == (tmp_path / "cli" / "corr.md").read_text()
    assert not (tmp_path / "lib" / "index.html").exists()
