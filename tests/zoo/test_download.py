"""Download life cycle against a loopback HTTP server: fresh, resume, hashes, retries, offline, locking."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from solo_directpred.zoo import (
    DownloadError,
    HashMismatchError,
    OfflineError,
    ZooError,
    download,
    fetch_file,
    load_manifest,
    resolve_checkpoint,
    sha256_file,
)
from solo_directpred.zoo import transfer as transfer_module

from .helpers import REVISION, make_entry, sha256, write_manifest

SIZE = 300_000
DATA = bytes((i * 7 + i // 251) % 256 for i in range(SIZE))
FAST = {"backoff": 0.0, "progress": False}


def test_fresh_download_verifies_and_leaves_no_partial_file(server, tmp_path):
    url = server.add("/w.bin", DATA)
    dest = fetch_file([url], tmp_path / "w.bin", sha256=sha256(DATA), size=SIZE, **FAST)
    assert dest.read_bytes() == DATA
    assert [r.status for r in server.served("/w.bin")] == [200]
    assert server.served("/w.bin")[0].sent == SIZE
    assert not (tmp_path / "w.bin.part").exists()


def test_second_call_uses_the_cache_without_network(server, tmp_path):
    url = server.add("/w.bin", DATA)
    for _ in range(3):
        fetch_file([url], tmp_path / "w.bin", sha256=sha256(DATA), size=SIZE, **FAST)
    assert len(server.served("/w.bin")) == 1


def test_interrupted_transfer_resumes_with_a_range_request(server, tmp_path):
    cut_at = 123_456
    url = server.add("/w.bin", DATA, cut=1, cut_at=cut_at)
    dest = fetch_file([url], tmp_path / "w.bin", sha256=sha256(DATA), size=SIZE, **FAST)
    assert dest.read_bytes() == DATA
    first, second = server.served("/w.bin")
    assert (first.range, first.sent) == (None, cut_at)
    assert (second.range, second.status, second.sent) == (f"bytes={cut_at}-", 206, SIZE - cut_at)


def test_partial_file_from_a_killed_process_is_resumed(server, tmp_path):
    url = server.add("/w.bin", DATA)
    (tmp_path / "w.bin.part").write_bytes(DATA[:100_000])
    dest = fetch_file([url], tmp_path / "w.bin", sha256=sha256(DATA), size=SIZE, **FAST)
    assert sha256_file(dest) == sha256(DATA)
    (request,) = server.served("/w.bin")
    assert (request.range, request.sent) == ("bytes=100000-", SIZE - 100_000)


@pytest.mark.parametrize("stale_size", [SIZE, 1000])
def test_stale_partial_file_of_another_upload_is_replaced(server, tmp_path, stale_size):
    url = server.add("/w.bin", DATA)
    (tmp_path / "w.bin.part").write_bytes(bytes(stale_size))
    dest = fetch_file([url], tmp_path / "w.bin", sha256=sha256(DATA), size=SIZE, **FAST)
    assert dest.read_bytes() == DATA
    expected = (
        [(None, SIZE)] if stale_size == SIZE else [(f"bytes={stale_size}-", SIZE - stale_size), (None, SIZE)]
    )
    assert [(r.range, r.sent) for r in server.served("/w.bin")] == expected


def test_force_downloads_again(server, tmp_path):
    url = server.add("/w.bin", DATA)
    for _ in range(2):
        fetch_file([url], tmp_path / "w.bin", sha256=sha256(DATA), force=True, **FAST)
    assert [r.sent for r in server.served("/w.bin")] == [SIZE, SIZE]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    url = server.add("/w.bin", DATA, ignore_range=True)
    (tmp_path / "w.bin.part").write_bytes(b"\0" * 5000)  # garbage that must not end up in the file
    dest = fetch_file([url], tmp_path / "w.bin", sha256=sha256(DATA), size=SIZE, **FAST)
    assert dest.read_bytes() == DATA
    assert [(r.status, r.sent) for r in server.served("/w.bin")] == [(200, SIZE)]


def test_wrong_hash_is_refused_and_nothing_is_left_in_place(server, tmp_path):
    url = server.add("/w.bin", DATA)
    wrong = sha256(b"something else")
    with pytest.raises(HashMismatchError) as info:
        fetch_file([url], tmp_path / "w.bin", sha256=wrong, size=SIZE, **FAST)
    assert sha256(DATA) in str(info.value) and wrong in str(info.value)
    assert not (tmp_path / "w.bin").exists() and not (tmp_path / "w.bin.part").exists()


def test_server_errors_are_retried_with_exponential_backoff(server, tmp_path, monkeypatch):
    delays: list[float] = []
    monkeypatch.setattr(transfer_module.time, "sleep", delays.append)
    url = server.add("/w.bin", DATA, fail=3, fail_status=503)
    dest = fetch_file([url], tmp_path / "w.bin", sha256=sha256(DATA), retries=4, backoff=0.5, progress=False)
    assert dest.read_bytes() == DATA
    assert [r.status for r in server.served("/w.bin")] == [503, 503, 503, 200]
    assert delays == [0.5, 1.0, 2.0]


def test_retry_after_header_sets_the_delay(server, tmp_path, monkeypatch):
    delays: list[float] = []
    monkeypatch.setattr(transfer_module.time, "sleep", delays.append)
    url = server.add("/w.bin", DATA, fail=1, fail_status=429, retry_after="7")
    fetch_file([url], tmp_path / "w.bin", sha256=sha256(DATA), backoff=0.5, progress=False)
    assert delays == [7.0]


def test_persistent_server_error_gives_up_after_the_retries(server, tmp_path):
    url = server.add("/w.bin", DATA, fail=100, fail_status=500)
    with pytest.raises(DownloadError, match="gave up after 3 attempts; last error: HTTP 500"):
        fetch_file([url], tmp_path / "w.bin", sha256=sha256(DATA), retries=2, **FAST)
    assert len(server.served("/w.bin")) == 3


def test_404_is_not_retried(server, tmp_path):
    url = server.base + "/missing.bin"
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        fetch_file([url], tmp_path / "w.bin", sha256=sha256(DATA), retries=5, **FAST)
    assert not isinstance(info.value, HashMismatchError)
    assert len(server.served("/missing.bin")) == 1


def test_next_mirror_is_tried_after_a_dead_link(server, tmp_path):
    good = server.add("/mirror/w.bin", DATA)
    dest = fetch_file([server.base + "/dead/w.bin", good], tmp_path / "w.bin", sha256=sha256(DATA), **FAST)
    assert dest.read_bytes() == DATA
    assert [r.status for r in server.requests] == [404, 200]


def test_progress_bar_reports_the_transfer(server, tmp_path, capsys):
    url = server.add("/w.bin", DATA)
    fetch_file([url], tmp_path / "w.bin", sha256=sha256(DATA), size=SIZE, backoff=0.0, progress=True)
    err = capsys.readouterr().err
    assert "w.bin" in err and "100%" in err


def _hf_manifest(tmp_path: Path, hf_server, data: bytes = DATA, **behaviour) -> dict:
    ref = hf_server.add_hf("org/zoo", "net.safetensors", data, **behaviour)
    entry = make_entry("net", {"backbone": ("net.safetensors", data, [ref])})
    return load_manifest([write_manifest(tmp_path / "m.json", entry)])


def test_hf_reference_resolves_against_the_endpoint(tmp_path, hf_server, zoo_env):
    manifest = _hf_manifest(tmp_path, hf_server)
    path = download("net", manifest=manifest, **FAST)
    assert path == zoo_env / "zoo" / "net" / "net.safetensors"
    assert path.read_bytes() == DATA
    assert [r.path for r in hf_server.requests] == [f"/org/zoo/resolve/{REVISION}/net.safetensors"]


def test_hub_redirect_keeps_range_and_drops_the_token(tmp_path, hf_server, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    hf_server.add("/cdn/blob", DATA, cut=1, cut_at=50_000)
    manifest = _hf_manifest(tmp_path, hf_server, redirect="/cdn/blob")
    assert download("net", manifest=manifest, **FAST).read_bytes() == DATA
    hub = [(r.status, r.range, r.authorization) for r in hf_server.served("/net.safetensors")]
    cdn = [(r.status, r.range, r.authorization, r.sent) for r in hf_server.served("/cdn/blob")]
    assert hub == [(302, None, "Bearer hf_secret"), (302, "bytes=50000-", "Bearer hf_secret")]
    assert cdn == [(200, None, None, 50_000), (206, "bytes=50000-", None, SIZE - 50_000)]


def test_corrupt_cached_file_is_detected_and_fetched_again(tmp_path, hf_server):
    manifest = _hf_manifest(tmp_path, hf_server)
    path = download("net", manifest=manifest, **FAST)
    path.write_bytes(DATA[:-1] + b"\x00")  # same size, one byte flipped
    assert download("net", manifest=manifest, **FAST).read_bytes() == DATA
    assert len(hf_server.requests) == 2


@pytest.mark.parametrize("variable", ["SOLO_DIRECTPRED_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_mode_names_what_is_missing_and_stays_offline(tmp_path, hf_server, monkeypatch, variable):
    manifest = _hf_manifest(tmp_path, hf_server)
    monkeypatch.setenv(variable, "1")
    with pytest.raises(OfflineError, match=f"not in the cache .* offline mode is on \\({variable}=1\\)"):
        download("net", manifest=manifest, **FAST)
    assert hf_server.requests == []


def test_offline_mode_serves_a_verified_cached_copy(tmp_path, hf_server, monkeypatch):
    manifest = _hf_manifest(tmp_path, hf_server)
    online = download("net", manifest=manifest, **FAST)
    monkeypatch.setenv("SOLO_DIRECTPRED_OFFLINE", "true")
    assert download("net", manifest=manifest, **FAST) == online
    assert resolve_checkpoint("net", manifest=manifest) == online
    assert len(hf_server.requests) == 1
    online.write_bytes(b"corrupt")
    with pytest.raises(OfflineError, match="is corrupt"):
        download("net", manifest=manifest, **FAST)


def test_bare_reference_is_cached_by_url(hf_server, zoo_env):
    ref = hf_server.add_hf("org/zoo", "files/model.pt", DATA)
    path = resolve_checkpoint(ref, sha256=sha256(DATA), **FAST)
    assert path.parent.parent == zoo_env / "urls" and path.name == "model.pt"
    assert path.read_bytes() == DATA
    assert resolve_checkpoint(ref, **FAST) == path
    assert len(hf_server.served("/files/model.pt")) == 1


def test_bare_reference_with_a_wrong_hash_is_refused(hf_server):
    ref = hf_server.add_hf("org/zoo", "model.pt", DATA)
    with pytest.raises(HashMismatchError):
        resolve_checkpoint(ref, sha256=sha256(b"other"), **FAST)


@pytest.mark.parametrize("scheme", ["http", "ftp", "s3"])
def test_bare_url_with_another_scheme_is_refused(server, scheme):
    with pytest.raises(ZooError, match=f"scheme '{scheme}'; allowed: https, hf, file"):
        resolve_checkpoint(server.base.replace("http", scheme, 1) + "/x.pt")
    assert server.requests == []


def test_threads_fetching_one_file_download_it_once(server, tmp_path):
    url = server.add("/w.bin", DATA, chunk_delay=0.02)
    barrier = threading.Barrier(6)
    results: list[Path | BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            results.append(fetch_file([url], tmp_path / "w.bin", sha256=sha256(DATA), size=SIZE, **FAST))
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            results.append(err)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [tmp_path / "w.bin"] * 6
    assert sum(r.sent for r in server.served("/w.bin")) == SIZE
    assert sha256_file(tmp_path / "w.bin") == sha256(DATA)


def _fetch_after_barrier(url: str, dest: str, digest: str, barrier) -> None:
    barrier.wait(timeout=60)
    fetch_file([url], dest, sha256=digest, backoff=0.0, progress=False)


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method"
)
def test_processes_fetching_one_file_download_it_once(server, tmp_path):
    url = server.add("/w.bin", DATA, chunk_delay=0.05)
    dest = tmp_path / "w.bin"
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(3)
    children = [
        context.Process(target=_fetch_after_barrier, args=(url, str(dest), sha256(DATA), barrier))
        for _ in range(3)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=60)
    assert [c.exitcode for c in children] == [0, 0, 0]
    assert sum(r.sent for r in server.served("/w.bin")) == SIZE
    assert sha256_file(dest) == sha256(DATA)
    assert not dest.with_name("w.bin.part").exists()
