# hacoord — see README.md. Targets: demo, test, bench, build, lint, test-ipvs, soak.
SHELL   := /bin/bash
GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
BIN     := bin
LDFLAGS := -s -w -X main.version=$(VERSION)
# grpcnotrace drops golang.org/x/net/trace (grpc's unused request tracing, with html/template):
# once text/template is linked, the linker keeps every exported method of every type used as an
# interface, which costs the daemon's binary, and so its resident memory, about 4 MB (README).
TAGS    := grpcnotrace
# Tests that run the real binaries find them here (built once by `make build`).
export HACOORD_BIN     := $(CURDIR)/$(BIN)/hacoord
export HACOORD_GUARD_BIN := $(CURDIR)/$(BIN)/hacoord-guard
export HACOORD_LAB_BIN := $(CURDIR)/$(BIN)/hacoord-lab

.PHONY: all build deps test test-unit test-ipvs test-lvs bench bench-lvs demo lint clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -tags $(TAGS) -ldflags "$(LDFLAGS)" -o $(BIN)/hacoord ./cmd/hacoord
	CGO_ENABLED=0 $(GO) build -trimpath -tags $(TAGS) -ldflags "$(LDFLAGS)" -o $(BIN)/hacoord-guard ./cmd/hacoord-guard
	CGO_ENABLED=0 $(GO) build -trimpath -tags $(TAGS) -ldflags "$(LDFLAGS)" -o $(BIN)/hacoord-lab ./cmd/hacoord-lab

deps:
	@.ci/deps

# All tests. Root-only tests skip with a reason when not root; under CI=true nothing skips.
test: deps build
	$(GO) vet ./...
	$(GO) test -count=1 -p 2 -timeout 15m ./...
	$(MAKE) test-ipvs
	$(MAKE) test-lvs

test-unit:
	$(GO) test -count=1 -short ./...

# The ipvs package's integration tests inside a VM whose kernel has IPVS (this kernel has none).
test-ipvs: build
	ipvs/vmtest/run

# The LVS architecture end to end in the same VM (internal/lvslab): a client, two hacoord directors
# over an embedded etcd, three real servers; DR, NAT and NAT in a sync group: director crash,
# real-server death, sorry server, all through the guest kernel's IPVS.
test-lvs: build
	internal/lvslab/vmtest/run -run 'TestLVS(DR|DRProgramOnPromote|DRSyncDaemon|NAT|NATSyncGroup)$$'

# The LVS figures (RUNS=n): director-crash outage with IPVS in the VM, the same lab without IPVS in
# the VM and on the host (TCG's inflation), requests per real server, real-server removal time.
bench-lvs: build
	set -o pipefail; internal/lvslab/vmtest/run -run TestLVSBench -env LVSLAB_RUNS=$${RUNS:-5} | tee .cache/bench-lvs.log | grep '^LVSLAB-FIGURE'
	set -o pipefail; LVSLAB_RUNS=$${RUNS:-5} $(GO) test -count=1 -run TestHostBaselineBench -v ./internal/lvslab | tee -a .cache/bench-lvs.log | grep '^LVSLAB-FIGURE'

# Failover figures in the namespace lab: min/median/max over repeated runs of every backend, and
# native VRRP against keepalived side by side. RUNS=n sets the repetitions.
bench: build
	$(BIN)/hacoord-lab bench --all --runs $${RUNS:-5}

# The nemesis: a seeded random schedule of node and store faults (3 nodes, 3-member stores), about
# CHAOS_DURATION (default 10m) per backend; SEED=n replays a schedule (each run prints its seed).
.PHONY: chaos
chaos: build
	rc=0; for b in etcd zk; do $(BIN)/hacoord-lab chaos --backend $$b --duration $${CHAOS_DURATION:-10m} $${SEED:+--seed $$SEED} || rc=1; done; exit $$rc

# The soak (issue 14): a fast profile (PROFILE=fast|default) per backend for SOAK_DURATION (default
# 10m) while both CPUs are loaded, no faults: spurious failovers (goal 0), time with two holders (0).
.PHONY: soak
soak: build
	rc=0; for b in etcd zk; do $(BIN)/hacoord-lab soak --backend $$b --profile $${PROFILE:-fast} --duration $${SOAK_DURATION:-10m} || rc=1; done; exit $$rc

# A lab of network namespaces with an embedded etcd: watch a VIP fail over.
demo: build
	$(BIN)/hacoord-lab demo

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

# The Docker Compose lab (deploy/compose; walkthrough in deploy/README.md): images built here FROM
# scratch from bin/ (no registry), an internal network. BACKEND=etcd|zk|vrrp picks who decides;
# LAB_PROJECT, LAB_NET (the network is LAB_NET.0/24) and LAB_TAG (image tag) rarely need changing.
# lab-failover STOP=1 stops the master (SIGTERM) instead of killing it; lab-partition REJOIN=1 also
# checks that the reconnected node can be master again.
.PHONY: lab-images lab-up lab-failover lab-partition lab-down compose-up compose-down
BACKEND     ?= etcd
LAB_PROJECT ?= hacoord-lab
LAB_NET     ?= 172.31.77
LAB_TAG     ?= lab
LAB_FLAGS    = --dir deploy/compose --project $(LAB_PROJECT) --tag $(LAB_TAG)
lab-images: build
	HACOORD_LAB_TAG=$(LAB_TAG) deploy/compose/build-images $(if $(filter zk,$(BACKEND)),,--no-zookeeper)
lab-up: lab-images
	$(BIN)/hacoord-lab compose up $(LAB_FLAGS) --backend $(BACKEND) --net $(LAB_NET)
lab-failover:
	$(BIN)/hacoord-lab compose failover $(LAB_FLAGS) $(if $(STOP),--stop)
lab-partition:
	$(BIN)/hacoord-lab compose partition $(LAB_FLAGS) $(if $(REJOIN),--rejoin)
lab-down:
	$(BIN)/hacoord-lab compose down $(LAB_FLAGS)
compose-up: lab-up
compose-down: lab-down

clean:
	rm -rf $(BIN) deploy/compose/bin
