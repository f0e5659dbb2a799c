"""EtherNet/IP CIP: codec, device model, asyncio server, and clients."""
