"""The benchmark runner: suites, the resumable multi-process loop, result files and leaderboards.
The result-file schema is documented in `tokbench.runner.schema`."""

from .bench import Interrupted, RunOptions, evaluate, run_suite, summary_table
from .gfid_step import GfidOptions, SuiteResults
from .leaderboard import build as build_leaderboard
from .leaderboard import write_leaderboard
from .schema import SCHEMA, read_result, result_path
from .suite import PfidSpec, Suite, apply_overrides, load_suite, packaged_suites, suite_definition

__all__ = ["Interrupted", "RunOptions", "evaluate", "run_suite", "summary_table", "build_leaderboard",
           "write_leaderboard", "SCHEMA", "read_result", "result_path", "packaged_suites", "suite_definition",
           "PfidSpec", "Suite", "apply_overrides", "load_suite", "GfidOptions", "SuiteResults"]
