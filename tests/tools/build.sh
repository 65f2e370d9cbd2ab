#!/usr/bin/env bash
# Builds the reference etcd binaries into <repo>/bin (BIN_DIR):
#   bin/etcd, bin/etcdctl, bin/etcdutl  from this module (go.mod here, etcd 3.6): what the
#                                       e2e tests run against
#   bin/etcd-3.7                        from bench-ref/ (bench-ref/go.mod, the newest etcd
#                                       release): the benchmarks' reference server
# `go install` refuses etcd's modules (they carry replace directives), so each is built
# from the module that pins it. A binary that already exists and reports the pinned
# version is kept.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bindir="${BIN_DIR:-$repo/bin}"
mkdir -p "$bindir"

# version_of OUT KIND: the version line the binary bin/OUT of kind KIND (etcd, etcdctl,
# etcdutl) prints ("etcd Version: 3.6.16", "etcdctl version: 3.6.16"); empty if it is
# missing or broken.
version_of() {
	local out="$bindir/$1"
	[[ -x "$out" ]] || return 0
	case "$2" in
	etcd) "$out" --version 2>/dev/null | grep -m1 '^etcd Version:' || true ;;
	etcdctl) "$out" version 2>/dev/null | grep -m1 '^etcdctl version:' || true ;;
	etcdutl) "$out" version 2>/dev/null | grep -m1 '^etcdutl version:' || true ;;
	esac
}

# build OUT KIND MODDIR MODULE: bin/OUT built from MODULE (its main package) at the
# version MODDIR/go.mod pins.
build() {
	local name="$1" kind="$2" moddir="$3" pkg="$4" out="$bindir/$1" want got
	want="$(cd "$moddir" && go list -m -f '{{.Version}}' "$pkg")"
	want="${want#v}"
	got="$(version_of "$name" "$kind")"
	if [[ "${got##*: }" == "$want" ]]; then
		echo "tools: $out is already $kind $want"
		return 0
	fi
	echo "tools: building $out ($pkg@v$want)"
	(cd "$moddir" && go build -trimpath -o "$out.tmp" "$pkg")
	mv -f "$out.tmp" "$out"
	got="$(version_of "$name" "$kind")"
	if [[ "${got##*: }" != "$want" ]]; then
		echo "tools: $out reports '$got', want $want" >&2
		exit 1
	fi
	echo "tools: $name: $got"
}

build etcd etcd "$here" go.etcd.io/etcd/server/v3
build etcdctl etcdctl "$here" go.etcd.io/etcd/etcdctl/v3
build etcdutl etcdutl "$here" go.etcd.io/etcd/etcdutl/v3
build etcd-3.7 etcd "$here/bench-ref" go.etcd.io/etcd/server/v3
