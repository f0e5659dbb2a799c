"""`modbus_sim`: reserved; implemented by issue #6."""

from __future__ import annotations

from collections.abc import Sequence

from cpppo.pending import not_built


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `modbus_sim`."""
    return not_built("modbus_sim", 6)


if __name__ == "__main__":
    raise SystemExit(main())
