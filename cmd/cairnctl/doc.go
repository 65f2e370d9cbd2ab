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
//     docs/benchmarks.md (tests/bench/bench.sh drives it). Like etcd's benchmark
//     tool it sends requests without a deadline: --timeout cancels the whole run.
//
//   - snapshot save|status|restore: etcdctl snapshot save and etcdutl snapshot
//     status|restore with their flags and output; restore lays out a Cairn data dir
//     from an etcd or Cairn snapshot (mvcc.PrepareRestoredDB does the db's edits).
//
// The command tree is cobra's (newRootCommand in main.go), as etcdctl's and etcdutl's
// are; bench parses its own flags. It must never write a file in place: saves and
// restores go to a temporary name, are checked and fsynced, then renamed.
package main
