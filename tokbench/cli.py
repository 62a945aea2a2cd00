"""The `tokbench` command line. Each sub-command is one module in `tokbench.commands` that defines
`NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`; modules are discovered, so adding a command never
touches this file."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from . import __version__, commands
from .errors import UsageError

DESCRIPTION = """tokbench: benchmark discrete image tokenizers by rFID, pFID (FID of reconstructions from perturbed
tokens), gFID and codebook statistics, with one exact FID protocol."""

EPILOG = """examples:
  tokbench list                               presets, their token layouts and licences
  tokbench run                                the default offline suite on the embedded sample images
  tokbench fid DIR_A DIR_B                    FID between two image folders (or .npz statistics)
  tokbench stats DIR --out ref.npz            save Inception statistics of a folder
"""


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line naming the option (exit 2), not a usage block."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _command_modules():
    mods = []
    for info in pkgutil.iter_modules(commands.__path__):
        if info.name.startswith("_"):
            continue
        mods.append(importlib.import_module(f"{commands.__name__}.{info.name}"))
    return sorted(mods, key=lambda m: getattr(m, "ORDER", 100))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tokbench", description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"tokbench {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def setup_logging(verbose: int) -> None:
    """Logs go to stderr (stdout carries results and --json). tokbench's own messages at INFO (-v: DEBUG);
    third-party libraries only from WARNING (-vv: everything at DEBUG)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler._tokbench = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not getattr(h, "_tokbench", False)] + [handler]
    root.setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)
    logging.getLogger("tokbench").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("tokbench_adapters").setLevel(logging.DEBUG if verbose else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except UsageError as e:
        if args.verbose:
            raise
        print(f"tokbench {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError, KeyError, RuntimeError) as e:  # OSError: disk full, permissions… (one line)
        if args.verbose:
            raise
        print(f"tokbench {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
