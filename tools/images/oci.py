#!/usr/bin/env python3
"""Image assembly and SBOMs for scripts/images (Python 3.11 standard library only).

Why Python and not a Rust tool: the job is writing two tar files, a few JSON documents and a gzip
stream with every field pinned, which the standard library does in a page; a Rust tool would add a
crate (and a build) to the workspace that the images are built from. Nothing here talks to the
network or needs a Docker daemon.

Subcommands (scripts/images drives them; each prints one JSON object on stdout):

  image   One single-layer image FROM scratch, written as a tar that is both an OCI image layout
          (oci-layout, index.json, blobs/sha256/...) and a docker-archive (manifest.json with
          RepoTags), the way `docker save` writes it since Docker 25. containerd's importer
          (1.6 and 2.x) reads index.json when oci-layout is present; the legacy `docker load`
          reads manifest.json. Both name the same blobs.
  sbom    A CycloneDX 1.5 JSON SBOM of one workspace binary: every crate its package reaches over
          normal (linked) dependency edges in `cargo tree --workspace -e normal,no-proc-macro`,
          which resolves features exactly as `cargo build --workspace` does, plus the Debian
          packages that are linked in statically.
  report  images.env and the digest/size table from the per-image summaries.

Determinism rules (the reason this file exists):
  * layer tar: USTAR headers, entries sorted by path, every mtime 0, uid/gid 0, empty user and
    group names, explicit modes; parent directories are added with mode 0755;
  * gzip: level 6, header mtime 0, no file name (so the bytes depend on the input and on zlib's
    deflate implementation only; Debian 12's zlib 1.2.13 here);
  * JSON: sorted keys, no whitespace (separators ",", ":"), ASCII only;
  * the only timestamp is the one passed with --created (scripts/images: HEAD's commit time).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import tomllib
import uuid

GZIP_LEVEL = 6
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def die(msg: str) -> None:
    print(f"oci.py: {msg}", file=sys.stderr)
    sys.exit(1)


def canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# tar writing


def tar_entry(name: str, kind: str, mode: int, size: int = 0, target: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = {"dir": tarfile.DIRTYPE, "file": tarfile.REGTYPE, "symlink": tarfile.SYMTYPE}[kind]
    ti.mode = mode
    ti.size = size
    ti.linkname = target
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.devmajor = ti.devminor = 0
    return ti


def write_tar(entries: list[tuple[str, str, int, bytes | str | None]]) -> bytes:
    """entries: (path without leading '/', kind, mode, data bytes | symlink target | None).
    Sorted by path components so a directory always precedes what it holds."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for path, kind, mode, payload in sorted(entries, key=lambda e: e[0].split("/")):
            if kind == "dir":
                tf.addfile(tar_entry(path + "/", "dir", mode))
            elif kind == "symlink":
                assert isinstance(payload, str)
                tf.addfile(tar_entry(path, "symlink", mode, target=payload))
            else:
                assert isinstance(payload, bytes)
                tf.addfile(tar_entry(path, "file", mode, size=len(payload)), io.BytesIO(payload))
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=GZIP_LEVEL, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# image


def parse_mode(text: str, what: str) -> int:
    if not re.fullmatch(r"[0-7]{3,4}", text):
        die(f"{what}: mode {text!r} is not an octal mode like 0755")
    return int(text, 8)


def clean_path(p: str, what: str) -> str:
    if not p.startswith("/") or p == "/" or "//" in p or p.endswith("/"):
        die(f"{what}: {p!r} must be an absolute path like /etc/x")
    parts = p[1:].split("/")
    if any(x in (".", "..") for x in parts):
        die(f"{what}: {p!r} holds . or ..")
    return "/".join(parts)


def layer_entries(args) -> list[tuple[str, str, int, bytes | str | None]]:
    entries: dict[str, tuple[str, str, int, bytes | str | None]] = {}

    def add(path: str, kind: str, mode: int, payload, what: str) -> None:
        if path in entries:
            die(f"{what}: {path} is given twice")
        entries[path] = (path, kind, mode, payload)

    for spec in args.file:
        # /dest=SOURCE:MODE
        m = re.fullmatch(r"([^=]+)=(.+):([0-7]{3,4})", spec)
        if not m:
            die(f"--file {spec!r}: expected /dest=SOURCE:MODE")
        dest = clean_path(m.group(1), f"--file {spec}")
        try:
            with open(m.group(2), "rb") as f:
                data = f.read()
        except OSError as e:
            die(f"--file {spec!r}: cannot read the source: {e}")
        add(dest, "file", parse_mode(m.group(3), spec), data, f"--file {spec}")
    for spec in args.dir:
        m = re.fullmatch(r"([^:]+):([0-7]{3,4})", spec)
        if not m:
            die(f"--dir {spec!r}: expected /path:MODE")
        add(clean_path(m.group(1), f"--dir {spec}"), "dir", parse_mode(m.group(2), spec), None, spec)
    for spec in args.symlink:
        m = re.fullmatch(r"([^=]+)=(.+)", spec)
        if not m:
            die(f"--symlink {spec!r}: expected /path=TARGET")
        add(clean_path(m.group(1), f"--symlink {spec}"), "symlink", 0o777, m.group(2), spec)

    # Parent directories that were not given explicitly.
    for path in list(entries):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            if parent not in entries:
                entries[parent] = (parent, "dir", 0o755, None)
            elif entries[parent][1] != "dir":
                die(f"{parent} is both a {entries[parent][1]} and the parent of {path}")
    return list(entries.values())


def write_rootfs(dest: str, entries) -> None:
    """The same files as a directory tree (for the Dockerfile, which COPYs it into scratch)."""
    os.makedirs(dest, exist_ok=True)
    for path, kind, mode, payload in sorted(entries, key=lambda e: e[0].split("/")):
        full = os.path.join(dest, path)
        if kind == "dir":
            os.makedirs(full, exist_ok=True)
            os.chmod(full, mode)
        elif kind == "symlink":
            os.symlink(payload, full)
        else:
            with open(full, "wb") as f:
                f.write(payload)
            os.chmod(full, mode)


def cmd_image(args) -> None:
    repo_tag = args.ref
    m = re.fullmatch(r"([a-z0-9.\-/:]+):([A-Za-z0-9_.\-]+)", repo_tag)
    if not m or "/" not in m.group(1):
        die(f"--ref {repo_tag!r}: expected host/name:tag such as localhost/hush-sidecar:0.1.0")
    tag = m.group(2)

    entries = layer_entries(args)
    if args.rootfs:
        write_rootfs(args.rootfs, entries)
        print(json.dumps({"name": args.name, "rootfs": args.rootfs}))
        return
    layer_tar = write_tar(entries)
    layer_gz = gzip_bytes(layer_tar)
    diff_id = sha256(layer_tar)
    layer_digest = sha256(layer_gz)

    labels = {}
    for spec in args.label:
        k, sep, v = spec.partition("=")
        if not sep or not k:
            die(f"--label {spec!r}: expected KEY=VALUE")
        labels[k] = v
    cfg: dict = {}
    if args.user:
        cfg["User"] = args.user
    if args.entrypoint:
        cfg["Entrypoint"] = args.entrypoint
    if args.cmd:
        cfg["Cmd"] = args.cmd
    if args.env:
        cfg["Env"] = args.env
    if labels:
        cfg["Labels"] = labels
    cfg["WorkingDir"] = args.workdir
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": args.created,
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": args.created, "created_by": f"scripts/images ({args.name})"}],
    }
    config_json = canonical_json(config)
    config_digest = sha256(config_json)

    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": config_digest, "size": len(config_json)},
        "layers": [{"mediaType": MT_LAYER_GZIP, "digest": layer_digest, "size": len(layer_gz)}],
    }
    manifest_json = canonical_json(manifest)
    manifest_digest = sha256(manifest_json)

    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [
            {
                "mediaType": MT_MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest_json),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": repo_tag,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }
    blob = lambda d: "blobs/sha256/" + d.split(":", 1)[1]  # noqa: E731
    docker_manifest = [
        {"Config": blob(config_digest), "RepoTags": [repo_tag], "Layers": [blob(layer_digest)]}
    ]

    archive = write_tar(
        [
            ("blobs", "dir", 0o755, None),
            ("blobs/sha256", "dir", 0o755, None),
            (blob(layer_digest), "file", 0o644, layer_gz),
            (blob(config_digest), "file", 0o644, config_json),
            (blob(manifest_digest), "file", 0o644, manifest_json),
            ("oci-layout", "file", 0o644, canonical_json({"imageLayoutVersion": "1.0.0"})),
            ("index.json", "file", 0o644, canonical_json(index)),
            ("manifest.json", "file", 0o644, canonical_json(docker_manifest)),
        ]
    )
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(archive)
    os.replace(tmp, args.out)

    print(
        json.dumps(
            {
                "name": args.name,
                "ref": repo_tag,
                "env": args.env_name,
                "manifest_digest": manifest_digest,
                "config_digest": config_digest,
                "layer_digest": layer_digest,
                "diff_id": diff_id,
                # What a registry stores and transfers: manifest + config + gzip layer.
                "compressed_size": len(manifest_json) + len(config_json) + len(layer_gz),
                # The layer as unpacked by a snapshotter (tar size, headers included).
                "uncompressed_size": len(layer_tar),
                "archive_size": len(archive),
                "archive": os.path.basename(args.out),
            },
            sort_keys=True,
        )
    )


# --------------------------------------------------------------------------------------------
# sbom

TREE_LINE = re.compile(r"^(\d+)(\S+) v(\S+)(?: \(([^)]*)\))?(?: \(\*\))?$")


def parse_tree(path: str) -> tuple[list[tuple[str, str]], dict[tuple[str, str], set]]:
    """Parses `cargo tree --prefix depth --format {p}` output into roots and a child map. With
    dedupe on, a package's children are printed only at its first appearance (later ones end in
    "(*)"), possibly under another root, so reachability is computed from the whole graph."""
    roots: list[tuple[str, str]] = []
    children: dict[tuple[str, str], set] = {}
    stack: list[tuple[str, str]] = []
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not line:
                continue
            m = TREE_LINE.match(line)
            if not m:
                die(f"cannot parse cargo tree line {line!r}")
            depth, node = int(m.group(1)), (m.group(2), m.group(3))
            if m.group(4) and "proc-macro" in m.group(4):
                die(f"proc-macro {node} in the tree: run cargo tree with -e no-proc-macro")
            children.setdefault(node, set())
            del stack[depth:]
            if depth == 0:
                roots.append(node)
            else:
                children[stack[depth - 1]].add(node)
            stack.append(node)
    return roots, children


def spdx_expression(lic: str) -> str:
    # Old cargo manifests write "MIT/Apache-2.0" for "MIT OR Apache-2.0".
    return " OR ".join(p.strip() for p in lic.split("/")) if "/" in lic else lic.strip()


def cmd_sbom(args) -> None:
    roots, children = parse_tree(args.tree)
    with open(args.metadata, encoding="utf-8") as f:
        meta = json.load(f)
    with open(args.lock, "rb") as f:
        lock = tomllib.load(f)
    locked = {(p["name"], p["version"]): p for p in lock.get("package", [])}

    pkgs: dict[tuple[str, str], dict] = {}
    for p in meta["packages"]:
        pkgs.setdefault((p["name"], p["version"]), p)

    root = next((r for r in roots if r[0] == args.package), None)
    if root is None:
        die(f"package {args.package} is not a root of the cargo tree output")
    reach: set = set()
    todo = [root]
    while todo:
        n = todo.pop()
        if n in reach:
            continue
        reach.add(n)
        todo.extend(children.get(n, ()))

    def purl(n):
        return f"pkg:cargo/{n[0]}@{n[1]}"

    def licenses(n):
        lic = (pkgs.get(n) or {}).get("license")
        if lic:
            return [{"expression": spdx_expression(lic)}]
        lf = (pkgs.get(n) or {}).get("license_file")
        if lf:
            return [{"license": {"name": "see " + os.path.basename(lf) + " in the crate"}}]
        return None

    missing_lock = [n for n in reach if n not in locked]
    if missing_lock:
        die(f"crates not in Cargo.lock: {sorted(missing_lock)}")

    components = []
    for n in sorted(reach - {root}):
        c = {"type": "library", "bom-ref": purl(n), "name": n[0], "version": n[1], "purl": purl(n)}
        lic = licenses(n)
        if lic:
            c["licenses"] = lic
        ck = locked[n].get("checksum")
        if ck:
            c["hashes"] = [{"alg": "SHA-256", "content": ck}]
        if "source" not in locked[n]:
            c["description"] = "workspace crate"
        components.append(c)

    deps = [
        {"ref": purl(n), "dependsOn": sorted(purl(c) for c in children.get(n, ()))}
        for n in sorted(reach)
    ]

    for spec in args.deb:
        # name=version=license-expression=purpose
        parts = spec.split("=", 3)
        if len(parts) != 4:
            die(f"--deb {spec!r}: expected NAME=VERSION=LICENSE=WHAT")
        name, version, lic, what = parts
        ref = f"pkg:deb/debian/{name}@{version}?arch=amd64&distro=debian-12"
        components.append(
            {
                "type": "library" if not what.startswith("data") else "data",
                "bom-ref": ref,
                "name": name,
                "version": version,
                "purl": ref,
                "licenses": [{"expression": lic}],
                "description": what,
            }
        )
        deps[[d["ref"] for d in deps].index(purl(root))]["dependsOn"].append(ref)
        deps.append({"ref": ref, "dependsOn": []})
    for d in deps:
        d["dependsOn"].sort()

    main = {
        "type": "application",
        "bom-ref": purl(root),
        "name": args.binary,
        "version": root[1],
        "purl": purl(root),
        "description": f"the {args.binary} binary of the {root[0]} crate, as built into {args.image}",
    }
    if licenses(root):
        main["licenses"] = licenses(root)
    bom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "timestamp": args.created,
            "tools": {
                "components": [
                    {"type": "application", "name": "hush scripts/images (tools/images/oci.py)"}
                ]
            },
            "component": main,
            "properties": [
                {"name": "hush:image", "value": args.image},
                {"name": "hush:cargo-target", "value": args.target},
                {"name": "hush:rustc", "value": args.rustc},
                {"name": "hush:selection", "value": "cargo tree --workspace -e normal,no-proc-macro"},
            ],
        },
        "components": components,
        "dependencies": deps,
    }
    # serialNumber: a UUID (version bits 8, RFC 9562 "custom") from the hash of everything else,
    # so the same content always gets the same serial.
    h = bytearray(hashlib.sha256(canonical_json(bom)).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x80
    h[8] = (h[8] & 0x3F) | 0x80
    bom["serialNumber"] = "urn:uuid:" + str(uuid.UUID(bytes=bytes(h)))
    data = json.dumps(bom, sort_keys=True, indent=1, ensure_ascii=True).encode() + b"\n"
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, args.out)
    cargo = [c for c in components if c["purl"].startswith("pkg:cargo/")]
    print(
        json.dumps(
            {
                "sbom": os.path.basename(args.out),
                "crates": len(cargo),
                "without_license": sorted(c["name"] for c in cargo if "licenses" not in c),
                "debs": len(args.deb),
            },
            sort_keys=True,
        )
    )


# --------------------------------------------------------------------------------------------
# report


def human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return str(n)


def cmd_report(args) -> None:
    rows = []
    for path in args.summary:
        with open(path, encoding="utf-8") as f:
            rows.append(json.load(f))
    lines = ["# Written by scripts/images; source it to get the image names and digests."]
    for r in rows:
        lines.append(f"{r['env']}={r['ref']}")
        lines.append(f"{r['env']}_DIGEST={r['manifest_digest']}")
    tmp = args.env_out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, args.env_out)

    head = ("IMAGE", "MANIFEST DIGEST", "COMPRESSED", "UNCOMPRESSED")
    table = [head] + [
        (r["ref"], r["manifest_digest"], human(r["compressed_size"]), human(r["uncompressed_size"]))
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    im = sub.add_parser("image", help="write one image archive")
    im.add_argument("--name", required=True)
    im.add_argument("--ref", required=True, help="host/name:tag")
    im.add_argument("--env-name", required=True, help="images.env variable, e.g. HUSH_IMAGE_SIDECAR")
    im.add_argument("--out", required=True)
    im.add_argument("--rootfs", default="", help="write the file tree here instead of an archive")
    im.add_argument("--created", required=True, help="RFC 3339 UTC timestamp")
    im.add_argument("--user", default="")
    im.add_argument("--workdir", default="/")
    im.add_argument("--entrypoint", action="append", default=[])
    im.add_argument("--cmd", action="append", default=[])
    im.add_argument("--env", action="append", default=[])
    im.add_argument("--label", action="append", default=[])
    im.add_argument("--file", action="append", default=[], help="/dest=SOURCE:MODE")
    im.add_argument("--dir", action="append", default=[], help="/path:MODE")
    im.add_argument("--symlink", action="append", default=[], help="/path=TARGET")
    im.set_defaults(func=cmd_image)

    sb = sub.add_parser("sbom", help="write a CycloneDX 1.5 SBOM of one workspace binary")
    sb.add_argument("--tree", required=True)
    sb.add_argument("--metadata", required=True)
    sb.add_argument("--lock", required=True)
    sb.add_argument("--package", required=True)
    sb.add_argument("--binary", required=True)
    sb.add_argument("--image", required=True)
    sb.add_argument("--target", required=True)
    sb.add_argument("--created", required=True)
    sb.add_argument("--rustc", required=True, help="rustc -V of the build")
    sb.add_argument("--deb", action="append", default=[], help="NAME=VERSION=LICENSE=WHAT")
    sb.add_argument("--out", required=True)
    sb.set_defaults(func=cmd_sbom)

    rp = sub.add_parser("report", help="write images.env and print the table")
    rp.add_argument("--env-out", required=True)
    rp.add_argument("summary", nargs="+")
    rp.set_defaults(func=cmd_report)

    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
