"""Address pools of fleet.toml: CIDRs or ``first-last`` ranges, and their checks."""

from __future__ import annotations

import ipaddress
import itertools

from fleet.table import Table

DOCKER_BRIDGE_BLOCK = 22  # the widest bridge: a Linux bridge holds ~1,000 ports (a /22: 1,022 addresses)
DOCKER_BRIDGE_PREFIX = 27  # the default bridge: a /27 (28 devices), so a big fleet starts on many at once
DOCKER_BRIDGE_NARROWEST = 28  # a /28: 12 devices (network, broadcast, gateway and poller take four)


def pool_addresses(item: str) -> range:
    """The addresses of one pool item as a range of ints: a CIDR (its usable hosts) or a
    ``first-last`` range (inclusive).

    >>> r = pool_addresses("10.9.8.0/30"); str(ipaddress.IPv4Address(r[0])), len(r)
    ('10.9.8.1', 2)
    """
    try:
        if "-" in item:
            lo, hi = (int(ipaddress.IPv4Address(part.strip())) for part in item.split("-", 1))
            if hi < lo:
                raise ValueError(f"pool {item!r}: last address before the first")
            return range(lo, hi + 1)
        net = ipaddress.IPv4Network(item, strict=False)
    except ipaddress.AddressValueError as exc:
        raise ValueError(f"pool {item!r}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"pool {item!r}: {exc}") from None
    if net.prefixlen >= 31:
        return range(int(net.network_address), int(net.broadcast_address) + 1)
    # skip the network and broadcast addresses: never bind (or poll) a broadcast address
    return range(int(net.network_address) + 1, int(net.broadcast_address))


def read_pool(t: Table, key: str) -> tuple[str, ...] | None:
    """An address pool key (a string or a list of them), each item checked, pools disjoint."""
    pool = t.strings(key)
    for item in pool or ():
        t.checked(key, lambda item=item: pool_addresses(item))
    check_pools_disjoint(t, key, pool or ())
    return pool


def check_pools_disjoint(t: Table, key: str, pools: tuple[str, ...]) -> None:
    spans = sorted(((r.start, r.stop, p) for r, p in ((pool_addresses(p), p) for p in pools)))
    for (_, stop, a), (start, _, b) in itertools.pairwise(spans):
        if start < stop:
            t.fail(key, f"pools {a!r} and {b!r} overlap")


def is_loopback(item: str) -> bool:
    """Whether an address-pool item (a CIDR, ``a-b`` range or single address) starts in 127/8."""
    first = item.split("-", 1)[0].split("/", 1)[0].strip()
    try:
        return ipaddress.IPv4Address(first).is_loopback
    except ValueError:
        return False


def bridge_pool(items: tuple[str, ...], prefix: int = DOCKER_BRIDGE_PREFIX) -> tuple[str, ...]:
    """The address pool for docker bridges of ``prefix`` (``docker_bridge_prefix``): a CIDR
    wider than one bridge becomes a range per block, leaving out each block's network and
    broadcast addresses and its two top addresses (the bridge's gateway and the health
    poller's), so a big fleet spreads over several bridges.

    >>> bridge_pool(("172.30.0.0/21", "10.1.0.0/24"), 22)
    ('172.30.0.1-172.30.3.252', '172.30.4.1-172.30.7.252', '10.1.0.0/24')
    >>> bridge_pool(("172.30.0.0/26",))
    ('172.30.0.1-172.30.0.28', '172.30.0.33-172.30.0.60')
    """
    out: list[str] = []
    for item in items:
        net = None if "-" in item else ipaddress.IPv4Network(item, strict=False)
        if net is None or net.prefixlen >= prefix:
            out.append(item)
            continue
        for block in net.subnets(new_prefix=prefix):
            out.append(f"{block.network_address + 1}-{block.broadcast_address - 3}")
    return tuple(out)
