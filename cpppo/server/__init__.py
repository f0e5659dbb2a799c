"""Protocol servers (and, following upstream's layout, the EtherNet/IP client)."""
