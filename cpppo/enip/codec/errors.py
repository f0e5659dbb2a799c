"""The one exception type every codec function raises on malformed input."""

from __future__ import annotations

__all__ = ["CodecError"]


class CodecError(ValueError):
    """Bytes that do not form a valid EtherNet/IP / CIP message (or a record that cannot be
    encoded).  The message says what was wrong and where."""
