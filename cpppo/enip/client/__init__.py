"""EtherNet/IP client layer: see :mod:`cpppo.enip`."""
