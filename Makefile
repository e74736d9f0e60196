# im-infra — see README.md. Every target works on a bare machine with Go.
GO        ?= go
PKGS      ?= ./...
TEST_FLAGS ?= -race -count=1 -timeout 20m
BENCH     ?= .

.PHONY: run build test bench lint fmt vet staticcheck shellcheck smoke tidy

## run: the example service on the embedded dev stack; Ctrl-C stops it (exit 0)
run: build
	./bin/imdev

## build: the binaries, into bin/
build:
	$(GO) build -o bin/imdev ./cmd/imdev
	$(GO) build -o bin/config-cli ./cmd/config-cli
	$(GO) build -o bin/app-template ./app-template

## test: all tests with the race detector
test:
	$(GO) test $(TEST_FLAGS) $(PKGS)

## smoke: the README's quick start on the built binaries (needs etcdctl and curl)
smoke:
	./scripts/smoke.sh

## bench: benchmarks (BENCH=regexp to select), 5 runs each, allocations reported
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count 5 $(PKGS)

## lint: gofmt check, go vet, staticcheck (version pinned in go.mod via tools/), shellcheck
lint: fmt vet staticcheck shellcheck

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

staticcheck:
	$(GO) run honnef.co/go/tools/cmd/staticcheck $(PKGS)

shellcheck:
	@if command -v shellcheck >/dev/null; then shellcheck $$(git ls-files '*.sh') .ci/run; else echo "shellcheck not installed; skipped"; fi

## tidy: go mod tidy (keeps the tool pins in tools/tools.go)
tidy:
	$(GO) mod tidy
