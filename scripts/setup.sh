#!/usr/bin/env bash
# Installs what layerfs needs on a fresh Debian machine, each piece only when missing:
# Debian packages (libfuse2 for fuse-native, fuse3 for fusermount, attr, xfsprogs for the
# reflink tests, fuse-overlayfs and sqlite3 for the peer benchmark and the ordinary-tools
# tests), pnpm, the workspace's packages, and the build (dist/ for the CLI and examples).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pkg in libfuse2 fuse3 attr xfsprogs fuse-overlayfs sqlite3 git; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PNPM_VERSION=10.34.9
if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version 2>/dev/null)" != "$PNPM_VERSION" ]; then
  echo "setup: installing pnpm@$PNPM_VERSION"
  npm install -g "pnpm@$PNPM_VERSION" --silent >/dev/null 2>&1 || {
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"; $SUDO npm install -g "pnpm@$PNPM_VERSION" --silent
  }
fi

if [ ! -d node_modules/.pnpm ] || [ pnpm-lock.yaml -nt node_modules/.modules.yaml ]; then
  echo "setup: installing workspace packages"
  pnpm install --frozen-lockfile --reporter=silent
fi

echo "setup: building"
pnpm exec tsc -b
