#!/usr/bin/env bash
# Side-by-side benchmark: Cairn and the reference etcd on the same machine, same flags,
# fresh data dirs, alternating Cairn / etcd so machine drift cancels: the request and watch
# workloads run on both targets' clusters, up at once, one run right after the other, the
# order swapping every round; defrag, memory, restart and range-1g alternate whole rounds.
# Prints the Cairn/etcd ratio table (medians over rounds) from `cairnctl bench report`.
#
#   BENCH_ETCD_BIN=$BIN_DIR/etcd-3.7  the reference etcd server every workload runs ("etcd"
#                     in the tables): by default the newest etcd release (etcd 3.7.4, built
#                     by `make tools` from tests/tools/bench-ref; the benchmark method,
#                     docs/benchmarks.md: "the newest release is the anchor");
#                     BENCH_ETCD_BIN=$BIN_DIR/etcd benches against etcd 3.6.16, the e2e tests'
#                     reference. Its version heads the summary. The clients (etcdctl, and
#                     etcdutl restoring etcd's snapshot) are bin's 3.6.16 either way.
#   ROUNDS=3          rounds per target
#   BENCH_SCALE=1     multiplies request counts (0.1 for a quick smoke run); client, watcher
#                     and lease counts stay fixed
#   BENCH_SIZES="1 3" cluster sizes: every workload on a single member, then the write, read
#                     and watch workloads on a 3-member cluster (workload names "3m-...", clients
#                     connected to all members), with put-500 (500 clients, 50 conns) there only;
#                     3m-put-1's one client talks to the leader, 3m-put-1-f's to a follower
#   (single member only: put-100 and range-l also run over TLS, "tls-put-100" and
#   "tls-range-l", both servers with --auto-tls)
#   BENCH_DEFRAG_MB=1024  db size for the defrag workload: the db is filled with this many MB
#                     (10 KiB values), half of it deleted and compacted, saved with etcdctl
#                     snapshot save and restored (cairnctl / etcdutl; MB/s printed), then a put and a
#                     range load start together with `etcdctl defrag`; their latencies are
#                     "defrag-put" and "defrag-range". 0 skips it.
#   BENCH_MEM_KEYS=1000000  memory: a member filled with this many keys of 256 B by plain
#                     concurrent Puts (tests/bench/memrestart), VmRSS/VmHWM after the fill
#                     and after 3 restarts, restart-to-ready medians. 0 skips it.
#   BENCH_RESTART_MB=2048  restart: a db of this many MB (10 KiB values), restart-to-ready
#                     (process start to the first linearizable Get) and VmRSS, medians of
#                     3 restarts. 0 skips it. (BENCH_WORKLOADS names these two "memory" and
#                     "restart".)
#   BENCH_RANGE_MB=1024  range-1g: a member filled once with this many MB (10 KiB values;
#                     1024 MB is 100,000 keys), then restarted per mode and read whole once,
#                     unary (Range, no limit) and stream (KV.RangeStream, etcd 3.7's streaming
#                     range); its peak RSS (VmHWM) after the read, per target and mode, and
#                     the ratios cairn-stream/etcd-unary, cairn-stream/etcd-stream and
#                     cairn-unary/etcd-unary (tests/bench/rangemem). 0 skips it.
#                     (BENCH_WORKLOADS names it "range-1g".)
#   BENCH_WORKLOADS=""  space-separated workload names or shell patterns (e.g. "*watch*",
#                     "3m-put-100 defrag-*"): only those run, clusters no selected workload
#                     needs are not started; empty runs everything
#   BIN_DIR=<repo>/bin  where cairn, cairnctl, etcd-3.7, etcdctl and etcdutl are
#   BENCH_RESULTS=""  a file to copy the runs' JSON results to (one object per run), for
#                     `cairnctl bench report` or fields the report does not show
#
# Watch workloads (QPS is events delivered per second; latency is a put's send time to its
# event's receipt, on the bench's clock, so it includes the put's commit; only the puts scale):
#   watch           1000 watchers on 10 streams over one connection, all on one key; one put
#                   client as fast as it goes (fan-out throughput)
#   watch-latency   etcd's `benchmark watch-latency` defaults: 10 streams x 10 watchers on one
#                   key, 100 puts/s (event latency at a steady rate)
#   watch-10k       10,000 watchers: 100 streams x 100 over 10 connections, on 101 keys (so each
#                   put reaches ~99 watchers, each on another stream), 100 puts/s: the cost of
#                   many idle watchers and of a put fanned out across streams
#   3m-watch, 3m-watch-latency, 3m-watch-10k  the same on 3 members: streams spread over every
#                   member (connections round-robin over endpoints), puts through all of them
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin="${BIN_DIR:-$repo/bin}"
etcd_bin="${BENCH_ETCD_BIN:-$bin/etcd-3.7}"
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

# The first line of its --version ("etcd Version: 3.7.4"), named in the summary.
if ! etcd_version="$("$etcd_bin" --version 2>/dev/null)" || [[ -z "$etcd_version" ]]; then
	echo "bench: the reference etcd $etcd_bin does not run (make tools builds bin/etcd-3.7)" >&2
	exit 1
fi
etcd_version="${etcd_version%%$'\n'*}"
echo "bench: reference $etcd_version ($etcd_bin)" >&2

# exe_of TARGET: the server binary of cairn or etcd.
exe_of() {
	case "$1" in
	cairn) echo "$bin/cairn" ;;
	etcd) echo "$etcd_bin" ;;
	esac
}

n() { awk -v n="$1" -v s="$scale" 'BEGIN { v = int(n * s); if (v < 1) v = 1; print v }'; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start TARGET SIZE [FLAGS...]: a cluster of SIZE members with etcd's default flags (and
# FLAGS) on free loopback ports; endpoint is every member's client address, comma-separated.
start() {
	local target="$1" size="$2" exe i cluster="" token
	shift 2
	local extra=("$@")
	exe="$(exe_of "$target")"
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

# wanted NAME...: whether BENCH_WORKLOADS selects any of the workloads NAME...
wanted() {
	local name pat pats
	[[ -z "${BENCH_WORKLOADS:-}" ]] && return 0
	read -ra pats <<<"$BENCH_WORKLOADS" # split on spaces, no file name expansion
	for name in "$@"; do
		for pat in "${pats[@]}"; do
			# shellcheck disable=SC2053 # pat is a pattern on purpose
			[[ "$name" == $pat ]] && return 0
		done
	done
	return 1
}

# leader_and_follower prints the client endpoints of the cluster's leader and of one
# follower, as the members' status tells.
leader_and_follower() {
	"$bin/etcdctl" --endpoints "$endpoint" endpoint status -w json | python3 -c '
import json, sys
st = json.load(sys.stdin)
lead = [e["Endpoint"] for e in st if e["Status"]["header"]["member_id"] == e["Status"].get("leader")]
rest = [e["Endpoint"] for e in st if e["Endpoint"] not in lead]
if not lead or not rest:
    sys.exit("bench: no leader, or no follower, among " + ",".join(e["Endpoint"] for e in st))
print(lead[0], rest[0])'
}

# scheme is the client URLs' scheme start uses: https with --auto-tls for the TLS
# workloads (clients then run with --insecure-skip-tls-verify).
scheme=http

# run TARGET ROUND WORKLOAD ARGS...
run() {
	local target="$1" round="$2" workload="$3"
	shift 3
	wanted "$workload" || return 0
	# A run with errors still prints its result (exit 1); the report shows and fails on it,
	# so one bad workload does not hide the others.
	"$bin/cairnctl" bench "$@" --endpoints "$endpoint" --json \
		--workload "$workload" --target "$target" --round "$round" >>"$results" ||
		echo "bench: $workload on $target exited $?; see the report" >&2
}

# Both targets' clusters run at once, and each workload runs on one, then at once on the
# other, the order swapping every round (both targets first in half the rounds): a
# workload's two runs are seconds apart, so the machine's drift, which moves absolute
# figures by a third over minutes here, cancels in each ratio. (Meanwhile the other
# cluster serves no requests; it only exchanges heartbeats.)
declare -A at # target -> its cluster's client endpoints

# round_order ROUND: the targets in the order ROUND runs them.
round_order() {
	if (($1 % 2)); then echo cairn etcd; else echo etcd cairn; fi
}

# start_both ROUND SIZE [FLAGS...]: start's cluster for each target, in the round's order.
start_both() {
	local round="$1" t
	shift
	for t in $(round_order "$round"); do
		start "$t" "$@"
		at[$t]="$endpoint"
	done
}

# both ROUND WORKLOAD ENDPOINTS ARGS...: run's WORKLOAD on each target in the round's
# order, against the endpoints the associative array named ENDPOINTS holds for it.
both() {
	local round="$1" workload="$2" t
	local -n eps="$3"
	shift 3
	wanted "$workload" || return 0
	for t in $(round_order "$round"); do
		endpoint="${eps[$t]}"
		run "$t" "$round" "$workload" "$@"
	done
}

for size in $sizes; do
	prefix=""
	if [[ "$size" != 1 ]]; then prefix="${size}m-"; fi
	names=("${prefix}put-1" "${prefix}put-100" "${prefix}range-l" "${prefix}range-s" "${prefix}txn-put"
		"${prefix}watch" "${prefix}watch-latency" "${prefix}watch-10k")
	# (tls-put-100 and tls-range-l start members of their own, after these.)
	if [[ "$size" == 1 ]]; then names+=(lease); else names+=("${prefix}put-1-f" "${prefix}put-500"); fi
	for round in $(seq 1 "$rounds"); do
		if wanted "${names[@]}"; then
			echo "bench: $size member(s), round $round/$rounds ($(round_order "$round"))" >&2
			start_both "$round" "$size"
			put1=(put --clients 1 --conns 1 --key-size 8 --val-size 256 --total "$(n 5000)")
			if [[ "$size" == 1 ]]; then
				both "$round" put-1 at "${put1[@]}"
			elif wanted "${prefix}put-1" "${prefix}put-1-f"; then
				# One client talks to one member: the leader for put-1 (as etcd's published
				# figures), a follower for put-1-f (which forwards to the leader), so the
				# election's draw does not choose the path.
				declare -A leader_at=() follower_at=()
				for t in cairn etcd; do
					endpoint="${at[$t]}"
					read -r leader_at[$t] follower_at[$t] < <(leader_and_follower) || true
					if [[ -z "${follower_at[$t]:-}" ]]; then
						echo "bench: $t: no leader and follower to put through" >&2
						exit 1
					fi
				done
				both "$round" "${prefix}put-1" leader_at "${put1[@]}"
				both "$round" "${prefix}put-1-f" follower_at "${put1[@]}"
			fi
			both "$round" "${prefix}put-100" at put --clients 100 --conns 10 --key-size 8 --val-size 256 \
				--key-space-size 10000 --sequential-keys --total "$(n 20000)"
			if [[ "$size" != 1 ]]; then
				# docs/benchmarks.md's put-500: clusters only.
				both "$round" "${prefix}put-500" at put --clients 500 --conns 50 --key-size 8 --val-size 256 \
					--key-space-size 10000 --sequential-keys --total "$(n 20000)"
			fi
			both "$round" "${prefix}range-l" at range --clients 100 --conns 10 --consistency l --total "$(n 50000)"
			both "$round" "${prefix}range-s" at range --clients 100 --conns 10 --consistency s --total "$(n 50000)"
			both "$round" "${prefix}txn-put" at txn-put --clients 100 --conns 10 --key-size 8 --val-size 256 \
				--key-space-size 10000 --total "$(n 10000)"
			# The watch workloads (see the top): on several members the streams go to every
			# member and there is one put client per member.
			watch_conns=1 putters=1
			if [[ "$size" != 1 ]]; then watch_conns="$size" putters="$size"; fi
			both "$round" "${prefix}watch" at watch --watchers 1000 --streams 10 --conns "$watch_conns" \
				--put-clients "$putters" --key-size 8 --val-size 256 --total "$(n 2000)"
			both "$round" "${prefix}watch-latency" at watch --watchers 100 --streams 10 --conns "$watch_conns" \
				--put-clients "$putters" --key-size 8 --val-size 256 --rate 100 --total "$(n 1000)"
			both "$round" "${prefix}watch-10k" at watch --watchers 10000 --streams 100 --conns 10 \
				--key-space-size 101 --put-clients "$putters" --key-size 8 --val-size 256 --rate 100 \
				--total "$(n 2000)"
			if [[ "$size" == 1 ]]; then
				both "$round" lease at lease-keepalive --leases 100 --clients 10 --conns 1 --total "$(n 20000)"
			fi
			stop
		fi
		if [[ "$size" == 1 ]] && wanted tls-put-100 tls-range-l; then
			# put-100 and range-l again with TLS on the client port (self-signed: --auto-tls).
			echo "bench: 1 member over TLS, round $round/$rounds ($(round_order "$round"))" >&2
			scheme=https
			start_both "$round" 1 --auto-tls
			both "$round" tls-put-100 at put --clients 100 --conns 10 --key-size 8 --val-size 256 \
				--key-space-size 10000 --sequential-keys --total "$(n 20000)" --insecure-skip-tls-verify
			both "$round" tls-range-l at range --clients 100 --conns 10 --consistency l --total "$(n 50000)" \
				--insecure-skip-tls-verify
			stop
			scheme=http
		fi
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
	snapshot_round "$target" "$round"
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

# snapshot_round TARGET ROUND: seconds to save the member's db with etcdctl snapshot save
# (the same client for both servers) and to restore it into a new data dir with the
# target's own tool (cairnctl / etcdutl snapshot restore); appended to $snapshots.
snapshot_round() {
	local target="$1" round="$2" file t0 t1 t2 size
	file="$work/$target-snapshot.db"
	t0=$(date +%s.%N)
	"$bin/etcdctl" --endpoints "$endpoint" --command-timeout=10m snapshot save "$file" >/dev/null 2>&1
	t1=$(date +%s.%N)
	case "$target" in
	cairn) "$bin/cairnctl" snapshot restore "$file" --name r --data-dir "$work/$target-restored" \
		--initial-cluster r=http://127.0.0.1:1 --initial-advertise-peer-urls http://127.0.0.1:1 >/dev/null 2>&1 ;;
	etcd) "$bin/etcdutl" snapshot restore "$file" --name r --data-dir "$work/$target-restored" \
		--initial-cluster r=http://127.0.0.1:1 --initial-advertise-peer-urls http://127.0.0.1:1 >/dev/null 2>&1 ;;
	esac
	t2=$(date +%s.%N)
	size=$(stat -c %s "$file")
	echo "$target $round $size $t0 $t1 $t2" >>"$snapshots"
	rm -rf "$file" "$work/$target-restored"
}
snapshots="$work/snapshots.txt"

defrag_mb="${BENCH_DEFRAG_MB:-1024}"
if [[ "$defrag_mb" != 0 ]] && wanted defrag-put defrag-range; then
	for round in $(seq 1 "$rounds"); do
		for target in cairn etcd; do
			echo "bench: defrag of ${defrag_mb} MB, round $round/$rounds $target" >&2
			start "$target" 1 --quota-backend-bytes=8589934592
			defrag_round "$target" "$round"
			stop
		done
	done
fi

# tool_json LOG FIELDS CMD...: runs a bench tool (memrestart, rangemem) with its output on
# stderr, and appends the JSON line it prints to LOG with FIELDS (`"side":"cairn"`, ...)
# added; the tool's exit status. (Not `tee /dev/stderr`: reopening stderr truncates it
# when it is a file.)
tool_json() {
	local log="$1" fields="$2" out="$work/tool.out" rc=0
	shift 2
	"$@" | tee "$out" >&2 || rc=$?
	grep '^{' "$out" | sed "s/^{/{$fields,/" >>"$log" || true
	return "$rc"
}

# Memory with many keys and restart-to-ready, Cairn then etcd; memrestart prints its own
# lines and a JSON summary per target, compared here (the JSON's "side" is cairn or etcd;
# its "target" is the binary's name).
mem_keys="${BENCH_MEM_KEYS:-1000000}"
restart_mb="${BENCH_RESTART_MB:-2048}"
wanted memory || mem_keys=0
wanted restart || restart_mb=0
memlog="$work/mem.json"
if [[ "$mem_keys" != 0 || "$restart_mb" != 0 ]]; then
	(cd "$repo/tests" && go build -o "$work/memrestart" ./bench/memrestart)
	for target in cairn etcd; do
		if [[ "$mem_keys" != 0 ]]; then
			echo "bench: memory with $mem_keys keys, $target" >&2
			tool_json "$memlog" "\"what\":\"mem\",\"side\":\"$target\"" "$work/memrestart" --bin "$(exe_of "$target")" \
				--dir "$(mktemp -d -p "$work")" --keys "$mem_keys" --value-size 256 --json ||
				echo "bench: memory on $target failed" >&2
		fi
		if [[ "$restart_mb" != 0 ]]; then
			echo "bench: restart of a $restart_mb MB db, $target" >&2
			tool_json "$memlog" "\"what\":\"restart\",\"side\":\"$target\"" "$work/memrestart" --bin "$(exe_of "$target")" \
				--dir "$(mktemp -d -p "$work")" --keys $((restart_mb * 1024 / 10)) --value-size 10240 --clients 50 --json ||
				echo "bench: restart on $target failed" >&2
		fi
		rm -rf "$work"/tmp.*
	done
fi

# range-1g: one whole-keyspace read of ~BENCH_RANGE_MB MB, Cairn then etcd; rangemem fills
# the member once and restarts it for each mode, printing its own lines and one JSON
# summary per target.
range_mb="${BENCH_RANGE_MB:-1024}"
wanted range-1g || range_mb=0
rangelog="$work/range.json"
if [[ "$range_mb" != 0 ]]; then
	(cd "$repo/tests" && go build -o "$work/rangemem" ./bench/rangemem)
	for target in cairn etcd; do
		echo "bench: range-1g, one read of a $range_mb MB keyspace, unary and stream, $target" >&2
		tool_json "$rangelog" "\"side\":\"$target\"" "$work/rangemem" --bin "$(exe_of "$target")" \
			--dir "$(mktemp -d -p "$work")" --keys $((range_mb * 1000000 / 10240)) --value-size 10240 \
			--modes unary,stream --json || echo "bench: range-1g on $target failed" >&2
		rm -rf "$work"/tmp.*
	done
fi

echo "reference: $etcd_version ($etcd_bin)"
if [[ -s "$memlog" ]]; then
	echo "memory and restart (medians of 3 restarts; Cairn/etcd, <1 is better):"
	python3 - "$memlog" <<'PY'
import json, statistics, sys
r = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    r[(d["what"], d["side"])] = d
def show(what, label, f):
    c, e = r.get((what, "cairn")), r.get((what, "etcd"))
    if c and e:
        cv, ev = f(c), f(e)
        print(f"  {label:34} cairn {cv:8.2f}, etcd {ev:8.2f}, ratio {cv / ev:.2f}")
mib = lambda k: k / 1024
show("mem", "RSS after fill, MiB", lambda d: mib(d["fill_rss_kib"]))
show("mem", "RSS after restart, MiB", lambda d: mib(statistics.median(d["restart_rss_kib"])))
show("mem", "restart-to-ready, s", lambda d: statistics.median(d["ready_seconds"]))
show("restart", "restart-to-ready (big db), s", lambda d: statistics.median(d["ready_seconds"]))
show("restart", "RSS after restart (big db), MiB", lambda d: mib(statistics.median(d["restart_rss_kib"])))
PY
fi

if [[ -s "$rangelog" ]]; then
	echo "range-1g: peak RSS (VmHWM) after one whole-keyspace read of $range_mb MB, MiB; Cairn/etcd, <1 is better:"
	python3 - "$rangelog" <<'PY'
import json, sys
r = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    for mode, m in d["modes"].items():
        r[(d["side"], mode)] = m
print(f"  {'':13} {'after read':>10} {'after start':>11} {'RssAnon peak':>12}")
for side in ("cairn", "etcd"):
    for mode in ("unary", "stream"):
        m = r.get((side, mode))
        if m:
            print(f"  {side:6} {mode:6} {m['read_hwm_kib'] / 1024:10.0f} {m['start_hwm_kib'] / 1024:11.0f} {m['anon_peak_kib'] / 1024:12.0f}")
for c, e in ((("cairn", "stream"), ("etcd", "unary")), (("cairn", "stream"), ("etcd", "stream")),
             (("cairn", "unary"), ("etcd", "unary"))):
    if c in r and e in r:
        label = "-".join(c) + "/" + "-".join(e)
        print(f"  {label:25} {r[c]['read_hwm_kib'] / r[e]['read_hwm_kib']:.2f}")
PY
fi

if [[ -s "$snapshots" ]]; then
	echo "snapshot save (etcdctl) and restore (cairnctl / etcdutl) of the ${defrag_mb} MB db, MB/s, medians over rounds:"
	python3 - "$snapshots" <<'PY'
import statistics, sys
rate = {}
for line in open(sys.argv[1]):
    target, _, size, t0, t1, t2 = line.split()
    mb = int(size) / 1e6
    rate.setdefault(target, ([], []))
    rate[target][0].append(mb / (float(t1) - float(t0)))
    rate[target][1].append(mb / (float(t2) - float(t1)))
for i, what in enumerate(("save", "restore")):
    c, e = statistics.median(rate["cairn"][i]), statistics.median(rate["etcd"][i])
    print(f"  {what:8} cairn {c:.0f}, etcd {e:.0f}, ratio {c / e:.2f}")
PY
fi

if [[ -n "${BENCH_RESULTS:-}" && -f "$results" ]]; then cp "$results" "$BENCH_RESULTS"; fi
if [[ -s "$results" ]]; then
	echo "cluster sizes: $sizes, $rounds rounds, scale $scale (Cairn/etcd; >1 is better for QPS, <1 for latency)"
	"$bin/cairnctl" bench report "$results"
fi
