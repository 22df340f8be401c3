# Doorito Portal. `make run` builds and starts the portal on its defaults;
# `make test` installs what the tests need and runs them all.

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BIN      := build/portal
NPM      ?= npm
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

export CGO_ENABLED=0

.PHONY: all build run test test-go test-race test-crash test-node test-node-s3 vet fmt-check clean tools versitygw prometheus-check docker-lint docker-engine docker-image docker-test nginx nginx-test quickstart-test ui ui-check e2e chromium bench crash openapi-lint openapi-client fuzz docs-img

all: build

## build: the static portal binary at build/portal (the web UI's bundle is
## committed, so this needs Go only)
build:
	@if [ "$$($(GO) list -trimpath -f '{{.Stale}}' modernc.org/sqlite/lib 2>/dev/null)" != false ]; then \
	  echo "building $(BIN): the first build compiles the pure-Go SQLite (modernc.org/sqlite) and takes a few minutes; later builds take seconds"; fi
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) .

# The upload page's Uppy bundle: npm ci, then esbuild into webui/static/dist,
# embedded by go:embed. The bundle is committed (so `go install` gives the
# whole program); after changing webui/ui, run `make ui` and commit the result.
UI_DIR  := webui/ui
UI_DIST := webui/static/dist/upload.js

## ui: install the pinned npm packages and rebuild the upload page's bundle
ui: $(UI_DIST)

$(UI_DIST): $(UI_DIR)/node_modules $(UI_DIR)/build.mjs $(wildcard $(UI_DIR)/src/*)
	cd $(UI_DIR) && node build.mjs

$(UI_DIR)/node_modules: $(UI_DIR)/package.json $(UI_DIR)/package-lock.json
	cd $(UI_DIR) && $(NPM) ci --no-audit --no-fund
	@touch $@

## ui-check: rebuild the bundle from the lockfile (a fresh npm ci) and fail
## unless it is byte for byte the committed webui/static/dist
ui-check:
	cd $(UI_DIR) && $(NPM) ci --no-audit --no-fund && node build.mjs
	@touch $(UI_DIR)/node_modules
	@changed=$$(git status --porcelain --untracked-files=all -- webui/static/dist); \
	if [ -n "$$changed" ]; then \
	  echo "ui-check: webui/static/dist is not what webui/ui builds from its lockfile:"; echo "$$changed"; \
	  echo "ui-check: run 'make ui' and commit webui/static/dist"; exit 1; fi; \
	echo "ui-check: the committed Uppy bundle is byte for byte what package-lock.json builds"

## run: build and start the portal (127.0.0.1:8080, data in ./data)
run: build
	./$(BIN) serve

## test: vet, Go tests (with the OpenAPI contract test), the crash suite,
## the Node tests with real tus clients, the OpenAPI lint and the generated
## API client
test: fmt-check vet tools versitygw ui test-go test-crash test-node test-node-s3 openapi-lint openapi-client

## tools: Debian packages the tests use (promtool), installed when missing
tools:
	@command -v promtool >/dev/null || { \
	  echo "installing Debian's prometheus package (promtool)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

## versitygw: the S3 server the tests start (Versity S3 Gateway), built with
## go install into a cache outside the repository when missing or of
## another version (about 3 minutes once; nothing when it is there)
VERSITYGW_VERSION := v1.8.0
TOOLS_BIN         ?= $(HOME)/.cache/doorito/bin
VERSITYGW         := $(TOOLS_BIN)/versitygw

versitygw:
	@$(GO) version -m $(VERSITYGW) 2>/dev/null | grep -Eq '^[[:space:]]+mod[[:space:]]+github.com/versity/versitygw[[:space:]]+$(VERSITYGW_VERSION)[[:space:]]' || { \
	  echo "installing versitygw $(VERSITYGW_VERSION) into $(TOOLS_BIN) (go install, about 3 minutes)"; \
	  GOBIN=$(TOOLS_BIN) $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION); }

## docker-lint: lint the Dockerfile (no Docker engine needed) and check the binary is static
docker-lint: build testdata/docker/node_modules
	cd testdata/docker && node lint.mjs ../../Dockerfile
	@out=$$(ldd $(BIN) 2>&1 || true); echo "ldd $(BIN): $$out"; \
	echo "$$out" | grep -q "not a dynamic executable"

testdata/docker/node_modules: testdata/docker/package.json testdata/docker/package-lock.json
	cd testdata/docker && $(NPM) ci --no-audit --no-fund
	@touch $@

# Docker: Debian's engine and client (the client has BuildKit built in; a
# newer client without buildx would fall back to the classic builder).
DOCKER ?= $(shell test -x /usr/bin/docker && echo /usr/bin/docker || echo docker)
IMAGE  ?= doorito-portal:test

## docker-engine: a running Docker engine: Debian's docker.io is installed
## when no engine answers and dockerd is missing, and dockerd is started
## when none runs (log in build/docker/dockerd.log)
docker-engine:
	@if $(DOCKER) info >/dev/null 2>&1; then exit 0; fi; \
	if ! command -v dockerd >/dev/null; then \
	  echo "no Docker engine: installing Debian's docker.io"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends docker.io >/dev/null; \
	fi; \
	mkdir -p build/docker; echo "starting dockerd (log: build/docker/dockerd.log)"; \
	$(SUDO) sh -c 'nohup dockerd >build/docker/dockerd.log 2>&1 </dev/null &'; \
	for i in $$(seq 1 120); do $(DOCKER) info >/dev/null 2>&1 && exit 0; sleep 0.5; done; \
	echo "dockerd did not start:"; tail -20 build/docker/dockerd.log; exit 1

## docker-image: the image around build/portal, $(IMAGE), built with
## BuildKit from the Dockerfile's prebuilt target: nothing is pulled
docker-image: build docker-engine
	ln -f $(BIN) docker/bin/portal 2>/dev/null || cp $(BIN) docker/bin/portal
	DOCKER_BUILDKIT=1 $(DOCKER) build --target prebuilt --tag $(IMAGE) .

## docker-test: build the image (BuildKit, and the classic builder for the
## same target) and run it: testdata/deploy/docker.mjs
docker-test: docker-image testdata/deploy/node_modules
	DOCKER_BUILDKIT=0 $(DOCKER) build --quiet --target prebuilt --tag $(IMAGE)-classic . >/dev/null
	cd testdata/deploy && DOCKER=$(DOCKER) IMAGE=$(IMAGE) CLASSIC_IMAGE=$(IMAGE)-classic node --test --test-force-exit --test-reporter=spec docker.mjs

## nginx: Debian's nginx, installed when missing
nginx:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || { \
	  echo "installing Debian's nginx"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends nginx >/dev/null; }

## nginx-test: the portal behind nginx with TLS, configured as
## docs/operations.md shows: testdata/deploy/nginx.mjs
nginx-test: build nginx testdata/deploy/node_modules
	cd testdata/deploy && PORTAL_BIN=$(CURDIR)/$(BIN) NGINX=$$(command -v nginx || echo /usr/sbin/nginx) \
	  node --test --test-force-exit --test-reporter=spec nginx.mjs

## quickstart-test: run the README's quick start as written, against a
## fresh data directory (127.0.0.1:8080 and :9000 must be free)
quickstart-test: build testdata/deploy/node_modules
	cd testdata/deploy && node --test --test-force-exit --test-reporter=spec quickstart.mjs

testdata/deploy/node_modules: testdata/deploy/package.json testdata/deploy/package-lock.json
	cd testdata/deploy && $(NPM) ci --no-audit --no-fund
	@touch $@

## prometheus-check: a real Prometheus scrapes a running portal
prometheus-check: build tools
	scripts/prometheus-check.sh

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

## test-go: the Go tests (but the crash suite; the S3 ones start versitygw
## themselves); webhook signatures are also verified with npm
## standardwebhooks, S3 upload URLs with tus-js-client, and every API exchange
## of package app's tests against the OpenAPI document (the count is printed
## at the end)
test-go: build testdata/webhooks/node_modules testdata/node/node_modules versitygw
	@mkdir -p build && rm -f build/openapi-contract.txt
	PORTAL_REQUIRE_TOOLS=1 PORTAL_BIN=$(CURDIR)/$(BIN) PORTAL_VERSITYGW=$(VERSITYGW) \
		PORTAL_CONTRACT_REPORT=$(CURDIR)/build/openapi-contract.txt \
		$(GO) test -count=1 -timeout 10m $$($(GO) list ./... | grep -v /cmd/portalcrash)
	@cat build/openapi-contract.txt

## test-race: the Go tests with the race detector (it needs cgo: gcc; the crash suite and the
## benchmark smoke run, which drive the built binary, are left out; one
## test is left out for a race inside tusd: docs/upstream-tusd-race.md)
test-race: build testdata/webhooks/node_modules testdata/node/node_modules versitygw
	PORTAL_REQUIRE_TOOLS=1 PORTAL_BIN=$(CURDIR)/$(BIN) PORTAL_VERSITYGW=$(VERSITYGW) \
		CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m $$($(GO) list ./... | grep -v /cmd/)

## test-crash: the crash suite at CI size (cmd/portalcrash: kill -9 of the real
## build/portal under load, the small-file storm, the disk-full moments),
## verbose so its figures show; PORTALCRASH_SEED=N replays a seed
test-crash: build
	PORTAL_REQUIRE_TOOLS=1 PORTAL_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 15m -v ./cmd/portalcrash

testdata/webhooks/node_modules: testdata/webhooks/package.json testdata/webhooks/package-lock.json
	cd testdata/webhooks && $(NPM) ci --no-audit --no-fund
	@touch $@

testdata/node/node_modules: testdata/node/package.json testdata/node/package-lock.json
	cd testdata/node && $(NPM) ci --no-audit --no-fund
	@touch $@

test-node: build testdata/node/node_modules
	cd testdata/node && PORTAL_BIN=$(CURDIR)/$(BIN) node --test --test-concurrency=1

## test-node-s3: the same tus-js-client suites with the uploads in a real S3
## server (versitygw, started by the suite on loopback)
test-node-s3: build testdata/node/node_modules versitygw
	cd testdata/node && PORTAL_STORAGE=s3 PORTAL_VERSITYGW=$(VERSITYGW) PORTAL_BIN=$(CURDIR)/$(BIN) \
		node --test --test-concurrency=1

# The OpenAPI document of the API and the webhooks, and its npm tooling
# (Redocly CLI, openapi-typescript, openapi-fetch, tsc) in testdata/openapi.
OPENAPI_DOC := app/api/v1/openapi.json
OPENAPI_DIR := testdata/openapi

.PHONY: openapi-lint openapi-client

## openapi-lint: lint the OpenAPI document with Redocly CLI (its
## recommended rules, every one an error; testdata/openapi/redocly-lint.yaml)
openapi-lint: $(OPENAPI_DIR)/node_modules
	cd $(OPENAPI_DIR) && REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
	  ./node_modules/.bin/redocly lint --config redocly-lint.yaml ../../$(OPENAPI_DOC)

## openapi-client: generate a TypeScript client from the document
## (openapi-typescript + openapi-fetch), compile it with tsc and call a
## real portal binary with it
openapi-client: build $(OPENAPI_DIR)/node_modules
	cd $(OPENAPI_DIR) && rm -rf gen dist && \
	  ./node_modules/.bin/openapi-typescript ../../$(OPENAPI_DOC) -o gen/portal.d.ts && \
	  ./node_modules/.bin/tsc -p . && \
	  PORTAL_BIN=$(CURDIR)/$(BIN) node --test dist/client.test.js

$(OPENAPI_DIR)/node_modules: $(OPENAPI_DIR)/package.json $(OPENAPI_DIR)/package-lock.json
	cd $(OPENAPI_DIR) && $(NPM) ci --no-audit --no-fund
	@touch $@

## e2e: drive the real binary in headless Chromium (Debian's package) with
## playwright-core: sign in, upload through Uppy, webhooks, replay.
## Screenshots of every page go to build/e2e/screenshots/.
e2e: build chromium testdata/e2e/node_modules
	cd testdata/e2e && PORTAL_BIN=$(CURDIR)/$(BIN) E2E_OUT=$(CURDIR)/build/e2e node --test --test-concurrency=1

## docs-img: after make e2e, copy the browser test's screenshots that
## docs/webui.md shows into docs/img/ (reduced to a small palette with
## pngquant when it is installed, else copied as they are)
DOCS_IMG = dashboard-history-24h:dashboard-history-24h dashboard-history-7d:dashboard-history-7d dashboard-timeline:file-timeline
docs-img:
	@mkdir -p docs/img
	@for pair in $(DOCS_IMG); do \
	  src=$$(ls build/e2e/screenshots/$$(echo $${pair%%:*} | sed 's/^dashboard-/dashboard-[0-9][0-9]-/').png 2>/dev/null | head -n1); \
	  test -n "$$src" || { echo "docs-img: no screenshot for $${pair%%:*} (run make e2e)"; exit 1; }; \
	  dst=docs/img/$${pair#*:}.png; \
	  if command -v pngquant >/dev/null; then pngquant --force --strip --quality 85-100 --output "$$dst" "$$src"; else cp "$$src" "$$dst"; fi; \
	  echo "$$src -> $$dst ($$(wc -c <"$$dst") bytes)"; \
	done

## chromium: Debian's chromium, installed when missing (never a downloaded browser)
chromium:
	@test -x /usr/bin/chromium || { \
	  echo "installing Debian's chromium"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

testdata/e2e/node_modules: testdata/e2e/package.json testdata/e2e/package-lock.json
	cd testdata/e2e && $(NPM) ci --no-audit --no-fund
	@touch $@

## bench: build the portal and run the benchmarks (cmd/portalbench, about 10
## minutes, plus ~40 for scenario 6's registries of 1M and 4M files, ~30 GB
## of disk; -registry-dir DIR keeps them): prints a table, writes
## build/bench/results.json. BENCH_FLAGS adds options, e.g.
## BENCH_FLAGS='-scenarios 1 -reps 9'. `make test` runs
## only a tiny smoke run of the harness.
BENCH_FLAGS ?=
bench: build
	$(GO) build -o build/portalbench ./cmd/portalbench
	./build/portalbench -bin $(BIN) -dir build/bench -out build/bench/results.json $(BENCH_FLAGS)

## crash: the long crash suite (cmd/portalcrash -long: 300 uploads and 110
## kill -9, a storm of 5000 small uploads with 20 kills, the disk-full
## moments), about 10 minutes; prints the figures, writes
## build/crash/results.json. CRASH_FLAGS adds options, e.g.
## CRASH_FLAGS='-seed 42 -kills 200'. make test runs the CI size.
CRASH_FLAGS ?=
crash: build
	$(GO) build -o build/portalcrash ./cmd/portalcrash
	./build/portalcrash -long -bin $(BIN) -dir build/crash -out build/crash/results.json $(CRASH_FLAGS)

## fuzz: run every Go fuzz target for FUZZTIME each (default 20s; `make
## test` runs only their seed corpora) and print each one's executions.
## FUZZ=<regexp> picks targets, e.g. make fuzz FUZZ=Tus FUZZTIME=5m.
FUZZTIME ?= 20s
FUZZ     ?= .
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) FUZZ='$(FUZZ)' scripts/fuzz.sh

clean:
	rm -rf build
