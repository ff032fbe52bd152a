# mk/engines.mk: runh driven by real engines (podman + conmon, containerd's
# ctr, Docker, the Kubernetes CRI through crictl), included by the top Makefile.
#
#   make engines                    both isolation modes (RUNH_TEST_MODES)
#   make engines RUNH_TEST_MODES=process
#   make engines-ref                the same scenarios with Debian's runc
#   make engines ENGINES_RUN=TestPodman   one engine (a go test -run pattern)
#
# The engines come from Debian (ENGINES_PKGS, installed only when missing;
# scripts/deps.sh takes them as RUNH_EXTRA_PKGS too), crictl and critest (the
# CRI validation suite, with the ginkgo runner of its -parallel) from the Go
# module proxy into build/engines/bin (scripts/mkcritest.sh). critest's images
# are built from Debian packages with umoci and served by Debian's
# docker-registry through skopeo (scripts/mkcriimages.sh, TestCritest). Where
# one cannot be had, its scenarios skip with the reason instead of failing
# the build. containerd 2.x (CONTAINERD2_VERSION) is built from the Go module
# proxy into build/engines/containerd2 (scripts/mkcontainerd2.sh): the CRI
# scenarios and critest run against it too, beside Debian's 1.6; critest's
# runh-vm handler on it only with CRITEST_CONTAINERD2_VM=1 (docs/engines.md).

ENGINES_PKGS := podman conmon containerd docker.io containernetworking-plugins iptables \
	skopeo umoci docker-registry uidmap slirp4netns
CRICTL_VERSION ?= v1.37.0
CRICTL := build/engines/bin/crictl
CRITEST := build/engines/bin/critest
CONTAINERD2_VERSION ?= v2.4.2
CONTAINERD2_DIR := build/engines/containerd2
ENGINES_REF ?= /usr/sbin/runc

.PHONY: engines engines-ref engines-deps

engines-deps:
	@RUNH_EXTRA_PKGS="$(ENGINES_PKGS)" scripts/deps.sh || \
		echo "engines: could not install $(ENGINES_PKGS); their scenarios will skip"
	@test -x $(CRICTL) || GOBIN=$(abspath build/engines/bin) $(GO) install sigs.k8s.io/cri-tools/cmd/crictl@$(CRICTL_VERSION) || \
		echo "engines: could not build crictl $(CRICTL_VERSION); the CRI scenarios will skip"
	@GO=$(GO) scripts/mkcritest.sh $(CRICTL_VERSION) build/engines/bin || \
		echo "engines: could not build critest $(CRICTL_VERSION); TestCritest will skip"
	@GO=$(GO) scripts/mkcontainerd2.sh $(CONTAINERD2_VERSION) $(CONTAINERD2_DIR) || \
		echo "engines: could not build containerd $(CONTAINERD2_VERSION); its CRI scenarios and critest will skip"

engines: bin/runh engines-deps
	@mkdir -p build && rm -f build/engines-summary.txt
	ENGINES_SUMMARY=$(CURDIR)/build/engines-summary.txt \
		$(GO) test -count=1 -timeout 60m ./integration/engines/ $(if $(V),-v) $(if $(ENGINES_RUN),-run '$(ENGINES_RUN)'); \
		rc=$$?; $(if $(V),,cat build/engines-summary.txt 2>/dev/null;) exit $$rc

engines-ref: engines-deps
	ENGINE_RUNTIME_REF=$(ENGINES_REF) RUNH_TEST_MODES=process \
		$(GO) test -count=1 -timeout 60m ./integration/engines/ $(if $(V),-v) $(if $(ENGINES_RUN),-run '$(ENGINES_RUN)')
