#!/usr/bin/env python3
"""Breaks a pprof profile down by Cairn component.

Reads `go tool pprof -traces PROFILE` on stdin and prints a markdown table: the share of
the samples (CPU time or allocated bytes) per component, and the part of it spent in
system calls. A sample goes to the first rule that matches:
  1. GC (a mark worker, an assist, the sweeper or scavenger on the stack), then
     malloc (mallocgc and what it calls, at the leaf end of the stack);
  2. a component found anywhere on the stack, in this order: logging (zap), metrics
     (prometheus), WAL (cairn/wal), apply: bbolt, watch hub (mvcc watch*), transport
     (raftnode's peer transport, its gRPC and protobuf included), raft (go.etcd.io/raft);
  3. the first frame from the leaf in a known package: protobuf, gRPC (with x/net/http2),
     apply: mvcc (index, revisions), server, api, lease/auth, raftnode (Ready loop);
  4. otherwise runtime (scheduler, channels, timers) or other.
"""
import re
import sys

MOD = "github.com/cairn-kv/cairn/"
GC = ("runtime.gcBgMarkWorker", "runtime.gcAssistAlloc", "runtime.bgsweep", "runtime.bgscavenge",
      "runtime.gcDrain", "runtime.markroot", "runtime.gcStart", "runtime.forEachP", "runtime.gcMarkDone")
ANY = [
    ("logging (zap)", ("go.uber.org/zap",)),
    ("metrics (prometheus)", ("github.com/prometheus/",)),
    ("WAL", (MOD + "wal.",)),
    ("apply: bbolt", ("go.etcd.io/bbolt",)),
    ("watch hub", (MOD + "mvcc.(*hub", MOD + "mvcc.(*watch", MOD + "mvcc.(*WatchStream", MOD + "mvcc.(*watchGroup",
                   MOD + "server.(*watchServer", MOD + "api.(*watch", MOD + "api.watch")),
    ("transport", (MOD + "raftnode.(*peer", MOD + "raftnode.(*PeerTransport", MOD + "raftnode.decodePeerMessage",
                   MOD + "raftnode.DialPeer")),
    ("raft", ("go.etcd.io/raft/",)),
]
LEAF = [
    ("protobuf", ("google.golang.org/protobuf",)),
    ("gRPC", ("google.golang.org/grpc", "golang.org/x/net/http2")),
    ("apply: mvcc (index, revisions)", (MOD + "mvcc.",)),
    ("server (propose, apply, waiters)", (MOD + "server.",)),
    ("api (handlers)", (MOD + "api.",)),
    ("lease/auth", (MOD + "lease.", MOD + "auth.")),
    ("raftnode (Ready loop)", (MOD + "raftnode.",)),
]
SYSCALL = ("syscall.", "internal/runtime/syscall", "runtime/internal/syscall", "internal/poll.")
UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6,
         "GB": 1e9, "TB": 1e12}


def value(tok):
    m = re.fullmatch(r"(-?[0-9.]+)([a-zµA-Z]*)", tok)
    if not m:
        return None
    return float(m.group(1)) * UNITS.get(m.group(2), 1)


def category(frames):
    if any(f.startswith(GC) for f in frames):
        return "runtime: GC"
    for f in frames:  # leaf first
        if f == "runtime.mallocgc" or f.startswith("runtime.mallocgc"):
            return "runtime: malloc"
        if not f.startswith("runtime."):
            break
    for name, prefixes in ANY:
        if any(f.startswith(prefixes) for f in frames):
            return name
    for f in frames:
        for name, prefixes in LEAF:
            if f.startswith(prefixes):
                return name
    if any(f.startswith(SYSCALL) for f in frames):
        return "other syscalls"
    if all(f.startswith("runtime.") for f in frames):
        return "runtime (scheduler, timers)"
    return "other"


def main():
    totals, sys_totals, total = {}, {}, 0.0
    frames, v = [], None

    def flush():
        nonlocal total
        if v is None or not frames:
            return
        c = category(frames)
        totals[c] = totals.get(c, 0) + v
        if any(f.startswith(SYSCALL) for f in frames):
            sys_totals[c] = sys_totals.get(c, 0) + v
        total += v

    for line in sys.stdin:
        if line.startswith("-----------+"):
            flush()
            frames, v = [], None
            continue
        if not line.startswith(" ") or not line.strip():
            continue
        parts = line.split()
        if v is None and value(parts[0]) is not None and line[:11].strip():
            v = value(parts[0])
            parts = parts[1:]
        if parts and not parts[0].startswith("bytes:"):
            frames.append(parts[0])
    flush()
    if total <= 0:
        print("(no samples)")
        return
    print("| component | share | of which syscalls |")
    print("|---|---:|---:|")
    for c, x in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"| {c} | {100 * x / total:.1f}% | {100 * sys_totals.get(c, 0) / total:.1f}% |")


if __name__ == "__main__":
    main()
