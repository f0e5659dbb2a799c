"""Build the docker backend's device image on the control machine and save it to one archive,
for the labhost role to copy to a host and ``docker load`` there (lab hosts build nothing).

    python device_image.py SOURCE OUT_DIR [TAG]

The image is ``cpppo-fleet build``'s (``fleet.backends.docker.image.build_device_image``, from
the local base image; rebuilt only when the sources changed), tagged also TAG (default
``cpppo-fleet/device:latest``), the name a lab host's fleet file gives as ``docker_image``.  The
archive is ``OUT_DIR/device-<hash>.tar``, written once per image.  Prints one JSON object:
``archive``, ``tag`` and ``id``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

KEEP_ARCHIVES = 2


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print("usage: device_image.py SOURCE OUT_DIR [TAG]", file=sys.stderr)
        return 2
    source, out = Path(argv[0]).resolve(), Path(argv[1]).resolve()
    tag = argv[2] if len(argv) == 3 else "cpppo-fleet/device:latest"
    out.mkdir(parents=True, exist_ok=True)
    os.environ["CPPPO_FLEET_CACHE"] = str(out / "cache")
    sys.path.insert(0, str(source))
    import docker

    from fleet.backends.base import BackendError
    from fleet.backends.docker.image import build_device_image

    try:
        client = docker.from_env(timeout=300)
        built = build_device_image(client)
        image = client.images.get(built)
        repo, _, name = tag.rpartition(":")
        image.tag(repo, name)
        archive = out / f"device-{built.rpartition(':')[2]}.tar"
        if not archive.exists():
            partial = archive.with_suffix(".partial")
            with open(partial, "wb") as handle:
                for chunk in client.api.get_image(tag):
                    handle.write(chunk)
            os.replace(partial, archive)
        os.utime(archive)
    except (BackendError, docker.errors.DockerException) as exc:
        print(f"device_image.py: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    for old in sorted(out.glob("device-*.tar"), key=lambda p: p.stat().st_mtime)[:-KEEP_ARCHIVES]:
        old.unlink()
    print(json.dumps({"archive": str(archive), "tag": tag, "id": image.id}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
