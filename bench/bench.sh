#!/usr/bin/env bash
# bench/bench.sh — snapfs against the native tools on the same machine, in
# one run (issue 2, item 9). Not a test: it measures and prints; run it by
# hand on a machine that is otherwise quiet.
#
#   bench/bench.sh [-s SIZE_MB] [-r RUNS] [-d DIR] [PART...]
#
#   PART    seal (default) | read | all
#   -s      size of the collection database in MiB (default 600)
#   -r      rounds per measurement; the median is reported (default 3)
#   -d      work directory (default $SNAPFS_BENCH_DIR or /var/tmp/snapfs-bench):
#           holds the bench build, the collection database (kept between
#           runs) and scratch copies. Put it on the disk a real STORE would
#           use, not on tmpfs: seal's fsync must reach a disk to mean anything.
#
# Parts:
#   seal  seal_make (bench/seal_bench.c) of the collection database against
#         cp + openssl dgst -sha256 + sqlite3 'PRAGMA integrity_check' of the
#         same file run back to back. Target: seal <= 0.80 x that sum.
#         Note the baseline does no fsync and seal_make must (the snapshot
#         is durable before it is published), so seal carries the disk
#         write that cp leaves in the page cache.
#   read  the mount's read path against the backing file (to be written:
#         see bench_read below).
#
# Every measurement starts warm (the source file read once into the page
# cache) and quiet (dirty pages written back first), and the rounds
# alternate which side goes first, so background writeback and drift hit
# both sides alike.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
size_mb=600
runs=3
dir=${SNAPFS_BENCH_DIR:-/var/tmp/snapfs-bench}
parts=()
while [ $# -gt 0 ]; do
	case $1 in
	-s) size_mb=$2; shift 2 ;;
	-r) runs=$2; shift 2 ;;
	-d) dir=$2; shift 2 ;;
	-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	seal|read) parts+=("$1"); shift ;;
	all) parts+=(seal read); shift ;;
	*) echo "bench.sh: unknown argument $1 (try -h)" >&2; exit 2 ;;
	esac
done
[ ${#parts[@]} -gt 0 ] || parts=(seal)

for tool in meson ninja python3 sqlite3 openssl; do
	command -v "$tool" >/dev/null || { echo "bench.sh: $tool not found (scripts/deps.sh installs it)" >&2; exit 1; }
done

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
build=$dir/build
db=$dir/collection.sqlite3

# ---- helpers ----

now_ns() { date +%s%N; }

# Milliseconds taken by a command; its stdout goes to $dir/last.out.
time_ms() {
	local t0 t1
	t0=$(now_ns)
	"$@" >"$dir/last.out"
	t1=$(now_ns)
	echo $(((t1 - t0) / 1000000))
}

# Median of the numbers given as arguments.
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

# Writes back dirty pages and waits for the disk to settle, so one
# measurement does not pay for the previous one's writeback.
quiesce() {
	sync
	local dirty i
	for i in $(seq 1 120); do
		dirty=$(awk '/^(Dirty|Writeback):/ {s += $2} END {print s}' /proc/meminfo)
		[ "$dirty" -lt 32768 ] && break
		sleep 0.5
	done
	sleep "${SNAPFS_BENCH_SETTLE:-2}"
}

warm() { cat "$1" >/dev/null; }

# Drops the page cache, for cold measurements (needs root).
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# ---- build and data ----

build_bench() {
	if [ ! -f "$build/build.ninja" ]; then
		meson setup "$build" "$top" --buildtype=release -Dbench=true >/dev/null
	else
		meson configure "$build" -Dbench=true >/dev/null
	fi
	ninja -C "$build" >/dev/null
}

make_data() {
	if [ -f "$db" ] && [ "$(cat "$db.size_mb" 2>/dev/null)" = "$size_mb" ]; then
		return
	fi
	echo "making a ${size_mb} MiB collection database (once; kept in $dir)..."
	rm -f "$db" "$db.size_mb"
	python3 "$top/bench/make_collection.py" "$db" "$size_mb"
	echo "$size_mb" >"$db.size_mb"
}

# ---- seal ----

bench_seal() {
	local cp_ms=() sha_ms=() ic_ms=() base_ms=() seal_ms=() copy_ms=() check_ms=() ratios=()
	local r a b c s line base_sha seal_sha
	echo
	echo "seal: $runs rounds (ms)      cp   sha256  integrity    baseline   seal_make (check)   ratio"
	# One round untimed: the first large writes after idle time are slower
	# on some VMs (memory given back to the host), whichever side gets them.
	run_seal_once
	rm -f "$dir/cp.out"; cp "$db" "$dir/cp.out"; rm -f "$dir/cp.out"
	for r in $(seq 1 "$runs"); do
		rm -rf "$dir/cp.out" "$dir/staging"
		# Even rounds seal first, odd rounds run the baseline first.
		if [ $((r % 2)) -eq 0 ]; then run_seal_once; fi
		warm "$db"
		quiesce
		a=$(time_ms cp "$db" "$dir/cp.out")
		b=$(time_ms openssl dgst -sha256 -r "$db")
		base_sha=$(cut -d' ' -f1 "$dir/last.out")
		c=$(time_ms sqlite3 "$db" 'PRAGMA integrity_check')
		if [ "$(cat "$dir/last.out")" != ok ]; then
			echo "bench.sh: sqlite3 integrity_check of $db: $(head -3 "$dir/last.out")" >&2
			exit 1
		fi
		rm -f "$dir/cp.out"
		if [ $((r % 2)) -eq 1 ]; then run_seal_once; fi
		line=$(cat "$dir/seal.out")
		s=$(sed -n 's/.*seal_ms=\([0-9.]*\).*/\1/p' <<<"$line")
		seal_sha=$(sed -n 's/.*sha256=\([0-9a-f]*\).*/\1/p' <<<"$line")
		if [ "$seal_sha" != "$base_sha" ]; then
			echo "bench.sh: seal_make sha256 $seal_sha differs from openssl's $base_sha" >&2
			exit 1
		fi
		cp_ms+=("$a"); sha_ms+=("$b"); ic_ms+=("$c"); base_ms+=($((a + b + c))); seal_ms+=("$s")
		copy_ms+=("$(sed -n 's/.*copy_ms=\([0-9.]*\).*/\1/p' <<<"$line")")
		check_ms+=("$(sed -n 's/.*check_ms=\([0-9.]*\).*/\1/p' <<<"$line")")
		ratios+=("$(ratio "$s" $((a + b + c)))")
		printf '  round %d %20d %8d %10d %11d %11.0f (%4.0f) %8s\n' "$r" "$a" "$b" "$c" $((a + b + c)) \
			"$s" "${check_ms[-1]}" "${ratios[-1]}"
	done
	local mb mseal
	mb=$(median "${base_ms[@]}")
	mseal=$(median "${seal_ms[@]}")
	printf '  median %21s %8s %10s %11s %11.0f (%4.0f) %8s\n' "$(median "${cp_ms[@]}")" \
		"$(median "${sha_ms[@]}")" "$(median "${ic_ms[@]}")" "$mb" "$mseal" \
		"$(median "${check_ms[@]}")" "$(median "${ratios[@]}")"
	echo "  (seal_make = copy, hash, integrity_check + row counts, fsync, manifest; (check) is"
	echo "   the part of it spent in integrity_check + row counts; ratio = seal / baseline)"
	local q verdict
	q=$(ratio "$mseal" "$mb")
	verdict=$(awk -v q="$q" 'BEGIN {print (q <= 0.80) ? "met" : "MISSED"}')
	SUMMARY+=("seal_make / (cp + sha256 + integrity_check)   $q   target <= 0.80   $verdict  (median seal $mseal ms, baseline $mb ms)")
	rm -rf "$dir/staging"
}

run_seal_once() {
	rm -rf "$dir/staging"
	warm "$db"
	quiesce
	"$build/bench/seal_bench" "$db" "$dir/staging" bench >"$dir/seal.out"
	rm -rf "$dir/staging"
}

# ---- read path through the mount ----

# To be written when the mount's read path is done (issue 2, item 9).
# Plan: mount $build/snapfs on a scratch STORE in $dir, get the collection
# database in as a snapshot, then for each item below take the median of
# $runs rounds, mount vs the backing file of the same snapshot, and append
# "name  ratio  target  met|MISSED" lines to SUMMARY:
#   - warm `cat` of the ~600 MB snapshot to /dev/null        target <= 1.10
#   - cold `cat` (drop_caches first)                          target <= 1.80
#   - `cp` of it to tmpfs
#   - 20,000 random primary-key lookups with sqlite3 -readonly target <= 1.10
#   - `ls -l` and `find` over a snapshots directory
bench_read() {
	echo
	echo "read: not measured yet (bench_read in bench/bench.sh is a placeholder)"
	SUMMARY+=("read path through the mount                    -      not measured yet")
}

# ---- main ----

SUMMARY=()
build_bench
make_data
echo "snapfs bench $(git -C "$top" describe --always --dirty 2>/dev/null || echo '?'), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "host: $(nproc) cpus, $(uname -r), $(df -PT "$dir" | awk 'NR == 2 {print $2 " on " $1}') for $dir"
echo "collection: $db, $(stat -c %s "$db") bytes"
load=$(cut -d' ' -f1 /proc/loadavg)
echo "load average at start: $load"
if awk -v l="$load" 'BEGIN {exit !(l > 0.5)}'; then
	echo "warning: the machine is busy; seal uses both cores at once and the baseline one,"
	echo "         so other load inflates the seal more than the baseline"
fi
for p in "${parts[@]}"; do
	case $p in
	seal) bench_seal ;;
	read) bench_read ;;
	esac
done
echo
echo "summary (median of $runs):"
printf '  %s\n' "${SUMMARY[@]}"
