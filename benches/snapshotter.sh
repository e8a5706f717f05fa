#!/usr/bin/env bash
# The copy snapshotter (kiln's fallback where overlayfs cannot be mounted)
# beside overlayfs, on the shared workloads (../shared/tools/bench/workloads):
# cold build and no-op rebuild, medians of REPS runs (default 3), as root
# and rootless (the user kiln-bench-rl, made here with subordinate ids, as
# benches/rootless.sh does), KILN_SNAPSHOTTER=overlay or copy; the same
# release binary, contexts and base images for all.
# Needs root and the bench cache of ../shared/tools/bench/setup-peers.sh
# (bb-docker.tar, deb-docker.tar).
# Usage: benches/snapshotter.sh [WORKLOAD...]   (default: parallel steps fat)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "benches/snapshotter.sh: run as root (it makes the user kiln-bench-rl)" >&2; exit 1; }
bench=${BENCH_DIR:-../shared/tools/bench}
cache=${BENCH_CACHE:-/var/tmp/bench-cache}
REPS=${REPS:-3}
USERS=${USERS:-root rootless}
workloads=("$@")
[ ${#workloads[@]} -gt 0 ] || workloads=(parallel steps fat)
cargo build --release --quiet

user=kiln-bench-rl
id "$user" >/dev/null 2>&1 || useradd --create-home "$user"
for f in /etc/subuid /etc/subgid; do
    sed -i "/^$user:/d" "$f"
    echo "$user:1300000:65536" >>"$f"
done
uid=$(id -u "$user")
gid=$(id -g "$user")

work=$(mktemp -d /var/tmp/kiln-snapshotter-bench.XXXXXX)
chmod 755 "$work"
install -m 755 "${CARGO_TARGET_DIR:-target}/release/kiln" "$work/kiln"
install -m 644 "$cache/bb-docker.tar" "$cache/deb-docker.tar" "$work/"
for w in "${workloads[@]}"; do
    cp -r "$bench/workloads/$w" "$work/ctx-$w"
done
chmod -R a+rX "$work"
tun_mode=$(stat -c %a /dev/net/tun)
trap 'chmod "$tun_mode" /dev/net/tun; rm -rf "$work"' EXIT
chmod 666 /dev/net/tun

as() {
    local who=$1 snapshotter=$2
    shift 2
    if [ "$who" = root ]; then
        setpriv --reuid=0 --regid=0 --keep-groups -- env HOME="$work" KILN_SNAPSHOTTER="$snapshotter" "$work/kiln" "$@"
    else
        # Another bench on a shared machine may have set it back.
        chmod 666 /dev/net/tun
        setpriv --reuid="$uid" --regid="$gid" --init-groups -- env HOME="$work" KILN_SNAPSHOTTER="$snapshotter" "$work/kiln" "$@"
    fi
}

now() { date +%s.%N; }
med() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
out=$(mktemp)
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for w in "${workloads[@]}"; do
    for who in $USERS; do
        for snapshotter in overlay copy; do
            store=$work/store-$who-$snapshotter
            cold=()
            noop=()
            for _ in $(seq 1 "$REPS"); do
                rm -rf "$store"
                mkdir "$store"
                [ "$who" = root ] || chown "$uid:$gid" "$store"
                as "$who" "$snapshotter" --root "$store" load -q -i "$work/bb-docker.tar" >/dev/null
                # Only fat builds on deb (device nodes: skipped rootless, with warnings).
                [ "$w" != fat ] || as "$who" "$snapshotter" --root "$store" load -q -i "$work/deb-docker.tar" >/dev/null 2>&1
                sync
                t0=$(now)
                as "$who" "$snapshotter" --root "$store" build -q -t "bench-$w" "$work/ctx-$w" >/dev/null
                t1=$(now)
                as "$who" "$snapshotter" --root "$store" build -q -t "bench-$w" "$work/ctx-$w" >/dev/null
                t2=$(now)
                cold+=("$(echo "$t1 - $t0" | bc)")
                noop+=("$(echo "$t2 - $t1" | bc)")
            done
            rm -rf "$store"
            echo "$who-$snapshotter $w cold $(printf '%s\n' "${cold[@]}" | med)" | tee -a "$out"
            echo "$who-$snapshotter $w noop $(printf '%s\n' "${noop[@]}" | med)" | tee -a "$out"
            echo "  (cold runs: ${cold[*]}; load $(cut -d' ' -f1 /proc/loadavg))"
        done
    done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '%-9s %-8s %-6s %9s %9s %6s\n' workload user phase overlay copy ratio
awk '{ split($1, m, "-"); t[m[1]" "m[2]" "$2" "$3] = $4; k[$2" "m[1]" "$3] = 1 }
     END { for (x in k) { split(x, p, " "); a = t[p[2]" overlay "p[1]" "p[3]]; b = t[p[2]" copy "p[1]" "p[3]];
           if (a != "" && b != "") printf "%-9s %-8s %-6s %8.3fs %8.3fs %6.2f\n", p[1], p[2], p[3], a, b, b / a } }' "$out" | sort
rm -f "$out"
