#!/usr/bin/env bash
# Benchmark: wall time of `kiln run --rm IMG true` over 100 runs, beside
# `runc run` on the same busybox root file system (podman cannot start
# containers in this sandbox: its default rlimits exceed the hard limits).
# kiln runs three ways: as by default (isolated network through
# slirp4netns, Docker's seccomp profile), with `--network none` (seccomp
# only), and with `--network none --security-opt seccomp=unconfined`
# (neither), so the difference is what each costs.
#
#   benches/run.sh [WORKDIR]        (default /var/tmp/kiln-bench-run)
#
# Needs root, busybox-static, slirp4netns, runc and hyperfine. Builds kiln in release
# mode. kiln's figure includes what runc's does not: resolving the image
# in the store, the overlay mount of its snapshots and a fresh upper dir.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/var/tmp/kiln-bench-run}
cargo build --release --quiet
kiln="$PWD/target/release/kiln"
rm -rf "$work" && mkdir -p "$work/rootfs/bin" "$work/rootfs/etc"
cp /bin/busybox "$work/rootfs/bin/"
for applet in sh true echo; do ln -s busybox "$work/rootfs/bin/$applet"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
export KILN_ROOT="$work/store"
"$kiln" import "$work/rootfs" bench-run:1 >/dev/null
"$kiln" run --rm bench-run:1 true   # unpack the snapshot once

mkdir -p "$work/bundle"
cp -a "$work/rootfs" "$work/bundle/rootfs"
(cd "$work/bundle" && runc spec && python3 - <<'PY'
import json
c = json.load(open("config.json"))
c["process"]["args"] = ["true"]
c["process"]["terminal"] = False
c["root"]["readonly"] = False
json.dump(c, open("config.json", "w"))
PY
)
cd "$work/bundle"
hyperfine --runs 100 --warmup 5 --export-markdown "$work/run.md" \
    -n "kiln run --rm IMG true" "$kiln run --rm bench-run:1 true" \
    -n "kiln run --network none" "$kiln run --rm --network none bench-run:1 true" \
    -n "kiln run --network none, seccomp=unconfined" \
    "$kiln run --rm --network none --security-opt seccomp=unconfined bench-run:1 true" \
    -n "runc run (same rootfs)" "runc run kiln-bench"
cat "$work/run.md"
