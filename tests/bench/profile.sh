#!/usr/bin/env bash
# CPU and allocation profiles of a 3-member Cairn cluster under one write workload, from
# the leader and one follower (each member runs with --enable-pprof), broken down by
# component (tests/bench/pprof_breakdown.py).
#
#   WORKLOAD=put-100   put-100 (100 clients, 10 conns, sequential keys) or txn-put
#   SECONDS_CPU=15     length of the CPU profile
#   OUT=<tmp dir>      where the profiles (leader.cpu, follower.cpu, *.alloc) are kept
#   BIN_DIR=<repo>/bin where cairn, cairnctl and etcdctl are
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin="${BIN_DIR:-$repo/bin}"
workload="${WORKLOAD:-put-100}"
secs="${SECONDS_CPU:-15}"
out="${OUT:-$(mktemp -d)}"
work="$(mktemp -d)"
pids=()
cleanup() {
	# wait reaps each member quietly (bash reports a killed job otherwise).
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$out"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cports=() pports=() cluster=""
for i in 1 2 3; do
	cports+=("$(free_port)")
	pports+=("$(free_port)")
	cluster+="${cluster:+,}p$i=http://127.0.0.1:${pports[$((i - 1))]}"
done
endpoints="" token="profile-$RANDOM"
for i in 1 2 3; do
	cport="${cports[$((i - 1))]}" pport="${pports[$((i - 1))]}"
	endpoints+="${endpoints:+,}127.0.0.1:$cport"
	"$bin/cairn" --name "p$i" --data-dir "$work/data-$i" --enable-pprof \
		--listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
		--listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
		--initial-cluster "$cluster" --initial-cluster-token "$token" \
		--log-level error >"$work/$i.log" 2>&1 &
	pids+=($!)
done
for ep in ${endpoints//,/ }; do
	for _ in $(seq 1 150); do curl -sf "http://$ep/health" >/dev/null 2>&1 && break; sleep 0.1; done
done

# The leader is the member whose status names itself as leader (once one is elected).
leader="" follower=""
for _ in $(seq 1 100); do
	read -r leader follower < <("$bin/etcdctl" --endpoints "$endpoints" endpoint status -w json 2>/dev/null |
		python3 -c 'import json, sys
lead, fol = "", ""
for e in json.load(sys.stdin):
    s = e["Status"]
    if s.get("leader") and s["header"]["member_id"] == s["leader"]:
        lead = e["Endpoint"]
    elif s.get("leader"):
        fol = fol or e["Endpoint"]
print(lead, fol)' || true)
	[[ -n "$leader" && -n "$follower" ]] && break
	sleep 0.2
done
[[ -n "$leader" && -n "$follower" ]] || { echo "profile: no leader elected" >&2; exit 1; }
echo "profile: leader $leader, follower $follower, workload $workload, ${secs}s" >&2

case "$workload" in
put-100) args=(put --clients 100 --conns 10 --key-size 8 --val-size 256 --key-space-size 10000 --sequential-keys) ;;
txn-put) args=(txn-put --clients 100 --conns 10 --key-size 8 --val-size 256 --key-space-size 10000) ;;
*) echo "profile: unknown workload $workload" >&2; exit 2 ;;
esac
# Enough requests to outlast the profile; the run is stopped once the profiles are taken.
"$bin/cairnctl" bench "${args[@]}" --total 100000000 --endpoints "$endpoints" >"$out/bench.txt" 2>&1 &
benchpid=$!
sleep 2
curl -sf "http://$leader/debug/pprof/allocs" -o "$out/leader.alloc0"
curl -sf "http://$follower/debug/pprof/allocs" -o "$out/follower.alloc0"
rev() { "$bin/etcdctl" --endpoints "$leader" endpoint status -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])'; }
rev0=$(rev)
curl -sf "http://$leader/debug/pprof/profile?seconds=$secs" -o "$out/leader.cpu" &
c1=$!
curl -sf "http://$follower/debug/pprof/profile?seconds=$secs" -o "$out/follower.cpu" &
c2=$!
wait "$c1" "$c2"
rev1=$(rev)
curl -sf "http://$leader/metrics" -o "$out/leader.metrics"
curl -sf "http://$leader/debug/pprof/allocs" -o "$out/leader.alloc"
curl -sf "http://$follower/debug/pprof/allocs" -o "$out/follower.alloc"
kill "$benchpid" 2>/dev/null || true
wait "$benchpid" 2>/dev/null || true

writes=$((rev1 - rev0))
echo "writes during the CPU profile: $writes ($((writes / secs))/s)"
grep '^cairn_server_proposal_batch_requests_\(sum\|count\)' "$out/leader.metrics" || true
for m in leader follower; do
	cpu=$(go tool pprof -raw "$out/$m.cpu" 2>/dev/null | awk '/^Samples:/{s=1;next} /^Locations/{s=0} s && /^ *[0-9]+ +[0-9]+:/{n+=$2} END{print int(n/1e6)}')
	echo "## $m CPU ($workload): ${cpu} ms sampled, $((cpu * 1000 / (writes > 0 ? writes : 1))) ms per 1000 writes"
	go tool pprof -traces "$out/$m.cpu" 2>/dev/null | python3 "$here/pprof_breakdown.py"
	echo "## $m allocations during the profile ($workload, alloc_space)"
	go tool pprof -sample_index=alloc_space -base "$out/$m.alloc0" -traces "$out/$m.alloc" 2>/dev/null |
		python3 "$here/pprof_breakdown.py"
done
echo "profiles in $out" >&2
