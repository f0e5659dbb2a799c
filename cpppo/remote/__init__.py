"""Remote PLC I/O: the poller metaphor and its Modbus/TCP implementation."""
