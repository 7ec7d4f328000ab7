# The two commands a new machine needs (see README): `make reproduce` and `make test`.
.PHONY: setup reproduce test unit integration warm clean-results

setup:
	bash scripts/setup.sh

# Install everything, then reproduce the seed investigation (scenarios/seed-ctr-run.toml).
reproduce: setup
	annotrace reproduce

# Build the containerd the tests share (cached) and the pinned delve.
warm: setup
	annotrace build --containerd v2.1.4

# The whole suite: unit tests and integration tests against a real containerd.
test: setup
	python3 -m pytest -ra tests

unit: setup
	python3 -m pytest -ra tests/unit

integration: setup
	python3 -m pytest -ra tests/integration

clean-results:
	rm -rf results/runs
