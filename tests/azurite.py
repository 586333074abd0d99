"""Azurite (Microsoft's storage emulator, installed by `npm install`) for leases, journals and the continuation
queue: the blob and queue services, each started once on a free loopback port, always with --disableTelemetry
(it phones home otherwise)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "node_modules" / ".bin"
BINARY = BIN / "azurite-blob"
QUEUE_BINARY = BIN / "azurite-queue"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteError(RuntimeError):
    pass


@dataclass
class Azurite:
    """The running services (blob, queue)."""

    processes: list[subprocess.Popen[bytes]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(binary: Path, service: str, log: IO[bytes] | int, timeout: float) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [str(binary), f"--{service}Host", "127.0.0.1", f"--{service}Port", str(port), "--disableTelemetry",
         "--skipApiVersionCheck", "--loose", "--inMemoryPersistence"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "NO_PROXY": "*"},
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AzuriteError(f"Azurite's {service} service did not listen on 127.0.0.1:{port} within {timeout:g} s")


def start_azurite(log: IO[bytes] | int = subprocess.DEVNULL, timeout: float = 20.0) -> tuple[Azurite, str]:
    """Start the blob and queue services in memory; return them and the connection string naming both."""
    for binary in (BINARY, QUEUE_BINARY):
        if not binary.exists():
            raise AzuriteError("Azurite is not installed: run `make test` or `make demo` (they run `npm install`)")
    blob, blob_port = _start(BINARY, "blob", log, timeout)
    try:
        queue, queue_port = _start(QUEUE_BINARY, "queue", log, timeout)
    except AzuriteError:
        stop_azurite(Azurite([blob]))
        raise
    return Azurite([blob, queue]), (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{blob_port}/devstoreaccount1;"
        f"QueueEndpoint=http://127.0.0.1:{queue_port}/devstoreaccount1;")


def stop_azurite(azurite: Azurite) -> None:
    for proc in azurite.processes:
        proc.terminate()
    for proc in azurite.processes:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
