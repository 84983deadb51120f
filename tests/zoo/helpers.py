"""Helpers for the zoo tests: a loopback HTTP file server, manifest entries, fake checkpoints."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch
from torch import nn

LIFETIME_S = 120.0
REVISION = "0123456789abcdef0123456789abcdef01234567"
_RANGE_RE = re.compile(r"bytes=(\d+)-$")


@dataclass
class Blob:
    """What the server answers for one path.

    ``fail``: answer the next N GET requests with ``fail_status``; ``cut``: on the next N bodies, send
    only ``cut_at`` bytes and close; ``chunk_delay``: seconds slept per 64 KiB chunk (to make transfers
    overlap). ``HEAD`` answers with the headers the Hugging Face Hub sends (``X-Repo-Commit``, ``ETag``).
    """

    data: bytes
    fail: int = 0
    fail_status: int = 503
    cut: int = 0
    cut_at: int = 0
    chunk_delay: float = 0.0


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    status: int
    sent: int = 0
    authorization: str | None = None


@dataclass
class LoopbackServer:
    """A tiny file server for download tests; ``requests`` logs what it served."""

    httpd: ThreadingHTTPServer
    blobs: dict[str, Blob] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, path: str, data: bytes, **behaviour) -> str:
        self.blobs[path] = Blob(data, **behaviour)
        return self.base + path

    def add_hf(self, repo: str, filename: str, data: bytes, **behaviour) -> str:
        """Serve ``data`` where ``hf://REPO@REVISION/FILENAME`` resolves; returns that reference."""
        self.add(f"/{repo}/resolve/{REVISION}/{filename}", data, **behaviour)
        return f"hf://{repo}@{REVISION}/{filename}"

    @property
    def file_requests(self) -> list[Request]:
        """The requests for files: huggingface_hub's own ``/api/`` calls (its registries) left out."""
        with self.lock:
            return [r for r in self.requests if not r.path.startswith("/api/")]

    def served(self, path_suffix: str, method: str = "GET") -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path.endswith(path_suffix) and r.method == method]


def make_handler(server: LoopbackServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_HEAD(self) -> None:
            blob, record = self._record("HEAD")
            if blob is not None:
                record.status = 200
                self.send_response(200)
                self.send_header("Content-Length", str(len(blob.data)))
                self.send_header("ETag", f'"{sha256(blob.data)}"')
                self.send_header("X-Repo-Commit", REVISION)
                self.end_headers()

        def do_GET(self) -> None:
            blob, record = self._record("GET")
            if blob is None:
                return
            if blob.fail > 0:
                blob.fail -= 1
                return self._error(record, blob.fail_status)
            start, size = 0, len(blob.data)
            match = _RANGE_RE.match(record.range or "")
            if match:
                start = int(match.group(1))
                if start >= size:
                    return self._error(record, 416, {"Content-Range": f"bytes */{size}"})
            body = blob.data[start:]
            record.status = 206 if start else 200
            self.send_response(record.status)
            self.send_header("Content-Length", str(len(body)))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            self.end_headers()
            if blob.cut > 0:
                blob.cut -= 1
                body = body[: blob.cut_at]
                self.close_connection = True
            for i in range(0, len(body), 1 << 16):
                self.wfile.write(body[i : i + (1 << 16)])
                record.sent += len(body[i : i + (1 << 16)])
                if blob.chunk_delay:
                    time.sleep(blob.chunk_delay)
            self.wfile.flush()

        def _record(self, method: str) -> tuple[Blob | None, Request]:
            """Log the request; answer 404 (blob None) when nothing is served at its path."""
            blob = server.blobs.get(self.path)
            headers = self.headers
            record = Request(method, self.path, headers.get("Range"), 0, 0, headers.get("Authorization"))
            with server.lock:
                server.requests.append(record)
            if blob is None:
                self._error(record, 404)
            return blob, record

        def _error(self, record: Request, status: int, headers: dict[str, str] | None = None) -> None:
            record.status = status
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_entry(name: str, files: dict[str, tuple[str, bytes, list[str]]], **overrides) -> dict:
    """A valid manifest entry; ``files`` maps role -> (filename, bytes, urls)."""
    entry = {
        "name": name,
        "method": "directpred",
        "dataset": "cifar10",
        "backbone": {"name": "resnet18", "kwargs": {}, "cifar_stem": True},
        "epochs": 5,
        "pretrain_config": {"optimizer": {"name": "lars", "lr": 0.3}},
        "results": [{"protocol": "linear", "metric": "top1", "value": 42.5, "details": "100 epochs"}],
        "files": {
            role: {"filename": fn, "size": len(data), "sha256": sha256(data), "urls": urls}
            for role, (fn, data, urls) in files.items()
        },
        "versions": {"solo_learn": "1.0.6", "solo_directpred": "0.1.0"},
        "license": "MIT",
    }
    entry.update(overrides)
    return entry


def write_manifest(path: Path, *entries: dict) -> Path:
    path.write_text(json.dumps({"schema_version": 1, "checkpoints": list(entries)}), encoding="utf-8")
    return path


def resnet_backbone(arch: str = "resnet18", cifar_stem: bool = True, seed: int = 0) -> nn.Module:
    """A torchvision ResNet laid out like solo-learn's backbone, with non-trivial BN statistics."""
    from solo_directpred.compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    import torchvision

    torch.manual_seed(seed)
    model = getattr(torchvision.models, arch)(weights=None)
    model.fc = nn.Identity()
    if cifar_stem:
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
        model.maxpool = nn.Identity()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
    return model.eval()


def write_solo_run(
    run_dir: Path,
    model: nn.Module,
    *,
    arch: str = "resnet18",
    arch_kwargs: dict | None = None,
    dataset: str = "cifar10",
    method: str = "byol",
    epoch: int = 4,
) -> Path:
    """A checkpoint in solo-learn's documented layout: ``state_dict`` with ``backbone.*`` (channels-last
    conv weights, as ``main_pretrain.py`` trains), other modules beside it, ``args.json`` in the folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    backbone = model.to(memory_format=torch.channels_last).state_dict()
    state = {f"backbone.{k}": v for k, v in backbone.items()}
    state["projector.0.weight"] = torch.randn(32, 512)
    first_key = next(iter(backbone))
    state[f"momentum_backbone.{first_key}"] = torch.randn_like(backbone[first_key])
    ckpt = {
        "epoch": epoch,
        "global_step": 40,
        "pytorch-lightning_version": "2.1.2",
        "state_dict": state,
        "loops": {},
        "callbacks": {},
        "optimizer_states": [],
        "lr_schedulers": [],
    }
    path = run_dir / f"{method}-run-ep={epoch}.ckpt"
    torch.save(ckpt, path)
    args = {
        "name": f"{method}-run",
        "method": method,
        "backbone": {"name": arch, "kwargs": arch_kwargs or {}},
        "data": {"dataset": dataset, "train_path": "/data/private/train", "num_classes": 10},
        "optimizer": {"name": "lars", "batch_size": 256, "lr": 1.0},
        "max_epochs": epoch + 1,
        "checkpoint": {"enabled": True, "dir": "/home/someone/trained_models"},
        "wandb_run_id": None,
    }
    (run_dir / "args.json").write_text(json.dumps(args), encoding="utf-8")
    return path
