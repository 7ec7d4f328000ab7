#!/usr/bin/env bash
# Install everything annotrace and its tests need on a fresh Debian 12 machine, as root.
# Idempotent: a second run installs nothing new and finishes in seconds.
#   - Debian packages: runc, graphviz, busybox-static, docker-registry, gdb, podman, docker.io, util-linux, git
#   - Python: this package and its test dependencies (editable install)
#   - Go tools are built on demand into the cache by annotrace itself (containerd, delve,
#     statedump); `make warm` builds the default ones ahead of time.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
packages=(runc graphviz busybox-static docker-registry gdb podman docker.io util-linux mount git ca-certificates)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (containerd, runc and overlay mounts need it): sudo $0" >&2
  exit 2
fi
command -v go >/dev/null || { echo "setup.sh: Go is not installed: install Go 1.22+ and put it on PATH" >&2; exit 2; }
command -v python3 >/dev/null || { echo "setup.sh: python3 (3.11+) is not installed" >&2; exit 2; }

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # --no-install-recommends keeps extras out; annotrace starts the registry and dockerd itself.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# docker.io, freshly installed where systemd runs, starts dockerd and a system containerd
# (/run/containerd); annotrace starts its own dockerd in a private directory instead.
if [[ " ${missing[*]:-} " == *" docker.io "* ]] && command -v systemctl >/dev/null \
   && systemctl is-active --quiet docker 2>/dev/null; then
  systemctl disable --now docker.socket docker containerd >/dev/null 2>&1 || true
fi
# Debian's docker-registry package enables a service on :5000 where systemd runs; annotrace
# starts its own registry on a free loopback port instead, so stop that one if it is up.
if command -v systemctl >/dev/null && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi

python3 - <<'PY' || { echo "setup.sh: annotrace needs Python 3.11 or newer" >&2; exit 2; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY
# Reinstall when the installed `harness` is another checkout's (e.g. CI's fresh clone).
installed=$(cd / && python3 -c "import harness, networkx, rich, pexpect, pygdbmi, pytest, pytest_timeout; print(harness.__file__)" 2>/dev/null || true)
if [ "$installed" != "$here/harness/__init__.py" ] || ! command -v annotrace >/dev/null; then
  echo "setup.sh: installing annotrace and its Python dependencies"
  python3 -m pip install --quiet --disable-pip-version-check -e "$here[test]"
fi
echo "setup.sh: ready ($(go version | cut -d' ' -f3), $(runc --version | head -1), $(python3 --version))"
