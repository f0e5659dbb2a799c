"""`enip_get_attribute`: reserved; implemented by issue #5."""

from __future__ import annotations

from collections.abc import Sequence

from cpppo.pending import not_built


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `enip_get_attribute`."""
    return not_built("enip_get_attribute", 5)


if __name__ == "__main__":
    raise SystemExit(main())
