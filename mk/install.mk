# mk/install.mk: installing runh, and its Debian package. Included by the top
# Makefile. docs/install.md tells the operator's side.
#
#   make install             bin/runh, the runh-vm link and the guest kernels
#                            built so far into $(PREFIX) (default /usr/local)
#   make install PREFIX=/usr DESTDIR=/tmp/stage
#   make uninstall           removes what install writes (same PREFIX, DESTDIR)
#   make deb                 build/runh_$(DEB_VERSION)_<arch>.deb, with dpkg-deb
#   make package-test        builds the package, installs it, runs a container
#                            in each mode with the installed runh through
#                            podman, and removes the package (part of make test)
#
# Installed:
#   $(BINDIR)/runh           the static binary (also the VM's /init)
#   $(BINDIR)/runh-vm        -> runh: hypervisor isolation by default
#   $(RUNH_SHARE)/guest/        runh's own kernel (vmlinux, version, flavor, ...)
#   $(RUNH_SHARE)/guest-debian/ Debian's kernel and its modules, the fallback
# runh looks for its kernel in /usr/local/share/runh and /usr/share/runh
# (hvshim/assets), guest/ first: with another PREFIX, set RUNH_GUEST_DIR.

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
RUNH_SHARE ?= $(PREFIX)/share/runh
DESTDIR ?=
# The guest directories to install, of those built: guest (runh's kernel,
# $(GUEST_DIR)) and guest-debian ($(GUEST_DEBIAN_DIR)). When none is built,
# install fetches Debian's (seconds; `make guest-kernel install` for runh's).
INSTALL_GUESTS ?= guest guest-debian

.PHONY: install uninstall deb package-test

install: bin/runh
	@set -e; \
	found=""; for g in $(INSTALL_GUESTS); do case $$g in guest) d=$(GUEST_DIR) ;; guest-debian) d=$(GUEST_DEBIAN_DIR) ;; \
		*) echo "install: unknown guest directory $$g (guest or guest-debian)" >&2; exit 1 ;; esac; \
		[ ! -s $$d/vmlinux ] && [ ! -s $$d/vmlinuz ] || found=1; done; \
	if [ -z "$$found" ]; then \
		echo "install: no guest kernel built yet: fetching Debian's (make guest-kernel builds runh's own)"; \
		$(MAKE) --no-print-directory guest-kernel-debian; \
	fi
	@if [ -z "$(DESTDIR)" ] && dpkg-query -S $(BINDIR)/runh >/dev/null 2>&1; then \
		echo "install: $(BINDIR)/runh belongs to the runh package: apt-get remove runh first, or choose another PREFIX" >&2; exit 1; fi
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(RUNH_SHARE)
	install -m 0755 bin/runh $(DESTDIR)$(BINDIR)/runh
	ln -sfn runh $(DESTDIR)$(BINDIR)/runh-vm
	@set -e; first=""; for g in $(INSTALL_GUESTS); do \
		case $$g in guest) src=$(GUEST_DIR) ;; *) src=$(GUEST_DEBIAN_DIR) ;; esac; \
		[ -s $$src/vmlinux ] || [ -s $$src/vmlinuz ] || continue; \
		dst=$(DESTDIR)$(RUNH_SHARE)/$$g; \
		rm -rf $$dst.new; mkdir -p $$dst.new; \
		for f in $$src/*; do case $${f##*/} in \
			vmlinuz) [ -s $$src/vmlinux ] || cp $$f $$dst.new/ ;; \
			modules) cp -R $$f $$dst.new/ ;; \
			*) [ ! -f $$f ] || cp $$f $$dst.new/ ;; esac; done; \
		chmod -R u=rwX,go=rX $$dst.new; \
		rm -rf $$dst; mv $$dst.new $$dst; \
		echo "install: $$dst: $$(cat $$dst/version) ($$(cat $$dst/flavor 2>/dev/null || echo distribution))"; \
		first=$${first:-$(RUNH_SHARE)/$$g}; \
	done; \
	case "$(RUNH_SHARE)" in /usr/local/share/runh|/usr/share/runh) ;; \
		*) echo "install: runh looks for its guest kernel in /usr/local/share/runh and /usr/share/runh only: set RUNH_GUEST_DIR=$$first";; esac

uninstall:
	@if [ -z "$(DESTDIR)" ] && dpkg-query -S $(BINDIR)/runh >/dev/null 2>&1; then \
		echo "uninstall: $(BINDIR)/runh belongs to the runh package: apt-get remove runh" >&2; exit 1; fi
	rm -f $(DESTDIR)$(BINDIR)/runh $(DESTDIR)$(BINDIR)/runh-vm
	rm -rf $(DESTDIR)$(RUNH_SHARE)/guest $(DESTDIR)$(RUNH_SHARE)/guest-debian
	@rmdir $(DESTDIR)$(RUNH_SHARE) 2>/dev/null || true

# ---- the Debian package ----
#
# /usr/bin/runh, /usr/bin/runh-vm, /usr/share/runh/guest (runh's kernel; add
# guest-debian to DEB_GUESTS for Debian's too: runh only boots it when guest/
# is missing, and it adds 40 MB), README and docs in /usr/share/doc/runh.
# The binary is static: QEMU is the one run-time dependency (hypervisor
# isolation); `runh ps` in table form runs ps(1), hence procps recommended.
DEB_VERSION ?= $(VERSION)
DEB_ARCH := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
DEB_GUESTS ?= guest
DEB_DEPENDS ?= qemu-system-x86
DEB_RECOMMENDS ?= procps
DEB_MAINTAINER ?= runh developers <runh@localhost>
DEB_STAGE := build/deb/root
DEB := build/runh_$(DEB_VERSION)_$(DEB_ARCH).deb

deb: bin/runh $(if $(filter guest,$(DEB_GUESTS)),guest-kernel-runh) $(if $(filter guest-debian,$(DEB_GUESTS)),guest-kernel-debian)
	@rm -rf $(dir $(DEB_STAGE)) && mkdir -p $(DEB_STAGE)
	@$(MAKE) --no-print-directory install DESTDIR=$(abspath $(DEB_STAGE)) PREFIX=/usr INSTALL_GUESTS="$(DEB_GUESTS)" >/dev/null
	@install -d $(DEB_STAGE)/usr/share/doc/runh
	@install -m 0644 README.md docs/install.md docs/engines.md docs/hypervisor.md $(DEB_STAGE)/usr/share/doc/runh/
	@DEB_VERSION='$(DEB_VERSION)' DEB_ARCH='$(DEB_ARCH)' DEB_DEPENDS='$(DEB_DEPENDS)' \
		DEB_RECOMMENDS='$(DEB_RECOMMENDS)' DEB_MAINTAINER='$(DEB_MAINTAINER)' \
		scripts/mkdeb.sh $(DEB_STAGE) $(DEB)

# Installs the package on this machine for the length of the test
# (scripts/package-test.sh), one such test at a time. bin/runh stays the
# binary every other test uses.
# The engines' packages (podman, containerd), not crictl.
package-test: deb
	@RUNH_EXTRA_PKGS="$(ENGINES_PKGS)" scripts/deps.sh
	@GO=$(GO) V=$(V) flock /run/lock/runh-package-test.lock scripts/package-test.sh $(abspath $(DEB))
