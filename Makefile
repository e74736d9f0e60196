# im-infra — see README.md. Every target works on a bare machine with Go.
GO        ?= go
PKGS      ?= ./...
TEST_FLAGS ?= -race -count=1 -timeout 15m
BENCH     ?= .

.PHONY: run test bench lint fmt vet staticcheck tidy

## run: start the example service on the embedded dev stack (etcd in-process)
run:
	$(GO) run ./cmd/imdev

## test: all tests with the race detector
test:
	$(GO) test $(TEST_FLAGS) $(PKGS)

## bench: benchmarks (BENCH=regexp to select), 5 runs each, allocations reported
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count 5 $(PKGS)

## lint: gofmt check, go vet, staticcheck (version pinned in go.mod via tools/)
lint: fmt vet staticcheck

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

staticcheck:
	$(GO) run honnef.co/go/tools/cmd/staticcheck $(PKGS)

## tidy: go mod tidy (keeps the tool pins in tools/tools.go)
tidy:
	$(GO) mod tidy
