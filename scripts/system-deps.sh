#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, only when a tool is missing.
set -euo pipefail
declare -A pkg_for=(
  [espeak-ng]=espeak-ng
  [sipp]=sip-tester
  [baresip]=baresip
  [kamailio]=kamailio
  [chromium]=chromium
  [systemd-analyze]=systemd
)
# data packages, by a file they install: recorded human voices (Asterisk's prompts) and
# recorded music for the barge-in flows (tests/bargein_flows.py)
declare -A pkg_for_file=(
  [/usr/share/asterisk/sounds/en_US_f_Allison/hello.wav]=asterisk-core-sounds-en-wav
  [/usr/share/asterisk/sounds/es_MX_f_Allison/agent-loggedoff.wav]=asterisk-core-sounds-es-wav
  [/usr/share/asterisk/sounds/fr_CA_f_June/hello.wav]=asterisk-core-sounds-fr-wav
  [/usr/share/asterisk/sounds/it_IT_m_Carlo/hello.wav]=asterisk-core-sounds-it-wav
  [/usr/share/asterisk/sounds/ru_RU_f_IvrvoiceRU/hello.wav]=asterisk-core-sounds-ru-wav
  [/usr/share/asterisk/moh/macroform-cold_day.wav]=asterisk-moh-opsound-wav
)
missing=()
for tool in "${!pkg_for[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${pkg_for[$tool]}")
done
for path in "${!pkg_for_file[@]}"; do
  [ -e "$path" ] || missing+=("${pkg_for_file[$path]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing system packages: ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
