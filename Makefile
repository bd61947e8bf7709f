# Bosun — the two commands are `make demo` and `make test`.
GO        ?= go
BIN       := bin
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
DEMO_DIR  ?= $(CURDIR)/.tmp/demo
TEST_FLAGS ?= -timeout 25m

.PHONY: all build test demo bench lint fmt vet deps clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/bosun ./cmd/bosun-agent

# Unit, integration and end-to-end tests, on real PostgreSQL (a throwaway cluster the
# tests start themselves) and real NATS (in-process).
test: deps lint
	$(GO) test $(TEST_FLAGS) ./...

# The director on the embedded default: throwaway Postgres under DEMO_DIR, embedded NATS,
# the local CPI and blobstore.
demo: deps build
	./scripts/demo.sh "$(DEMO_DIR)"

bench: deps
	$(GO) test -run '^$$' -bench . -benchmem ./...

lint: fmt vet

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# Installs what the tests and the demo need from Debian's packages.
deps:
	@./scripts/ensure-postgres.sh

clean:
	rm -rf $(BIN) .tmp
