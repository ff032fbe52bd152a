# mk/app.mk: the WordPress demo application (docs/demo-app.md), included by
# the top Makefile.
#
#   make app-images      the database and web images' tarballs, built offline
#                        from Debian 12 packages by scripts/mkapp.sh (debootstrap
#                        once, a few minutes; then cached in /var/cache/runh/app)
#   make demo-app        WordPress under podman: the database in one isolation
#                        mode, the web server in the other; prints the URL, each
#                        container's isolation and the time to the first page
#   make demo-app DEMO_APP_DB=runh DEMO_APP_WEB=runh-vm   the other way round
#                        (either may be runh, runh-vm, or for podman a runtime path)
#   make demo-app DEMO_APP_PORT=8081 DEMO_APP_ADDR=0.0.0.0
#   make demo-app-down   removes the containers, network, volume and images
#   make demo-app DEMO_APP_ENGINE=docker        the same with Docker: the runtimes
#                        runh and runh-vm registered with dockerd, the database
#                        found by its container name; with no dockerd running,
#                        the demo starts one of its own (no iptables changes)
#   make demo-app-down DEMO_APP_ENGINE=docker   removes it all, that dockerd too
#
# The tests (integration/engines/wordpress_test.go, part of `make engines`)
# and `make bench` (its app section) build the same images through
# scripts/mkapp.sh, which also builds the application corpus's
# (integration/engines/apps_test.go: PostgreSQL, Redis, nginx + php-fpm).

DEMO_APP_DB ?= runh-vm
DEMO_APP_WEB ?= runh
DEMO_APP_PORT ?= 8080
DEMO_APP_ADDR ?= 127.0.0.1
DEMO_APP_ENGINE ?= podman
APP_PKGS := podman conmon containernetworking-plugins iptables debootstrap

.PHONY: app-deps app-demo-deps app-images demo-app demo-app-down

# Tolerant: under `make engines` a missing package only skips the scenarios.
app-deps:
	@RUNH_EXTRA_PKGS="$(APP_PKGS)" scripts/deps.sh demo || \
		echo "app: could not install $(APP_PKGS); the WordPress scenarios will skip"

app-images: app-deps
	@scripts/mkapp.sh >/dev/null

# Docker's demo needs dockerd too (podman's comes with app-deps).
app-demo-deps:
	@$(if $(filter docker,$(DEMO_APP_ENGINE)),RUNH_EXTRA_PKGS=docker.io scripts/deps.sh demo,true)

# The engine tests build the images with debootstrap: have it installed (its
# absence only skips the WordPress scenarios).
engines-deps: app-deps

demo-app: bin/runh app-demo-deps app-images
	@DEMO_APP_ENGINE='$(DEMO_APP_ENGINE)' DEMO_APP_DB='$(DEMO_APP_DB)' DEMO_APP_WEB='$(DEMO_APP_WEB)' \
		DEMO_APP_PORT='$(DEMO_APP_PORT)' DEMO_APP_ADDR='$(DEMO_APP_ADDR)' scripts/demo-app.sh up

demo-app-down:
	@DEMO_APP_ENGINE='$(DEMO_APP_ENGINE)' scripts/demo-app.sh down
