"""``solo-directpred zoo``: list, inspect, download, verify and export checkpoints.

Usage::

    solo-directpred zoo list
    solo-directpred zoo info NAME
    solo-directpred zoo download NAME [--role all]
    solo-directpred zoo verify
    solo-directpred zoo export trained_models/directpred/RUN/NAME-ep=199.ckpt --name NAME \\
        --url-base https://example.org/zoo --result linear:top1=91.2 --add-to my-manifest.json
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_actions(actions: argparse._SubParsersAction) -> None:
    """Add the actions of the ``zoo`` command."""

    p = actions.add_parser("list", help="list the checkpoints of the manifest(s)")
    p.add_argument("--json", action="store_true", help="print the entries as JSON")
    p.set_defaults(func=_list)

    p = actions.add_parser("info", help="show one checkpoint's entry and cache state")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="print the entry as JSON")
    p.set_defaults(func=_info)

    p = actions.add_parser(
        "download", help="download and verify a checkpoint into the cache; prints its path"
    )
    p.add_argument("name")
    p.add_argument(
        "--role",
        default="backbone",
        choices=["backbone", "checkpoint", "metadata", "all"],
        help="which file of the entry (default: backbone weights)",
    )
    p.add_argument("--force", action="store_true", help="download again even when a valid copy is cached")
    p.add_argument("--quiet", action="store_true", help="no progress bar (https:// and file:// sources)")
    p.set_defaults(func=_download)

    p = actions.add_parser(
        "verify", help="validate the manifest(s) and check cached files against their sha256"
    )
    p.add_argument("names", nargs="*", help="entries to check (default: all)")
    p.add_argument(
        "--manifest",
        action="append",
        default=None,
        metavar="FILE",
        help="validate this manifest instead of the configured ones (repeatable)",
    )
    p.set_defaults(func=_verify)

    p = actions.add_parser("export", help="export a solo-learn checkpoint as a zoo bundle + manifest entry")
    p.add_argument("checkpoint", help="solo-learn .ckpt (args.json beside it gives method/dataset/backbone)")
    p.add_argument("--name", required=True, help="zoo name, [A-Za-z0-9._-]")
    p.add_argument("--out", default="zoo-export", help="parent directory of the bundle (default: zoo-export)")
    p.add_argument("--method", help="override / supply the method name")
    p.add_argument("--dataset", help="override / supply the pretraining dataset")
    p.add_argument("--backbone", help="override / supply the backbone name (resnet18, resnet50, timm name)")
    p.add_argument("--backbone-kwargs", default="{}", help="JSON object of backbone constructor kwargs")
    p.add_argument(
        "--cifar-stem", action="store_true", help="with --backbone: solo-learn's CIFAR ResNet stem"
    )
    p.add_argument("--epochs", type=int, help="override / supply the number of pretraining epochs")
    p.add_argument("--prefix", default="backbone.", help="state_dict prefix to export (default: backbone.)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--url-base", help="https:// folder the files will be published in")
    source.add_argument(
        "--hf-repo", help="OWNER/REPO@COMMIT of the Hugging Face repository holding the files"
    )
    p.add_argument("--license", default="MIT", help="SPDX licence of the weights (default: MIT)")
    p.add_argument(
        "--result",
        action="append",
        default=[],
        metavar="PROTOCOL:METRIC=VALUE",
        help="evaluation result, e.g. linear:top1=91.2 (repeatable)",
    )
    p.add_argument("--description", default="", help="one line shown by 'zoo list/info'")
    p.add_argument("--no-checkpoint", action="store_true", help="do not copy the full checkpoint")
    p.add_argument("--add-to", metavar="MANIFEST", help="insert the entry into this manifest file")
    p.set_defaults(func=_export)


def _guard(action):
    """Run ``action(args)``, turning zoo errors into a message on stderr and exit code 1."""

    def run(args: argparse.Namespace) -> int:
        from solo_directpred.zoo.errors import ZooError

        try:
            return action(args)
        except ZooError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1

    return run


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _linear_top1(entry: Any) -> str:
    for result in entry.results:
        if result.protocol == "linear" and result.metric == "top1":
            return f"{result.value:.2f}"
    return "-"


@_guard
def _list(args: argparse.Namespace) -> int:
    from solo_directpred.zoo.hub import entry_path
    from solo_directpred.zoo.manifest import load_manifest, manifest_paths

    manifest = load_manifest()
    if args.json:
        print(json.dumps([e.to_json() for _, e in sorted(manifest.items())], indent=2))
        return 0
    if not manifest:
        print("no checkpoints in " + ", ".join(str(p) for p in manifest_paths()))
        return 0
    rows = [("NAME", "METHOD", "DATASET", "BACKBONE", "EPOCHS", "LINEAR TOP-1", "SIZE", "CACHED")]
    for name, entry in sorted(manifest.items()):
        spec = entry.file("backbone")
        cached = "yes" if entry_path(entry).is_file() else "no"
        rows.append(
            (
                name,
                entry.method,
                entry.dataset,
                entry.backbone.name,
                str(entry.epochs),
                _linear_top1(entry),
                _human(spec.size),
                cached,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


@_guard
def _info(args: argparse.Namespace) -> int:
    from solo_directpred.zoo.hub import verify_cache
    from solo_directpred.zoo.manifest import get_entry, load_manifest

    manifest = load_manifest()
    entry = get_entry(args.name, manifest)
    status = verify_cache([args.name], manifest)
    if args.json:
        doc = entry.to_json()
        doc["cache"] = {s.role: {"path": str(s.path), "status": s.status} for s in status}
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{entry.name}: {entry.description}" if entry.description else entry.name)
    print(f"  method      {entry.method}")
    print(f"  dataset     {entry.dataset}")
    stem = ", CIFAR stem" if entry.backbone.cifar_stem else ""
    print(f"  backbone    {entry.backbone.name} {json.dumps(entry.backbone.kwargs)}{stem}")
    print(f"  epochs      {entry.epochs}")
    print(f"  licence     {entry.license}")
    versions = entry.versions
    print(f"  versions    solo-learn {versions.solo_learn}, solo-directpred {versions.solo_directpred}")
    print(f"  manifest    {entry.source}")
    for result in entry.results:
        where = " / ".join(x for x in (result.dataset, result.split) if x)
        suffix = (f" on {where}" if where else "") + (f" ({result.details})" if result.details else "")
        print(f"  result      {result.protocol} {result.metric} = {result.value:.2f}{suffix}")
    for s in status:
        spec = entry.files[s.role]
        print(f"  {s.role:<11} {spec.filename}  {_human(spec.size)}  sha256 {spec.sha256}")
        for url in spec.urls:
            print(f"  {'':<11} <- {url}")
        print(f"  {'':<11} cache: {s.status} ({s.path})")
    return 0


@_guard
def _download(args: argparse.Namespace) -> int:
    from solo_directpred.zoo.hub import download
    from solo_directpred.zoo.manifest import get_entry, load_manifest

    manifest = load_manifest()
    entry = get_entry(args.name, manifest)
    roles = sorted(entry.files) if args.role == "all" else [args.role]
    for role in roles:
        path = download(
            args.name,
            role,
            manifest=manifest,
            force=args.force,
            progress=not args.quiet,
        )
        print(path)
    return 0


@_guard
def _verify(args: argparse.Namespace) -> int:
    from solo_directpred.zoo.errors import ManifestError
    from solo_directpred.zoo.hub import verify_cache
    from solo_directpred.zoo.manifest import manifest_paths, read_manifest

    paths = args.manifest or manifest_paths()
    manifest: dict[str, Any] = {}
    failed = False
    for path in paths:
        try:
            entries = read_manifest(path)
        except ManifestError as err:
            print(err, file=sys.stderr)
            failed = True
            continue
        print(f"manifest {path}: valid, {len(entries)} checkpoint(s)")
        manifest.update(entries)
    counts = {"ok": 0, "missing": 0, "corrupt": 0}
    for status in verify_cache(args.names or None, manifest) if manifest else []:
        counts[status.status] += 1
        print(f"{status.status:<8} {status.name} [{status.role}] {status.path}")
    print(f"cache: {counts['ok']} ok, {counts['missing']} not downloaded, {counts['corrupt']} corrupt")
    return 1 if failed or counts["corrupt"] else 0


def _parse_result(text: str) -> dict[str, Any]:
    from solo_directpred.zoo.errors import ZooError

    head, sep, value = text.partition("=")
    protocol, colon, metric = head.partition(":")
    try:
        number = float(value)
    except ValueError:
        number = None
    if not sep or not colon or not protocol or not metric or number is None:
        raise ZooError(f"--result {text!r} must read PROTOCOL:METRIC=VALUE, e.g. linear:top1=91.2")
    return {"protocol": protocol, "metric": metric, "value": number}


@_guard
def _export(args: argparse.Namespace) -> int:
    from solo_directpred.zoo.errors import ZooError
    from solo_directpred.zoo.export import export_checkpoint
    from solo_directpred.zoo.manifest import BackboneSpec, add_to_manifest

    try:
        kwargs = json.loads(args.backbone_kwargs)
    except json.JSONDecodeError as err:
        raise ZooError(f"--backbone-kwargs {args.backbone_kwargs!r} is not a JSON object: {err}") from err
    if not isinstance(kwargs, dict):
        raise ZooError(f"--backbone-kwargs must be a JSON object, got {args.backbone_kwargs!r}")
    backbone = BackboneSpec(args.backbone, kwargs, args.cifar_stem) if args.backbone else None
    result = export_checkpoint(
        args.checkpoint,
        args.name,
        args.out,
        method=args.method,
        dataset=args.dataset,
        backbone=backbone,
        epochs=args.epochs,
        prefix=args.prefix,
        url_base=args.url_base,
        hf_repo=args.hf_repo,
        license=args.license,
        results=[_parse_result(r) for r in args.result],
        description=args.description,
        include_checkpoint=not args.no_checkpoint,
    )
    print(f"backbone weights  {result.weights}", file=sys.stderr)
    if result.checkpoint is not None:
        print(f"full checkpoint   {result.checkpoint}", file=sys.stderr)
    print(f"metadata          {result.metadata}", file=sys.stderr)
    if args.add_to:
        add_to_manifest(args.add_to, result.entry)
        print(f"entry {args.name!r} written to {args.add_to}", file=sys.stderr)
    else:
        print("manifest entry to add to the 'checkpoints' list:", file=sys.stderr)
    print(json.dumps(result.entry.to_json(), indent=2))
    return 0
