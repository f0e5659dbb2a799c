"""`enip_server`: reserved; implemented by issue #4."""

from __future__ import annotations

from collections.abc import Sequence

from cpppo.pending import not_built


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `enip_server`."""
    return not_built("enip_server", 4)


if __name__ == "__main__":
    raise SystemExit(main())
