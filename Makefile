# moat — build, test and package.
#
# `make test` and `make run` install the Debian packages they need when run
# as root and something is missing (they say what they install).

GO          ?= go
BIN         := bin/moat
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X github.com/moatsec/moat/internal/version.Version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
CLANG       ?= clang-14
STRIP       ?= llvm-strip-14

# Needed to build (sdjournal's cgo headers) and to run the tests: kernel
# tools, a private journald, the CrowdSec firewall bouncer as a real API
# client, Debian's crowdsec for the hub snapshot a Debian host has,
# Prometheus and Chromium for the metrics and status page, and the Debian
# tool chain (and bpftool) for the package tests.
BUILD_DEBS  := gcc libc6-dev libsystemd-dev
TEST_DEBS   := $(BUILD_DEBS) nftables iproute2 util-linux systemd netsniff-ng curl postgresql \
               crowdsec crowdsec-firewall-bouncer prometheus chromium \
               debhelper dpkg-dev fakeroot lintian debootstrap bpftool python3-aiosmtpd fail2ban podman runc busybox-static
GEN_DEBS    := clang-14 llvm libbpf-dev
DEB_DEBS    := debhelper dh-golang dpkg-dev fakeroot lintian debootstrap

.PHONY: all build test test-unit tidy-check generate-check run generate lint bench clean deb deps-build deps-test deps-gen deps-deb help fuzz

all: build

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: deps-build ## build bin/moat
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/moat

test: deps-test tidy-check generate-check bench-quick ## run every test (kernel tests too when root, and the 1M-source flood tests)
	@for f in detect/inject/testdata/injectable-*-hub.txt; do \
		echo "make: hub parsers whose banned address a client's text can move ($$f, checked below by detect/inject TestHubSnapshots):"; \
		grep -v '^#' $$f | cut -f1,2 | sed 's/\t/ via /; s/^/  /'; \
	done
	@# One package at a time (-p 1): latency bounds (a new ban's p99 under
	@# bouncer load, detection to kernel, fleet propagation) hold on two
	@# cores, not with another package's tests competing for them.
	MOAT_FLOOD_FULL=1 $(GO) test -p 1 -count=1 -timeout 75m ./...

tidy-check: ## fail when go.mod or go.sum are not tidy
	@$(GO) mod tidy -diff || { echo "make: go.mod/go.sum are not tidy (run go mod tidy)" >&2; exit 1; }

test-unit: ## run the tests that need neither root nor Debian packages beyond the build
	$(GO) test -count=1 -short ./...

run: build ## run the daemon on /etc/moat/moat.yaml, or the built-in default
	./$(BIN) run

# bpf2go takes its compiler and strip tool from BPF2GO_CC and BPF2GO_STRIP;
# pinning both is what makes the objects byte-identical on every machine.
BPF2GO_ENV  := BPF2GO_CC=$(CLANG) BPF2GO_STRIP=$(STRIP)

generate: deps-gen ## rebuild the committed eBPF objects with bpf2go
	cd bpf && $(BPF2GO_ENV) $(GO) generate ./...

# The check generates into a copy of bpf/'s sources (with go.mod, which
# pins bpf2go), so the working tree is never touched, then compares every
# generated file with the committed one. Without the compiler (not root, so
# deps-gen could not install it) it says so and passes: CI runs as root.
generate-check: deps-gen ## fail when make generate would change the committed eBPF objects
	@if ! command -v $(CLANG) >/dev/null; then echo "make: generate-check skipped: $(CLANG) is not installed" >&2; exit 0; fi; \
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	cp go.mod go.sum "$$tmp"/ && mkdir "$$tmp"/bpf && \
	cp bpf/*.c $$(grep -l '^//go:generate' bpf/*.go) "$$tmp"/bpf/ && \
	inputs=$$(ls "$$tmp"/bpf) && \
	(cd "$$tmp"/bpf && $(BPF2GO_ENV) $(GO) generate ./...) && \
	diff=0 && for f in $$(ls "$$tmp"/bpf); do \
		case " $$(echo $$inputs) " in *" $$f "*) continue;; esac; \
		cmp -s "$$tmp"/bpf/$$f bpf/$$f || { echo "make: bpf/$$f differs from what make generate writes (run make generate and commit it)" >&2; diff=1; }; \
	done; exit $$diff

lint: ## gofmt, go vet, staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# make bench runs the suite (cmd/moat-bench, internal/bench): log line to
# dropped packet live, replay throughput and accuracy beside the installed
# peers, 1M decisions, drop rate; each repeated. It writes result.json,
# table.txt and the charts into bin/bench/, and the full run also the charts
# and the table into docs/ (performance.md). BENCH_QUICK=1 make bench, or make
# bench-quick, is the two-minute run make test checks; BENCH_GO=1 runs every
# go benchmark instead (5 runs each, for benchstat).
BENCH_OUT   := bin/bench

bench: deps-test ## run the benchmark suite (BENCH_QUICK=1: the quick mode; BENCH_GO=1: every go benchmark, for benchstat)
ifeq ($(BENCH_GO),1)
	$(GO) test -run '^$$' -bench . -benchmem -count 5 -timeout 120m ./... | tee bench.out
else ifeq ($(BENCH_QUICK),1)
	@$(MAKE) --no-print-directory bench-quick
else
	$(GO) build -o $(BENCH_OUT)/moat-bench ./cmd/moat-bench
	$(BENCH_OUT)/moat-bench -out $(BENCH_OUT)/full -docs docs
	$(BENCH_OUT)/moat-bench -check $(BENCH_OUT)/full/result.json
endif

.PHONY: bench-quick
bench-quick: ## run the benchmark suite's quick mode and check it wrote a valid result
	$(GO) build -o $(BENCH_OUT)/moat-bench ./cmd/moat-bench
	$(BENCH_OUT)/moat-bench -quick -out $(BENCH_OUT)/quick
	$(BENCH_OUT)/moat-bench -check $(BENCH_OUT)/quick/result.json

deb: deps-deb ## build the Debian package into dist/
	packaging/build-deb.sh

clean: ## remove build output
	rm -rf bin dist bench.out

deps-build:
	@./.ci/debs $(BUILD_DEBS)
deps-test:
	@./.ci/debs $(TEST_DEBS)
deps-gen:
	@./.ci/debs $(GEN_DEBS)
deps-deb:
	@./.ci/debs $(DEB_DEBS)

FUZZTIME    ?= 30s

fuzz: ## run every fuzz target for FUZZTIME (default 30s), one at a time
	@set -e; for f in $$(git ls-files -co --exclude-standard '*_test.go' | xargs grep -l '^func Fuzz'); do \
		for fn in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "== $$fn ./$$(dirname $$f)"; \
			$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) ./$$(dirname $$f); \
		done; \
	done
