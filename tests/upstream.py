"""The upstream ``cpppo`` package from PyPI, in a virtualenv of its own.

Interop tests and benchmarks start upstream's server or client as a subprocess beside ours.
The virtualenv is created once and cached under ``.cache/`` at the repository root (git
ignores it); a stamp file records the pinned version so a changed pin rebuilds it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

UPSTREAM_VERSION = "5.2.5"
ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("CPPPO_FLEET_CACHE", ROOT / ".cache"))
VENV = CACHE / f"upstream-cpppo-{UPSTREAM_VERSION}"


def upstream_python(timeout: float = 600.0) -> Path:
    """Return the interpreter of the upstream-cpppo virtualenv, creating it if needed.

    Safe to call from several processes at once (a lock file serialises the build)."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".upstream.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and python.exists():
            return python
        if VENV.exists():
            shutil.rmtree(VENV)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             f"cpppo=={UPSTREAM_VERSION}"],
            check=True, timeout=timeout,
        )
        subprocess.run([str(python), "-c", "import cpppo.server.enip.client"], check=True,
                       timeout=60)
        stamp.write_text(UPSTREAM_VERSION + "\n")
    return python


if __name__ == "__main__":
    print(upstream_python())
    sys.exit(0)
