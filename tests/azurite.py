"""Azurite (Microsoft's storage emulator, installed by `npm install`) for leases and journals: started on a
free loopback port, always with --disableTelemetry (it phones home otherwise)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
BINARY = ROOT / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_azurite(log: IO[bytes] | int = subprocess.DEVNULL,
                  timeout: float = 20.0) -> tuple[subprocess.Popen[bytes], str]:
    """Start the blob service in memory; return the process and its connection string."""
    if not BINARY.exists():
        raise AzuriteError("Azurite is not installed: run `make test` or `make demo` (they run `npm install`)")
    port = free_port()
    proc = subprocess.Popen(
        [str(BINARY), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--disableTelemetry",
         "--skipApiVersionCheck", "--loose", "--inMemoryPersistence"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "NO_PROXY": "*"},
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={ACCOUNT_KEY};"
                              f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AzuriteError(f"Azurite did not listen on 127.0.0.1:{port} within {timeout:g} s")


def stop_azurite(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
