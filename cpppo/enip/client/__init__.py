"""EtherNet/IP client layer (see :mod:`cpppo.enip`), in its own stack order:

``operations`` (operation strings to dicts), ``wire`` (operation dicts to the codec's records
and bytes, replies to dotted records, the client errors), ``engine`` (the one sans-IO engine),
``connection`` (blocking sockets) and ``connector`` (the spec's blocking face), ``aclient``
(the asyncio face), ``proxy`` and ``poll`` (over the blocking face).
"""
