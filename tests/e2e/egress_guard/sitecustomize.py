"""Egress guard for the test stack: any connect to a non-loopback address is refused and logged.

Put this folder on PYTHONPATH and set ENCLAVE_EGRESS_GUARD_LOG to a file: every Python
process of the stack (the launcher, Ray's workers and every vLLM process they spawn) loads
this module at start-up, installs an audit hook, and appends one JSON line per violation.
ENCLAVE_EGRESS_GUARD_HOST_ADDRESSES may name this host's own interface addresses (comma
separated): a multi-node Ray cluster on one host talks over them, and they never leave it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys

_LOG = os.environ.get("ENCLAVE_EGRESS_GUARD_LOG")
_HOST_ADDRESSES = frozenset(
    a.strip() for a in os.environ.get("ENCLAVE_EGRESS_GUARD_HOST_ADDRESSES", "").split(",") if a
)


def _is_local(host: object) -> bool:
    if not isinstance(host, str):
        return True  # AF_UNIX paths, abstract sockets
    if host in {"localhost", ""} or host in _HOST_ADDRESSES:
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False  # a name: resolving it would already be a lookup to the outside
    return address.is_loopback or (
        isinstance(address, ipaddress.IPv6Address)
        and address.ipv4_mapped is not None
        and address.ipv4_mapped.is_loopback
    )


def _hook(event: str, args: tuple[object, ...]) -> None:
    if event not in {"socket.connect", "socket.sendto"}:
        return
    sock, address = args[0], args[-1]
    if not isinstance(sock, socket.socket) or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    host = address[0] if isinstance(address, tuple) else address
    if _is_local(host):
        return
    record = {"pid": os.getpid(), "event": event, "address": repr(address), "argv": sys.argv[:3]}
    if _LOG:
        with open(_LOG, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
    raise PermissionError(f"egress guard: connection to {address!r} refused")


if _LOG:
    sys.addaudithook(_hook)
