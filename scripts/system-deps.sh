#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, only when a tool is missing.
set -euo pipefail
declare -A pkg_for=(
  [espeak-ng]=espeak-ng
  [sipp]=sip-tester
  [baresip]=baresip
  [kamailio]=kamailio
  [chromium]=chromium
)
missing=()
for tool in "${!pkg_for[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${pkg_for[$tool]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing system packages: ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
