#!/usr/bin/env bash
# Make sure the Debian packages SitePulse needs outside Python are present.
# Usage: ensure-system-packages.sh mosquitto [chromium rabbitmq-server ...]
# Installs with apt-get when missing and we are root; otherwise stops with one line saying how.
set -euo pipefail

have() {
  case "$1" in
    mosquitto) command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] ;;
    chromium) command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] ;;
    rabbitmq-server) command -v rabbitmq-server >/dev/null 2>&1 || [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

missing=()
for pkg in "$@"; do
  have "$pkg" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  exit 0
fi

echo "error: ${missing[*]} not installed: run 'sudo apt-get install ${missing[*]}' (Debian/Ubuntu) or 'brew install ${missing[*]}' (macOS)$( [[ " ${missing[*]} " == *" mosquitto "* ]] && echo ", or point SITEPULSE_MQTT_URL at a running broker")" >&2
exit 1
