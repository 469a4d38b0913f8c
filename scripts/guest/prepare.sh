#!/usr/bin/env bash
# Prepares what scripts/guest/run.py boots: Debian 12's stock Linux 6.1 under QEMU (TCG), with
# this machine's root filesystem as the guest's (read-only over 9p, a tmpfs overlay on top).
#
# Idempotent (run as root): a second run only checks. It installs, only if missing,
# qemu-system-x86 and busybox-static, then fetches (never installs) the newest
# linux-image-6.1.0-N-amd64[-unsigned] in the apt lists with the matching linux-headers-6.1.0-N-amd64
# and -common, and keeps under ${MCALLTRACE_CACHE:-/var/cache/mcalltrace}/guest-6.1/:
#   vmlinuz, config, version        the kernel, its config and its release (6.1.0-N-amd64)
#   vmlinux                         the same kernel uncompressed: QEMU boots its PVH entry directly,
#                                   skipping the ~4 s of xz decompression under TCG
#   modules/*.ko                    virtio-pci, 9p and overlayfs, decompressed, load order in modules/order
#   headers/usr/src/linux-headers-* the headers tree the guest links at /lib/modules/RELEASE/{build,source}
#   initramfs.cpio.gz               busybox-static, those modules and the /init below
# It prints one line saying what it prepared or found.
set -euo pipefail

cache=${MCALLTRACE_CACHE:-/var/cache/mcalltrace}
dir=$cache/guest-6.1
self_hash=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
# What the guest needs from the kernel's modules, with their dependencies resolved below.
wanted_modules=(virtio_pci 9pnet_virtio 9p overlay)

say() { printf 'guest: %s\n' "$*"; }
die() { printf 'guest: %s\n' "$*" >&2; exit 1; }

have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

kernel_ready() {
    [ -s "$dir/version" ] || return 1
    local release
    release=$(cat "$dir/version")
    [ -s "$dir/vmlinuz" ] && [ -s "$dir/vmlinux" ] && [ -s "$dir/modules/order" ] \
        && [ -d "$dir/headers/usr/src/linux-headers-$release/include" ] \
        && [ -d "$dir/headers/usr/src/linux-headers-${release%-amd64}-common/include" ]
}

initramfs_ready() {
    [ -s "$dir/initramfs.cpio.gz" ] && [ "$(cat "$dir/initramfs.stamp" 2>/dev/null)" = "$self_hash" ]
}

tools_ready() { command -v qemu-system-x86_64 >/dev/null && have_pkg busybox-static; }

if tools_ready && kernel_ready && initramfs_ready; then
    say "found Linux $(cat "$dir/version") ready in $dir"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "preparing the guest kernel needs root (apt-get); run: sudo $0"

apt_updated=0
apt_update_once() {
    if [ "$apt_updated" -eq 0 ]; then
        apt-get update -qq
        apt_updated=1
    fi
}

# ---- QEMU and busybox ------------------------------------------------------------------------
install_tools() {
    local missing=()
    command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
    have_pkg busybox-static || missing+=(busybox-static)
    [ ${#missing[@]} -eq 0 ] && return 0
    apt_update_once
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    prepared+=("${missing[*]}")
}

# ---- the kernel ------------------------------------------------------------------------------
pkg_available() { apt-cache show --no-all-versions "$1" >/dev/null 2>&1; }

# The newest N with an image (unsigned preferred: same kernel, no signature wrapper) and both headers.
choose_kernel() {
    local abi image
    for abi in $(apt-cache pkgnames linux-headers-6.1.0- | sed -n 's/^linux-headers-6\.1\.0-\([0-9]*\)-amd64$/\1/p' \
        | sort -rn); do
        pkg_available "linux-headers-6.1.0-$abi-common" || continue
        for image in "linux-image-6.1.0-$abi-amd64-unsigned" "linux-image-6.1.0-$abi-amd64"; do
            if pkg_available "$image"; then
                echo "$abi $image"
                return 0
            fi
        done
    done
    return 1
}

module_file() {  # module_file ROOT NAME: its .ko (maybe compressed); names may use - or _
    local alt=${2//_/-}
    find "$1" \( -name "$2.ko" -o -name "$2.ko.*" -o -name "$alt.ko" -o -name "$alt.ko.*" \) -print -quit
}

decompress_to() {  # decompress_to SOURCE DEST
    case $1 in
        *.ko.xz) xz -dc "$1" >"$2" ;;
        *.ko.zst) zstd -qdc "$1" >"$2" ;;
        *.ko.gz) gzip -dc "$1" >"$2" ;;
        *) cp "$1" "$2" ;;
    esac
}

declare -A visited=()
load_order=()
add_module() {  # add_module ROOT NAME OUTDIR: dependencies first
    local name=$1 root=$2 out=$3 file dep
    [ -n "${visited[$name]:-}" ] && return 0
    visited[$name]=1
    file=$(module_file "$root" "$name")
    [ -n "$file" ] || die "module $name not found in the kernel package"
    decompress_to "$file" "$out/$name.ko"
    for dep in $(tr '\0' '\n' <"$out/$name.ko" | sed -n 's/^depends=//p' | tr ',' ' '); do
        add_module "$dep" "$root" "$out"
    done
    load_order+=("$name")
}

# The ELF inside a bzImage (xz or gzip payload): booted through its PVH note, no decompression.
extract_vmlinux() {  # extract_vmlinux BZIMAGE OUT
    python3 - "$1" "$2" <<'PY'
import lzma, sys, zlib
data = open(sys.argv[1], "rb").read()
for magic, make in ((b"\xfd7zXZ\x00", lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ)),
                    (b"\x1f\x8b\x08\x00", lambda: zlib.decompressobj(16 + zlib.MAX_WBITS))):
    at = data.find(magic)
    while at >= 0:
        try:
            elf = make().decompress(data[at:])
        except (lzma.LZMAError, zlib.error):
            elf = b""
        if elf.startswith(b"\x7fELF"):
            open(sys.argv[2], "wb").write(elf)
            sys.exit(0)
        at = data.find(magic, at + 1)
sys.exit("no ELF kernel inside " + sys.argv[1])
PY
}

fetch_kernel() {
    local choice abi image release work
    apt_update_once
    choice=$(choose_kernel) || die "no linux-image-6.1.0-N-amd64 with matching headers in the apt lists"
    read -r abi image <<<"$choice"
    release=6.1.0-$abi-amd64
    work=$dir/.work
    rm -rf "$work" && mkdir -p "$work/debs" "$work/image"
    # apt-get warns that _apt cannot write here (it downloads as root then): not a failure.
    (cd "$work/debs" && { apt-get download -qq "$image" "linux-headers-$release" \
        "linux-headers-6.1.0-$abi-common" 2>&1 | grep -v 'Download is performed unsandboxed' >&2; }) || true
    ls "$work/debs"/linux-image-*.deb "$work/debs"/linux-headers-*-amd64_*.deb \
        "$work/debs"/linux-headers-*-common_*.deb >/dev/null 2>&1 || die "apt-get download of $image failed"
    dpkg-deb -x "$work/debs"/linux-image-*.deb "$work/image"
    rm -rf "$dir/headers" "$dir/modules" "$dir/version" "$dir/initramfs.stamp"
    mkdir -p "$dir/headers" "$dir/modules"
    dpkg-deb -x "$work/debs"/linux-headers-*-amd64_*.deb "$dir/headers"
    dpkg-deb -x "$work/debs"/linux-headers-*-common_*.deb "$dir/headers"
    cp "$work/image/boot/vmlinuz-$release" "$dir/vmlinuz"
    extract_vmlinux "$dir/vmlinuz" "$dir/vmlinux"
    cp "$work/image/boot/config-$release" "$dir/config"
    local module
    for module in "${wanted_modules[@]}"; do
        add_module "$module" "$work/image/lib/modules/$release" "$dir/modules"
    done
    printf '%s\n' "${load_order[@]}" >"$dir/modules/order"
    rm -rf "$work"
    echo "$release" >"$dir/version"
    prepared+=("Linux $release ($image)")
}

# ---- the initramfs ---------------------------------------------------------------------------
# /init: busybox sh, PID 1. The run directory (a writable 9p share, tag mctrun) holds `config`
# (shell assignments: MCT_TOKEN, MCT_CACHE, MCT_MSIZE), `shares` (lines "TAG GUESTDIR") and
# `cmd.sh`, the command. The command's output goes to ttyS1 between a line "TOKEN:start" and a
# line "TOKEN=EXITCODE" (after a newline of its own); the kernel's and /init's go to ttyS0.
write_init() {
    cat >"$1" <<'INIT'
#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

fail() {
    echo "mct-init: $*"
    echo "mct-init: $*" >/dev/ttyS1
    poweroff -f
    sleep 5
}

while read -r module; do
    insmod "/lib/modules/$module.ko" || fail "insmod $module failed"
done </lib/modules/order

mkdir -p /lower /layer /newroot /run-share
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=none mctrun /run-share \
    || fail "cannot mount the run directory (9p tag mctrun)"
# shellcheck disable=SC1091  # written by run.py
. /run-share/config
opts=trans=virtio,version=9p2000.L,msize=$MCT_MSIZE
mount -t 9p -o "$opts,cache=loose,ro" hostroot /lower || fail "cannot mount the host root (9p tag hostroot)"
mount -t tmpfs -o mode=0755 layer /layer
mkdir -p /layer/upper /layer/work
mount -t overlay -o lowerdir=/lower,upperdir=/layer/upper,workdir=/layer/work,index=off,xino=off,metacopy=off \
    overlay /newroot || fail "cannot mount the overlay"

N=/newroot
mount -t proc proc $N/proc
mount -t sysfs sysfs $N/sys
mount -t devtmpfs devtmpfs $N/dev
mkdir -p $N/dev/pts $N/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $N/dev/pts
mount -t tmpfs -o mode=1777 shm $N/dev/shm
mount -t tmpfs -o mode=0755 run $N/run
mount -t tracefs tracefs $N/sys/kernel/tracing
mount -t debugfs debugfs $N/sys/kernel/debug
mount -t bpf bpf $N/sys/fs/bpf
mount -t cgroup2 cgroup2 $N/sys/fs/cgroup
mkdir -p $N/mct-run
mount --move /run-share $N/mct-run
while read -r tag target; do
    [ -n "$tag" ] || continue
    mkdir -p "$N$target"
    mount -t 9p -o "$opts,cache=none" "$tag" "$N$target" || fail "cannot mount share $tag at $target"
done <$N/mct-run/shares

release=$(uname -r)
modules=$N/lib/modules/$release
mkdir -p "$modules" $N/boot
ln -sfn "$MCT_CACHE/headers/usr/src/linux-headers-$release" "$modules/build"
ln -sfn "$MCT_CACHE/headers/usr/src/linux-headers-${release%-amd64}-common" "$modules/source"
ln -sfn "$MCT_CACHE/config" "$N/boot/config-$release"
hostname mct-guest

stty -F /dev/ttyS1 115200 raw -echo
echo "mct-init: running $N/mct-run/cmd.sh"
rm -f /out
mkfifo /out
printf '%s:start\n' "$MCT_TOKEN" >/dev/ttyS1
cat /out >/dev/ttyS1 &
relay=$!
env -i /bin/busybox chroot $N /bin/sh /mct-run/cmd.sh </dev/null >/out 2>&1 &
command=$!
wait $command
rc=$?
# Whatever the command left running would keep the relay's pipe open: end it all.
for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    [ "$pid" = 1 ] || [ "$pid" = "$relay" ] || kill -9 "$pid" 2>/dev/null
done
wait $relay
sync
printf '\n%s=%s\n' "$MCT_TOKEN" "$rc" >/dev/ttyS1
echo "mct-init: command exited $rc"
poweroff -f
sleep 5
INIT
}

build_initramfs() {
    local stage=$dir/.initramfs
    rm -rf "$stage" && mkdir -p "$stage/bin" "$stage/lib/modules"
    cp /bin/busybox "$stage/bin/busybox"
    ln -s busybox "$stage/bin/sh"
    cp "$dir/modules"/*.ko "$dir/modules/order" "$stage/lib/modules/"
    write_init "$stage/init"
    chmod 0755 "$stage/init"
    (cd "$stage" && find . | busybox cpio -o -H newc 2>/dev/null) | gzip -1 >"$dir/initramfs.cpio.gz.new"
    mv "$dir/initramfs.cpio.gz.new" "$dir/initramfs.cpio.gz"
    rm -rf "$stage"
    echo "$self_hash" >"$dir/initramfs.stamp"
    prepared+=("initramfs")
}

prepared=()
mkdir -p "$dir"
install_tools
kernel_ready || fetch_kernel
initramfs_ready || build_initramfs
list=$(IFS=,; echo "${prepared[*]}")
say "prepared ${list//,/, }: Linux $(cat "$dir/version") ready in $dir"
