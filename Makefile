# Cairn's build. `make run` and `make test` are the two commands a user needs.
SHELL := /usr/bin/env bash
GO ?= go
BIN := $(CURDIR)/bin
DATA_DIR ?= $(CURDIR)/default.cairn
TEST_TIMEOUT ?= 25m

.PHONY: all build run tools test unit e2e bench soak proto fmt vet staticcheck clean

all: build

build:
	$(GO) build -o $(BIN)/cairn ./cmd/cairn
	$(GO) build -o $(BIN)/cairnctl ./cmd/cairnctl

run: build
	$(BIN)/cairn --name default --data-dir $(DATA_DIR)

# tools builds the reference etcd server, etcdctl and etcdutl (3.6, the tests') and bin/etcd-3.7
# (the newest release, make bench's reference) from the Go module proxy.
tools:
	BIN_DIR=$(BIN) tests/tools/build.sh

vet:
	$(GO) vet ./...
	cd tests && $(GO) vet ./...

fmt:
	gofmt -l -w $$(git ls-files '*.go')

unit:
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

e2e: build tools
	cd tests && CAIRN_BIN=$(BIN)/cairn CAIRNCTL_BIN=$(BIN)/cairnctl ETCD_BIN=$(BIN)/etcd ETCDCTL_BIN=$(BIN)/etcdctl ETCDUTL_BIN=$(BIN)/etcdutl \
		$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

test: vet staticcheck unit e2e

bench: build tools
	BIN_DIR=$(BIN) tests/bench/bench.sh

soak: build tools
	cd tests && CAIRN_SOAK=1 CAIRN_BIN=$(BIN)/cairn ETCD_BIN=$(BIN)/etcd ETCDCTL_BIN=$(BIN)/etcdctl ETCDUTL_BIN=$(BIN)/etcdutl \
		$(GO) test -race -count=1 -timeout 120m ./...

staticcheck:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	cd tests && $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# proto regenerates proto/ (messages, gRPC services, and the JSON gateway's gw packages
# from proto/gateway.yaml). It needs protoc on PATH, and GOBIN (or GOPATH/bin) on PATH for
# the plugins it installs.
proto:
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
	$(GO) install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@v2.29.0
	$(GO) install github.com/planetscale/vtprotobuf/cmd/protoc-gen-go-vtproto@v0.6.1-0.20240319094008-0393e58bdf10
	command -v protoc >/dev/null || { echo "make proto needs protoc (Debian: apt-get install protobuf-compiler)"; exit 1; }
	$(GO) generate ./proto/...

clean:
	rm -rf $(BIN) tests/bin
