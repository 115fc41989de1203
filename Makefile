# egret: run `make help` for the targets.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 20s
BENCHTIME ?= 200ms
SOAK_TUNNELS ?= 10000

.PHONY: help build run test check fuzz soak bench bench-review bench-peers bench-ab bench-tail bench-dns lint tidy-check

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/egret (static, stripped)
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o bin/egret ./cmd/egret

run: ## serve the embedded netapp-connector-aws allowlist on :3128, decisions on stdout
	go run ./cmd/egret serve --product netapp-connector-aws

test: check ## every check and test: vet, gofmt, go mod tidy, go test -race, each fuzz target for FUZZTIME
	go test -race -count=1 ./...
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

check: ## static checks: go vet, gofmt, go mod tidy leaves no diff, egret lint of the embedded allowlists
	go vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@scripts/tidy-check.sh
	go run ./cmd/egret lint > /dev/null

fuzz: ## run each native fuzz target for FUZZTIME (default 20s)
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

soak: ## 10,000 concurrent tunnels through one egret, reloads and slowloris under load; no leak after (needs ~82,000 open files)
	EGRET_SOAK_TUNNELS=$(SOAK_TUNNELS) go test -count=1 -timeout 15m -run '^TestSoak$$' -v ./proxy

bench: ## Go benchmarks of the hot paths (benchstat-ready output in bench.txt)
	go test ./... -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count 6 | tee bench.txt

bench-review: ## egret review and egret diff on generated 100k- and 1M-line logs: lines/s and peak memory (docs/BENCHMARKS.md)
	scripts/bench-review.sh

bench-peers: ## (root) egret vs Squid, tinyproxy, a bare relay and direct; writes docs/BENCHMARKS.md (BENCH_DURATION, BENCH_IDLE)
	scripts/bench-peers.sh

bench-ab: ## egret's per-connection cost at BASE (default HEAD~1) and the working tree, alternating rounds, plus the HTTPS listener (docs/BENCHMARKS.md)
	scripts/bench-ab.sh

bench-tail: ## (root) the transparent listener's c=1 tail after bursts of redirected connections: egret restarted, conntrack flushed (GW_SYSCTLS)
	scripts/bench-transparent-tail.sh

bench-dns: ## egret's DNS door vs dnsmasq (no cache, cache, logging) on loopback: queries/s, CPU/query (docs/BENCHMARKS.md)
	scripts/bench-dns.sh

lint: ## lint the embedded allowlists (or FILES="a.yaml dir/")
	go run ./cmd/egret lint $(FILES)
