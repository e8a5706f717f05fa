#!/usr/bin/env bash
# Rootless kiln build beside root kiln build on the shared workloads
# (../shared/tools/bench/workloads): cold build (median of REPS runs, default
# 3) and no-op rebuild (median of RUNS runs, default 30, the modes
# interleaved), and the rootless/root ratios; then `kiln volume ls` (a
# command that only opens the store), the same way. Rootless runs as the
# user kiln-bench-rl (made here, with subordinate ids) through setpriv, with
# the same binary, contexts and base images as root, twice: joining the user
# namespace holder's namespace (the default), and with KILN_USERNS_IDLE=0,
# each command making its own namespace (as before the holder; own-ns).
# Needs root (it makes the user) and the bench cache of
# ../shared/tools/bench/setup-peers.sh (bb-docker.tar, deb-docker.tar).
# Usage: benches/rootless.sh [WORKLOAD...]   (default: parallel steps fat)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "benches/rootless.sh: run as root (it makes the user kiln-bench-rl)" >&2; exit 1; }
bench=${BENCH_DIR:-../shared/tools/bench}
cache=${BENCH_CACHE:-/var/tmp/bench-cache}
REPS=${REPS:-3}
RUNS=${RUNS:-30}
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
# The user's runtime directory (the holder's record), in the bench's.
install -d -m 700 -o "$uid" -g "$gid" "$work/run"
# The default network without root needs /dev/net/tun open to the user
# (mode 0666 on most hosts): opened for the run where the host keeps it to
# root, and set back on exit.
tun_mode=$(stat -c %a /dev/net/tun)
trap 'as rootless system reset-userns || true; chmod "$tun_mode" /dev/net/tun; rm -rf "$work"' EXIT
chmod 666 /dev/net/tun

# Both through setpriv and env, so the figures differ by kiln alone:
# `prefix MODE` is the command line before kiln's arguments.
prefix() {
    local idle=900
    [ "$1" != rootless-own ] || idle=0
    if [ "$1" = root ]; then
        echo "setpriv --reuid=0 --regid=0 --keep-groups"
    else
        echo "setpriv --reuid=$uid --regid=$gid --init-groups"
    fi
    echo "-- env HOME=$work XDG_RUNTIME_DIR=$work/run KILN_USERNS_IDLE=$idle $work/kiln"
}
as() {
    local mode=$1
    shift
    # shellcheck disable=SC2046 # words of prefix, none with spaces
    $(prefix "$mode") "$@"
}
# `kiln ARGS` in each mode (STORE in ARGS: the mode's store), RUNS rounds
# after 3 of warm-up, the modes interleaved in each round (in turn first),
# so that the shared machine's load falls on all alike: "MODE MEDIAN" lines.
interleaved() {
    local cmds=() m
    for m in root rootless rootless-own; do
        cmds+=("$(prefix "$m" | tr '\n' ' ') ${*//STORE/$work/store-$m}")
    done
    paste -d' ' <(printf '%s\n' root rootless rootless-own) <(python3 -c '
import shlex, statistics, subprocess, sys, time
runs, cmds = int(sys.argv[1]), [shlex.split(c) for c in sys.argv[2:]]
times = [[] for _ in cmds]
for r in range(runs + 3):
    for k in range(len(cmds)):
        i = (r + k) % len(cmds)
        t = time.perf_counter()
        subprocess.run(cmds[i], stdout=subprocess.DEVNULL, check=True)
        if r >= 3:
            times[i].append(time.perf_counter() - t)
for t in times:
    print("%.4f" % statistics.median(t))
' "$RUNS" "${cmds[@]}")
}

now() { date +%s.%N; }
med() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
out=$(mktemp)
for w in "${workloads[@]}"; do
    # Cold builds: the modes interleaved in each round (in turn first), so
    # that the machine's drift falls on all alike; each store gets the one
    # base its workload uses (loading and deleting the 200 MB deb base
    # each time was most of the spread for the others).
    declare -A cold=()
    modes=(root rootless rootless-own)
    for r in $(seq 1 "$REPS"); do
        for k in 0 1 2; do
            mode=${modes[$(((r + k) % 3))]}
            store=$work/store-$mode
            rm -rf "$store"
            mkdir "$store"
            [ "$mode" = root ] || chown "$uid:$gid" "$store"
            if [ "$w" = fat ]; then
                as "$mode" --root "$store" load -q -i "$work/deb-docker.tar" >/dev/null 2>&1  # device nodes: skipped rootless, with warnings
            else
                as "$mode" --root "$store" load -q -i "$work/bb-docker.tar" >/dev/null
            fi
            sync
            t0=$(now)
            as "$mode" --root "$store" build -q -t "bench-$w" "$work/ctx-$w" >/dev/null
            t1=$(now)
            cold[$mode]+="$(echo "$t1 - $t0" | bc) "
        done
    done
    for mode in "${modes[@]}"; do
        # shellcheck disable=SC2086 # the list's words
        echo "$mode $w cold $(printf '%s\n' ${cold[$mode]} | med)" | tee -a "$out"
    done
    unset cold
    # No-op rebuilds take 10 to 40 ms: RUNS of them, interleaved.
    interleaved --root STORE build -q -t "bench-$w" "$work/ctx-$w" | while read -r mode t; do
        echo "$mode $w noop $t" | tee -a "$out"
    done
done
echo
printf '%-9s %-6s %9s %9s %6s %9s %6s\n' workload phase root rootless ratio own-ns ratio
awk '{ t[$1" "$2" "$3] = $4; k[$2" "$3] = 1 }
     END { for (x in k) { split(x, p, " "); a = t["root " x]; b = t["rootless " x];
           c = t["rootless-own " x];
           if (a != "" && b != "" && c != "")
               printf "%-9s %-6s %8.3fs %8.3fs %6.2f %8.3fs %6.2f\n", p[1], p[2], a, b, b / a, c, c / a } }' "$out" | sort
rm -f "$out"

# A command that only opens the store: what entering costs.
echo
interleaved --root STORE volume ls -q | while read -r mode t; do
    echo "volume ls $mode: $t s"
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
