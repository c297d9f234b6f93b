#!/usr/bin/env bash
# rootfs.sh OUT.tar WORKDIR — the recipe for ztbank/postgres:15's root filesystem.
#
# Debian bookworm (minbase) bootstrapped into WORKDIR with Debian's own postgresql-15, trimmed
# and packed as a tarball for `docker import`. No registry is reachable here, so the base
# cannot be pulled: Debian's packages can. tools/images runs this only when no tarball for this
# file's content hash exists under .dev/images/rootfs/ (the hash of this file is the cache key:
# change anything here and the rootfs is rebuilt). Needs root (debootstrap, chroot).
set -euo pipefail

out=${1:?usage: rootfs.sh OUT.tar WORKDIR}
root=${2:?usage: rootfs.sh OUT.tar WORKDIR}
suite=bookworm
mirror=http://deb.debian.org/debian
security=http://deb.debian.org/debian-security
# Pinned like the official postgres image, so a named volume, a secret file or a compose
# `user:` can name the owner without asking the image.
pg_uid=999
pg_gid=999

command -v debootstrap >/dev/null || {
	echo "==> installing debootstrap (Debian package)"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}

cleanup() {
	umount "$root/proc" 2>/dev/null || true
}
trap cleanup EXIT

rm -rf "$root"
mkdir -p "$root"
echo "==> debootstrap $suite (minbase) into $root"
debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$root.debootstrap.log" 2>&1 || {
	tail -30 "$root.debootstrap.log" >&2
	exit 1
}

cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security $suite-security main
EOF
# No daemon may start inside the chroot while packages install.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
mount -t proc proc "$root/proc"

in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"; }

in_root groupadd --system --gid "$pg_gid" postgres
in_root useradd --system --uid "$pg_uid" --gid "$pg_gid" --home-dir /var/lib/postgresql \
	--no-create-home --shell /bin/bash --comment "PostgreSQL administrator" postgres

echo "==> apt-get install postgresql-15 (in the chroot)"
in_root apt-get update -qq
in_root apt-get install -y -qq --no-install-recommends postgresql-common >/dev/null
# The entrypoint runs initdb itself on first start, in the data volume: no packaged cluster.
sed -ri 's/^#?\s*create_main_cluster\s*=.*/create_main_cluster = false/' \
	"$root/etc/postgresql-common/createcluster.conf"
in_root apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null
in_root apt-get clean

echo "==> trimming"
umount "$root/proc"
rm -f "$root/usr/sbin/policy-rc.d"
# ssl-cert generates a snake-oil key pair at install time: a private key must never ship in
# an image. The entrypoint requires a certificate and key from the caller instead.
rm -f "$root"/etc/ssl/private/ssl-cert-snakeoil.key "$root"/etc/ssl/certs/ssl-cert-snakeoil.pem
find "$root/etc/ssl/certs" -lname '*snakeoil*' -delete
# LLVM is only PostgreSQL's optional JIT (and about 100 MB); without llvmjit.so the server
# runs with jit unavailable, and the entrypoint sets jit=off to say so.
rm -rf "$root"/usr/lib/postgresql/15/lib/llvmjit* "$root"/usr/lib/postgresql/15/lib/bitcode
rm -f "$root"/usr/lib/x86_64-linux-gnu/libLLVM-*.so* "$root"/usr/lib/x86_64-linux-gnu/libz3.so*
# Full Perl (not perl-base) serves only postgresql-common's cluster tools, which the image
# does not use (pg-entrypoint calls initdb and postgres directly): about 50 MB.
rm -rf "$root"/usr/share/perl "$root"/usr/lib/x86_64-linux-gnu/perl "$root"/usr/lib/x86_64-linux-gnu/libperl.so*
# Locale sources are for localedef only; C.UTF-8, which initdb uses, is compiled in libc-bin.
rm -rf "$root"/usr/share/i18n
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
	"$root"/usr/share/lintian "$root"/usr/share/locale/* \
	"$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
	"$root"/var/log/* "$root"/tmp/* "$root"/root/.bash_history
: >"$root/etc/machine-id"

# The data directory exists in the image, owned by postgres with 0700, so a named volume
# mounted there inherits owner and mode and initdb can use it as is.
install -d -m 0700 -o "$pg_uid" -g "$pg_gid" "$root/var/lib/postgresql/data"
install -d -m 2775 -o "$pg_uid" -g "$pg_gid" "$root/run/postgresql"

echo "==> packing $out"
tmp="$out.tmp"
tar --numeric-owner --xattrs --sort=name -C "$root" -cf "$tmp" .
mv "$tmp" "$out"
rm -rf "$root" "$root.debootstrap.log"
