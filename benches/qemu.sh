#!/usr/bin/env bash
# Benchmark: what a RUN costs under qemu-user-static (binfmt_misc) beside
# the same RUN run natively. One busybox base per platform (the host's
# busybox-static and Debian's busybox-static:arm64, `kiln import
# --platform`), then:
#   - `kiln build --no-cache --platform P` of a RUN with a shell loop of
#     100,000 iterations (the whole step: overlay, container, layer), and
#     of a RUN `true` (what starting one emulated process costs);
#   - `kiln run --rm --platform P` of the same loop, from a two-platform
#     image that `kiln build --platform linux/arm64,linux/amd64` made.
#
#   benches/qemu.sh [WORKDIR]        (default /var/tmp/kiln-bench-qemu)
#
# Needs root, busybox-static, qemu-user-static (its arm64 handler
# registered with the F flag), `dpkg --add-architecture arm64` and
# hyperfine. Builds kiln in release mode (in $CARGO_TARGET_DIR if set).
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/var/tmp/kiln-bench-qemu}
cargo build --release --quiet
kiln="${CARGO_TARGET_DIR:-$PWD/target}/release/kiln"
rm -rf "$work" && mkdir -p "$work/amd64/bin" "$work/arm64/bin" "$work/deb" "$work/ctx"
(cd "$work/deb" && apt-get download -q busybox-static:arm64 >/dev/null && dpkg-deb -x ./*.deb x)
cp /bin/busybox "$work/amd64/bin/"
cp "$work/deb/x/bin/busybox" "$work/arm64/bin/"
for platform in amd64 arm64; do
    for applet in sh true; do ln -s busybox "$work/$platform/bin/$applet"; done
done
export KILN_ROOT="$work/store"
"$kiln" import --platform linux/amd64 "$work/amd64" bench-bb:amd64 >/dev/null
"$kiln" import --platform linux/arm64 "$work/arm64" bench-bb:arm64 >/dev/null
loop='i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done'
printf 'FROM bench-bb:$TARGETARCH\nRUN %s\n' "$loop" >"$work/ctx/Dockerfile.loop"
printf 'FROM bench-bb:$TARGETARCH\nRUN true\n' >"$work/ctx/Dockerfile.true"
"$kiln" build -q --platform linux/arm64,linux/amd64 -f "$work/ctx/Dockerfile.true" -t bench-multi:1 "$work/ctx" >/dev/null
hyperfine --runs 10 --warmup 2 --export-markdown "$work/qemu.md" \
    -n "build RUN loop, linux/amd64 (native)" \
    "$kiln build -q --no-cache --platform linux/amd64 -f $work/ctx/Dockerfile.loop $work/ctx" \
    -n "build RUN loop, linux/arm64 (qemu)" \
    "$kiln build -q --no-cache --platform linux/arm64 -f $work/ctx/Dockerfile.loop $work/ctx" \
    -n "build RUN true, linux/amd64 (native)" \
    "$kiln build -q --no-cache --platform linux/amd64 -f $work/ctx/Dockerfile.true $work/ctx" \
    -n "build RUN true, linux/arm64 (qemu)" \
    "$kiln build -q --no-cache --platform linux/arm64 -f $work/ctx/Dockerfile.true $work/ctx" \
    -n "run loop, linux/amd64 (native)" \
    "$kiln run --rm --network none --platform linux/amd64 bench-multi:1 sh -c '$loop'" \
    -n "run loop, linux/arm64 (qemu)" \
    "$kiln run --rm --network none --platform linux/arm64 bench-multi:1 sh -c '$loop'"
cat "$work/qemu.md"
