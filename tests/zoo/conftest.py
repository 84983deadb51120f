"""Fixtures for the zoo tests: an isolated cache/environment and a loopback HTTP server.

The server listens on 127.0.0.1 only, on a free port, in a daemon thread; it is shut down when the
test ends and, at the latest, by a watchdog after ``LIFETIME_S`` seconds.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from huggingface_hub import constants

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
    """A private cache and Hugging Face cache, no user manifest, online, no Hub token; returns the cache root.

    huggingface_hub reads ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` and ``HF_ENDPOINT`` when it is imported, so
    the tests set its constants, as those variables would before the process starts.
    """
    cache = tmp_path / "cache"
    monkeypatch.setenv("SOLO_DIRECTPRED_CACHE", str(cache))
    for name in ("SOLO_DIRECTPRED_OFFLINE", "SOLO_DIRECTPRED_ZOO_MANIFEST", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-token"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return cache


@pytest.fixture
def hf_server(server, monkeypatch):
    """The loopback server as the Hugging Face endpoint (what ``HF_ENDPOINT`` sets at import)."""
    monkeypatch.setattr(constants, "ENDPOINT", server.base)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.base + "/{repo_id}/resolve/{revision}/{filename}"
    )
    return server
