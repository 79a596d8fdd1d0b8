# Yun — see README.md. Every target runs on a fresh Debian 12 machine as root.
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help demo down test test-unit test-integration bench crds check-crds lint deps image image-debian ansible-test

help:
	@echo "make demo   - local etcd + libvirtd + controller (bootstrap mode) + agent; boots examples/"
	@echo "make down   - remove the demo VM and stop everything demo started"
	@echo "make test   - install what is needed and run the whole suite"
	@echo "make bench  - release-mode benchmarks; writes target/bench/summary.json"
	@echo "make crds   - regenerate crds/manifests/*.yaml"
	@echo "make image-debian - build the Debian 12 cloud template into images/build/debian-12"
	@echo "make ansible-test - ansible-lint + apply the roles twice to a throwaway Debian root"

deps:
	bash scripts/install-deps.sh

demo:
	bash scripts/demo.sh up

down:
	bash scripts/demo.sh down

image:
	bash images/test-template/build.sh images/build/yun-test

image-debian: deps
	bash images/debian/build.sh images/build/debian-12

ansible-test: deps
	cargo build --quiet --bins -p yun-controller -p yun-agent
	bash scripts/test-ansible.sh

crds:
	cargo run --quiet -p yun-crds --bin crdgen -- --out crds/manifests

check-crds:
	cargo run --quiet -p yun-crds --bin crdgen -- --check crds/manifests

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

test: deps
	bash scripts/test.sh

bench: deps
	bash scripts/bench.sh
