"""``cpppo.server.enip.list_services``, the spec's path: the ``enip_list_services`` command."""

from cpppo.enip.cli.list_services import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
