# mk/bench.mk: `make bench`, runh against runc and crun (process isolation)
# and against a bare QEMU boot (hypervisor isolation, VMs restored from a
# template and booted cold). Included by the top Makefile. The harness is
# bench/ (Go); it runs every runtime inside one private mount namespace
# without /sys/fs/cgroup/unified (crun refuses the hybrid layout) and writes
# docs/benchmarks.md and docs/benchmarks.json.
#
#   make bench                         everything (about 24 minutes on 2 cores, TCG)
#                                      runh, Debian's runc and crun, and runc-src
#   make bench BENCH_FLAGS='-sections run,verbs -n 20'
#   make bench BENCH_FLAGS='-md build/bench.md -json build/bench.json'
#   make bench BENCH_FLAGS='-sections vm-run,vm-memory'   VMs restored and booted, the floor, host PSS
#   make bench BENCH_FLAGS='-sections vm-size'   a VM sized like the host against 1 vCPU (a parallel
#                                      CPU job), a small and a default-size VM idle (host PSS), and
#                                      QEMU's memory as the guest takes 1 GiB and frees it (-vm-size-n
#                                      rounds: 3, about 5 minutes here)
#   make bench BENCH_FLAGS='-sections vm-kernel' BENCH_GUEST_BEFORE=DIR
#                                      the guest kernel against an earlier one (DIR: vmlinux, version,
#                                      e.g. an entry of /var/cache/runh/kernel): size, booted and restored
#                                      starts, idle PSS (-vm-n rounds); without BENCH_GUEST_BEFORE the
#                                      current one only
#   make bench BENCH_FLAGS='-sections net'   host → container network, both modes
#                                      (builds and removes its own bridge, netns, veths, iptables chains)
#   make bench BENCH_FLAGS='-sections userland'   Python, a tree walk, reads, writes and a CPU job on
#                                      Debian minbase (scripts/mkdebian.sh: debootstrap once, then cached),
#                                      runh in both modes beside runc
#   make bench BENCH_FLAGS='-sections app'   WordPress and MariaDB under podman (docs/demo-app.md),
#                                      the four database+web assignments to runh's modes and both
#                                      with runc: time to the first page, installation, front page
#                                      requests/s (-app-n rounds: 2, about 6 minutes here)
#   build/bench -h                     all flags
#
# Measure on a quiet machine: the report quotes the load average it saw.

BENCH_BIN := build/bench
BENCH_FLAGS ?=
# Guest assets the hypervisor sections boot; without them those sections
# report "skipped" and the rest still runs.
BENCH_GUEST ?= guest-kernel
# An earlier guest kernel's directory for the vm-kernel section (RUNH_GUEST_DIR
# of runh when it boots that one); empty: the section reports the current one.
BENCH_GUEST_BEFORE ?=

.PHONY: bench bench-deps bench-build

# Debian's runc and crun are what runh is compared with; scripts/deps.sh
# installs only what is missing (busybox-static and QEMU among its own).
# iptables publishes the net section's port; debootstrap builds the
# userland section's Debian rootfs and the app section's images, which run
# under podman (APP_PKGS, mk/app.mk).
bench-deps:
	@RUNH_EXTRA_PKGS="runc crun $(APP_PKGS) $(RUNH_EXTRA_PKGS)" scripts/deps.sh

bench-build:
	@mkdir -p $(dir $(BENCH_BIN))
	$(GO) build -o $(BENCH_BIN) ./bench

# runc-src: runc built from the very runc module (libcontainer) runh links,
# fetched by the Go module proxy like any dependency. Debian's runc 1.1 is
# the comparison operators make; this one tells what runh adds to
# libcontainer from what libcontainer's newer versions cost themselves.
RUNC_SRC_VER := $(shell $(GO) list -m -f '{{.Version}}' github.com/opencontainers/runc 2>/dev/null)
RUNC_SRC := build/runc-src/runc-$(RUNC_SRC_VER)

$(RUNC_SRC): go.mod
	@set -e; dir=$$($(GO) mod download -json github.com/opencontainers/runc@$(RUNC_SRC_VER) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p'); \
	rm -rf build/runc-src/src && mkdir -p build/runc-src && cp -r "$$dir" build/runc-src/src && chmod -R u+w build/runc-src/src; \
	cd build/runc-src/src && CGO_ENABLED=1 $(GO) build -trimpath -tags seccomp \
		-ldflags "-s -w -X main.version=$(patsubst v%,%,$(RUNC_SRC_VER)) -extldflags -static" -o ../runc-$(RUNC_SRC_VER) . 2>/dev/null
	@rm -rf build/runc-src/src

bench: bench-deps bin/runh bench-build
	-@$(MAKE) --no-print-directory $(BENCH_GUEST)
	-@$(MAKE) --no-print-directory $(RUNC_SRC)
	$(BENCH_BIN) -runh bin/runh -runc /usr/sbin/runc -crun /usr/bin/crun \
		$$(test -x $(RUNC_SRC) && echo -runc-src $(RUNC_SRC)) \
		$(if $(BENCH_GUEST_BEFORE),-guest-before $(BENCH_GUEST_BEFORE)) \
		-md docs/benchmarks.md -json docs/benchmarks.json $(BENCH_FLAGS)
