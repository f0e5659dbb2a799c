"""The device image's Docker HEALTHCHECK: ``python -m fleet.backends.docker.probe``.

Polls every device the container hosts (the spec in ``CPPPO_FLEET_SPEC``) once, with the
same code and clients as the fleet's health poller (:func:`fleet.poller.run_sweep`: List
Identity and a tag read for ENIP, a register read for Modbus); exit status 0 when all answer,
else 1 with the first failure on one line (Docker keeps it in the container's health log).
"""

from __future__ import annotations

import json
import os
import sys

from fleet.backends.docker.entry import SPEC_VARIABLE

TIMEOUT = 3.0  # seconds a device has to answer


def main(argv: list[str] | None = None) -> int:
    from fleet.plan import PlannedDevice
    from fleet.poller import run_sweep

    try:
        spec = json.loads(os.environ[SPEC_VARIABLE])
        devices = [PlannedDevice.from_json(d) for d in spec["devices"]]
    except (KeyError, ValueError, TypeError) as exc:
        print(f"docker_probe: no usable worker spec in ${SPEC_VARIABLE}: {exc}")
        return 1
    results = run_sweep(devices, TIMEOUT, 50)
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"{len(failed)}/{len(results)} devices not answering; {failed[0].device}: {failed[0].error}")
        return 1
    print(f"{len(results)} devices answer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
