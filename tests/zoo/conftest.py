"""Fixtures for the zoo tests: an isolated cache/environment and a loopback HTTP server.

The server listens on 127.0.0.1 only, on a free port, in a daemon thread; it is shut down when the
test ends and, at the latest, by a watchdog after ``LIFETIME_S`` seconds.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from .helpers import LIFETIME_S, LoopbackServer, make_handler


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    httpd.daemon_threads = True
    loopback = LoopbackServer(httpd)
    httpd.RequestHandlerClass = make_handler(loopback)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    watchdog = threading.Timer(LIFETIME_S, httpd.shutdown)
    watchdog.daemon = True
    thread.start()
    watchdog.start()
    try:
        yield loopback
    finally:
        watchdog.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def zoo_env(tmp_path, monkeypatch):
    """A private cache, no user manifest, online, no Hub token; returns the cache root."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SOLO_DIRECTPRED_CACHE", str(cache))
    for name in ("SOLO_DIRECTPRED_OFFLINE", "HF_HUB_OFFLINE", "SOLO_DIRECTPRED_ZOO_MANIFEST", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    return cache


@pytest.fixture
def hf_server(server, monkeypatch):
    """The loopback server, with ``HF_ENDPOINT`` pointing at it."""
    monkeypatch.setenv("HF_ENDPOINT", server.base)
    return server
