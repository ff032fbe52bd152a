# mk/hosts.mk: runh on a test host of the common kind (docs/hosts.md), included
# by the top Makefile. `make test` runs its CI-sized part, test-hosts-ci.
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
#                          seen on the host under both drivers); rootless
#                          podman; containerd's CRI and Docker (below). Prints
#                          a summary per suite, runtime and driver
#                          (build/hosts/summary.txt); logs in
#                          build/hosts/results, console in
#                          build/hosts/console.log. 24 to 27 minutes here (TCG).
#   make test-hosts HOSTS_SUITES=integration      one suite (integration podman vm
#                          rootless cri docker ci)
#   make test-hosts INTEGRATION_RUN='^TestKillPaused$$'   some integration tests
#                          (INTEGRATION_COUNT=20: each 20 times, to catch a race)
#   make test-hosts HOSTS_SUITES=vm VM_INTEGRATION_RUN='^TestEventsOOM$$'   (vm suite)
#   make test-hosts HOSTS_SUITES='cri docker'   containerd's CRI (SystemdCgroup =
#                          true) through crictl, and Docker (its default systemd
#                          driver), each with runc, runh and runh-vm
#                          (integration/hosts/suite-cri.sh, suite-docker.sh)
#   make test-hosts-ci     what `make test` runs (integration/hosts/suite-ci.sh):
#                          the suite's cgroup tests with runh under both
#                          drivers and the cgroup v2 checks (CI_VM=1: also a
#                          VM container and its OOM under the systemd driver);
#                          about 3 minutes with the image cached (its first
#                          build: 2 to 4)
#   make host-image        only the image (scripts/mkhost.sh: debootstrap once,
#                          then cached in /var/cache/runh/hosts/<key>)
#
# HOSTS_TIMEOUT (seconds, default 5400) bounds the VM; HOSTS_ACCEL=kvm|tcg
# (default: kvm where /dev/kvm boots a normal guest). It fails when runh fails
# where Debian 13's runc passes, or in hypervisor isolation (no runc row).

HOSTS_OUT := build/hosts
HOSTS_TESTBIN := $(HOSTS_OUT)/integration.test
HOSTS_SUITES ?= integration podman vm rootless cri docker
HOSTS_TIMEOUT ?= 5400
# Files of this host the suites need, copied into the share (hosttest.sh):
# crictl (the cri suite) is added when HOSTS_SUITES names cri.
HOSTS_EXTRA ?=

.PHONY: test-hosts test-hosts-ci host-image hosts-testbin hosts-crictl

host-image:
	@scripts/mkhost.sh

# Static: the guest's libc is Debian 13's, not this host's.
hosts-testbin:
	@mkdir -p $(HOSTS_OUT)
	CGO_ENABLED=0 $(GO) test -c -o $(HOSTS_TESTBIN) ./integration/
	CGO_ENABLED=0 $(GO) test -c -o $(HOSTS_OUT)/hosts.test ./integration/hosts/

# crictl for the cri suite: the engines' (mk/engines.mk, make engines-deps),
# built here when missing. Dynamically linked: the guest's libc is newer.
hosts-crictl:
	@test -x $(CRICTL) || GOBIN=$(abspath build/engines/bin) $(GO) install sigs.k8s.io/cri-tools/cmd/crictl@$(CRICTL_VERSION) || \
		echo "test-hosts: could not build crictl $(CRICTL_VERSION); the cri suite will fail at its setup"

test-hosts: deb hosts-testbin $(if $(filter cri,$(HOSTS_SUITES)),hosts-crictl)
	@HOSTS_OUT=$(abspath $(HOSTS_OUT)) HOSTS_SUITES='$(HOSTS_SUITES)' HOSTS_TIMEOUT='$(HOSTS_TIMEOUT)' \
		HOSTS_EXTRA='$(strip $(if $(filter cri,$(HOSTS_SUITES)),$(wildcard $(abspath $(CRICTL)))) $(HOSTS_EXTRA))' \
		$(if $(INTEGRATION_RUN),INTEGRATION_RUN='$(INTEGRATION_RUN)') \
		$(if $(VM_INTEGRATION_RUN),VM_INTEGRATION_RUN='$(VM_INTEGRATION_RUN)') \
		$(if $(INTEGRATION_COUNT),INTEGRATION_COUNT='$(INTEGRATION_COUNT)') \
		scripts/hosttest.sh $(DEB) $(HOSTS_TESTBIN)

test-hosts-ci:
	@$(MAKE) --no-print-directory test-hosts HOSTS_SUITES=ci HOSTS_OUT=build/hosts-ci HOSTS_TIMEOUT=1200
