#!/bin/sh
# Tools the speed benchmark compares against: Debian's wget, aria2 and curl.
# Installs only what is missing (apt-get; needs root or sudo).
set -eu
missing=""
command -v wget >/dev/null 2>&1 || missing="$missing wget"
command -v aria2c >/dev/null 2>&1 || missing="$missing aria2"
command -v curl >/dev/null 2>&1 || missing="$missing curl"
if [ -z "$missing" ]; then
    echo "wget, aria2c and curl are installed."
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
fi
echo "Installing:$missing"
$SUDO apt-get update
# shellcheck disable=SC2086  # word splitting of the package list is intended
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends $missing
