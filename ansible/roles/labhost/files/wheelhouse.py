"""Pack the project's wheelhouse into one archive, for the labhost role to copy to a host.

Run on the control machine (the role does so, once per play):

    python wheelhouse.py SOURCE OUT_DIR

The wheels come from ``fleet.backends.docker.image.project_wheelhouse`` of the source tree
(``pip wheel`` on this machine, cached under ``OUT_DIR/cache``: nothing is written into
SOURCE, which may be read-only).  The archive ``OUT_DIR/wheelhouse-<key>.tar`` is
reproducible (sorted names, zero times and owners), so it is byte-identical, and its checksum
unchanged, for as long as ``pyproject.toml`` and the sources are; Ansible copies it only when
it changed.  Prints one JSON object: ``archive``, ``key`` and ``project_wheel`` (its name).
"""

from __future__ import annotations

import json
import os
import sys
import tarfile
from pathlib import Path

KEEP_ARCHIVES = 3


def pack(wheels: list[Path], archive: Path) -> None:
    """Write ``wheels`` into ``archive`` (uncompressed: wheels are zips), reproducibly."""
    partial = archive.with_suffix(".partial")
    with tarfile.open(partial, "w", format=tarfile.GNU_FORMAT) as tar:
        for wheel in sorted(wheels, key=lambda p: p.name):
            info = tar.gettarinfo(str(wheel), arcname=wheel.name)
            info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode = 0, 0, 0, "", "", 0o644
            with open(wheel, "rb") as handle:
                tar.addfile(info, handle)
    os.replace(partial, archive)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: wheelhouse.py SOURCE OUT_DIR", file=sys.stderr)
        return 2
    source, out = Path(argv[0]).resolve(), Path(argv[1]).resolve()
    if not (source / "pyproject.toml").is_file() or not (source / "fleet").is_dir():
        print(f"wheelhouse.py: {source} is not a cpppo-fleet source tree", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    os.environ["CPPPO_FLEET_CACHE"] = str(out / "cache")
    sys.path.insert(0, str(source))
    import fleet
    from fleet.backends.base import BackendError
    from fleet.backends.docker.image import project_wheelhouse

    if Path(fleet.__file__).resolve().parent.parent != source:
        print(f"wheelhouse.py: imported fleet from {fleet.__file__}, not from {source}", file=sys.stderr)
        return 2
    try:
        wheels, key = project_wheelhouse()
    except BackendError as exc:
        print(f"wheelhouse.py: {exc}", file=sys.stderr)
        return 1
    archive = out / f"wheelhouse-{key}.tar"
    if not archive.exists():
        pack(wheels, archive)
    os.utime(archive)
    for old in sorted(out.glob("wheelhouse-*.tar"), key=lambda p: p.stat().st_mtime)[:-KEEP_ARCHIVES]:
        old.unlink()
    project = next(w.name for w in wheels if w.name.startswith("cpppo_fleet-"))
    print(json.dumps({"archive": str(archive), "key": key, "project_wheel": project}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
