"""EtherNet/IP server layer: see :mod:`cpppo.enip`."""
