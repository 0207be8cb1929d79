#!/usr/bin/env bash
# Install Debian's headless-capable Chromium and its driver for the report's browser test
# (tests/report/test_browser.py). Does nothing when /usr/bin/chromium is already there.
# Needs root (CI containers run as root); uses only the distribution's packages, no browser
# download from elsewhere.
set -euo pipefail

if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
    echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo unknown)"
    exit 0
fi

SUDO=""
if [[ "$(id -u)" != "0" ]]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium chromium-driver
echo "installed: $(/usr/bin/chromium --version)"
