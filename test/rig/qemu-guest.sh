#!/bin/bash
# qemu-guest.sh : the test guest for QEMU migrations, built once and cached. Debian's stock kernel and a busybox
# initramfs whose init keeps a region of memory under change and says so on the serial console:
#   dwcp.data=MiB     region size in 1 MiB chunks of random bytes (default 32)
#   dwcp.dirty=N      chunks rewritten per beat (default 1)
#   dwcp.beat=S       seconds between beats (default 0.2)
#   dwcp.verify=N     every N beats, check every chunk against its recorded MD5 (default 10)
# Console lines: "DWCP-GUEST READY", "DWCP-GUEST BEAT n sum" (sum: MD5 over the recorded chunk MD5s),
# "DWCP-GUEST VERIFY n ok|bad k" and "DWCP-GUEST BAD i" (a chunk that no longer matches its MD5).
# Prints "KERNEL INITRD". Installs qemu-system-x86, busybox-static and cpio where missing (needs root then).
set -euo pipefail
W=${DWCP_QEMU_GUEST:-$HOME/.cache/dwcp-qemu-guest}
export DEBIAN_FRONTEND=noninteractive
command -v qemu-system-x86_64 >/dev/null && [ -x /bin/busybox ] && command -v cpio >/dev/null ||
  apt-get install -y --no-install-recommends qemu-system-x86 busybox-static cpio >/dev/null
KERNEL=$("$(dirname "$(readlink -f "$0")")"/guest-kernel.sh "${RXE_WORK:-$HOME/.cache/dwcp-rxe-guest}")
mkdir -p "$W"; cd "$W"
INIT=$(cat <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
DATA=32; DIRTY=1; BEAT=0.2; VERIFY=10
for a in $(cat /proc/cmdline); do
  case $a in
    dwcp.data=*) DATA=${a#*=};; dwcp.dirty=*) DIRTY=${a#*=};; dwcp.beat=*) BEAT=${a#*=};; dwcp.verify=*) VERIFY=${a#*=};;
  esac
done
mkdir -p /m; mount -t tmpfs -o size=$((DATA + 8))m m /m
i=0
while [ $i -lt $DATA ]; do head -c 1048576 /dev/urandom > /m/c.$i; md5sum /m/c.$i > /m/s.$i; i=$((i + 1)); done
echo "DWCP-GUEST READY $DATA"
n=0
while :; do
  k=0
  while [ $k -lt $DIRTY ]; do
    i=$(( (n * DIRTY + k) % DATA ))
    head -c 1048576 /dev/urandom > /m/c.$i; md5sum /m/c.$i > /m/s.$i
    k=$((k + 1))
  done
  v=$((n % DATA))
  md5sum -c -s /m/s.$v || echo "DWCP-GUEST BAD $v"
  if [ $VERIFY -gt 0 ] && [ $((n % VERIFY)) -eq 0 ]; then
    bad=0; i=0
    while [ $i -lt $DATA ]; do md5sum -c -s /m/s.$i || bad=$((bad + 1)); i=$((i + 1)); done
    [ $bad -eq 0 ] && echo "DWCP-GUEST VERIFY $n ok 0" || echo "DWCP-GUEST VERIFY $n bad $bad"
  fi
  echo "DWCP-GUEST BEAT $n $(cat /m/s.* | md5sum | cut -c1-16)"
  n=$((n + 1))
  sleep $BEAT
done
INIT
)
TAG=$( (echo "$INIT"; md5sum /bin/busybox) | md5sum | cut -c1-12)
if [ ! -f "initrd-$TAG.gz" ]; then
  rm -rf ird initrd-*.gz; mkdir -p ird/bin ird/proc ird/sys ird/dev
  cp /bin/busybox ird/bin/; printf '%s\n' "$INIT" > ird/init; chmod +x ird/init
  (cd ird && find . | cpio -o -H newc 2>/dev/null | gzip -1) > "initrd-$TAG.gz.part"; mv "initrd-$TAG.gz.part" "initrd-$TAG.gz"
fi
echo "$KERNEL $W/initrd-$TAG.gz"
