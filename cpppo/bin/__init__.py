"""Command modules runnable as ``python -m cpppo.bin.<name>``, as upstream lays them out."""
