// Command cairnctl is Cairn's operator tool. It owns the client-side work an
// operator or CI job does against a running cluster, speaking only the public
// etcd v3 gRPC API so that every command works the same against Cairn and
// against a reference etcd:
//
//   - bench: a load generator (put, range, txn-put, watch, lease-keepalive)
//     that reports QPS and latency percentiles (for watch: event deliveries
//     per second and put-sent-to-event-received latency, with a check that
//     every watcher saw every event in order), and `bench report`, which
//     turns the JSON results
//     of alternating Cairn/etcd runs into the ratio table described in
//     docs/benchmarks.md (tests/bench/bench.sh drives it).
//
// Later subcommands (snapshot, check, ...) register in commands() in main.go.
package main
