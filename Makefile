# wsgateway — `make run` starts the whole local stack, `make test` checks everything.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

# buf is pinned here rather than as a go.mod tool: its dependency graph would
# force pre-release versions of protobuf on the product. The protoc plugins
# are go.mod tools, so their versions match the runtime libraries.
BUF := go run github.com/bufbuild/buf/cmd/buf@v1.75.0
LAMBDAS := $(patsubst lambdas/%/main.go,%,$(wildcard lambdas/*/main.go))
# The exact flags of the Lambda and container builds (the Dockerfile uses the same).
GO_BUILD_FLAGS := -trimpath -ldflags="-s -w"

.PHONY: run test fuzz token generate check-generate lint vet unit test-load web-check screenshot lambdas package build clean bench bench-check

# Built, then exec'd rather than `go run`: go run exits 1 when Ctrl-C reaches it with the
# devstack, so make reported a clean stop as "Error 1". The devstack stops gracefully on
# SIGINT/SIGTERM and exits 0.
run: ## start the devstack: emulated API Gateway, handlers, publisher, in-memory store
	go build -o build/devstack ./services/devstack
	exec build/devstack

# The checks that do not depend on one another run side by side, since each alone leaves a core
# idle for much of its time (a link, a tsc, a fuzz coordinator). gen/ is checked first, because
# make generate rewrites files that unit compiles; unit runs alone, for its tests' timing bounds.
test: node_modules/.package-lock.json ## everything but the load test (CI runs both)
	@$(MAKE) --no-print-directory check-generate
	@$(MAKE) --no-print-directory -j2 --output-sync=target lint web-check
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory -j3 --output-sync=target fuzz lambdas bench-check

# -vet=all: every check of go vet (make vet), on every package, tests included, run on the
# race build the tests use, rather than by a go vet that compiles everything a second time
# without -race. -p: one test binary more than cores, since a package whose tests wait (a
# quota, a browser, a timeout) holds its slot with the CPU idle; on 2 cores the step took
# 75-79 s instead of 85 s.
UNIT_PACKAGES ?= $(shell echo $$(( $$(getconf _NPROCESSORS_ONLN) + 1 )))
unit:
	go test -race -count=1 -vet=all -p $(UNIT_PACKAGES) ./...

# Every fuzz target, FUZZTIME each (a short bounded run in make test; longer by hand, e.g.
# make fuzz FUZZTIME=5m). A crasher is written to testdata/fuzz/: fix it and commit it, and
# it stays a regression case that every plain go test run replays. make test counts
# executions rather than seconds: with a duration, Go 1.26's fuzz coordinator can race its
# own deadline and fail a target with a bare "context deadline exceeded" and no input
# (fixed in Go 1.27); a count has no deadline to race.
FUZZTIME ?= 10000x
FUZZ_TARGETS := internal/wsproto:FuzzParseTopics internal/wsproto:FuzzAction internal/wsproto:FuzzValidateTopic \
	internal/wsproto:FuzzParseSubscribe internal/wsproto:FuzzMatchingPatterns \
	internal/handler:FuzzAllowedPatternCoversItsTopics internal/fanout:FuzzValidate internal/auth:FuzzVerify
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} ($(FUZZTIME))"; \
		go test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) ./$${t%%:*} || exit 1; \
	done

# TOPICS is split into words but never globbed (set -f): TOPICS='*' and 'orders.*' are
# patterns for the token, not file names.
token: ## print a development connect token for TOPICS (default '*') that may publish to PUBLISH (e.g. PUBLISH='chat.*'; default none), signed with CONNECT_TOKEN_SECRET
	@set -f; go run ./cmd/token -sub "$${SUB:-dev}" -publish "$(PUBLISH)" $(or $(TOPICS),'*')

test-load: node_modules/.package-lock.json ## the churn test: 2,000 WebSockets on DynamoDB (dynalite), nothing lost or leaked; CHURN_SEED=n replays a run
	go test -race -vet=all -tags load -run '^TestChurn$$' -count=1 -v ./internal/devstack/

vet:
	go vet ./...

web-check: node_modules/.package-lock.json ## type-check web/ (JSDoc, no build step) and unit-test the browser client
	node_modules/.bin/tsc -p web
	node --test --test-reporter=spec web/test/

screenshot: ## docs/demo.png: the demo page at laptop size, taken by the browser test
	WSGATEWAY_SCREENSHOT=$(CURDIR)/docs/demo.png go test -count=1 -run 'TestBrowser/demo_page$$' ./internal/devstack/

# The benchmark is a module of its own (bench/), so that what only it needs stays out of the
# product's go.mod; go test ./... at the root does not reach it, bench-check does.
bench: node_modules/.package-lock.json ## the fan-out benchmark (docs/performance.md): prints the table, saves build/bench/results.txt
	cd bench && go run . -out ../build/bench

# Without -race: the product's code runs under the race detector in make unit;
# here the scenarios only need to run to their rows (under -race they took 44 s).
# go test compiles and links all of the module (it is one main package), so no separate build.
bench-check: ## vet and unit-test the benchmark's module (its tests serve the stack in-process, build nothing)
	cd bench && go vet ./... && go test -count=1 ./...

lint:
	$(BUF) lint

generate: node_modules/.package-lock.json ## regenerate gen/ from proto/ (offline, local plugins)
	$(BUF) generate

check-generate: generate ## fail if gen/ is stale
	@if [ -n "$$(git status --porcelain -- gen)" ]; then \
		git status --short -- gen; \
		echo "gen/ is stale: run 'make generate' and commit the result"; exit 1; \
	fi

# One go build for all of them, so their packages compile and link side by side; provided.al2023
# wants each named bootstrap in its own directory.
lambdas: ## each Lambda as build/<name>/bootstrap for provided.al2023 on arm64
	@rm -rf build/.lambdas
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 go build $(GO_BUILD_FLAGS) -tags lambda.norpc -o build/.lambdas/ $(LAMBDAS:%=./lambdas/%)
	@for l in $(LAMBDAS); do mkdir -p build/$$l && mv build/.lambdas/$$l build/$$l/bootstrap; done
	@rmdir build/.lambdas
	@echo "built $(LAMBDAS:%=build/%/bootstrap)"

package: lambdas ## each Lambda zipped as build/<name>.zip too, reproducibly; deploy/template.yaml deploys build/<name>/
	go run ./deploy/lambdazip $(LAMBDAS:%=build/%)
	@echo "packed $(LAMBDAS:%=build/%.zip)"

build: ## the publisher container's binary and the devstack
	CGO_ENABLED=0 go build $(GO_BUILD_FLAGS) -o build/publisher ./services/publisher
	go build -o build/devstack ./services/devstack

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

clean:
	rm -rf build node_modules
