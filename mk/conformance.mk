# OCI conformance: runtime-tools v0.9.0's validation programs against runh,
# runc (reference) and runh-vm. Sources: integration/conformance (own module).
#
#   make conformance        bin/runh; fails below integration/conformance/baseline
#   make conformance-runc   reference column with /usr/sbin/runc
#   make conformance-vm     bin/runh-vm (hypervisor isolation) column; fails below
#                           integration/conformance/baseline-vm
#   make conformance-baseline  store runh's current ok count as the baseline
#   make conformance-unit   vet and unit-test the harness itself
#   make conformance CONFORMANCE_RUN='^kill'   a subset (nothing is saved)
#
# Raw TAP output goes to build/conformance/<column>/; the counts to
# integration/conformance/results/<column>.json and docs/conformance.md.

GO ?= go
CONFORMANCE_SRC := $(CURDIR)/integration/conformance
CONFORMANCE_OUT := $(CURDIR)/build/conformance
CONFORMANCE_BIN := $(CONFORMANCE_OUT)/bin
CONFORMANCE_TOOL := $(CONFORMANCE_OUT)/conformance
CONFORMANCE_RUNTIME ?= $(CURDIR)/bin/runh
CONFORMANCE_COLUMN ?= runh
CONFORMANCE_JOBS ?= 2
CONFORMANCE_TIMEOUT ?= 180s
CONFORMANCE_RUN ?=
CONFORMANCE_BASELINE := $(CONFORMANCE_SRC)/baseline
# The VM column's floor sits a little under its count (3508 ok on
# 2026-12-02): under TCG a busy machine can time a program out.
CONFORMANCE_BASELINE_VM := $(CONFORMANCE_SRC)/baseline-vm
RUNTIME_TOOLS := github.com/opencontainers/runtime-tools

CONFORMANCE_ARGS = -bin $(CONFORMANCE_BIN) -out $(CONFORMANCE_OUT) \
	-jobs $(CONFORMANCE_JOBS) -timeout $(CONFORMANCE_TIMEOUT) \
	-results $(CONFORMANCE_SRC)/results -notes $(CONFORMANCE_SRC)/notes \
	-doc $(CURDIR)/docs/conformance.md -mkrootfs $(CURDIR)/scripts/mkrootfs.sh \
	$(if $(CONFORMANCE_RUN),-run '$(CONFORMANCE_RUN)')

.PHONY: conformance conformance-runc conformance-vm conformance-baseline conformance-build conformance-doc conformance-unit

# The validation programs are main packages of the module cache's copy of
# runtime-tools; runtimetest runs inside the busybox container, so static.
conformance-build:
	@mkdir -p $(CONFORMANCE_BIN)
	cd $(CONFORMANCE_SRC) && $(GO) build -o $(CONFORMANCE_TOOL) . && \
	CGO_ENABLED=0 $(GO) build -o $(CONFORMANCE_BIN)/runtimetest $(RUNTIME_TOOLS)/cmd/runtimetest && \
	$(GO) build -o $(CONFORMANCE_BIN)/ $$($(GO) list $(RUNTIME_TOOLS)/validation/... | grep -v /validation/util)

conformance: conformance-build bin/runh
	$(CONFORMANCE_TOOL) $(CONFORMANCE_ARGS) -runtime $(CONFORMANCE_RUNTIME) \
		-column $(CONFORMANCE_COLUMN) -baseline $(CONFORMANCE_BASELINE)

conformance-runc: conformance-build
	$(CONFORMANCE_TOOL) $(CONFORMANCE_ARGS) -runtime /usr/sbin/runc -column runc

conformance-vm: conformance-build bin/runh
	$(CONFORMANCE_TOOL) $(CONFORMANCE_ARGS) -runtime $(CURDIR)/bin/runh-vm -column runh-vm \
		-baseline $(CONFORMANCE_BASELINE_VM)

conformance-baseline: conformance-build bin/runh
	$(CONFORMANCE_TOOL) $(CONFORMANCE_ARGS) -runtime $(CONFORMANCE_RUNTIME) \
		-column $(CONFORMANCE_COLUMN) -baseline $(CONFORMANCE_BASELINE) -update-baseline

# Rewrites docs/conformance.md from the stored results, e.g. after editing notes.
conformance-doc: conformance-build
	$(CONFORMANCE_TOOL) $(CONFORMANCE_ARGS) -doc-only

# The harness is its own module, outside the root module's ./... patterns.
conformance-unit:
	cd $(CONFORMANCE_SRC) && test -z "$$(gofmt -l .)" && $(GO) vet . && $(GO) test -count=1 .
