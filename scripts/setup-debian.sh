#!/usr/bin/env bash
# Installs what afx needs on Debian 12 (as root): lilv for LV2 hosting, the plugins the tests and the demo
# drive, reference hosts for cross-checks (lv2file, lilv-utils), real recordings (sonic-pi-samples), sox, and
# Python for the afx module.
set -euo pipefail

packages=(
  pkg-config liblilv-dev             # build: livi links lilv
  zam-plugins x42-plugins swh-lv2 mda-lv2   # plugins
  lv2file lilv-utils                 # reference hosts: lv2file, lv2ls, lv2info
  sonic-pi-samples espeak-ng         # real recordings (CC0) and speech for the demo corpus
  sox libsox-fmt-mp3                 # conversion (tests make OGG and MP3 files from the recordings)
  python3 python3-venv               # the Python module (python/) and its tests
  util-linux iproute2                # unshare and ip: test_ray.py's cluster runs in a network namespace
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-debian.sh installs Debian packages and must run as root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null

if ! command -v cargo >/dev/null; then
  echo "cargo not found: afx needs Rust 1.85 or newer (rustup, https://rustup.rs)" >&2
  exit 1
fi
