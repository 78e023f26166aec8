# Airlock's front door. `make demo` runs airlock with a sample database;
# `make test` runs every test against real PostgreSQL, OpenSSH and MCP clients.

GO       ?= go
BIN      := bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
E2E      := internal/e2e
# Packages with benchmarks, each measured against a baseline in the same run.
BENCH_PKGS := ./policy/ ./masking/ ./tools/postgres/ ./tools/ssh/ ./tools/kubernetes/ ./broker/... ./internal/e2e/
FUZZTIME ?= 30s
# Test servers built from the module proxy, cached outside the work tree
# (see internal/testenv.TestBinDir).
TESTBIN  ?= $(or $(AIRLOCK_TEST_BIN_DIR),$(shell go env GOCACHE | xargs dirname)/airlock/testbin)

.PHONY: all build demo test test-deps test-servers e2e-deps bench fuzz lint clean

all: build

build:
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

## bench: benchmarks with their baselines (see docs/benchmarks.md).
bench: test-servers
	AIRLOCK_TEST_BIN_DIR=$(TESTBIN) $(GO) test -run '^$$' -bench . -benchmem -count 1 $(BENCH_PKGS)

## fuzz: each fuzz target for FUZZTIME (seeds are in testdata/fuzz).
fuzz:
	@for t in $$($(GO) test -list '^Fuzz' ./masking/ | grep '^Fuzz'); do \
		echo "== $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./masking/ || exit 1; \
	done

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...

clean:
	rm -rf $(BIN)
