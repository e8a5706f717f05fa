#!/usr/bin/env bash
# Benchmark of issue 13: pull and push of a 1 GiB image (8 gzip layers)
# with a registry on loopback, kiln beside `skopeo copy` to an OCI layout
# (which does not unpack) and `docker pull`/`docker push` when a dockerd
# is reachable; the machine's limit for the same work (decompressing and
# hashing those layers on 2 cores); re-pull and re-push when everything is
# present; peak RSS of each.
#
#   benches/registry.sh [WORKDIR]         (default /var/tmp/kiln-bench-registry)
#   benches/registry.sh image DIR LAYERS LAYER_MIB
#                                         only make the image (an OCI layout)
#
# Environment: RUNS (default 5, the median is shown), LAYERS (8),
# LAYER_MIB (128), KILN (a kiln binary; default: built here in release).
# Needs docker-registry, skopeo, curl, python3 and GNU time
# (/usr/bin/time). Each pull goes into an empty store (or OCI layout, or
# after `docker rmi`), each push into an empty registry; the page cache
# is dropped before each run.
set -euo pipefail
cd "$(dirname "$0")/.."

# An OCI image layout in DIR: LAYERS gzip layers of LAYER_MIB MiB each,
# every byte a function of the layer's index (seeded PRNG, mtime 0, gzip
# without a name or time), so the same command makes the same digests.
# Each layer: 1/4 random bytes (incompressible), 1/2 one hex text file,
# 1/4 hex text in 8 KiB files (many small files to unpack); about 70 % of
# the raw size once compressed.
make_image() { # DIR LAYERS LAYER_MIB
    local dir=$1 layers=$2 mib=$3
    if [ -f "$dir/.done-$layers-$mib" ]; then return; fi
    rm -rf "$dir" && mkdir -p "$dir"
    python3 - "$dir" "$layers" "$mib" <<'PY'
import gzip, hashlib, io, json, os, platform, random, sys, tarfile
out, layers, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(f"{out}/blobs/sha256")
def put(data):
    digest = hashlib.sha256(data).hexdigest()
    with open(f"{out}/blobs/sha256/{digest}", "wb") as f:
        f.write(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}
def hex_text(r, n):
    raw = r.randbytes(n // 2).hex()
    return "\n".join(raw[i:i + 127] for i in range(0, len(raw), 128)).encode()[:n].ljust(n, b"\n")
descriptors, diff_ids = [], []
size = mib << 20
for index in range(layers):
    r = random.Random(index)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name, data=None):
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid = 0, 0, 0
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        top = f"layer{index}"
        add(top)
        add(f"{top}/random.bin", r.randbytes(size // 4))
        add(f"{top}/text.txt", hex_text(r, size // 2))
        add(f"{top}/small")
        for n in range(size // 4 // 8192):
            add(f"{top}/small/{n:05}", hex_text(r, 8192))
    raw = buffer.getvalue()
    diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
    blob = gzip.compress(raw, compresslevel=6, mtime=0)
    descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **put(blob)})
    print(f"layer {index}: {len(raw) >> 20} MiB, {len(blob) >> 20} MiB gzip", file=sys.stderr)
arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
config = json.dumps({"architecture": arch, "os": "linux",
                     "config": {"Cmd": ["/bin/sh"]},
                     "rootfs": {"type": "layers", "diff_ids": diff_ids}}, sort_keys=True).encode()
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put(config)},
                       "layers": descriptors}, sort_keys=True).encode()
index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
         **put(manifest), "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}
open(f"{out}/index.json", "w").write(json.dumps(index))
open(f"{out}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
    touch "$dir/.done-$layers-$mib"
}

if [ "${1:-}" = image ]; then
    make_image "$2" "$3" "$4"
    exit
fi

work=${1:-/var/tmp/kiln-bench-registry}
runs=${RUNS:-5}
layers=${LAYERS:-8}
layer_mib=${LAYER_MIB:-128}
for tool in docker-registry skopeo curl python3 /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "registry.sh needs $tool" >&2; exit 1; }
done
if [ -z "${KILN:-}" ]; then
    cargo build --release --quiet
    KILN="${CARGO_TARGET_DIR:-$PWD/target}/release/kiln"
fi
mkdir -p "$work"
cd "$work"
make_image "$work/image" "$layers" "$layer_mib"
du -sh image/blobs

# Registries: `start_registry NAME [PORT]` serves $work/NAME-data on PORT
# or a free port (registry_port[NAME]) until `stop_registry NAME` or the
# end.
declare -A registry_pid registry_port
start_registry() {
    local name=$1 port=${2:-}
    [ -n "$port" ] ||
        port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir -p "$work/$name-data"
    cat >"$work/$name.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/$name-data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: kiln-bench
YML
    docker-registry serve "$work/$name.yml" >"$work/$name.log" 2>&1 &
    registry_pid[$name]=$!
    registry_port[$name]=$port
    until curl -sf "http://127.0.0.1:$port/v2/" >/dev/null; do
        kill -0 "${registry_pid[$name]}" 2>/dev/null || { cat "$work/$name.log"; exit 1; }
        sleep 0.05
    done
}
stop_registry() {
    local name=$1
    kill "${registry_pid[$name]}" 2>/dev/null || true
    wait "${registry_pid[$name]}" 2>/dev/null || true
    unset "registry_pid[$name]"
}
empty_registry() { # NAME: restarted on an empty storage, same port
    local port=${registry_port[$1]}
    stop_registry "$1"
    rm -rf "${work:?}/$1-data"
    start_registry "$1" "$port"
}
cleanup() {
    for name in "${!registry_pid[@]}"; do stop_registry "$name"; done
}
trap cleanup EXIT

start_registry source
src="127.0.0.1:${registry_port[source]}"
skopeo copy -q --dest-tls-verify=false oci:image:bench "docker://$src/bench:1"
start_registry target
dst="127.0.0.1:${registry_port[target]}"

# `measure NAME PREPARE COMMAND`: RUNS times, PREPARE (untimed), drop the
# page cache, COMMAND timed by GNU time; prints the median wall time, the
# median peak RSS and the throughput over the compressed image size.
compressed=$(du -sb image/blobs | cut -f1)
measure() {
    local name=$1 prepare=$2 command=$3 results=()
    for _ in $(seq "$runs"); do
        eval "$prepare"
        sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
        /usr/bin/time -f "%e %M" -o time.out bash -c "$command" >/dev/null 2>time.err ||
            { echo "$name failed:"; cat time.err; return 1; } >&2
        results+=("$(tail -1 time.out)")
    done
    printf '%s\n' "${results[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p" |
        awk -v name="$name" -v bytes="$compressed" '{
            # The memory of the docker CLI says nothing of the daemon.
            rss = name ~ /^docker/ ? "   (daemon)" : sprintf("%8.1f MiB", $2 / 1024)
            printf "%-46s %8.3f s %s %8.0f MB/s\n", name, $1, rss, bytes / $1 / 1e6 }'
}

echo "image: $layers layers x $layer_mib MiB, $((compressed >> 20)) MiB compressed; $runs runs, medians"
printf '%-46s %10s %12s %13s\n' case wall "peak RSS" "compressed/s"

# The limit: hash each compressed blob, decompress it and hash the tar
# (digest and diff_id) with the libraries kiln uses (flate2 on zlib-rs,
# sha2), the layers shared by 2 threads; a helper built here. GNU gzip
# beside it for reference.
mkdir -p limit/src
cat >limit/Cargo.toml <<'TOML'
[package]
name = "limit"
version = "0.1.0"
edition = "2024"
[dependencies]
flate2 = { version = "1.1", default-features = false, features = ["zlib-rs", "runtime_detection"] }
sha2 = "0.11"
hex = "0.4"
[profile.release]
debug = "line-tables-only"
TOML
cat >limit/src/main.rs <<'RUST'
//! Hashes, decompresses and hashes again each gzip blob named on the
//! command line, THREADS (first argument) at a time; nothing written.
use std::io::{Read, Write};
use std::sync::Mutex;
use sha2::{Digest, Sha256};
struct Hashing<R>(R, Sha256);
impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1.update(&buf[..n]);
        Ok(n)
    }
}
fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().unwrap().parse().unwrap();
    let blobs = Mutex::new(args.collect::<Vec<_>>());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let Some(path) = blobs.lock().unwrap().pop() else { return };
                let file = std::fs::File::open(&path).unwrap();
                let mut gz = flate2::read::MultiGzDecoder::new(Hashing(std::io::BufReader::with_capacity(1 << 20, file), Sha256::new()));
                let mut buf = vec![0u8; 1 << 20];
                let mut diff_id = Sha256::new();
                loop {
                    let n = gz.read(&mut buf).unwrap();
                    if n == 0 { break; }
                    diff_id.update(&buf[..n]);
                }
                let digest = gz.into_inner().1.finalize();
                assert!(path.ends_with(&hex::encode(digest)), "{path}: digest mismatch");
                std::io::stdout().lock().write_all(format!("{}\n", hex::encode(diff_id.finalize())).as_bytes()).unwrap();
            });
        }
    });
}
RUST
(cd limit && CARGO_TARGET_DIR="$work/limit/target" cargo build --release --quiet)
layer_blobs=$(find "$work/image/blobs/sha256" -type f -size +1M | sort | tr '\n' ' ')
measure "limit: sha256 + gunzip + sha256, 2 threads" "" "$work/limit/target/release/limit 2 $layer_blobs"
measure "limit: same, 1 thread" "" "$work/limit/target/release/limit 1 $layer_blobs"
measure "GNU gzip -dc + sha256sum, 2 at a time" "" \
    "printf '%s\\n' $layer_blobs | xargs -P2 -I{} bash -c 'tee <{} >(sha256sum >/dev/null) | gzip -dc | sha256sum >/dev/null'"

# The peer: skopeo copies to an OCI layout (no unpacking), then back to an
# empty registry.
measure "skopeo copy docker:// -> oci: (pull)" "rm -rf $work/skopeo-oci" \
    "skopeo copy -q --src-tls-verify=false docker://$src/bench:1 oci:$work/skopeo-oci:bench"
measure "skopeo copy oci: -> docker:// (push)" "empty_registry target" \
    "skopeo copy -q --dest-tls-verify=false oci:$work/image:bench docker://$dst/bench:1"

if docker info >/dev/null 2>&1; then
    # Docker trusts plain HTTP on 127.0.0.0/8 without configuration.
    measure "docker pull" "docker rmi -f $src/bench:1 >/dev/null 2>&1 || true" \
        "docker pull -q $src/bench:1"
    measure "docker push" "empty_registry target; docker tag $src/bench:1 $dst/bench:1" \
        "docker push -q $dst/bench:1"
else
    echo "docker: no dockerd reachable, docker pull/push not measured"
fi

if "$KILN" pull --help >/dev/null 2>&1; then
    store="$work/kiln-store"
    measure "kiln pull (empty store, unpacked)" "rm -rf $store" \
        "$KILN --root $store pull -q $src/bench:1"
    measure "kiln pull again (all present)" "" \
        "$KILN --root $store pull -q $src/bench:1"
    measure "kiln push (empty registry)" \
        "empty_registry target; $KILN --root $store tag $src/bench:1 $dst/bench:1" \
        "$KILN --root $store push -q $dst/bench:1"
    measure "kiln push again (all present)" "" \
        "$KILN --root $store push -q $dst/bench:1"
else
    echo "kiln: this build has no \`kiln pull\`; kiln not measured"
fi
