#!/usr/bin/env bash
# Benchmark: a rebuild on an empty store from a build cache in a loopback
# registry, kiln beside BuildKit (docker 20.10's embedded BuildKit, with
# BUILDKIT_INLINE_CACHE=1 on the pushed image and --cache-from it), on the
# shared workloads `steps` and `context`. Prints, per workload and builder,
# the median of REPS (3) rebuilds, the bytes received on the loopback
# interface during a rebuild (the registry's answers, both builders alike),
# and for kiln the cost of the export: a cold build with
# `--cache-to type=registry,...,mode=max` (to a new repository each time)
# against one without, with the bytes that crossed loopback during it.
#
# Needs root, dockerd running with the shared base images
# (../shared/tools/bench/setup-peers.sh), docker-registry (Debian's) and, for
# `context`, ../shared/tools/bench/workloads/context/generate.sh
# /var/tmp/bench-cache/context. Traffic stays on 127.0.0.1.
#   benches/cache-share.sh [WORKLOAD...]   (default: steps context)
set -euo pipefail
cd "$(dirname "$0")/.."
bench=${BENCH_DIR:-../shared/tools/bench}
C=${BENCH_CACHE:-/var/tmp/bench-cache}
REPS=${REPS:-3}
cargo build --release --quiet
KILN="$PWD/target/release/kiln"
workloads=("$@")
[ ${#workloads[@]} -gt 0 ] || workloads=(steps context)

work=$(mktemp -d /var/tmp/kiln-cache-bench.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<EOF
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
log:
  level: error
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
trap 'kill $registry_pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
reg=127.0.0.1:$port

now() { date +%s.%N; }
med() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
lo() { cat /sys/class/net/lo/statistics/rx_bytes; }
fresh() { # a kiln store with the base image of steps and context only
    # (loading and deleting the 200 MB deb base each time made the disk's
    # writeback and discards the largest part of the figures' spread)
    rm -rf "$1"; mkdir -p "$1"
    "$KILN" --root "$1" load -q -i "$C/bb-docker.tar" >/dev/null
}
docker_reset() {
    /usr/bin/docker rmi -f "bench-cs-$1" "$reg/bk-$1:1" >/dev/null 2>&1 || true
    /usr/bin/docker builder prune -af >/dev/null 2>&1 || true
    /usr/bin/docker image prune -f >/dev/null 2>&1 || true
}

for w in "${workloads[@]}"; do
    ctx=$bench/workloads/$w; [ "$w" = context ] && ctx=$C/context
    # kiln: the cost of the export on a cold build, then the rebuilds.
    # Each export goes to a repository of its own: its blobs are new to
    # the registry, as a changed build's are.
    plain=(); exported=(); sent=()
    for i in $(seq "$REPS"); do
        fresh "$work/a"; sync
        t0=$(now); "$KILN" --root "$work/a" build -q -t "bench-cs-$w" "$ctx" >/dev/null; t1=$(now)
        plain+=("$(echo "$t1 - $t0" | bc)")
        fresh "$work/a"; sync
        b0=$(lo); t0=$(now)
        "$KILN" --root "$work/a" build -q -t "bench-cs-$w" \
            --cache-to "type=registry,ref=$reg/kiln-$w-$i:cache,mode=max" "$ctx" >/dev/null
        t1=$(now); b1=$(lo)
        exported+=("$(echo "$t1 - $t0" | bc)"); sent+=("$((b1 - b0))")
    done
    times=(); bytes=()
    for _ in $(seq "$REPS"); do
        fresh "$work/b"; sync
        b0=$(lo); t0=$(now)
        "$KILN" --root "$work/b" build -q -t "bench-cs-$w" \
            --cache-from "type=registry,ref=$reg/kiln-$w-$REPS:cache" "$ctx" >/dev/null
        t1=$(now); b1=$(lo)
        times+=("$(echo "$t1 - $t0" | bc)"); bytes+=("$((b1 - b0))")
    done
    echo "kiln $w cold $(printf '%s\n' "${plain[@]}" | med)"
    echo "kiln $w cold+cache-to $(printf '%s\n' "${exported[@]}" | med) $(printf '%s\n' "${sent[@]}" | med)"
    # The same comparison with more runs, by hyperfine where it is
    # installed (the disk's writeback makes single builds swing by
    # +-30 %): medians of HF_RUNS (40 for steps, 15 for context).
    if command -v hyperfine >/dev/null; then
        runs=${HF_RUNS:-40}; [ "$w" = context ] && runs=${HF_RUNS:-15}
        hyperfine --shell bash --runs "$runs" --warmup 1 --export-json "$work/hf-$w.json" \
            --prepare "rm -rf '$work/a' && mkdir -p '$work/a' && '$KILN' --root '$work/a' load -q -i '$C/bb-docker.tar' >/dev/null && sync" \
            -n cold "'$KILN' --root '$work/a' build -q -t bench-cs-$w '$ctx'" \
            -n cold+cache-to "'$KILN' --root '$work/a' build -q -t bench-cs-$w --cache-to type=registry,ref=$reg/kiln-$w-hf\$RANDOM\$RANDOM:cache,mode=max '$ctx'" \
            >/dev/null 2>&1
        python3 - "$work/hf-$w.json" "$w" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
for r in results:
    print(f"kiln {sys.argv[2]} hyperfine {r['command']} median {r['median']:.4f} mean {r['mean']:.4f} user {r['user']:.4f} system {r['system']:.4f}")
PY
    fi
    echo "kiln $w rebuild-from-cache $(printf '%s\n' "${times[@]}" | med) $(printf '%s\n' "${bytes[@]}" | med)"
    # BuildKit: inline cache on the pushed image, then --cache-from it.
    docker_reset "$w"
    DOCKER_BUILDKIT=1 /usr/bin/docker build -q --build-arg BUILDKIT_INLINE_CACHE=1 \
        -t "$reg/bk-$w:1" "$ctx" >/dev/null
    /usr/bin/docker push -q "$reg/bk-$w:1" >/dev/null
    times=(); bytes=()
    for _ in $(seq "$REPS"); do
        docker_reset "$w"; sync
        b0=$(lo); t0=$(now)
        DOCKER_BUILDKIT=1 /usr/bin/docker build -q --cache-from "$reg/bk-$w:1" \
            -t "bench-cs-$w" "$ctx" >/dev/null
        t1=$(now); b1=$(lo)
        times+=("$(echo "$t1 - $t0" | bc)"); bytes+=("$((b1 - b0))")
    done
    echo "buildkit $w rebuild-from-cache $(printf '%s\n' "${times[@]}" | med) $(printf '%s\n' "${bytes[@]}" | med)"
    docker_reset "$w"
done
