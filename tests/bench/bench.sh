#!/usr/bin/env bash
# Side-by-side benchmark: Cairn and the reference etcd on the same machine, same flags,
# fresh data dirs, rounds alternating Cairn / etcd so machine drift cancels. Prints the
# Cairn/etcd ratio table (medians over rounds) from `cairnctl bench report`.
#
#   ROUNDS=3          rounds per target
#   BENCH_SCALE=1     multiplies request counts (0.1 for a quick smoke run); client, watcher
#                     and lease counts stay fixed
#   BENCH_SIZES="1 3" cluster sizes: every workload on a single member, then the write and
#                     read workloads on a 3-member cluster (workload names "3m-...", clients
#                     connected to all members)
#   (single member only: put-100 and range-l also run over TLS, "tls-put-100" and
#   "tls-range-l", both servers with --auto-tls)
#   BENCH_DEFRAG_MB=1024  db size for the defrag workload: the db is filled with this many MB
#                     (10 KiB values), half of it deleted and compacted, then a put and a
#                     range load start together with `etcdctl defrag`; their latencies are
#                     "defrag-put" and "defrag-range". 0 skips it.
#   BIN_DIR=<repo>/bin  where cairn, cairnctl, etcd and etcdctl are
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin="${BIN_DIR:-$repo/bin}"
rounds="${ROUNDS:-3}"
scale="${BENCH_SCALE:-1}"
work="$(mktemp -d)"
results="$work/results.json"
sizes="${BENCH_SIZES:-1 3}"
pids=()

cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

n() { awk -v n="$1" -v s="$scale" 'BEGIN { v = int(n * s); if (v < 1) v = 1; print v }'; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start TARGET SIZE [FLAGS...]: a cluster of SIZE members with etcd's default flags (and
# FLAGS) on free loopback ports; endpoint is every member's client address, comma-separated.
start() {
	local target="$1" size="$2" exe i cluster="" token
	shift 2
	local extra=("$@")
	case "$target" in cairn) exe="$bin/cairn" ;; etcd) exe="$bin/etcd" ;; esac
	local cports=() pports=()
	for i in $(seq 1 "$size"); do
		cports+=("$(free_port)")
		pports+=("$(free_port)")
		cluster+="${cluster:+,}b$i=http://127.0.0.1:${pports[$((i - 1))]}"
	done
	token="bench-$target-$size-$RANDOM"
	endpoint=""
	for i in $(seq 1 "$size"); do
		local cport="${cports[$((i - 1))]}" pport="${pports[$((i - 1))]}" dir="$work/$target-data-$i"
		rm -rf "$dir"
		endpoint+="${endpoint:+,}127.0.0.1:$cport"
		"$exe" --name "b$i" --data-dir "$dir" \
			--listen-client-urls "$scheme://127.0.0.1:$cport" --advertise-client-urls "$scheme://127.0.0.1:$cport" \
			--listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
			--initial-cluster "$cluster" --initial-cluster-token "$token" \
			--log-level error "${extra[@]}" >"$work/$target-$i.log" 2>&1 &
		pids+=($!)
	done
	for ep in ${endpoint//,/ }; do
		local ok=""
		for _ in $(seq 1 150); do
			if curl -sfk "$scheme://$ep/health" >/dev/null 2>&1; then ok=1; break; fi
			sleep 0.1
		done
		if [[ -z "$ok" ]]; then
			echo "bench: $target member at $ep did not become healthy; logs:" >&2
			cat "$work/$target"-*.log >&2
			exit 1
		fi
	done
}

stop() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do
		for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	pids=()
}

# scheme is the client URLs' scheme start uses: https with --auto-tls for the TLS
# workloads (clients then run with --insecure-skip-tls-verify).
scheme=http

# run TARGET ROUND WORKLOAD ARGS...
run() {
	local target="$1" round="$2" workload="$3"
	shift 3
	# A run with errors still prints its result (exit 1); the report shows and fails on it,
	# so one bad workload does not hide the others.
	"$bin/cairnctl" bench "$@" --endpoints "$endpoint" --json \
		--workload "$workload" --target "$target" --round "$round" >>"$results" ||
		echo "bench: $workload on $target exited $?; see the report" >&2
}

for size in $sizes; do
	prefix=""
	if [[ "$size" != 1 ]]; then prefix="${size}m-"; fi
	for round in $(seq 1 "$rounds"); do
		for target in cairn etcd; do
			echo "bench: $size member(s), round $round/$rounds $target" >&2
			start "$target" "$size"
			run "$target" "$round" "${prefix}put-1" put --clients 1 --conns 1 --key-size 8 --val-size 256 --total "$(n 5000)"
			run "$target" "$round" "${prefix}put-100" put --clients 100 --conns 10 --key-size 8 --val-size 256 \
				--key-space-size 10000 --sequential-keys --total "$(n 20000)"
			run "$target" "$round" "${prefix}range-l" range --clients 100 --conns 10 --consistency l --total "$(n 50000)"
			run "$target" "$round" "${prefix}range-s" range --clients 100 --conns 10 --consistency s --total "$(n 50000)"
			run "$target" "$round" "${prefix}txn-put" txn-put --clients 100 --conns 10 --key-size 8 --val-size 256 \
				--key-space-size 10000 --total "$(n 10000)"
			if [[ "$size" == 1 ]]; then
				# watch: 1000 watchers on 10 streams over one connection, all on one key; QPS is
				# events delivered per second, latency is put sent -> event received. Only the
				# puts scale.
				run "$target" "$round" watch watch --watchers 1000 --streams 10 --conns 1 --put-clients 1 \
					--key-size 8 --val-size 256 --total "$(n 2000)"
				run "$target" "$round" lease lease-keepalive --leases 100 --clients 10 --conns 1 --total "$(n 20000)"
			fi
			stop
			if [[ "$size" == 1 ]]; then
				# put-100 and range-l again with TLS on the client port (self-signed: --auto-tls).
				scheme=https
				start "$target" 1 --auto-tls
				run "$target" "$round" tls-put-100 put --clients 100 --conns 10 --key-size 8 --val-size 256 \
					--key-space-size 10000 --sequential-keys --total "$(n 20000)" --insecure-skip-tls-verify
				run "$target" "$round" tls-range-l range --clients 100 --conns 10 --consistency l --total "$(n 50000)" \
					--insecure-skip-tls-verify
				stop
				scheme=http
			fi
		done
	done
done

# defrag_round TARGET ROUND: put and range latency while the member defragments a db of
# BENCH_DEFRAG_MB, half of it free after a delete and a compaction.
defrag_round() {
	local target="$1" round="$2" keys half rev ctl=("$bin/etcdctl" --endpoints "$endpoint" --command-timeout=10m)
	keys=$((defrag_mb * 1024 / 10))
	half=$(printf '%08d' $((keys / 2)))
	"$bin/cairnctl" bench put --endpoints "$endpoint" --clients 50 --conns 10 --key-size 8 --val-size 10240 \
		--key-space-size "$keys" --sequential-keys --total "$keys" --timeout 30m --json >/dev/null
	"${ctl[@]}" del --range 00000000 "$half" >/dev/null
	rev=$("${ctl[@]}" get 00000000 -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
	"${ctl[@]}" compaction --physical "$rev" >/dev/null
	run "$target" "$round" defrag-put put --clients 10 --conns 2 --key-size 8 --val-size 256 --key-space-size 1000 \
		--total "$(n 3000)" &
	local putpid=$!
	run "$target" "$round" defrag-range range --clients 10 --conns 2 --consistency l --total "$(n 20000)" &
	local rangepid=$!
	local start=$SECONDS
	"${ctl[@]}" defrag >&2
	echo "bench: $target defragmented a ${defrag_mb} MB db in $((SECONDS - start)) s" >&2
	wait "$putpid" "$rangepid"
}

defrag_mb="${BENCH_DEFRAG_MB:-1024}"
if [[ "$defrag_mb" != 0 ]]; then
	for round in $(seq 1 "$rounds"); do
		for target in cairn etcd; do
			echo "bench: defrag of ${defrag_mb} MB, round $round/$rounds $target" >&2
			start "$target" 1 --quota-backend-bytes=8589934592
			defrag_round "$target" "$round"
			stop
		done
	done
fi

echo "cluster sizes: $sizes, $rounds rounds, scale $scale (Cairn/etcd; >1 is better for QPS, <1 for latency)"
"$bin/cairnctl" bench report "$results"
