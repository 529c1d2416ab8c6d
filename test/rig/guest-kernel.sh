#!/bin/bash
# guest-kernel.sh DIR : Debian's stock amd64 kernel (the package linux-image-amd64 depends on), unpacked once
# into DIR/x. Prints the path of its vmlinuz. Needs apt (root) the first time.
set -euo pipefail
W=$1; mkdir -p "$W"; cd "$W"
if [ ! -d x ]; then
  PKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [ -n "$PKG" ] || { apt-get update >/dev/null; PKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}'); }
  apt-get download "$PKG" >/dev/null 2>&1; dpkg-deb -x "$PKG"_*.deb x.part; rm -f "$PKG"_*.deb; mv x.part x
fi
echo "$W/x/boot/vmlinuz-$(ls x/lib/modules)"
