#!/usr/bin/env bash
# Installs what snapfs needs, builds it, and mounts a local store in the
# foreground. Ctrl-C unmounts cleanly.
#
#   scripts/run.sh [STORE [MOUNT]] [snapfs options...]
#
# STORE defaults to ./snapfs-store, MOUNT to ./snapfs-mnt; further
# arguments go to snapfs (e.g. -o keep=20,loglevel=debug).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)

store=./snapfs-store
mnt=./snapfs-mnt
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then store=$1; shift; fi
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then mnt=$1; shift; fi

"$top/scripts/deps.sh"
if [ ! -f "$top/build/build.ninja" ]; then
	meson setup "$top/build" >/dev/null
fi
ninja -C "$top/build" >/dev/null

mkdir -p "$mnt"
abs_mnt=$(realpath -m "$mnt")
# A mount left behind by a killed snapfs ("Transport endpoint is not
# connected") is detached first; a live one is left alone (snapfs will
# say the store is in use).
if grep -qs " $abs_mnt fuse" /proc/mounts && ! ls "$abs_mnt" >/dev/null 2>&1; then
	fusermount3 -u -z "$abs_mnt"
fi

cat <<MSG
snapfs: mounting store $store at $mnt (foreground; Ctrl-C unmounts).
In another shell, try:

  mkdir $mnt/lines
  sqlite3 /tmp/delta1.db "CREATE TABLE items(id INTEGER PRIMARY KEY, body TEXT);
                          INSERT INTO items VALUES (1, 'hello'), (2, 'world');"
  cp /tmp/delta1.db $mnt/lines/incoming/
  cat $mnt/lines/status
  ls $mnt/lines/snapshots
  sqlite3 -readonly $mnt/lines/latest/lines.sqlite3 'SELECT * FROM items'
  sha256sum $mnt/lines/latest/lines.sqlite3; grep sha256 $mnt/lines/latest/MANIFEST.json
  cat $mnt/.snapfs/status $mnt/.snapfs/metrics

MSG
# exec: Ctrl-C reaches snapfs itself, which unmounts and exits 0.
exec "$top/build/src/mount/snapfs" "$store" "$mnt" -f "$@"
