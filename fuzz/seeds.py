#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets in fuzz/corpus/<target>/ from the repository's own
fixtures (injector/testdata, sidecar/testdata/annotations, and for sealed_parse the sealed-format
vectors of sealer-cli/testdata, which are not committed twice). Run from the repository root:
`python3 fuzz/seeds.py` (scripts/faults --fuzz does). File names are content hashes, as libFuzzer
names its own entries, so running it again adds nothing."""
import glob, hashlib, json, os, yaml

def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join("fuzz/corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)

refs = set()
for path in sorted(glob.glob("sidecar/testdata/annotations/*.json")):
    ann = json.load(open(path))["annotations"]
    records = []
    for k, v in ann.items():
        key = k[len("hush.dev/"):] if k.startswith("hush.dev/") else "!" + k
        records.append(f"{key}={v}")
        if k.startswith("hush.dev/secret-"):
            refs.add(v)
    put("annotations", "\0".join(records))

for path in sorted(glob.glob("injector/testdata/*.pod.yaml")):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    for i, obj in enumerate(docs):
        kind = obj.get("kind", "Pod")
        group = "apps" if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet") else (
            "batch" if kind in ("Job", "CronJob") else "")
        review = {
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": f"seed-{i}", "kind": {"group": group, "version": "v1", "kind": kind},
                "namespace": obj.get("metadata", {}).get("namespace", "default"),
                "operation": "CREATE", "object": obj,
            },
        }
        body = json.dumps(review, separators=(",", ":"))
        put("admission_review", "\0" + body)  # selector byte 0: /mutate
        put("admission_review", "\1" + body)  # selector byte 1: /validate
        for k, v in (obj.get("metadata", {}).get("annotations") or {}).items():
            if k.startswith("hush.dev/secret-"):
                refs.add(v)

for path in sorted(glob.glob("injector/testdata/*.patch.json")):
    text = open(path).read()
    def walk(x):
        if isinstance(x, dict):
            if x.get("name") == "HUSH_CONFIG" and isinstance(x.get("value"), str):
                put("config_json", x["value"])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(json.loads(text))

for r in sorted(refs):
    put("source_ref", r)

for path in sorted(glob.glob("sealer-cli/testdata/*/*")):
    if os.path.isfile(path):
        put("sealed_parse", open(path, "rb").read())
