# mk/guest.mk: guest kernels for hypervisor isolation, included by the top
# Makefile. `make guest-kernel` writes both:
#
# $(GUEST_DIR) (build/guest): runh's own kernel, the default.
#   hvshim/assets/build-kernel.sh builds it from Debian's linux-source-6.1
#   (`make tinyconfig` + hvshim/assets/kernel/guest.config, everything built
#   in, no modules) and writes:
#     vmlinux   the kernel (ELF, booted through its PVH entry point)
#     version   the kernel release (6.1.x-runh)
#     config    the final .config
#     flavor    "runh"
#     cachekey  the cache key it came from
#   The build (about 8 minutes on 2 cores) is cached in
#   $RUNH_CACHE_DIR/kernel/<key>/ (default /var/cache/runh), key = sha256 of
#   the fragment, the script, the linux-source package version and the
#   compiler: the target runs the script every time, and it returns at once
#   when nothing changed.
#
# $(GUEST_DEBIAN_DIR) (build/guest-debian): Debian's generic kernel, the
#   fallback (`make guest-kernel-debian` alone; `make demo` boots it when
#   runh's is neither built nor cached, see guest-kernel-demo). hvshim/assets/guest-kernel.sh
#   fetches a linux-image-6.1 package with apt-get download (never installed,
#   the host's /boot untouched) and writes:
#     vmlinuz, vmlinux  the kernel (vmlinux extracted when it has a PVH note)
#     modules/*.ko      only the modules the guest needs, plus dependencies
#     modules.dep       "name.ko: dep.ko ..."; runh derives the insmod order
#     version           the kernel release
#
# runh looks in $RUNH_GUEST_DIR alone when set, else in guest/ then
# guest-debian/ under <runh binary>/../build, /usr/local/share/runh and
# /usr/share/runh (hvshim/assets); `runh check` names the kernel it found and
# its flavor. The initrd is not built here: runh writes it itself from its
# own binary (and the fallback's modules), cached under $RUNH_CACHE_DIR.

GUEST_DIR ?= build/guest
GUEST_DEBIAN_DIR ?= build/guest-debian
# The newest 6.1 unsigned amd64 image apt knows, unless given.
GUEST_KERNEL_PKG ?= $(shell apt-cache search --names-only '^linux-image-6\.1\.[0-9.]+-[0-9]+-amd64-unsigned$$' 2>/dev/null | cut -d' ' -f1 | sort -V | tail -n1)
GUEST_MODULES ?= virtio_mmio virtio_console virtio_net vsock vmw_vsock_virtio_transport \
	vmw_vsock_virtio_transport_common 9p 9pnet 9pnet_virtio netfs fscache overlay

.PHONY: guest-kernel guest-kernel-runh guest-kernel-debian guest-kernel-demo guest-clean vm-template

guest-kernel: guest-kernel-runh guest-kernel-debian

# `make demo`'s kernel, ready in seconds rather than after an 8-minute build:
# runh's own when it is built or cached for the current key (build-kernel.sh
# --cached-only copies it, or exits 3 without building), else Debian's
# (about 70 MB to download).
guest-kernel-demo:
	@sh hvshim/assets/build-kernel.sh --cached-only $(GUEST_DIR) || \
		{ [ $$? -eq 3 ] && { test -s $(GUEST_DIR)/vmlinux || $(MAKE) --no-print-directory guest-kernel-debian; }; }

# Always run: the script compares its cache key with $(GUEST_DIR)/cachekey.
guest-kernel-runh:
	@sh hvshim/assets/build-kernel.sh $(GUEST_DIR)

guest-kernel-debian: $(GUEST_DEBIAN_DIR)/vmlinuz

$(GUEST_DEBIAN_DIR)/vmlinuz:
	@pkg='$(GUEST_KERNEL_PKG)'; \
	if [ -z "$$pkg" ]; then apt-get update -qq && \
		pkg=$$(apt-cache search --names-only '^linux-image-6\.1\.[0-9.]+-[0-9]+-amd64-unsigned$$' | cut -d' ' -f1 | sort -V | tail -n1); fi; \
	[ -n "$$pkg" ] || { echo "guest-kernel: apt knows no linux-image-6.1 package" >&2; exit 1; }; \
	sh hvshim/assets/guest-kernel.sh $(GUEST_DEBIAN_DIR) "$$pkg" $(GUEST_MODULES)

# The VM template a container in a new network namespace is restored from
# (docs/templates.md), made now rather than by the first create.
vm-template: bin/runh guest-kernel-runh
	bin/runh template

# The build cache ($RUNH_CACHE_DIR/kernel) is kept.
guest-clean:
	rm -rf $(GUEST_DIR) $(GUEST_DEBIAN_DIR)
