#!/usr/bin/env bash
# Benchmark: container-to-container TCP throughput over a bridge network,
# kiln beside Docker. A `sink` container (`nc -l -p 5001 -e dd
# of=/dev/null bs=1M`) and
# a client container on the same user network; the client sends SIZE_MIB
# MiB of zeros (`dd if=/dev/zero bs=1M | nc sink 5001`, busybox). The
# transfer time is the client run's wall time minus that of the same run
# sending nothing (container start and teardown), median of RUNS (3).
# Docker is measured only when a dockerd already runs (`docker info`
# works), on the same busybox root file system (`docker import`ed as
# kiln-bench-bb:1): this script never starts dockerd nor pulls anything.
#
#   benches/network.sh [WORKDIR]   (default /var/tmp/kiln-bench-network)
#
# Needs root, busybox-static, ip and nft. Builds kiln in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/var/tmp/kiln-bench-network}
runs=${RUNS:-3}
size=${SIZE_MIB:-1024}
image=kiln-bench-bb:1
cargo build --release --quiet
kiln="${CARGO_TARGET_DIR:-$PWD/target}/release/kiln"
# A previous run's containers and networks go before its store does.
if [ -d "$work/store" ]; then
    KILN_ROOT="$work/store" "$kiln" ps -aq | xargs -r env KILN_ROOT="$work/store" "$kiln" rm -f >/dev/null || true
    KILN_ROOT="$work/store" "$kiln" network prune -f >/dev/null || true
fi
rm -rf "$work" && mkdir -p "$work/rootfs/bin" "$work/rootfs/etc"
cp /bin/busybox "$work/rootfs/bin/"
for applet in sh nc dd cat grep sleep true; do ln -s busybox "$work/rootfs/bin/$applet"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
export KILN_ROOT="$work/store"
"$kiln" import "$work/rootfs" bench-n:1 >/dev/null
net=kiln-bench-$$

now() { date +%s.%N; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# One client run sending $2 MiB with tool $1 (kiln or docker): seconds.
client() {
    local tool=$1 mib=$2 img=$3 start end
    # busybox nc closes the connection at the end of its stdin: the
    # sink's data goes to a dd instead, in 1 MiB reads.
    "$tool" run -d --name sink --network "$net" "$img" nc -l -p 5001 -e dd of=/dev/null bs=1M >/dev/null
    # Until the sink listens (port 5001 = 0x1389, state 0A, IPv4 or
    # IPv6), 5 s at most.
    for _ in $(seq 500); do
        "$tool" exec sink sh -c "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep -q ':1389 [0-9A-F]*:0000 0A'" && break
        sleep 0.01
    done
    start=$(now)
    "$tool" run --rm --network "$net" "$img" sh -c \
        "dd if=/dev/zero bs=1M count=$mib 2>/dev/null | nc sink 5001"
    end=$(now)
    "$tool" rm -f sink >/dev/null
    echo "$end - $start" | bc -l
}

measure() {
    local tool=$1 img=$2 empty full i
    empty=$(for i in $(seq "$runs"); do client "$tool" 0 "$img"; done | median)
    full=$(for i in $(seq "$runs"); do client "$tool" "$size" "$img"; done | median)
    echo "$(basename "$tool"): $size MiB in $(echo "$full - $empty" | bc -l | cut -c1-6) s" \
        "(run with nothing sent: $(echo "$empty" | cut -c1-6) s):" \
        "$(echo "$size / ($full - $empty)" | bc -l | cut -d. -f1) MiB/s"
}

"$kiln" network create "$net" >/dev/null
trap '"$kiln" rm -f sink >/dev/null 2>&1; "$kiln" network rm "$net" >/dev/null 2>&1 || true' EXIT
measure "$kiln" bench-n:1

if docker info >/dev/null 2>&1; then
    tar -C "$work/rootfs" -c . | docker import - "$image" >/dev/null
    docker network create "$net" >/dev/null
    trap '"$kiln" rm -f sink >/dev/null 2>&1; "$kiln" network rm "$net" >/dev/null 2>&1;
          docker rm -f sink >/dev/null 2>&1; docker network rm "$net" >/dev/null 2>&1;
          docker rmi "$image" >/dev/null 2>&1 || true' EXIT
    measure docker "$image"
else
    echo "docker: no dockerd running: not measured"
fi
