# mk/bench.mk: `make bench`, runh against runc and crun (process isolation)
# and against a bare QEMU boot (hypervisor isolation). Included by the top
# Makefile. The harness is bench/ (Go); it runs every runtime inside one
# private mount namespace without /sys/fs/cgroup/unified (crun refuses the
# hybrid layout) and writes docs/benchmarks.md and docs/benchmarks.json.
#
#   make bench                         everything (about 5-10 minutes on 2 cores)
#   make bench BENCH_FLAGS='-sections run,verbs -n 20'
#   make bench BENCH_FLAGS='-md build/bench.md -json build/bench.json'
#   build/bench -h                     all flags
#
# Measure on a quiet machine: the report quotes the load average it saw.

BENCH_BIN := build/bench
BENCH_FLAGS ?=
# Guest assets the hypervisor sections boot; without them those sections
# report "skipped" and the rest still runs.
BENCH_GUEST ?= guest-kernel

.PHONY: bench bench-deps bench-build

# Debian's runc and crun are what runh is compared with; scripts/deps.sh
# installs only what is missing (busybox-static and QEMU among its own).
bench-deps:
	@RUNH_EXTRA_PKGS="runc crun $(RUNH_EXTRA_PKGS)" scripts/deps.sh

bench-build:
	@mkdir -p $(dir $(BENCH_BIN))
	$(GO) build -o $(BENCH_BIN) ./bench

bench: bench-deps bin/runh bench-build
	-@$(MAKE) --no-print-directory $(BENCH_GUEST)
	$(BENCH_BIN) -runh bin/runh -runc /usr/sbin/runc -crun /usr/bin/crun \
		-md docs/benchmarks.md -json docs/benchmarks.json $(BENCH_FLAGS)
