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


def cached_venv(name: str, requirement: str, probe: str, timeout: float = 600.0) -> Path:
    """The interpreter of the cached virtualenv ``.cache/<name>`` holding ``requirement``
    (pip syntax), built once; ``probe`` is a Python statement that must run in it.

    Safe to call from several processes at once (a lock file serialises the build)."""
    root = CACHE / name
    python = root / "bin" / "python"
    stamp = root / ".installed"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and python.exists() and stamp.read_text().strip() == requirement:
            return python
        if root.exists():
            shutil.rmtree(root)
        venv.EnvBuilder(with_pip=True, clear=True).create(root)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", requirement],
            check=True, timeout=timeout,
        )
        subprocess.run([str(python), "-I", "-c", probe], check=True, timeout=60)
        stamp.write_text(requirement + "\n")
    return python


def upstream_python(timeout: float = 600.0) -> Path:
    """Return the interpreter of the upstream-cpppo virtualenv, creating it if needed."""
    return cached_venv(VENV.name, f"cpppo=={UPSTREAM_VERSION}", "import cpppo.server.enip.client", timeout)


if __name__ == "__main__":
    print(upstream_python())
    sys.exit(0)
