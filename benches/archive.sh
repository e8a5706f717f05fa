#!/usr/bin/env bash
# Benchmark: save and load of a 1 GiB image (mixed file sizes), time and
# peak memory, side by side with `skopeo copy` between the same formats.
#
#   benches/archive.sh [WORKDIR]      (default /var/tmp/kiln-bench-archive)
#
# Needs skopeo and GNU time (/usr/bin/time). Builds kiln in release mode.
# Prints one line per case: wall seconds and peak RSS in MiB, median of 3.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/var/tmp/kiln-bench-archive}
runs=${RUNS:-3}
cargo build --release --quiet
kiln="$PWD/target/release/kiln"
mkdir -p "$work"
cd "$work"

# 1 GiB of incompressible data in mixed sizes: 8 x 64 MiB, 96 x 4 MiB,
# 2,048 x 64 KiB, 8,192 x 4 KiB (some text), deterministic.
if [ ! -f rootfs/.done ]; then
    rm -rf rootfs && mkdir -p rootfs/big rootfs/mid rootfs/small rootfs/tiny
    python3 - <<'PY'
import os, random
r = random.Random(42)
def blob(n): return r.randbytes(n)
for i in range(8): open(f"rootfs/big/{i}", "wb").write(blob(64 << 20))
for i in range(96): open(f"rootfs/mid/{i}", "wb").write(blob(4 << 20))
for i in range(2048): open(f"rootfs/small/{i}", "wb").write(blob(64 << 10))
for i in range(8192):
    d = f"rootfs/tiny/{i % 64}"
    os.makedirs(d, exist_ok=True)
    open(f"{d}/{i}.txt", "w").write(("line %d\n" % i) * 512)
PY
    touch rootfs/.done
fi
du -sh rootfs

export KILN_ROOT="$work/store"
if ! "$kiln" images -q bench:1 | grep -q .; then
    "$kiln" import rootfs bench:1 >/dev/null
fi

measure() { # name command...
    local name=$1; shift
    local results=()
    for _ in $(seq "$runs"); do
        sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
        /usr/bin/time -f "%e %M" -o time.out "$@" >/dev/null 2>time.err || { cat time.err; exit 1; }
        results+=("$(cat time.out)")
    done
    printf '%s\n' "${results[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p" |
        awk -v name="$name" '{ printf "%-44s %7.2f s %7.1f MiB\n", name, $1, $2 / 1024 }'
}

rm -f k-docker.tar k-oci.tar s-docker.tar s-oci.tar
measure "kiln save --format docker" "$kiln" save -o k-docker.tar bench:1
measure "skopeo copy oci: -> docker-archive:" sh -c "rm -f s-docker.tar; skopeo copy -q oci:$KILN_ROOT:docker.io/library/bench:1 docker-archive:s-docker.tar:bench:1"
measure "kiln save --format oci" "$kiln" save --format oci -o k-oci.tar bench:1
measure "skopeo copy oci: -> oci-archive:" sh -c "rm -f s-oci.tar; skopeo copy -q oci:$KILN_ROOT:docker.io/library/bench:1 oci-archive:s-oci.tar:bench:1"
measure "kiln load (docker-archive)" sh -c "rm -rf fresh; KILN_ROOT=$work/fresh $kiln load -q -i k-docker.tar"
measure "skopeo copy docker-archive: -> oci:" sh -c "rm -rf sk-dir; skopeo copy -q docker-archive:k-docker.tar oci:sk-dir:bench:1"
measure "kiln load (oci-archive)" sh -c "rm -rf fresh; KILN_ROOT=$work/fresh $kiln load -q -i k-oci.tar"
measure "skopeo copy oci-archive: -> oci:" sh -c "rm -rf sk-dir; skopeo copy -q oci-archive:k-oci.tar:docker.io/library/bench:1 oci:sk-dir:bench:1"
ls -l k-docker.tar k-oci.tar
