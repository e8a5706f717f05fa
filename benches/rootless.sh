#!/usr/bin/env bash
# Rootless kiln build beside root kiln build on the shared workloads
# (../shared/tools/bench/workloads): cold build and no-op rebuild, medians of
# REPS runs (default 3), and the rootless/root ratio. Rootless runs as the
# user kiln-bench-rl (made here, with subordinate ids) through setpriv, with
# the same binary, contexts and base images as root.
# Needs root (it makes the user) and the bench cache of
# ../shared/tools/bench/setup-peers.sh (bb-docker.tar, deb-docker.tar).
# Usage: benches/rootless.sh [WORKLOAD...]   (default: parallel steps fat)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "benches/rootless.sh: run as root (it makes the user kiln-bench-rl)" >&2; exit 1; }
bench=${BENCH_DIR:-../shared/tools/bench}
cache=${BENCH_CACHE:-/var/tmp/bench-cache}
REPS=${REPS:-3}
workloads=("$@")
[ ${#workloads[@]} -gt 0 ] || workloads=(parallel steps fat)
cargo build --release --quiet

user=kiln-bench-rl
id "$user" >/dev/null 2>&1 || useradd --create-home "$user"
# Its own ranges, whatever useradd gave.
for f in /etc/subuid /etc/subgid; do
    sed -i "/^$user:/d" "$f"
    echo "$user:1300000:65536" >>"$f"
done
uid=$(id -u "$user")
gid=$(id -g "$user")

# Everything both runs read, where the user can read it.
work=$(mktemp -d /var/tmp/kiln-rootless-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
install -m 755 "${CARGO_TARGET_DIR:-target}/release/kiln" "$work/kiln"
install -m 644 "$cache/bb-docker.tar" "$cache/deb-docker.tar" "$work/"
for w in "${workloads[@]}"; do
    cp -r "$bench/workloads/$w" "$work/ctx-$w"
done
chmod -R a+rX "$work"
# The default network without root needs /dev/net/tun open to the user
# (mode 0666 on most hosts): opened for the run where the host keeps it to
# root, and set back on exit.
tun_mode=$(stat -c %a /dev/net/tun)
trap 'chmod "$tun_mode" /dev/net/tun; rm -rf "$work"' EXIT
chmod 666 /dev/net/tun

# Both through setpriv and env, so the figures differ by kiln alone.
as() {
    local mode=$1
    shift
    if [ "$mode" = root ]; then
        setpriv --reuid=0 --regid=0 --keep-groups -- env HOME="$work" "$work/kiln" "$@"
    else
        setpriv --reuid="$uid" --regid="$gid" --init-groups -- env HOME="$work" "$work/kiln" "$@"
    fi
}

now() { date +%s.%N; }
med() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
out=$(mktemp)
for w in "${workloads[@]}"; do
    for mode in root rootless; do
        store=$work/store-$mode
        cold=()
        noop=()
        for _ in $(seq 1 "$REPS"); do
            rm -rf "$store"
            mkdir "$store"
            [ "$mode" = root ] || chown "$uid:$gid" "$store"
            as "$mode" --root "$store" load -q -i "$work/bb-docker.tar" >/dev/null
            as "$mode" --root "$store" load -q -i "$work/deb-docker.tar" >/dev/null 2>&1  # device nodes: skipped rootless, with warnings
            sync
            t0=$(now)
            as "$mode" --root "$store" build -q -t "bench-$w" "$work/ctx-$w" >/dev/null
            t1=$(now)
            as "$mode" --root "$store" build -q -t "bench-$w" "$work/ctx-$w" >/dev/null
            t2=$(now)
            cold+=("$(echo "$t1 - $t0" | bc)")
            noop+=("$(echo "$t2 - $t1" | bc)")
        done
        echo "$mode $w cold $(printf '%s\n' "${cold[@]}" | med)" | tee -a "$out"
        echo "$mode $w noop $(printf '%s\n' "${noop[@]}" | med)" | tee -a "$out"
    done
done
echo
printf '%-9s %-6s %9s %9s %6s\n' workload phase root rootless ratio
awk '{ t[$1" "$2" "$3] = $4; k[$2" "$3] = 1 }
     END { for (x in k) { split(x, p, " "); a = t["root " x]; b = t["rootless " x];
           if (a != "" && b != "") printf "%-9s %-6s %8.3fs %8.3fs %6.2f\n", p[1], p[2], a, b, b / a } }' "$out" | sort
rm -f "$out"
