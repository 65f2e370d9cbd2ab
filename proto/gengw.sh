#!/bin/sh
# gengw.sh generates the JSON gateway's reverse proxies (*/gw/*.pb.gw.go) with
# protoc-gen-grpc-gateway from the .proto files and the HTTP rules in gateway.yaml.
# Each proxy goes in a package of its own, gw, under its service's package (etcd's
# layout). Run from proto/ by `go generate` (make proto); needs protoc.
set -eu
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
protoc -I . --grpc-gateway_out="$out" \
	--grpc-gateway_opt=paths=source_relative,standalone=true,grpc_api_configuration=gateway.yaml \
	etcdserverpb/rpc.proto v3lockpb/v3lock.proto v3electionpb/v3election.proto
for f in etcdserverpb/rpc v3lockpb/v3lock v3electionpb/v3election; do
	d="$(dirname "$f")/gw"
	mkdir -p "$d"
	sed -e 's/^package [a-z0-9]*$/package gw/' \
		-e 's/^Package [a-z0-9]* is a reverse proxy\./Package gw is a reverse proxy./' \
		"$out/$f.pb.gw.go" >"$d/$(basename "$f").pb.gw.go"
done
