#!/usr/bin/env bash
# Benchmark of kept containers (medians, hyperfine):
#   - `kiln run -d` until the container runs (it returns once the
#     container's process exists), `--network none`, every container
#     removed before each run so the store does not grow;
#   - `kiln exec C true` in a running container;
#   - `kiln ps -a` with 100 containers in the store.
# Targets: under 20 ms, 15 ms and 20 ms. Docker's `docker run -d` is
# measured beside for comparison only when a dockerd already runs
# (`docker info` works): this script never starts one.
#
#   benches/containers.sh [WORKDIR]   (default /var/tmp/kiln-bench-containers)
#
# Needs root, busybox-static and hyperfine. Builds kiln in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/var/tmp/kiln-bench-containers}
cargo build --release --quiet
kiln="${CARGO_TARGET_DIR:-$PWD/target}/release/kiln"
rm -rf "$work" && mkdir -p "$work/rootfs/bin" "$work/rootfs/etc"
cp /bin/busybox "$work/rootfs/bin/"
for applet in sh true echo sleep; do ln -s busybox "$work/rootfs/bin/$applet"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
export KILN_ROOT="$work/store"
"$kiln" import "$work/rootfs" bench-c:1 >/dev/null
"$kiln" run --rm --network none bench-c:1 true   # unpack the snapshot once

# A script, not a shell function: hyperfine runs --prepare without bash.
cat > "$work/remove-all.sh" <<EOF
#!/bin/sh
"$kiln" ps -aq | xargs -r "$kiln" rm -f >/dev/null
EOF
chmod +x "$work/remove-all.sh"
remove_all() { "$work/remove-all.sh"; }

hyperfine -N --runs 50 --warmup 3 --export-json "$work/run-d.json" \
    --prepare "$work/remove-all.sh" \
    -n "kiln run -d (to running)" "$kiln run -d --network none bench-c:1 sleep 1000"
remove_all

"$kiln" run -d --network none --name bench-exec bench-c:1 sleep 1000 >/dev/null
hyperfine -N --runs 100 --warmup 5 --export-json "$work/exec.json" \
    -n "kiln exec C true" "$kiln exec bench-exec true"
remove_all

for i in $(seq 1 100); do
    "$kiln" create --network none --name "c$i" bench-c:1 true >/dev/null
done
hyperfine -N --runs 100 --warmup 5 --export-json "$work/ps.json" \
    -n "kiln ps -a (100 containers)" "$kiln ps -a" \
    -n "kiln ps (100 containers, none running)" "$kiln ps"
remove_all

# A local busybox image for Docker: `busybox`, else `bb` (never pulled).
docker_image=""
if docker info >/dev/null 2>&1; then
    for candidate in busybox bb; do
        if docker image inspect "$candidate" >/dev/null 2>&1; then
            docker_image=$candidate
            break
        fi
    done
fi
if [ -n "$docker_image" ]; then
    cat > "$work/docker-remove.sh" <<'EOF'
#!/bin/sh
docker ps -aq --filter label=kiln-bench | xargs -r docker rm -f >/dev/null
EOF
    chmod +x "$work/docker-remove.sh"
    hyperfine --runs 20 --warmup 2 --export-json "$work/docker.json" \
        --prepare "$work/docker-remove.sh" \
        -n "docker run -d (comparison)" \
        "docker run -d --network none --label kiln-bench $docker_image sleep 1000" ||
        echo "docker run -d failed: no comparison"
    "$work/docker-remove.sh"
    docker run -d --network none --label kiln-bench --name kiln-bench-exec "$docker_image" sleep 1000 >/dev/null || true
    hyperfine --runs 50 --warmup 3 --export-json "$work/docker-exec.json" \
        -n "docker exec C true (comparison)" "docker exec kiln-bench-exec true" ||
        echo "docker exec failed: no comparison"
    "$work/docker-remove.sh"
fi

python3 - "$work" <<'PY'
import json, pathlib, sys
work = pathlib.Path(sys.argv[1])
for name in ["run-d", "exec", "ps", "docker", "docker-exec"]:
    path = work / f"{name}.json"
    if not path.exists():
        continue
    for result in json.load(open(path))["results"]:
        print(f"{result['command']}: median {result['median'] * 1000:.1f} ms "
              f"(min {result['min'] * 1000:.1f}, max {result['max'] * 1000:.1f})")
PY
