#!/usr/bin/env bash
# Installs the Debian packages that building snapfs needs and, with
# --test, those its test suite needs too (pytest, rsync, and Ceph's
# RADOS Gateway with boto3 for the S3 tests). With --no-s3, for a build
# with -Ds3=disabled: neither libcurl nor expat, nor Ceph. With --fuzz,
# clang 14 and its libFuzzer and sanitizer runtimes (scripts/fuzz.sh);
# with --format, clang-format 14 (scripts/format.sh).
# Does nothing when they are all installed already; uses sudo when not root.
set -euo pipefail

test=0
s3=1
fuzz=0
format=0
for arg in "$@"; do
	case "$arg" in
	--test) test=1 ;;
	--no-s3) s3=0 ;;
	--fuzz) fuzz=1 ;;
	--format) format=1 ;;
	*)
		echo "deps.sh: unknown argument '$arg' (--test, --no-s3, --fuzz, --format)" >&2
		exit 2
		;;
	esac
done
PACKAGES=(
	meson ninja-build pkg-config gcc
	libfuse3-dev fuse3
	libsqlite3-dev sqlite3
	libssl-dev libjansson-dev
	python3
)
if [ "$s3" = 1 ]; then
	PACKAGES+=(libcurl4-openssl-dev libexpat1-dev)
fi
if [ "$test" = 1 ]; then
	PACKAGES+=(python3-pytest rsync)
	if [ "$s3" = 1 ]; then
		PACKAGES+=(radosgw ceph-mon ceph-osd python3-boto3)
	fi
fi
if [ "$format" = 1 ]; then
	PACKAGES+=(clang-format-14)
fi
if [ "$fuzz" = 1 ]; then
	PACKAGES+=(clang-14 libclang-rt-14-dev llvm-14)
fi

missing=()
for p in "${PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "deps.sh: missing packages (${missing[*]}) and no apt-get: install them by hand" >&2
	exit 1
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
	SUDO=(sudo)
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
