#!/usr/bin/env bash
# Builds the reference etcd server, etcdctl and etcdutl (versions pinned in go.mod
# here) into <repo>/bin/etcd, <repo>/bin/etcdctl and <repo>/bin/etcdutl. `go install` refuses etcd's
# modules (they carry replace directives), so they are built from this module.
# A binary that already exists and reports the pinned version is kept.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bindir="${BIN_DIR:-$repo/bin}"
mkdir -p "$bindir"
cd "$here"

want_server="$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
want_ctl="$(go list -m -f '{{.Version}}' go.etcd.io/etcd/etcdctl/v3)"
want_utl="$(go list -m -f '{{.Version}}' go.etcd.io/etcd/etcdutl/v3)"

# version_of NAME: the version line the binary prints ("etcd Version: 3.6.16",
# "etcdctl version: 3.6.16"); empty if it is missing or broken.
version_of() {
	local out="$bindir/$1"
	[[ -x "$out" ]] || return 0
	case "$1" in
	etcd) "$out" --version 2>/dev/null | grep -m1 '^etcd Version:' || true ;;
	etcdctl) "$out" version 2>/dev/null | grep -m1 '^etcdctl version:' || true ;;
	etcdutl) "$out" version 2>/dev/null | grep -m1 '^etcdutl version:' || true ;;
	esac
}

# build NAME PACKAGE WANT_VERSION  (WANT_VERSION like v3.6.16)
build() {
	local name="$1" pkg="$2" want="${3#v}" out="$bindir/$1" got
	got="$(version_of "$name")"
	if [[ "${got##*: }" == "$want" ]]; then
		echo "tools: $out is already $name $want"
		return 0
	fi
	echo "tools: building $out ($pkg@v$want)"
	go build -trimpath -o "$out.tmp" "$pkg"
	mv -f "$out.tmp" "$out"
	got="$(version_of "$name")"
	if [[ "${got##*: }" != "$want" ]]; then
		echo "tools: $out reports '$got', want $want" >&2
		exit 1
	fi
	echo "tools: $got"
}

build etcd go.etcd.io/etcd/server/v3 "$want_server"
build etcdctl go.etcd.io/etcd/etcdctl/v3 "$want_ctl"
build etcdutl go.etcd.io/etcd/etcdutl/v3 "$want_utl"
