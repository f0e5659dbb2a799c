"""``python -m cpppo.server.enip``: the EtherNet/IP controller simulator."""

from cpppo.enip.cli.server import main

raise SystemExit(main())
