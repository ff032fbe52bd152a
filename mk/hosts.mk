# mk/hosts.mk: runh on a test host of the common kind (docs/hosts.md), included
# by the top Makefile. Not part of `make test`.
#
#   make test-hosts        boots a Debian 13 (trixie) VM (systemd as PID 1,
#                          cgroup v2, Debian 13's podman, containerd, Docker,
#                          runc), installs runh from `make deb`'s package in it
#                          and runs, inside: the integration suite's cgroup
#                          tests in process isolation under both cgroup drivers
#                          with runh and runc; podman (systemd cgroup manager)
#                          with runh and runc; hypervisor isolation (runh-vm,
#                          the suite's host-cgroup tests in hypervisor mode,
#                          podman with runh-vm; an OOM kill in the guest
#                          seen on the host under both drivers). Prints a summary per
#                          suite, runtime and driver (build/hosts/summary.txt);
#                          logs in build/hosts/results, console in
#                          build/hosts/console.log. 10 to 20 minutes here (TCG).
#   make test-hosts HOSTS_SUITES=integration      one suite (integration podman vm)
#   make test-hosts INTEGRATION_RUN='^TestKillPaused$$'   some integration tests
#   make test-hosts HOSTS_SUITES=vm VM_INTEGRATION_RUN='^TestEventsOOM$$'   (vm suite)
#   make host-image        only the image (scripts/mkhost.sh: debootstrap once,
#                          then cached in /var/cache/runh/hosts/<key>)
#
# HOSTS_TIMEOUT (seconds, default 3000) bounds the VM; HOSTS_ACCEL=kvm|tcg
# (default: kvm where /dev/kvm boots a normal guest). It fails when runh fails
# where Debian 13's runc passes, or in hypervisor isolation (no runc row).

HOSTS_OUT := build/hosts
HOSTS_TESTBIN := $(HOSTS_OUT)/integration.test
HOSTS_SUITES ?= integration podman vm
HOSTS_TIMEOUT ?= 3000

.PHONY: test-hosts host-image hosts-testbin

host-image:
	@scripts/mkhost.sh

# Static: the guest's libc is Debian 13's, not this host's.
hosts-testbin:
	@mkdir -p $(HOSTS_OUT)
	CGO_ENABLED=0 $(GO) test -c -o $(HOSTS_TESTBIN) ./integration/
	CGO_ENABLED=0 $(GO) test -c -o $(HOSTS_OUT)/hosts.test ./integration/hosts/

test-hosts: deb hosts-testbin
	@HOSTS_OUT=$(abspath $(HOSTS_OUT)) HOSTS_SUITES='$(HOSTS_SUITES)' HOSTS_TIMEOUT='$(HOSTS_TIMEOUT)' \
		$(if $(INTEGRATION_RUN),INTEGRATION_RUN='$(INTEGRATION_RUN)') \
		$(if $(VM_INTEGRATION_RUN),VM_INTEGRATION_RUN='$(VM_INTEGRATION_RUN)') \
		scripts/hosttest.sh $(DEB) $(HOSTS_TESTBIN)
