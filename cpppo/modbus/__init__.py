"""Modbus/TCP and Modbus/RTU: sans-IO codecs, a device model, asyncio servers and clients.

Layers, in stack order (each imports only the ones before it):

- :mod:`cpppo.modbus.errors`: the exception types every layer raises.
- :mod:`cpppo.modbus.framer`: the MBAP header (bytes in, records out).
- :mod:`cpppo.modbus.pdu`: request and response PDUs for the supported function codes.
- :mod:`cpppo.modbus.address`: register numbers (``40001``) and range specs (``40001-40100=99``).
- :mod:`cpppo.modbus.datastore` and :mod:`cpppo.modbus.device`: the simulated device.
- :mod:`cpppo.modbus.server`: many devices in one asyncio process, each on its own (ip, port).
- :mod:`cpppo.modbus.aclient`: a pipelining asyncio client on the same codec.
- :mod:`cpppo.modbus.rtu`: RTU framing (CRC-16, lengths, silences, a resynchronising decoder)
  around the same PDUs; :mod:`cpppo.modbus.serial_line`: line settings, pyserial, ptys.
- :mod:`cpppo.modbus.rtu_server`: several devices on one serial line, and RTU over TCP.
- :mod:`cpppo.modbus.rtu_client`: RTU masters (asyncio and blocking), serial or RTU over TCP.
- :mod:`cpppo.modbus.gateway`: Modbus/TCP in front, RTU lines behind.
"""
