#!/usr/bin/env bash
# kiln build beside BuildKit on the shared workloads (../shared/tools/bench):
# cold build, no-op rebuild and, for `context`, a rebuild after one file
# changed; medians of REPS runs (default 3) and the kiln/BuildKit ratio.
# Needs root, ../shared/tools/bench/setup-peers.sh run once (it installs and
# starts dockerd and prepares the base images) and, for `context`,
# ../shared/tools/bench/workloads/context/generate.sh /var/tmp/bench-cache/context.
# Usage: benches/build.sh [WORKLOAD...]   (default: parallel steps context fat)
set -euo pipefail
cd "$(dirname "$0")/.."
bench=${BENCH_DIR:-../shared/tools/bench}
cargo build --release --quiet
export KILN="$PWD/target/release/kiln"
workloads=("$@")
[ ${#workloads[@]} -gt 0 ] || workloads=(parallel steps context fat)
out=$(mktemp)
for w in "${workloads[@]}"; do
    bash "$bench/peers.sh" kiln "$w" | tee -a "$out"
    bash "$bench/peers.sh" buildkit "$w" | tee -a "$out"
done
echo
printf '%-9s %-17s %9s %9s %6s\n' workload phase kiln buildkit ratio
awk '{ t[$1" "$2" "$3] = $4; k[$2" "$3] = 1 }
     END { for (x in k) { split(x, p, " "); a = t["kiln " x]; b = t["buildkit " x];
           if (a != "" && b != "") printf "%-9s %-17s %8.2fs %8.2fs %6.2f\n", p[1], p[2], a, b, a / b } }' "$out" | sort
# Peak memory of one cold kiln build per workload (GNU time's max RSS).
for w in "${workloads[@]}"; do
    ctx=$bench/workloads/$w; [ "$w" = context ] && ctx=/var/tmp/bench-cache/context
    root=$(mktemp -d)
    "$KILN" --root "$root" load -q -i /var/tmp/bench-cache/bb-docker.tar >/dev/null
    "$KILN" --root "$root" load -q -i /var/tmp/bench-cache/deb-docker.tar >/dev/null
    rss=$(/usr/bin/time -f %M "$KILN" --root "$root" build -q -t rss-$w "$ctx" 2>&1 >/dev/null | tail -1)
    echo "peak RSS $w cold: $((rss / 1024)) MiB"
    rm -rf "$root"
done
rm -f "$out"
