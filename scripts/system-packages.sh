#!/bin/sh
# Installs the Debian packages the portal needs, only those missing.
#   scripts/system-packages.sh run    what `make run` needs: Redis, the registry, buildah, debootstrap (for the
#                                     templates' base image) and git
#   scripts/system-packages.sh test   also PostgreSQL, Chromium and its driver, skopeo and a static busybox
set -eu
want="redis-server:redis-server docker-registry:docker-registry buildah:buildah debootstrap:debootstrap git:git"
if [ "${1:-run}" = "test" ]; then
  want="$want postgresql:initdb-or-pg chromium:chromium chromium-driver:chromedriver skopeo:skopeo busybox-static:busybox"
fi
missing=""
for pair in $want; do
  pkg=${pair%%:*}; bin=${pair#*:}
  case "$bin" in
    initdb-or-pg) ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$missing $pkg" ;;
    *) command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/bin/$bin" ] || [ -x "/usr/sbin/$bin" ] || missing="$missing $pkg" ;;
  esac
done
[ -z "$missing" ] && exit 0
echo "Installing Debian packages:$missing"
if [ "$(id -u)" -ne 0 ]; then
  echo "Not root: run  sudo apt-get install$missing  and try again." >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
