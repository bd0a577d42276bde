"""Joining a Ray cluster, for every `--ray` command (`runtime sample --ray`, `zoo build --ray`): the `ray` extra is
imported only here and by the modules that run work on Ray."""

from __future__ import annotations

import logging
import os
import socket

from .errors import UserError

__all__ = ["connect"]


def connect(address: str | None = None) -> bool:
    """ray.init: `address`, else $RAY_ADDRESS, else a local instance. Returns whether this call started Ray
    (so the caller shuts it down). One-line errors for a missing extra or an address that does not answer."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise UserError("--ray needs Ray: pip install 'oneshot-gan[ray]'") from None
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address not in (None, "auto", "local"):
        _check_reachable(address)
    if ray.is_initialized():   # the caller's own Ray session (a pipeline, a test)
        return False
    for name in ("ray", "ray.data"):   # Ray Data logs every execution at INFO; our progress bar says enough
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
        raise UserError(f"Ray at {address or 'a new local instance'}: {str(e).splitlines()[0][:200]}") from None
    ray.data.DataContext.get_current().enable_progress_bars = False   # our own bar (or none with -q)
    return True


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A TCP connection to the head within seconds: ray.init retries an address that does not answer for minutes."""
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address must look like HOST:PORT or ray://HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise UserError(f"Ray at {address}: nothing answers ({e.strerror or e}); is the head running "
                        "(`ray start --head`)?") from None
