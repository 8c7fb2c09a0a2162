#!/usr/bin/env bash
# Builds snapfs and runs the whole test suite: unit tests and the mounted
# integration tests (which need /dev/fuse; without it they report SKIP,
# unless SNAPFS_REQUIRE_FUSE=1 makes that a failure).
#
#   scripts/test.sh              build in build/, warnings are errors
#   scripts/test.sh --sanitize   build in build-asan/ with ASan + UBSan
#   scripts/test.sh --no-s3      build in build-nos3/ with -Ds3=disabled (no
#                                libcurl, expat or Ceph needed): the local suite
#
# --sanitize and --no-s3 combine (build-asan-nos3/). The last line printed
# is "N passed, N failed, N skipped" (meson tests). SNAPFS_BUILD_DIR
# overrides the build directory.
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize=0
s3=enabled
for arg in "$@"; do
	case "$arg" in
	--sanitize) sanitize=1 ;;
	--no-s3) s3=disabled ;;
	-h | --help)
		sed -n '2,14s/^# \{0,1\}//p' "$0"
		exit 0
		;;
	*)
		echo "test.sh: unknown argument '$arg' (try --help)" >&2
		exit 2
		;;
	esac
done

if [ "$s3" = enabled ]; then
	scripts/deps.sh --test
else
	scripts/deps.sh --test --no-s3
fi

options=(-Dwerror=true -Ds3="$s3")
builddir=build
if [ "$sanitize" = 1 ]; then
	builddir+=-asan
	options+=(-Db_sanitize=address,undefined -Db_lundef=false)
	# Any sanitizer finding aborts the process that made it, so a test
	# (and the integration harness, which also scans the daemon's log) fails.
	export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:check_initialization_order=1:strict_init_order=1}
	export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}
fi
if [ "$s3" = disabled ]; then
	builddir+=-nos3
fi
builddir=${SNAPFS_BUILD_DIR:-$builddir}

if [ -f "$builddir/build.ninja" ]; then
	# --reconfigure, not meson configure: it also learns options added
	# since the directory was set up (meson configure refuses those).
	meson setup --reconfigure "$builddir" "${options[@]}"
else
	meson setup "$builddir" "${options[@]}"
fi
ninja -C "$builddir"

rm -f "$builddir/meson-logs/testlog.json"
status=0
meson test -C "$builddir" --print-errorlogs || status=$?

python3 - "$builddir/meson-logs/testlog.json" <<'PY'
import json, sys
counts = {"passed": 0, "failed": 0, "skipped": 0}
try:
    with open(sys.argv[1]) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)["result"]
            if r in ("OK", "EXPECTEDFAIL"):
                counts["passed"] += 1
            elif r == "SKIP":
                counts["skipped"] += 1
            else:
                counts["failed"] += 1
except FileNotFoundError:
    pass
print("{passed} passed, {failed} failed, {skipped} skipped".format(**counts))
PY
if [ "$status" -eq 0 ] && [ ! -s "$builddir/meson-logs/testlog.json" ]; then
	echo "test.sh: no test ran" >&2
	status=1
fi
exit "$status"
