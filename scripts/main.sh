#!/usr/bin/env bash
# The main job: set up, then mount the example image layers (examples/layers/app over
# examples/layers/base) with a writable upper in a temporary directory through the layerfs
# command, show the merged tree, a copy-up and a whiteout, and unmount. Without root or
# /dev/fuse it runs the same composition in process (no mount) instead.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
bash scripts/setup.sh

layerfs() { node "$ROOT/packages/overlay/bin/layerfs.js" "$@"; }
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

if [ "$(id -u)" != 0 ] || [ ! -c /dev/fuse ]; then
  echo "main: no root or no /dev/fuse here; composing the example layers in process instead"
  node examples/dist/compose-dirs.js
  exit 0
fi

T=$(mktemp -d /tmp/layerfs-main-XXXXXX)
cleanup() {
  if mountpoint -q "$T/merged" 2>/dev/null; then layerfs umount "$T/merged" || umount -l "$T/merged"; fi
  rm -rf "$T"
}
trap cleanup EXIT
mkdir "$T/upper" "$T/work" "$T/merged"
L="$ROOT/examples/layers"

say layerfs mount -o "lowerdir=$L/app:$L/base,upperdir=$T/upper,workdir=$T/work,lowerwhiteout=oci" "$T/merged"
layerfs mount -o "lowerdir=$L/app:$L/base,upperdir=$T/upper,workdir=$T/work,lowerwhiteout=oci" "$T/merged"
grep " $T/merged " /proc/mounts

cd "$T/merged"
say "ls -lR   # the union: app's files over base's; base's usr/share/doc/README hidden by app's .wh.README"
ls -lR --time-style=+ .
say "cat etc/os-release   # the top layer wins"
cat etc/os-release

say "echo changed >> etc/hostname   # first write to a lower file: copy-up into the upper"
echo changed >> etc/hostname
cat etc/hostname
say "rm etc/passwd   # a name that exists below: a whiteout in the upper"
rm etc/passwd
ls etc
say "ls -l $T/upper/etc   # the upper: the copied-up file and a 0/0 character-device whiteout"
ls -l --time-style=+ "$T/upper/etc"
cd /

say layerfs umount "$T/merged"
layerfs umount "$T/merged"
if grep -q " $T/merged " /proc/mounts; then echo "main: still mounted" >&2; exit 1; fi
say "ls $L/base/etc   # the lower layers are unchanged"
ls "$L/base/etc"

say "node examples/dist/compose-dirs.js   # the same union in process, through Volume (no mount)"
node "$ROOT/examples/dist/compose-dirs.js" "$T/inproc"
echo
echo "main: done (mounted, copied up, whited out, unmounted; then the same in process)"
