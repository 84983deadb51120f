"""Download life cycle against a loopback HTTP server: fresh, hashes, mirrors, the Hub, offline, locking.

``https://``-style sources go through ``torch.hub.download_url_to_file`` and ``hf://`` sources through
``huggingface_hub.hf_hub_download`` against the same server acting as the Hub (``HEAD`` + ``GET``).
"""

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

from .helpers import REVISION, make_entry, sha256, write_manifest

SIZE = 300_000
DATA = bytes((i * 7 + i // 251) % 256 for i in range(SIZE))
FAST = {"progress": False}


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


def test_force_downloads_again(server, tmp_path):
    url = server.add("/w.bin", DATA)
    for _ in range(2):
        fetch_file([url], tmp_path / "w.bin", sha256=sha256(DATA), force=True, **FAST)
    assert [r.sent for r in server.served("/w.bin")] == [SIZE, SIZE]


def test_wrong_hash_is_refused_and_nothing_is_left_in_place(server, tmp_path):
    url = server.add("/w.bin", DATA)
    wrong = sha256(b"something else")
    with pytest.raises(HashMismatchError) as info:
        fetch_file([url], tmp_path / "w.bin", sha256=wrong, size=SIZE, **FAST)
    assert sha256(DATA) in str(info.value) and wrong in str(info.value)
    assert not (tmp_path / "w.bin").exists() and not (tmp_path / "w.bin.part").exists()


def test_dead_sources_are_all_named_in_the_error(server, tmp_path):
    urls = [server.base + "/missing.bin", server.add("/down.bin", DATA, fail=1, fail_status=503)]
    expected = "(?s)missing.bin: HTTPError: HTTP Error 404.*down.bin: .*503"
    with pytest.raises(DownloadError, match=expected) as info:
        fetch_file(urls, tmp_path / "w.bin", sha256=sha256(DATA), **FAST)
    assert not isinstance(info.value, HashMismatchError)
    assert [r.status for r in server.file_requests] == [404, 503]
    assert not (tmp_path / "w.bin").exists() and not (tmp_path / "w.bin.part").exists()


def test_next_mirror_is_tried_after_a_dead_link(server, tmp_path):
    good = server.add("/mirror/w.bin", DATA)
    dest = fetch_file([server.base + "/dead/w.bin", good], tmp_path / "w.bin", sha256=sha256(DATA), **FAST)
    assert dest.read_bytes() == DATA
    assert [r.status for r in server.file_requests] == [404, 200]


def test_progress_bar_reports_the_transfer(server, tmp_path, capsys):
    url = server.add("/w.bin", DATA)
    fetch_file([url], tmp_path / "w.bin", sha256=sha256(DATA), size=SIZE, progress=True)
    assert "100%" in capsys.readouterr().err


def test_wrong_size_is_refused_before_hashing(server, tmp_path):
    url = server.add("/w.bin", DATA)
    with pytest.raises(HashMismatchError, match=f"got {SIZE} bytes, the manifest says {SIZE + 1}"):
        fetch_file([url], tmp_path / "w.bin", sha256=sha256(DATA), size=SIZE + 1, **FAST)


def _hf_manifest(tmp_path: Path, hf_server, data: bytes = DATA, **behaviour) -> dict:
    ref = hf_server.add_hf("org/zoo", "net.safetensors", data, **behaviour)
    entry = make_entry("net", {"backbone": ("net.safetensors", data, [ref])})
    return load_manifest([write_manifest(tmp_path / "m.json", entry)])


def test_hf_reference_resolves_against_the_endpoint(tmp_path, hf_server, zoo_env, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    manifest = _hf_manifest(tmp_path, hf_server)
    path = download("net", manifest=manifest, **FAST)
    assert path == zoo_env / "zoo" / "net" / "net.safetensors"
    assert path.read_bytes() == DATA
    hub_path = f"/org/zoo/resolve/{REVISION}/net.safetensors"
    assert [(r.method, r.path, r.authorization) for r in hf_server.file_requests] == [
        ("HEAD", hub_path, "Bearer hf_secret"),
        ("GET", hub_path, "Bearer hf_secret"),
    ]
    # the bytes sit in huggingface_hub's cache, under the pinned commit, and are linked into place
    (snapshot,) = (tmp_path / "hf-cache").glob(f"models--org--zoo/snapshots/{REVISION}/net.safetensors")
    assert snapshot.resolve().stat().st_ino == path.stat().st_ino or snapshot.read_bytes() == DATA
    assert download("net", manifest=manifest, **FAST) == path
    assert len(hf_server.served("net.safetensors")) == 1


def test_hub_transfer_cut_short_is_retried_by_huggingface_hub(tmp_path, hf_server, monkeypatch):
    """huggingface_hub retries a broken transfer from its last complete 10 MiB chunk (none here)."""
    import huggingface_hub.file_download

    monkeypatch.setattr(huggingface_hub.file_download.time, "sleep", lambda _: None)
    manifest = _hf_manifest(tmp_path, hf_server, cut=1, cut_at=120_000)
    assert download("net", manifest=manifest, **FAST).read_bytes() == DATA
    gets = [(r.range, r.sent) for r in hf_server.served("net.safetensors")]
    assert gets == [(None, 120_000), (None, SIZE)]


def test_corrupt_cached_file_is_detected_and_fetched_again(tmp_path, hf_server):
    manifest = _hf_manifest(tmp_path, hf_server)
    path = download("net", manifest=manifest, **FAST)
    path.write_bytes(DATA[:-1] + b"\x00")  # same size, one byte flipped (the Hub cache's blob too, if linked)
    assert download("net", manifest=manifest, **FAST).read_bytes() == DATA
    assert len(hf_server.served("net.safetensors")) == 2


@pytest.mark.parametrize("variable", ["SOLO_DIRECTPRED_OFFLINE=1", "HF_HUB_OFFLINE"])
def test_offline_mode_names_what_is_missing_and_stays_offline(tmp_path, hf_server, monkeypatch, variable):
    from huggingface_hub import constants

    manifest = _hf_manifest(tmp_path, hf_server)
    if variable == "HF_HUB_OFFLINE":
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets at import
    else:
        monkeypatch.setenv(*variable.split("="))
    with pytest.raises(OfflineError, match=f"not in the cache .* offline mode is on \\({variable}\\)"):
        download("net", manifest=manifest, **FAST)
    assert hf_server.file_requests == []


def test_offline_mode_serves_the_hugging_face_cache(tmp_path, hf_server, monkeypatch, zoo_env):
    manifest = _hf_manifest(tmp_path, hf_server)
    online = download("net", manifest=manifest, **FAST)
    online.unlink()  # gone from the zoo's cache, still in huggingface_hub's
    monkeypatch.setenv("SOLO_DIRECTPRED_OFFLINE", "1")
    assert download("net", manifest=manifest, **FAST).read_bytes() == DATA
    assert len(hf_server.file_requests) == 2


def test_offline_mode_serves_a_verified_cached_copy(tmp_path, hf_server, monkeypatch):
    manifest = _hf_manifest(tmp_path, hf_server)
    online = download("net", manifest=manifest, **FAST)
    monkeypatch.setenv("SOLO_DIRECTPRED_OFFLINE", "true")
    assert download("net", manifest=manifest, **FAST) == online
    assert resolve_checkpoint("net", manifest=manifest) == online
    assert len(hf_server.file_requests) == 2  # the online HEAD and GET
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
    assert server.file_requests == []


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
    fetch_file([url], dest, sha256=digest, progress=False)


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
