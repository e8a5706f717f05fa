#!/usr/bin/env bash
# Benchmark of published ports (kiln's userspace proxy), beside Docker's
# `docker run -d -p` when a dockerd already runs (this script never starts
# one) and has a local busybox image (`bb`, else `busybox`; never pulled):
#   - `run -d -p` to a first answered request: the container is started
#     with `-p 127.0.0.1:PORT:80` running busybox httpd, then curl retries
#     until `GET /etc/passwd` answers (medians of hyperfine, every
#     container removed before each run);
#   - throughput through the published port, host to container over
#     127.0.0.1, 2000 MiB sent by a Python client:
#       * "nc": into busybox `nc -l > /dev/null` in the container (the
#         dd-over-nc of the issue; busybox nc's small buffers limit it);
#       * "sink": into a Python sink run in the container's network
#         namespace (nsenter), which measures the proxy rather than nc;
#       * "direct": the same sink on the host's loopback, no proxy: the
#         ceiling of this machine (the Python client is most of it);
#     with the CPU time the proxy process spent (kiln's monitor, or
#     docker-proxy), which tells splice(2) from a copy where the
#     throughput is bound by the client;
#   - the same sink reached from "another host": a network namespace
#     joined to the host by a veth pair, sending to the host's address on
#     it, where both use their kernel path (DNAT to the container's bridge
#     address: kiln's nftables maps, Docker's iptables rules), and kiln's
#     proxy alone (KILN_USERLAND_PROXY_ONLY=1) beside them;
#   - `run -d -p PORT:80` (every address: DNAT rules added at start)
#     beside `-p 127.0.0.1:PORT:80` (proxy only), to the first answer.
#
#   benches/ports.sh [WORKDIR]   (default /var/tmp/kiln-bench-ports)
#
# Needs root, busybox-static, slirp4netns, hyperfine, curl, python3 and
# nsenter. Builds kiln in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/var/tmp/kiln-bench-ports}
cargo build --release --quiet
kiln="${CARGO_TARGET_DIR:-$PWD/target}/release/kiln"
rm -rf "$work" && mkdir -p "$work/rootfs/bin" "$work/rootfs/etc"
cp /bin/busybox "$work/rootfs/bin/"
for applet in sh true httpd nc sleep; do ln -s busybox "$work/rootfs/bin/$applet"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
export KILN_ROOT="$work/store"
"$kiln" import "$work/rootfs" bench-p:1 >/dev/null
"$kiln" run --rm bench-p:1 true   # unpack the snapshot once

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cat > "$work/client.py" <<'EOF'
import socket, sys, time
port, mib = int(sys.argv[1]), int(sys.argv[2])
host = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"
s = socket.create_connection((host, port))
buf = b"\0" * (1 << 20)
start = time.monotonic()
for _ in range(mib):
    s.sendall(buf)
s.shutdown(socket.SHUT_WR)
s.recv(1)  # the sink closes once it has read everything
print("%.0f" % (mib / (time.monotonic() - start)))
EOF
cat > "$work/sink.py" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(8)
while True:
    c, _ = s.accept()
    while c.recv(1 << 20):
        pass
    c.close()
EOF

# `RUNNER PORT`: start an httpd with the port published, then fetch until
# it answers (at most 2000 tries: a container that did not start fails
# the benchmark instead of hanging it). Scripts, not shell functions: hyperfine runs them without
# bash.
cat > "$work/kiln-first.sh" <<EOF
#!/bin/sh
"$kiln" run -d -p 127.0.0.1:\$1:80 bench-p:1 httpd -f -p 80 -h / >/dev/null
tries=0
until curl -sf -o /dev/null http://127.0.0.1:\$1/etc/passwd; do
    tries=\$((tries + 1)); [ \$tries -lt 2000 ] || exit 1
done
EOF
sed 's/-p 127.0.0.1:/-p /' "$work/kiln-first.sh" > "$work/kiln-first-any.sh"
cat > "$work/kiln-remove.sh" <<EOF
#!/bin/sh
"$kiln" ps -aq | xargs -r "$kiln" rm -f >/dev/null
EOF
chmod +x "$work"/*.sh
port=$(free_port)
hyperfine -N --runs 30 --warmup 3 --export-json "$work/first.json" \
    --prepare "$work/kiln-remove.sh" \
    -n "kiln run -d -p 127.0.0.1:P:80, to the first answer" "$work/kiln-first.sh $port" \
    -n "kiln run -d -p P:80 (DNAT rules too), to the first answer" "$work/kiln-first-any.sh $port"
"$work/kiln-remove.sh"

# Throughput: `measure NAME PORT [PROXY_PID]`, three runs each; with the
# proxy's pid, also the CPU time it used (user + system, all threads).
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
measure() {
    local name=$1 port=$2 proxy=${3:-}
    local runs=() cpu=() before
    for _ in 1 2 3; do
        [ -n "$proxy" ] && before=$(ticks "$proxy")
        runs+=("$(python3 "$work/client.py" "$port" 2000)")
        [ -n "$proxy" ] && cpu+=("$(( ($(ticks "$proxy") - before) * 1000 / $(getconf CLK_TCK) ))")
    done
    echo "$name: ${runs[*]} MiB/s${proxy:+, proxy CPU ${cpu[*]} ms per 2000 MiB}"
}
monitor_of() {
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["MonitorPid"])' \
        "$KILN_ROOT/containers/$("$kiln" inspect -f '{{.Id}}' "$1")/state.json"
}
sinks=()
trap 'kill "${sinks[@]}" 2>/dev/null || true; "$work/kiln-remove.sh"' EXIT

nc_port=$(free_port)
"$kiln" run -d -p "127.0.0.1:$nc_port:5001" --name bench-nc bench-p:1 \
    sh -c 'while true; do nc -l -p 5001 >/dev/null; done' >/dev/null
sink_port=$(free_port)
"$kiln" run -d -p "127.0.0.1:$sink_port:5002" --name bench-sink bench-p:1 sleep 100000 >/dev/null
pid=$("$kiln" inspect -f '{{.State.Pid}}' bench-sink)
nsenter --net="/proc/$pid/ns/net" python3 "$work/sink.py" 5002 & sinks+=($!)
direct_port=$(free_port)
python3 "$work/sink.py" "$direct_port" & sinks+=($!)
sleep 1
measure "kiln proxy, nc" "$nc_port" "$(monitor_of bench-nc)"
measure "kiln proxy, sink" "$sink_port" "$(monitor_of bench-sink)"
measure "no proxy (host loopback), sink" "$direct_port"
"$work/kiln-remove.sh"

# From another host's view: a namespace (held by a sleep, not named)
# joined by a veth pair; the client sends to the host's end.
unshare -n sleep 100000 & holder=$!
sinks+=("$holder")
until [ "$(readlink /proc/$holder/ns/net)" != "$(readlink /proc/self/ns/net)" ]; do sleep 0.01; done
ip link add kbenchh type veth peer name kbenchn netns "$holder"
ip addr add 10.217.251.1/30 dev kbenchh && ip link set kbenchh up
nsenter --net="/proc/$holder/ns/net" ip addr add 10.217.251.2/30 dev kbenchn
nsenter --net="/proc/$holder/ns/net" ip link set kbenchn up
# The paths from the namespace are measured in alternation (one run of
# each per round, three rounds), so that a change of the machine's load
# hits them alike: `remote_add NAME PORT [PROXY_PID]`, then `remote_rounds`.
remote_names=() remote_ports=() remote_proxies=()
remote_add() { remote_names+=("$1"); remote_ports+=("$2"); remote_proxies+=("${3:-}"); }
remote_rounds() {
    local runs=() cpu=() i proxy before
    echo "load average before the remote runs: $(cut -d' ' -f1-3 /proc/loadavg)"
    for _ in 1 2 3; do
        for i in "${!remote_names[@]}"; do
            proxy=${remote_proxies[$i]}
            [ -n "$proxy" ] && before=$(ticks "$proxy")
            runs[i]+="$(nsenter --net="/proc/$holder/ns/net" \
                python3 "$work/client.py" "${remote_ports[$i]}" 2000 10.217.251.1) "
            [ -n "$proxy" ] && cpu[i]+="$(( ($(ticks "$proxy") - before) * 1000 / $(getconf CLK_TCK) )) "
        done
    done
    for i in "${!remote_names[@]}"; do
        proxy=${remote_proxies[$i]}
        echo "from another namespace: ${remote_names[$i]}: ${runs[$i]}MiB/s${proxy:+, proxy CPU ${cpu[$i]}ms per 2000 MiB}"
    done
    echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
}
kiln_port=$(free_port)
"$kiln" run -d -p "$kiln_port:5002" --name bench-remote bench-p:1 sleep 100000 >/dev/null
pid=$("$kiln" inspect -f '{{.State.Pid}}' bench-remote)
nsenter --net="/proc/$pid/ns/net" python3 "$work/sink.py" 5002 & sinks+=($!)
proxy_port=$(free_port)
KILN_USERLAND_PROXY_ONLY=1 "$kiln" run -d -p "$proxy_port:5002" --name bench-remote-proxy \
    bench-p:1 sleep 100000 >/dev/null
pid=$("$kiln" inspect -f '{{.State.Pid}}' bench-remote-proxy)
nsenter --net="/proc/$pid/ns/net" python3 "$work/sink.py" 5002 & sinks+=($!)
remote_direct=$(free_port)
python3 "$work/sink.py" "$remote_direct" & sinks+=($!)
remote_add "kiln DNAT, sink" "$kiln_port" "$(monitor_of bench-remote)"
remote_add "kiln proxy only, sink" "$proxy_port" "$(monitor_of bench-remote-proxy)"
remote_add "no container (host's sink)" "$remote_direct"

docker_image=""
if docker info >/dev/null 2>&1; then
    for candidate in bb busybox; do
        if docker image inspect "$candidate" >/dev/null 2>&1; then
            docker_image=$candidate
            break
        fi
    done
fi
if [ -z "$docker_image" ]; then
    echo "no dockerd or no local busybox image: no comparison"
    sleep 1
    remote_rounds
    exit 0
fi
cat > "$work/docker-first.sh" <<EOF
#!/bin/sh
docker run -d --label kiln-bench -p 127.0.0.1:\$1:80 $docker_image httpd -f -p 80 -h / >/dev/null
tries=0
until curl -sf -o /dev/null http://127.0.0.1:\$1/etc/passwd; do
    tries=\$((tries + 1)); [ \$tries -lt 2000 ] || exit 1
done
EOF
cat > "$work/docker-remove.sh" <<'EOF'
#!/bin/sh
docker ps -aq --filter label=kiln-bench | xargs -r docker rm -f >/dev/null
EOF
chmod +x "$work"/docker-*.sh
trap 'kill "${sinks[@]}" 2>/dev/null || true; "$work/kiln-remove.sh"; "$work/docker-remove.sh"' EXIT
port=$(free_port)
hyperfine -N --runs 20 --warmup 2 --export-json "$work/docker-first.json" \
    --prepare "$work/docker-remove.sh" \
    -n "docker run -d -p, to the first answer (comparison)" "$work/docker-first.sh $port" ||
    echo "docker run -d -p failed: no comparison"
"$work/docker-remove.sh"

nc_port=$(free_port)
docker run -d --label kiln-bench -p "127.0.0.1:$nc_port:5001" "$docker_image" \
    sh -c 'while true; do nc -l -p 5001 >/dev/null; done' >/dev/null
sink_port=$(free_port)
id=$(docker run -d --label kiln-bench -p "127.0.0.1:$sink_port:5002" "$docker_image" sleep 100000)
pid=$(docker inspect -f '{{.State.Pid}}' "$id")
nsenter --net="/proc/$pid/ns/net" python3 "$work/sink.py" 5002 & sinks+=($!)
sleep 1
docker_proxy() { pgrep -f "docker-proxy .*-host-port $1 " | head -1; }
measure "docker-proxy, nc (comparison)" "$nc_port" "$(docker_proxy "$nc_port")"
measure "docker-proxy, sink (comparison)" "$sink_port" "$(docker_proxy "$sink_port")"

# Docker's DNAT from the same namespace.
docker_port=$(free_port)
id=$(docker run -d --label kiln-bench -p "$docker_port:5002" "$docker_image" sleep 100000)
pid=$(docker inspect -f '{{.State.Pid}}' "$id")
nsenter --net="/proc/$pid/ns/net" python3 "$work/sink.py" 5002 & sinks+=($!)
remote_add "docker (DNAT), sink (comparison)" "$docker_port" "$(docker_proxy "$docker_port")"
sleep 1
remote_rounds
