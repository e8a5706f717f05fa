#!/usr/bin/env bash
# Benchmark: a rebuild where a stage runs again (its ARG changed) but
# writes the same file, which a later stage copies with COPY --from and
# then runs a slow step on. BuildKit keys COPY --from by content, so it
# reruns nothing after the source stage; kiln must do the same. Each run
# passes a new ARG value, so the source stage always runs again.
#
#   benches/from-content.sh [WORKDIR]   (default /var/tmp/kiln-bench-from)
#
# Needs root (kiln build) and a dockerd for the BuildKit side (without
# one, only kiln is measured; /usr/bin/docker: Debian's 20.10 CLI with
# its embedded BuildKit). KILN=path/to/kiln compares another build
# (default: target/release/kiln, built here). Prints hyperfine's summary
# of RUNS (10) runs each.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/var/tmp/kiln-bench-from}
runs=${RUNS:-10}
if [ -z "${KILN:-}" ]; then
    cargo build --release --quiet
    KILN="$PWD/target/release/kiln"
fi
rm -rf "$work"
mkdir -p "$work/ctx" "$work/rootfs/bin"
cp /bin/busybox "$work/rootfs/bin/"
for applet in sh echo cat sleep; do ln -s busybox "$work/rootfs/bin/$applet"; done
tar -C "$work/rootfs" -cf "$work/bb.tar" .
cat >"$work/ctx/Dockerfile" <<'EOF'
FROM bb:1 AS build
ARG V
RUN echo "$V" > /v && echo same > /out
FROM bb:1
COPY --from=build /out /out
RUN sleep 2 && cat /out > /seen
EOF
export KILN_ROOT="$work/store"
"$KILN" import "$work/bb.tar" bb:1 >/dev/null
"$KILN" build -q --build-arg V=0 -t from:1 "$work/ctx" >/dev/null
commands=("sh -c '\"$KILN\" build -q --build-arg V=\$(date +%s%N) -t from:1 \"$work/ctx\"'")
names=(kiln)
if /usr/bin/docker info >/dev/null 2>&1; then
    /usr/bin/docker import "$work/bb.tar" bb:1 >/dev/null
    DOCKER_BUILDKIT=1 /usr/bin/docker build -q --build-arg V=0 -t from:1 "$work/ctx" >/dev/null
    commands+=("sh -c 'DOCKER_BUILDKIT=1 /usr/bin/docker build -q --build-arg V=\$(date +%s%N) -t from:1 \"$work/ctx\"'")
    names+=(buildkit)
else
    echo "no dockerd: BuildKit not measured" >&2
fi
args=()
for i in "${!commands[@]}"; do
    args+=(-n "${names[$i]}" "${commands[$i]}")
done
hyperfine -w 1 -r "$runs" "${args[@]}"
