#!/usr/bin/env bash
# Build the local Docker base image: a minimal Debian bookworm root filesystem with Python,
# made by mmdebstrap from this machine's own apt sources and loaded with `docker import`.
# Nothing is pulled from a registry.  Idempotent: an existing image is kept unless --force.
#
#   images/build-base.sh [--force] [TAG]        (default TAG: cpppo-fleet/base:bookworm)
set -euo pipefail

force=0
if [ "${1:-}" = "--force" ]; then force=1; shift; fi
tag=${1:-cpppo-fleet/base:bookworm}

if [ "$force" = 0 ] && docker image inspect "$tag" >/dev/null 2>&1; then
    echo "base image $tag exists"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# python3 + pip to install the project's wheelhouse; iproute2 (ss) and procps (ps) so that
# pytest-testinfra can inspect a running container; ca-certificates for completeness.
mmdebstrap --quiet --variant=minbase \
    --include=python3,python3-pip,python3-venv,iproute2,procps,ca-certificates \
    --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
    bookworm "$work/base.tar"

docker import \
    --change 'ENV LANG=C.UTF-8 PYTHONUNBUFFERED=1' \
    --change 'CMD ["python3"]' \
    --message "cpppo-fleet base: Debian bookworm minbase + python3 (mmdebstrap)" \
    "$work/base.tar" "$tag"
echo "built base image $tag"
