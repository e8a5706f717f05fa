#!/usr/bin/env bash
# Benchmark: `kiln load` (which unpacks every layer on its parents) of a
# 1 GiB image in one layer and split into four, where the upper layers
# write into directories of the lower ones (each is copied up once) and
# the last one also through a lower layer's symlink; and of 100,000 small
# files written, through a symlink, into 1,000 directories of the layer
# below, each entry in another directory than the one before (the worst
# case for resolving parents through the lower layers).
#
#   benches/layers.sh [WORKDIR]       (default /var/tmp/kiln-bench-layers)
#
# KILN=path/to/kiln compares another build (default: target/release/kiln,
# built here). Prints the median of RUNS (3) runs' wall time, CPU time
# (user + system: what the machine's other load does not change much)
# and peak RSS, page cache dropped before each run.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/var/tmp/kiln-bench-layers}
runs=${RUNS:-3}
if [ -z "${KILN:-}" ]; then
    cargo build --release --quiet
    KILN="$PWD/target/release/kiln"
fi
mkdir -p "$work"
cd "$work"

if [ ! -f one.tar ] || [ ! -f four.tar ] || [ ! -f many.tar ]; then
    python3 - <<'PY'
import hashlib, io, json, random, tarfile

r = random.Random(42)
def info(name, kind=tarfile.REGTYPE, size=0, link=""):
    ti = tarfile.TarInfo(name)
    ti.type, ti.size, ti.linkname = kind, size, link
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    ti.mtime, ti.uid, ti.gid = 1_600_000_000, 0, 0
    return ti

def layer(entries):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data, kind, link in entries:
            t.addfile(info(name, kind, len(data or b""), link), io.BytesIO(data or b""))
    return out.getvalue()

D, F, L = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE
dirs = [("data/", None, D, ""), ("data/big/", None, D, ""), ("data/mid/", None, D, ""),
        ("data/small/", None, D, ""), ("data/tiny/", None, D, "")]
dirs += [(f"data/tiny/{i}/", None, D, "") for i in range(64)]
big = [(f"data/big/{i}", r.randbytes(64 << 20), F, "") for i in range(8)]
mid = [(f"data/mid/{i}", r.randbytes(4 << 20), F, "") for i in range(96)]
small = [(f"data/small/{i}", r.randbytes(64 << 10), F, "") for i in range(2048)]
tiny = [(f"link/{i % 64}/{i}.txt", (("line %d\n" % i) * 512).encode(), F, "")
        for i in range(8192)]

def archive(path, layers):
    blobs = []
    def blob(data):
        blobs.append(data)
        return "sha256:" + hashlib.sha256(data).hexdigest()
    descs = [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
              "digest": blob(l), "size": len(l)} for l in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descs]}}).encode()
    manifest = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": blob(config), "size": len(config)},
                           "layers": descs}).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": blob(manifest), "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": "docker.io/library/layers:1"}}]}).encode()
    with tarfile.open(path, "w") as t:
        for name, data in [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index)] + \
                [("blobs/sha256/" + hashlib.sha256(b).hexdigest(), b) for b in blobs]:
            t.addfile(info(name, size=len(data)), io.BytesIO(data))

# One layer: everything, the tiny files in data/tiny directly.
flat = [(n.replace("link/", "data/tiny/"), d, k, l) for n, d, k, l in tiny]
archive("one.tar", [layer(dirs + big + mid + small + flat)])
# Four: the tiny files go through `link -> data/tiny`, into directories of
# the first layer.
archive("four.tar", [layer(dirs + big + [("link", None, L, "data/tiny")]),
                     layer(mid), layer(small), layer(tiny)])
# Many small files, interleaved over the lower layer's directories.
archive("many.tar", [
    layer([("d/", None, D, "")] + [(f"d/{i}/", None, D, "") for i in range(1000)]
          + [("link", None, L, "d")]),
    layer([(f"link/{i % 1000}/{i}", b"x" * 100, F, "") for i in range(100_000)])])
PY
fi
ls -l one.tar four.tar many.tar

measure() { # name command...
    local name=$1; shift
    local results=()
    for _ in $(seq "$runs"); do
        rm -rf store
        sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
        /usr/bin/time -f "%e %U %S %M" -o time.out "$@" >/dev/null 2>time.err || { cat time.err; exit 1; }
        results+=("$(cat time.out)")
    done
    printf '%s\n' "${results[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p" |
        awk -v name="$name" '{ printf "%-24s %6.2f s wall %6.2f s cpu %6.1f MiB\n", name, $1, $2 + $3, $4 / 1024 }'
}

measure "kiln load, 1 layer" "$KILN" --root store load -q -i one.tar
measure "kiln load, 4 layers" "$KILN" --root store load -q -i four.tar
measure "kiln load, 100k files" "$KILN" --root store load -q -i many.tar
rm -rf store
