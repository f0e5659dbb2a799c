"""EtherNet/IP cli layer: see :mod:`cpppo.enip`."""
