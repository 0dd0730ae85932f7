#!/usr/bin/env bash
# Build local systemd base images (Debian 12 bookworm, Debian 13 trixie) for the demo and the
# Molecule tests, without any container registry: debootstrap + `docker import`.
# Users with a registry can build images/Dockerfile instead (see README, "Test hosts").
#
# Usage: images/build-base.sh [bookworm|trixie ...]      (default: both)
# Env:   DJANGO_ASGI_MIRROR   Debian mirror URL (default: the first Debian URI in this machine's apt sources)
#        DJANGO_ASGI_IMAGE    image repository (default: django-asgi/debian); tags are the suites
#        DJANGO_ASGI_REBUILD=1  rebuild even if the image exists
set -euo pipefail

image_repo=${DJANGO_ASGI_IMAGE:-django-asgi/debian}
# Bump when the package set below changes, so existing machines rebuild their images.
image_version=4
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(bookworm trixie)

# What a minimal Debian host has, and nothing the role installs: systemd as PID 1, python3 for
# Ansible, ca-certificates. Every other package (dbus, python3-venv, curl, ...) is the role's to
# install, so the tests prove a first deploy on a minimal host.
include=systemd,systemd-sysv,python3,ca-certificates

mirror() {
  if [ -n "${DJANGO_ASGI_MIRROR:-}" ]; then echo "$DJANGO_ASGI_MIRROR"; return; fi
  # deb822 sources first, then one-line sources; take the first URI that serves "debian" (not -security).
  local uri
  uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {for (i=2;i<=NF;i++) print $i}' \
        | grep -v -- '-security' | grep '/debian/\?$' | head -n1 || true)
  if [ -z "$uri" ]; then
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
          | awk '$1=="deb" {for (i=2;i<=NF;i++) if ($i ~ /^https?:/) {print $i; break}}' \
          | grep -v -- '-security' | grep '/debian/\?$' | head -n1 || true)
  fi
  [ -n "$uri" ] || { echo "No Debian mirror found in apt sources; set DJANGO_ASGI_MIRROR" >&2; exit 1; }
  echo "$uri"
}

build() {
  local suite=$1 tag="$image_repo:$1" root
  local have
  have=$(docker image inspect -f '{{ index .Config.Labels "django-asgi.image-version" }}' "$tag" 2>/dev/null || true)
  if [ -z "${DJANGO_ASGI_REBUILD:-}" ] && [ "$have" = "$image_version" ]; then
    echo "image $tag is up to date (DJANGO_ASGI_REBUILD=1 to rebuild)"; return
  fi
  root=$(mktemp -d "/var/tmp/django-asgi-rootfs-$suite.XXXXXX")
  trap 'rm -rf "$root"' RETURN
  echo "building $tag from $(mirror) ..."
  # bookworm's debootstrap may not know trixie yet: every suite since buster uses the sid script.
  local script=/usr/share/debootstrap/scripts/$suite
  [ -e "$script" ] || script=/usr/share/debootstrap/scripts/sid
  debootstrap --variant=minbase --include="$include" "$suite" "$root" "$(mirror)" "$script" >"$root.log" 2>&1 \
    || { tail -n 30 "$root.log" >&2; exit 1; }
  rm -f "$root.log"
  # A container has no consoles, no udev and no kernel to tune: units that would fail or wait for them go.
  for unit in getty.target console-getty.service systemd-udevd.service systemd-udev-trigger.service \
              systemd-modules-load.service sys-kernel-config.mount sys-kernel-debug.mount \
              systemd-remount-fs.service systemd-firstboot.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
  done
  echo "django-asgi-$suite" >"$root/etc/hostname"
  : >"$root/etc/machine-id"
  rm -rf "$root"/var/cache/apt/archives/*.deb
  tar -C "$root" -c . | docker import \
    --change 'CMD ["/lib/systemd/systemd"]' --change 'ENV container=docker' \
    --change "LABEL django-asgi.image-version=$image_version" \
    - "$tag" >/dev/null
  echo "built $tag"
}

for suite in "${suites[@]}"; do build "$suite"; done
