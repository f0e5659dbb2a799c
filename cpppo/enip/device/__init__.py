"""EtherNet/IP device layer: see :mod:`cpppo.enip`."""
