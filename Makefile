# Airlock's front door. `make demo` runs airlock with a sample database;
# `make test` runs every test against real PostgreSQL, OpenSSH and MCP clients.

GO       ?= go
BIN      := bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
E2E      := internal/e2e
# Packages with benchmarks, each measured against a baseline in the same run.
BENCH_PKGS := ./policy/ ./masking/ ./recorder/ ./tools/postgres/ ./tools/ssh/ ./tools/kubernetes/ ./broker/... ./internal/e2e/
FUZZTIME ?= 30s
# Test servers built from the module proxy, cached outside the work tree
# (see internal/testenv.TestBinDir).
TESTBIN  ?= $(or $(AIRLOCK_TEST_BIN_DIR),$(shell go env GOCACHE | xargs dirname)/airlock/testbin)

.PHONY: all build demo test test-deps test-servers e2e-deps bench bench-load fuzz lint release clean

all: build

build:
	@[ -x $(BIN)/airlock ] || echo "Building $(BIN)/airlock: the first build compiles airlock and every dependency (about a minute or two on 2 cores, with no output); later builds take seconds."
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/airlock ./cmd/airlock

## demo: start a throwaway PostgreSQL with sample data and airlock in front of it.
demo: build
	./examples/demo/run.sh

## test: vet, then every test with the race detector; needs PostgreSQL, OpenSSH
## server and Node.js (.ci/run installs them on a fresh machine).
test: test-deps
	$(GO) vet ./...
	AIRLOCK_TEST_BIN_DIR=$(TESTBIN) $(GO) test -race -count=1 -timeout 25m ./...

## test-deps: what the tests need besides Go: the MCP SDK and conformance suite
## (npm), and test servers built from the module proxy (cached in .cache/bin).
test-deps: e2e-deps test-servers

test-servers:
	internal/tools/hydra/build.sh $(TESTBIN) >/dev/null
	internal/tools/kube/build.sh $(TESTBIN) >/dev/null

e2e-deps: $(E2E)/node_modules/.package-lock.json

$(E2E)/node_modules/.package-lock.json: $(E2E)/package.json $(E2E)/package-lock.json
	cd $(E2E) && npm ci --no-audit --no-fund

## bench: benchmarks with their baselines (see docs/benchmarks.md), the
## peer MCP servers (internal/e2e/package.json) among them.
## The output goes to $(BIN)/bench.txt, and the table of the figures issue 14
## set targets for is printed from it (with bench-load's, when it ran).
bench: test-servers e2e-deps
	@mkdir -p $(BIN)
	AIRLOCK_TEST_BIN_DIR=$(TESTBIN) $(GO) test -run '^$$' -bench . -benchmem -count 1 -timeout 30m $(BENCH_PKGS) 2>&1 | tee $(BIN)/bench.txt
	@! grep -q '^FAIL' $(BIN)/bench.txt
	@$(GO) run ./internal/benchtable $(BIN)/bench.txt $(BIN)/bench-load.txt

## bench-load: 50 MCP sessions over streamable HTTP, 2,000 calls, against
## airlock serve and dbhub with the same load generator: Go (mcp-go clients),
## then the TypeScript SDK (docs/benchmarks.md).
bench-load: e2e-deps
	@mkdir -p $(BIN)
	$(GO) test -tags load -run '^$$' -bench 'Load' -benchtime 1x -timeout 20m ./internal/e2e/ 2>&1 | tee $(BIN)/bench-load.txt
	@! grep -q '^FAIL' $(BIN)/bench-load.txt
	@$(GO) run ./internal/benchtable $(BIN)/bench.txt $(BIN)/bench-load.txt

## fuzz: each fuzz target of FUZZ_PKGS for FUZZTIME (seeds are in code and
## testdata/fuzz; the SQL facts target starts its own PostgreSQL per process).
FUZZ_PKGS ?= ./masking/ ./tools/postgres/ ./tools/ssh/
fuzz:
	@for p in $(FUZZ_PKGS); do \
		for t in $$($(GO) test -list '^Fuzz' $$p | grep '^Fuzz'); do \
			echo "== $$p $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$p || exit 1; \
		done; \
	done

## release: reproducible tarballs (binary, LICENSE, README.md, examples/) for
## PLATFORMS in dist/, with dist/SHA256SUMS; see deploy/release.sh. pg_query_go
## is C: linux/arm64 needs a C cross compiler (Debian: gcc-aarch64-linux-gnu).
PLATFORMS ?= linux/amd64 linux/arm64
release:
	GO=$(GO) VERSION=$(VERSION) PLATFORMS="$(PLATFORMS)" deploy/release.sh

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...

clean:
	rm -rf $(BIN)
