# runh's build, tests, demo and benchmarks. `make demo` and `make test` are
# the two commands of the README: both install what they need first.

GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
export PATH := $(dir $(GO)):$(PATH)
VERSION ?= 0.1.0
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null)
TAGS := seccomp netgo osusergo
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -extldflags -static
GOFILES := $(shell find . -name '*.go' -not -path './integration/*' -not -path './build/*') go.mod go.sum

.PHONY: all deps test unit fuzz integration lint demo clean
all: bin/runh

# Everything `make test` needs, runh's own guest kernel included.
deps:
	@scripts/deps.sh
	@$(GO) mod download
	@$(MAKE) --no-print-directory guest-kernel

# One static binary: it is also copied into the VM's initrd as /init.
bin/runh: $(GOFILES)
	@mkdir -p bin
	CGO_ENABLED=1 $(GO) build -trimpath -tags "$(TAGS)" -ldflags "$(LDFLAGS)" -o $@ .
	@ln -sf runh bin/runh-vm

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet -tags "$(TAGS)" ./...

unit:
	$(GO) test -tags "$(TAGS)" -count=1 ./libruntime/... ./hvshim/... ./bench/ ./integration/wordpress/

# Unit tests that boot a VM use the real binary.
unit: export RUNH_TEST_BINARY = $(CURDIR)/bin/runh
unit: bin/runh

# TestUserland runs Python on a Debian rootfs that scripts/mkdebian.sh
# builds with debootstrap once and caches under /var/cache/runh/rootfs.
integration: bin/runh
	RUNH_TEST_DEBIAN_ROOTFS=$$(scripts/mkdebian.sh) \
		$(GO) test -count=1 -timeout 25m ./integration/ $(if $(V),-v)

test: deps lint unit fuzz conformance-unit integration engines package-test test-hosts-ci conformance conformance-vm

# The first container in each mode minutes after a fresh clone: only the
# packages the demo needs, and a guest kernel that is ready in seconds: runh's
# own if it is built or cached, else Debian's (guest-kernel-demo in
# mk/guest.mk); scripts/demo.sh says how to build runh's afterwards. What
# waits on the network overlaps what does not: the Go modules download while
# apt installs, Debian's kernel while bin/runh compiles.
demo:
	@t0=$$(date +%s); \
	command -v $(GO) >/dev/null || { echo "demo: no Go toolchain ($(GO)): install Go $$(sed -n 's/^go //p' go.mod) or newer from https://go.dev/dl into /usr/local/go" >&2; exit 1; }; \
	$(GO) mod download & dl=$$!; \
	scripts/deps.sh demo; rc=$$?; wait $$dl; [ $$rc -eq 0 ] && \
	$(MAKE) --no-print-directory -j2 bin/runh guest-kernel-demo && \
	RUNH_DEMO_T0=$$t0 scripts/demo.sh

clean:
	rm -rf bin build

-include mk/*.mk

# Each fuzz target runs briefly in `make test`, for a number of inputs rather
# than a time: a -fuzztime duration that expires while a worker is busy makes
# go test report "context deadline exceeded" as a failure. FUZZTIME=5m (or
# any -fuzztime value) for a real run.
FUZZTIME ?=
fuzz:
	$(GO) test -run XXX -fuzz '^FuzzLoadBundle$$' -fuzztime $(or $(FUZZTIME),4000x) ./libruntime/
	$(GO) test -run XXX -fuzz '^FuzzParseIsolation$$' -fuzztime $(or $(FUZZTIME),100000x) ./libruntime/
	$(GO) test -run XXX -fuzz '^FuzzValidateID$$' -fuzztime $(or $(FUZZTIME),100000x) ./libruntime/
	$(GO) test -run XXX -fuzz '^FuzzReadFrame$$' -fuzztime $(or $(FUZZTIME),50000x) ./hvshim/proto/
