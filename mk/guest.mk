# mk/guest.mk: guest assets for hypervisor isolation, included by the top Makefile.
#
# `make guest-kernel` fetches a Debian linux-image-6.1 package with apt-get
# download (never installed, the host's /boot untouched) and writes $(GUEST_DIR):
#   vmlinuz        the guest kernel
#   modules/*.ko   only the modules the guest needs, plus their dependencies
#   modules.dep    "name.ko: dep.ko ..." for those modules; runh derives the
#                  insmod order from it
#   version        the kernel release
# runh looks for these in $RUNH_GUEST_DIR, <runh binary>/../build/guest,
# /usr/local/share/runh/guest, /usr/share/runh/guest (hvshim/assets).
# The initrd is not built here: runh writes it itself from its own binary and
# these modules, cached under $RUNH_CACHE_DIR or /var/cache/runh.

GUEST_DIR ?= build/guest
# The newest 6.1 unsigned amd64 image apt knows, unless given.
GUEST_KERNEL_PKG ?= $(shell apt-cache search --names-only '^linux-image-6\.1\.[0-9.]+-[0-9]+-amd64-unsigned$$' 2>/dev/null | cut -d' ' -f1 | sort -V | tail -n1)
GUEST_MODULES ?= virtio_mmio virtio_console vsock vmw_vsock_virtio_transport \
	vmw_vsock_virtio_transport_common 9p 9pnet 9pnet_virtio netfs fscache overlay

.PHONY: guest-kernel guest-clean

guest-kernel: $(GUEST_DIR)/vmlinuz

$(GUEST_DIR)/vmlinuz:
	@pkg='$(GUEST_KERNEL_PKG)'; \
	if [ -z "$$pkg" ]; then apt-get update -qq && \
		pkg=$$(apt-cache search --names-only '^linux-image-6\.1\.[0-9.]+-[0-9]+-amd64-unsigned$$' | cut -d' ' -f1 | sort -V | tail -n1); fi; \
	[ -n "$$pkg" ] || { echo "guest-kernel: apt knows no linux-image-6.1 package" >&2; exit 1; }; \
	sh hvshim/assets/guest-kernel.sh $(GUEST_DIR) "$$pkg" $(GUEST_MODULES)

guest-clean:
	rm -rf $(GUEST_DIR)
