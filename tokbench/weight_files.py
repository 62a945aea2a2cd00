"""Where a preset's weights file lives on this machine and how a user gets it there.

Torch-free on purpose: `tokbench list` and the up-front weights check of `tokbench run` use it without loading any
model. Every weights spec has one *destination* under the weights folder (`$TOKBENCH_WEIGHTS_DIR`, default
`~/.cache/tokbench/weights/`), unique per repository and file (`org--repo/path/in/repo`), so that presets whose files
share a base name (`best_ckpt.pt` of three ImageFolder models) never collide; the Hugging Face cache is also searched.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

_TRUE = ("1", "true", "yes", "on")


def weights_dir() -> Path:
    """Where users put files that cannot be downloaded automatically (TOKBENCH_WEIGHTS_DIR)."""
    return Path(os.environ.get("TOKBENCH_WEIGHTS_DIR", Path.home() / ".cache" / "tokbench" / "weights"))


def parse_hf_spec(spec: str) -> tuple[str, str | None, str | None]:
    """`hf://org/repo/sub/file.pt@rev` → ("org/repo", "sub/file.pt", "rev"); the file part may be absent."""
    body = spec[len("hf://") :]
    revision = None
    if "@" in body:
        body, revision = body.rsplit("@", 1)
    parts = body.split("/")
    if len(parts) < 2:
        raise ValueError(f"bad Hugging Face spec {spec!r}: expected hf://org/repo[/path][@revision]")
    return "/".join(parts[:2]), "/".join(parts[2:]) or None, revision


def url_filename(url: str) -> str:
    """The file name users save a manual download under: the URL's `#/name` fragment when given (Google Drive
    links carry no name), else its last path component."""
    if "#" in url:
        return url.split("#", 1)[1].strip("/").split("/")[-1]
    return url.rstrip("/").split("/")[-1].split("?")[0]


def destination(spec: str) -> Path | None:
    """The one place under the weights folder where tokbench looks for this spec's file (or folder, for a whole Hub
    repository); None for a plain local path."""
    if spec.startswith("hf://"):
        repo_id, filename, _ = parse_hf_spec(spec)
        folder = weights_dir() / repo_id.replace("/", "--")
        return folder / filename if filename else folder
    if spec.startswith(("http://", "https://")):
        return weights_dir() / url_filename(spec)
    return None


def fetch_command(spec: str, manual_url: str | None = None) -> str:
    """What the user runs (or does) to put the file at its destination."""
    dest = destination(spec)
    if spec.startswith("hf://"):
        repo_id, filename, revision = parse_hf_spec(spec)
        folder = weights_dir() / repo_id.replace("/", "--")  # --local-dir keeps the path in the repository
        return (f"hf download {repo_id}{' ' + filename if filename else ''}"
                f"{' --revision ' + revision if revision else ''} --local-dir {folder}")
    if spec.startswith(("http://", "https://")):
        return f"download by hand from {manual_url or spec.split('#')[0]} and save it as {dest}"
    return f"put the file at {Path(spec).expanduser()}"


def _in_hf_cache(repo_id: str, filename: str | None, revision: str | None) -> bool:
    try:
        import huggingface_hub as hf

        if filename:
            return isinstance(hf.try_to_load_from_cache(repo_id, filename, revision=revision), str)
        hf.snapshot_download(repo_id=repo_id, revision=revision, local_files_only=True)
        return True
    except Exception:  # noqa: BLE001 - "not in the cache" is the answer
        return False


def local_file(spec: str) -> Path | None:
    """The weights on this machine (destination, Hub cache or local path), or None; never touches the network."""
    dest = destination(spec)
    if dest is not None and dest.exists():
        return dest
    if spec.startswith("hf://"):
        repo_id, filename, revision = parse_hf_spec(spec)
        if _in_hf_cache(repo_id, filename, revision):
            import huggingface_hub as hf

            if filename:
                return Path(hf.try_to_load_from_cache(repo_id, filename, revision=revision))
            return Path(hf.snapshot_download(repo_id=repo_id, revision=revision, local_files_only=True))
        return None
    if spec.startswith(("http://", "https://")):
        return None
    p = Path(spec).expanduser()
    return p if p.exists() else None


def offline_env() -> bool:
    """True when the user said so: HF_HUB_OFFLINE or TOKBENCH_OFFLINE set to a true value."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TOKBENCH_OFFLINE"))


def hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connection to the Hub endpoint: asked once per run, so that an offline machine is not made to wait
    through the Hub client's retries for every preset."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False
