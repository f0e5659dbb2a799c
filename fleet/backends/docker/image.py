"""Container images for the docker backend: a wheelhouse made on the host, then a build through
the docker SDK.

Nothing inside an image build can reach a package index here, so the builder runs
``pip wheel`` on the host and sends the wheels in the build context.  The wheelhouse is cached
under ``.cache/wheelhouse/`` in two parts: the dependencies, keyed on ``pyproject.toml``
(rebuilt only when it changes), and the project's own wheel, keyed on a hash of
``pyproject.toml`` and the sources.  The image tag carries a hash of the wheel, the Dockerfile
and the base image, so a build with nothing changed returns at once, and one where only the
sources changed re-runs only the install layer.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import fleet
from fleet.backends.base import BackendError

BASE_IMAGE = "cpppo-fleet/base:bookworm"  # made by images/build-base.sh
DEVICE_REPO = "cpppo-fleet/device"
UPSTREAM_REPO = "cpppo-fleet/upstream"
UPSTREAM_VERSION = "5.2.5"
SOURCE_DIRS = ("cpppo", "fleet")
PIP_TIMEOUT = 900.0
KEEP_PROJECT_WHEELS = 3  # project wheels kept in the cache (the sources change often)

Log = Callable[[str], None]  # receives build output, one line at a time


def _quiet(line: str) -> None:
    """The default build log: silent."""


class BuildError(BackendError):
    """An image (or its wheelhouse) could not be built; one line."""


def source_root() -> Path:
    """The source tree the running ``fleet`` package comes from (an editable install)."""
    root = Path(fleet.__file__).resolve().parent.parent
    if not (root / "pyproject.toml").exists() or not (root / "images" / "device" / "Dockerfile").exists():
        raise BuildError(f"building images needs the cpppo-fleet source tree; {root} is not one "
                         "(install with `pip install -e .` from a clone)")
    return root


def cache_dir(root: Path) -> Path:
    return Path(os.environ.get("CPPPO_FLEET_CACHE", root / ".cache")) / "wheelhouse"


def _source_files(root: Path) -> Iterator[Path]:
    for name in ("pyproject.toml", "README.md"):
        yield root / name
    for top in SOURCE_DIRS:
        for path in sorted((root / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
                yield path


def digest_files(root: Path, paths: Iterator[Path] | list[Path]) -> str:
    """sha256 over the relative names and contents of ``paths``."""
    h = hashlib.sha256()
    for path in paths:
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _pip_wheel(args: list[str], log: Log) -> None:
    log(f"$ pip wheel {' '.join(args)}")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
                           *args], capture_output=True, text=True, timeout=PIP_TIMEOUT, check=False)
    if proc.returncode != 0:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
        raise BuildError(f"pip wheel failed: {(errors or proc.stderr.strip().splitlines() or ['?'])[-1]}")


def _copy_sources(root: Path, into: Path) -> Path:
    """A clean copy of what the project's wheel is built from (pip must not write into the tree)."""
    copy = into / "src"
    for path in _source_files(root):
        target = copy / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return copy


def _fill(directory: Path, make: Callable[[Path], None]) -> list[Path]:
    """The wheels in ``directory``, made by ``make(tmp)`` the first time (atomically)."""
    if not (directory / ".complete").exists():
        with tempfile.TemporaryDirectory(dir=directory.parent) as tmp:
            make(Path(tmp))
            shutil.rmtree(directory, ignore_errors=True)
            os.replace(Path(tmp) / "wheels", directory)
            (directory / ".complete").write_text("")
    os.utime(directory)  # recently used: kept by the pruning of old project wheels
    return sorted(directory.glob("*.whl"))


def project_wheelhouse(log: Log = _quiet) -> tuple[list[Path], str]:
    """(wheels, digest) of the project and all its dependencies, built on the host as needed."""
    root = source_root()
    cache = cache_dir(root)
    deps_key = digest_files(root, [root / "pyproject.toml"])[:16]
    source_key = digest_files(root, _source_files(root))[:16]

    def make_deps(tmp: Path) -> None:
        _pip_wheel(["-w", str(tmp / "wheels"), str(_copy_sources(root, tmp))], log)
        for wheel in (tmp / "wheels").glob("cpppo_fleet-*.whl"):
            wheel.unlink()

    def make_project(tmp: Path) -> None:
        _pip_wheel(["--no-deps", "-w", str(tmp / "wheels"), str(_copy_sources(root, tmp))], log)

    with _locked(cache):
        deps = _fill(cache / f"deps-{deps_key}", make_deps)
        project = _fill(cache / f"project-{source_key}", make_project)
        for old in sorted(cache.glob("project-*"), key=lambda p: p.stat().st_mtime)[:-KEEP_PROJECT_WHEELS]:
            shutil.rmtree(old, ignore_errors=True)
    return deps + project, f"{deps_key}{source_key}"


def upstream_wheelhouse(version: str = UPSTREAM_VERSION, log: Log = _quiet) -> list[Path]:
    """Wheels of upstream ``cpppo==version`` and its dependencies (for the benchmark's peer)."""
    cache = cache_dir(source_root())

    def make(tmp: Path) -> None:
        _pip_wheel(["-w", str(tmp / "wheels"), f"cpppo=={version}"], log)

    with _locked(cache):
        return _fill(cache / f"upstream-cpppo-{version}", make)


def build_context(dockerfile: Path, wheels: list[Path]) -> io.BytesIO:
    """A tar build context: the Dockerfile and ``wheels/``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(dockerfile, arcname="Dockerfile")
        for wheel in wheels:
            tar.add(wheel, arcname=f"wheels/{wheel.name}")
    buffer.seek(0)
    return buffer


def _image_exists(client, name: str) -> bool:
    import docker.errors

    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def _base_id(client, base: str) -> str:
    import docker.errors

    try:
        return client.images.get(base).id
    except docker.errors.ImageNotFound:
        raise BuildError(f"base image {base} not found; build it with images/build-base.sh "
                         "(nothing is pulled from a registry)") from None


def _build(client, repo: str, dockerfile: Path, wheels: list[Path], key: str, base: str,
           labels: dict[str, str], log: Log, buildargs: dict[str, str] | None = None) -> str:
    """Build ``repo:<hash>`` unless it exists; tag it ``repo:latest`` too; return the hash tag."""
    digest = hashlib.sha256(f"{key}\0{dockerfile.read_text()}\0{_base_id(client, base)}".encode())
    tag = f"{repo}:{digest.hexdigest()[:12]}"
    begun = time.time()
    if _image_exists(client, tag):
        log(f"{tag} is up to date")
    else:
        log(f"building {tag} from {base}")
        # client.api.build is what images.build runs; called directly, its output streams
        stream = client.api.build(
            fileobj=build_context(dockerfile, wheels), custom_context=True, tag=tag, rm=True,
            forcerm=True, pull=False, decode=True, buildargs={"BASE": base, **(buildargs or {})},
            labels={"cpppo-fleet.source": key, **labels})
        for chunk in stream:
            if "error" in chunk:
                raise BuildError(f"docker build of {tag}: {chunk['error'].strip().splitlines()[-1]}")
            text = chunk.get("stream", "").rstrip()
            if text:
                for line in text.splitlines():
                    log(line)
    client.images.get(tag).tag(repo, "latest")
    _prune(client, repo, tag, begun)
    return tag


def _prune(client, repo: str, keep: str, begun: float) -> None:
    """Remove this builder's older images of ``repo`` and older install stages (build cache),
    except those a container still uses."""
    import docker.errors

    old = [image for image in client.images.list(name=repo, filters={"label": "cpppo-fleet.image"})
           if keep not in image.tags]
    old += [image for image in client.images.list(filters={"label": "cpppo-fleet.stage"})
            if _created(image) < begun]
    for image in old:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(image.id, noprune=False)


def _created(image) -> float:
    from datetime import datetime

    stamp = image.attrs.get("Created", "")
    head = stamp.split(".")[0].rstrip("Z")
    return datetime.fromisoformat(head + "+00:00").timestamp() if head else 0.0


def build_device_image(client, base: str = BASE_IMAGE, log: Log = _quiet) -> str:
    """The device image for the current sources (built only when something changed)."""
    wheels, key = project_wheelhouse(log)
    dockerfile = source_root() / "images" / "device" / "Dockerfile"
    return _build(client, DEVICE_REPO, dockerfile, wheels, key, base, {"cpppo-fleet.image": "device"}, log)


def build_upstream_image(client, base: str = BASE_IMAGE, version: str = UPSTREAM_VERSION,
                         log: Log = _quiet) -> str:
    """The benchmark's peer image: upstream cpppo from PyPI (wheels made on the host)."""
    wheels = upstream_wheelhouse(version, log)
    dockerfile = source_root() / "images" / "upstream" / "Dockerfile"
    return _build(client, UPSTREAM_REPO, dockerfile, wheels, f"cpppo=={version}", base,
                  {"cpppo-fleet.image": "upstream"}, log, buildargs={"PACKAGE": f"cpppo=={version}"})
