# Doorito Portal. `make run` builds and starts the portal on its defaults;
# `make test` installs what the tests need and runs them all.

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BIN      := build/portal
NPM      ?= npm
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

export CGO_ENABLED=0

.PHONY: all build run test test-go test-node vet fmt-check clean tools prometheus-check docker-lint ui e2e chromium bench fuzz

all: build

## build: the static portal binary at build/portal (with the web UI bundle)
build: $(if $(SKIP_UI),,ui)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) .

# The upload page's Uppy bundle: npm ci, then esbuild into webui/static/dist
# (git-ignored, embedded by go:embed). SKIP_UI=1 builds with the bundle
# already there (the Dockerfile makes it in a node stage).
UI_DIR  := webui/ui
UI_DIST := webui/static/dist/upload.js

## ui: install the pinned npm packages and bundle the upload page
ui: $(UI_DIST)

$(UI_DIST): $(UI_DIR)/node_modules $(UI_DIR)/build.mjs $(wildcard $(UI_DIR)/src/*)
	cd $(UI_DIR) && node build.mjs

$(UI_DIR)/node_modules: $(UI_DIR)/package.json $(UI_DIR)/package-lock.json
	cd $(UI_DIR) && $(NPM) ci --no-audit --no-fund
	@touch $@

## run: build and start the portal (127.0.0.1:8080, data in ./data)
run: build
	./$(BIN) serve

## test: vet, Go tests, and the Node tests with real tus clients
test: fmt-check vet tools ui test-go test-node

## tools: Debian packages the tests use (promtool), installed when missing
tools:
	@command -v promtool >/dev/null || { \
	  echo "installing Debian's prometheus package (promtool)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

## docker-lint: lint the Dockerfile (no Docker engine needed) and check the binary is static
docker-lint: build testdata/docker/node_modules
	cd testdata/docker && node lint.mjs ../../Dockerfile
	@out=$$(ldd $(BIN) 2>&1 || true); echo "ldd $(BIN): $$out"; \
	echo "$$out" | grep -q "not a dynamic executable"

testdata/docker/node_modules: testdata/docker/package.json testdata/docker/package-lock.json
	cd testdata/docker && $(NPM) ci --no-audit --no-fund
	@touch $@

## prometheus-check: a real Prometheus scrapes a running portal
prometheus-check: build tools
	scripts/prometheus-check.sh

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

## test-go: the Go tests; webhook signatures are also verified with npm standardwebhooks
test-go: testdata/webhooks/node_modules
	PORTAL_REQUIRE_TOOLS=1 $(GO) test -count=1 -timeout 10m ./...

testdata/webhooks/node_modules: testdata/webhooks/package.json testdata/webhooks/package-lock.json
	cd testdata/webhooks && $(NPM) ci --no-audit --no-fund
	@touch $@

testdata/node/node_modules: testdata/node/package.json testdata/node/package-lock.json
	cd testdata/node && $(NPM) ci --no-audit --no-fund
	@touch $@

test-node: build testdata/node/node_modules
	cd testdata/node && PORTAL_BIN=$(CURDIR)/$(BIN) node --test --test-concurrency=1

## e2e: drive the real binary in headless Chromium (Debian's package) with
## playwright-core: sign in, upload through Uppy, webhooks, replay.
## Screenshots of every page go to build/e2e/screenshots/.
e2e: build chromium testdata/e2e/node_modules
	cd testdata/e2e && PORTAL_BIN=$(CURDIR)/$(BIN) E2E_OUT=$(CURDIR)/build/e2e node --test --test-concurrency=1

## chromium: Debian's chromium, installed when missing (never a downloaded browser)
chromium:
	@test -x /usr/bin/chromium || { \
	  echo "installing Debian's chromium"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

testdata/e2e/node_modules: testdata/e2e/package.json testdata/e2e/package-lock.json
	cd testdata/e2e && $(NPM) ci --no-audit --no-fund
	@touch $@

## bench: build the portal and run the benchmarks (cmd/portalbench, about 10
## minutes): prints a table, writes build/bench/results.json. BENCH_FLAGS
## adds options, e.g. BENCH_FLAGS='-scenarios 1 -reps 9'. `make test` runs
## only a tiny smoke run of the harness.
BENCH_FLAGS ?=
bench: build
	$(GO) build -o build/portalbench ./cmd/portalbench
	./build/portalbench -bin $(BIN) -dir build/bench -out build/bench/results.json $(BENCH_FLAGS)

## fuzz: run every Go fuzz target for FUZZTIME each (default 20s; `make
## test` runs only their seed corpora) and print each one's executions.
## FUZZ=<regexp> picks targets, e.g. make fuzz FUZZ=Tus FUZZTIME=5m.
FUZZTIME ?= 20s
FUZZ     ?= .
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) FUZZ='$(FUZZ)' scripts/fuzz.sh

clean:
	rm -rf build
