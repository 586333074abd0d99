"""A stand-in HTTPS endpoint on 127.0.0.1 for what the product posts to outside Azure's APIs (a Teams/Slack
webhook, Application Insights' ingestion): a free port, a certificate from the twin's CA (which the test process
trusts through SSL_CERT_FILE), served from a daemon thread."""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.twin import Twin


def serve_https(twin: Twin, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """Start serving `handler`; stop it with `shutdown()` then `server_close()`."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    twin.ca.issue_cert("127.0.0.1").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
