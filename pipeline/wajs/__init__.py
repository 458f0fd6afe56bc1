"""The WA-JS bundle (``@wppconnect/wa-js``) that the gateway injects into WhatsApp Web.

The bundle is fetched with npm into ``pipeline/wajs/node_modules`` (``make wajs``, which
``make test`` runs); it is not committed. ``package.json`` pins the version and
``package-lock.json`` its integrity hash.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

WAJS_VERSION = "4.6.0"
"""The pinned ``@wppconnect/wa-js`` version (keep in step with ``package.json``)."""

WAJS_DIR = Path(__file__).resolve().parent


class WajsError(Exception):
    """The WA-JS bundle is missing and cannot be fetched; the message is one line."""


def bundle_path() -> Path:
    """Where npm puts the bundle: ``node_modules/@wppconnect/wa-js/dist/wppconnect-wa.js``."""
    return WAJS_DIR / "node_modules" / "@wppconnect" / "wa-js" / "dist" / "wppconnect-wa.js"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def ensure_bundle(timeout: float = 300.0) -> Path:
    """Returns the bundle's path, running ``npm ci`` (or ``npm install``) first if it is missing."""
    bundle = bundle_path()
    if bundle.is_file():
        return bundle
    npm = shutil.which("npm")
    if npm is None:
        raise WajsError(
            f"the WA-JS bundle is missing ({bundle}) and npm is not installed to fetch it; "
            "install Node.js with npm, then run `make wajs`"
        )
    verb = "ci" if (WAJS_DIR / "package-lock.json").is_file() else "install"
    command = [npm, verb, "--no-audit", "--no-fund", "--prefix", str(WAJS_DIR)]
    try:
        done = subprocess.run(
            command, cwd=WAJS_DIR, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WajsError(f"`npm {verb}` in {WAJS_DIR} failed: {exc}") from None
    if done.returncode != 0:
        raise WajsError(
            f"`npm {verb}` in {WAJS_DIR} failed (exit {done.returncode}): "
            f"{_last_line(done.stderr or done.stdout)}"
        )
    if not bundle.is_file():
        raise WajsError(f"`npm {verb}` in {WAJS_DIR} succeeded but {bundle} is still missing")
    return bundle


__all__ = ["WAJS_DIR", "WAJS_VERSION", "WajsError", "bundle_path", "ensure_bundle"]
