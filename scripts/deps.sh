#!/bin/sh
# Installs the Debian 12 packages qvlm builds and tests with (README "Set-up").
set -eu
PKGS="build-essential cmake pkg-config libdnnl-dev libyaml-dev libjpeg62-turbo-dev libpng-dev libjson-c-dev \
libpcre2-dev libutf8proc-dev libcriterion-dev libopenmpi-dev openmpi-bin"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing
