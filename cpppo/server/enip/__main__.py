"""``python -m cpppo.server.enip``: the EtherNet/IP controller simulator."""

from cpppo.server.enip.main import main

raise SystemExit(main())
