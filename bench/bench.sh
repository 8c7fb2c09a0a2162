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
#   read  the mount's read path against the same bytes read natively:
#         snapfs is mounted on a fresh STORE in the work directory, the
#         collection database goes in as a delta, and each snapshot file
#         read through the mount is timed against its own backing file in
#         the STORE: warm cat, warm cp to tmpfs, 20,000 random primary-key
#         lookups with sqlite3 -readonly, ls -lR and find over a snapshots
#         directory of 50 snapshots, and a cold cat (caches dropped before
#         each side; needs root). Targets: warm cat and sqlite <= 1.10 x
#         native, cold cat <= 1.80 x; cp, ls and find are reported.
#         SNAPFS_BENCH_SNAPFS=PATH measures another snapfs binary;
#         SNAPFS_BENCH_FUSE_OPTS adds mount options (e.g. -d, logging every
#         request to DIR/snapfs.log, to count what reaches the daemon);
#         SNAPFS_BENCH_KEEP=1 keeps the scratch STORE (DIR/store).
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

# bench_read mounts $build/src/mount/snapfs on a fresh STORE in $dir (the disk the
# collection database is on), gets the collection database in as one
# snapshot of collection "c", makes 50 small snapshots in collection "s"
# for the directory listings, and then measures the mount path of each
# file against its own backing file in the STORE (the same bytes):
#   cat    warm `cat FILE >/dev/null`                         target <= 1.10
#   cp     warm `cp FILE /dev/shm/...` (tmpfs), removed after
#   sqlite 20,000 random primary-key lookups, one `sqlite3 -readonly`
#          process running a generated script (fixed seed)    target <= 1.10
#   ls     `ls -lR` of a snapshots directory of 50 snapshots, x $ls_loops
#   find   `find` of the same, x $ls_loops
#   cold   `cat` after drop_caches before each side            target <= 1.80
# Each is the median of $runs rounds; the rounds alternate which side goes
# first. SNAPFS_BENCH_FUSE_OPTS adds mount options (e.g. "-d" to count
# requests in $dir/snapfs.log).

lookups=20000
ls_loops=200
small_snaps=50
mnt_pid=

# The collection database minus its _snapfs_ledger table (a delta may not
# carry _snapfs_ names): what goes into incoming/. Kept between runs.
make_delta() {
	local delta=$dir/delta.sqlite3
	if [ -f "$delta" ] && [ "$(cat "$delta.size_mb" 2>/dev/null)" = "$size_mb" ]; then
		return
	fi
	echo "making the delta (the collection database without its ledger; once)..."
	rm -f "$delta" "$delta.size_mb" "$delta.tmp"
	cp "$db" "$delta.tmp"
	sqlite3 "$delta.tmp" 'DROP TABLE _snapfs_ledger'
	mv "$delta.tmp" "$delta"
	echo "$size_mb" >"$delta.size_mb"
}

# 20,000 lookups by primary key, ids drawn with a fixed seed.
make_lookups() {
	local max
	max=$(sqlite3 -readonly "$db" 'SELECT max(id) FROM vectors')
	python3 - "$max" "$lookups" >"$dir/lookups.sql" <<-'PY'
		import random, sys
		hi, n = int(sys.argv[1]), int(sys.argv[2])
		rnd = random.Random(20000)
		for _ in range(n):
		    print("SELECT id, length(embedding), substr(document, 1, 16), metadata"
		          " FROM vectors WHERE id = %d;" % rnd.randint(1, hi))
	PY
}

mount_stop() {
	[ -n "$mnt_pid" ] || return 0
	local i
	for i in $(seq 1 50); do
		if ! grep -q " $mnt fuse" /proc/mounts; then break; fi
		fusermount3 -u "$mnt" 2>/dev/null && break
		sleep 0.2
	done
	if grep -q " $mnt fuse" /proc/mounts; then
		echo "bench.sh: $mnt stays busy; detaching it" >&2
		fusermount3 -u -z "$mnt" || true
	fi
	local rc=0
	wait "$mnt_pid" || rc=$?
	[ "$rc" -eq 0 ] || echo "bench.sh: snapfs exited with status $rc (log: $dir/snapfs.log)" >&2
	mnt_pid=
}

# Waits until collection $1 is idle with nothing queued and at least $2
# snapshots; prints the last snapshot's id (8 digits).
wait_snapshots() {
	local i out
	for i in $(seq 1 6000); do
		if out=$(python3 - "$mnt/$1/status" "$2" 2>/dev/null <<-'PY'
			import json, sys
			s = json.load(open(sys.argv[1]))
			if s["last_error"]:
			    print("error: %s" % s["last_error"]); sys.exit(0)
			if s["state"] == "idle" and s["queued"] == 0 and s["last_snapshot"] \
			        and s["snapshots"] >= int(sys.argv[2]):
			    print(s["last_snapshot"]["snapshot"])
			else:
			    sys.exit(1)
		PY
		); then
			case $out in error:*) echo "bench.sh: collection $1: $out" >&2; exit 1 ;; esac
			echo "$out"
			return
		fi
		sleep 0.1
	done
	echo "bench.sh: collection $1: no snapshot after 10 minutes (log: $dir/snapfs.log)" >&2
	exit 1
}

ls_loop() { local i; for i in $(seq 1 "$ls_loops"); do ls -lR "$1"; done; }
find_loop() { local i; for i in $(seq 1 "$ls_loops"); do find "$1"; done; }
cp_shm() { cp "$1" /dev/shm/snapfs-bench.cp; rm -f /dev/shm/snapfs-bench.cp; }
lookup_run() { sqlite3 -readonly "$1" <"$dir/lookups.sql"; }

# read_measure KEY LABEL TARGET CMD: CMD FILE is timed on both sides (the
# files native[KEY] and mount[KEY]), $runs rounds alternating which goes
# first; prints a table row and adds a summary line. TARGET - : report only.
read_measure() {
	local key=$1 name=$2 target=$3 r a b
	shift 3
	local nat=() mou=()
	for r in $(seq 1 "$runs"); do
		if [ $((r % 2)) -eq 1 ]; then
			a=$(read_time "$@" "${native[$key]}")
			b=$(read_time "$@" "${mount[$key]}")
		else
			b=$(read_time "$@" "${mount[$key]}")
			a=$(read_time "$@" "${native[$key]}")
		fi
		nat+=("$a"); mou+=("$b")
	done
	local mn mm q verdict=report
	mn=$(median "${nat[@]}")
	mm=$(median "${mou[@]}")
	q=$(ratio "$mm" "$mn")
	if [ "$target" != - ]; then
		verdict=$(awk -v q="$q" -v t="$target" 'BEGIN {print (q <= t) ? "met" : "MISSED"}')
	fi
	printf '  %-34s %9s %9s %7s %8s  %-6s  (rounds native %s; mount %s)\n' "$name" "$mn" "$mm" "$q" \
		"$([ "$target" = - ] && echo - || echo "<= $target")" "$verdict" "${nat[*]}" "${mou[*]}"
	SUMMARY+=("$(printf '%-46s %5s   %-14s %s  (median native %s ms, mount %s ms)' "read: $name" "$q" \
		"$([ "$target" = - ] && echo "(report)" || echo "target <= $target")" "$verdict" "$mn" "$mm")")
}

# Milliseconds taken by CMD FILE, its output to /dev/null; for cold_cat,
# after dropping the caches (not timed).
read_time() {
	local t0 t1
	if [ "$1" = cold_cat ]; then drop_caches; set -- cat "$2"; fi
	t0=$(now_ns)
	"$@" >/dev/null
	t1=$(now_ns)
	echo $(((t1 - t0) / 1000000))
}

bench_read() {
	command -v fusermount3 >/dev/null || { echo "bench.sh: fusermount3 not found" >&2; exit 1; }
	[ -e /dev/fuse ] || { echo "bench.sh: no /dev/fuse" >&2; exit 1; }
	make_delta
	make_lookups
	store=$dir/store
	mnt=$dir/mnt
	if grep -q " $mnt fuse" /proc/mounts; then fusermount3 -u "$mnt" || fusermount3 -u -z "$mnt"; fi
	rm -rf "$store"
	mkdir -p "$mnt"
	echo
	local bin=${SNAPFS_BENCH_SNAPFS:-$build/src/mount/snapfs}
	echo "read: mounting $bin on $store at $mnt"
	trap 'mount_stop' EXIT
	# shellcheck disable=SC2086
	"$bin" "$store" "$mnt" -f -o batch_delay=20,keep=100 ${SNAPFS_BENCH_FUSE_OPTS:-} \
		2>"$dir/snapfs.log" &
	mnt_pid=$!
	local i
	for i in $(seq 1 100); do
		[ -e "$mnt/.snapfs/status" ] && break
		kill -0 "$mnt_pid" 2>/dev/null || { echo "bench.sh: snapfs did not start:" >&2; cat "$dir/snapfs.log" >&2; exit 1; }
		sleep 0.1
	done
	mkdir "$mnt/c" "$mnt/s"
	# 50 small snapshots in collection s, for ls and find.
	local t0 id sid
	for i in $(seq 1 "$small_snaps"); do
		sqlite3 "$dir/small.db" "CREATE TABLE IF NOT EXISTS items(id INTEGER PRIMARY KEY, body TEXT);
			INSERT INTO items VALUES ($i, 'row $i')"
		cp "$dir/small.db" "$mnt/s/incoming/d$i.db"
		wait_snapshots s "$i" >/dev/null
	done
	rm -f "$dir/small.db"
	t0=$(now_ns)
	cp "$dir/delta.sqlite3" "$mnt/c/incoming/collection.sqlite3"
	id=$(wait_snapshots c 1)
	sid=$(wait_snapshots s "$small_snaps")
	echo "  collection c: delta in, merged and sealed into snapshot $id in $((($(now_ns) - t0) / 1000000)) ms"
	echo "  collection s: $small_snaps snapshots (last $sid)"
	declare -gA native mount
	native[cat]=$store/collections/c/snapshots/$id/c.sqlite3
	mount[cat]=$mnt/c/snapshots/$id/c.sqlite3
	local n
	for n in cp sqlite cold; do native[$n]=${native[cat]}; mount[$n]=${mount[cat]}; done
	native[ls]=$store/collections/s/snapshots
	mount[ls]=$mnt/s/snapshots
	native[find]=${native[ls]}; mount[find]=${mount[ls]}
	echo "  native: ${native[cat]} ($(stat -c %s "${native[cat]}") bytes)"
	echo "  mount:  ${mount[cat]} ($(stat -c %s "${mount[cat]}") bytes)"
	[ "$(ls "${native[ls]}" | wc -l)" -eq "$small_snaps" ] || { echo "bench.sh: expected $small_snaps snapshots in ${native[ls]}" >&2; exit 1; }
	# Both listings name the same entries.
	if [ "$(cd "${native[ls]}" && find . | sort)" != "$(cd "${mount[ls]}" && find . | sort)" ]; then
		echo "bench.sh: ${mount[ls]} and ${native[ls]} list different entries" >&2
		exit 1
	fi
	# Warm both sides (one read of each) and check they are the same bytes.
	cmp "${native[cat]}" "${mount[cat]}" || { echo "bench.sh: mount and backing file differ" >&2; exit 1; }
	lookup_run "${native[cat]}" >/dev/null
	lookup_run "${mount[cat]}" >"$dir/lookups.out"
	[ "$(wc -l <"$dir/lookups.out")" -eq "$lookups" ] || { echo "bench.sh: $lookups lookups gave $(wc -l <"$dir/lookups.out") rows" >&2; exit 1; }
	ls -lR "${mount[ls]}" >/dev/null; find "${mount[ls]}" >/dev/null
	quiesce
	local load0
	load0=$(cut -d' ' -f1 /proc/loadavg)
	echo
	printf '  %-34s %9s %9s %7s %8s  %s\n' "read: $runs rounds, median" "native ms" "mount ms" ratio target ""
	read_measure cat "warm cat (seq read)" 1.10 cat
	read_measure cp "warm cp to tmpfs" - cp_shm
	read_measure sqlite "sqlite3 -readonly, $lookups lookups" 1.10 lookup_run
	read_measure ls "ls -lR snapshots/ x $ls_loops" - ls_loop
	read_measure find "find snapshots/ x $ls_loops" - find_loop
	read_measure cold "cold cat (drop_caches each side)" 1.80 cold_cat
	echo "  (native = the snapshot's backing file in the STORE, mount = the same snapshot through"
	echo "   snapfs; ratio = mount / native; ls and find over $small_snaps snapshot directories)"
	echo "  load average: $load0 before the read measurements, $(cut -d' ' -f1 /proc/loadavg) after;"
	echo "  the mount needs the daemon scheduled for every request, so other load costs it more"
	mount_stop
	trap - EXIT
	# The STORE holds two copies of the collection (live database and
	# snapshot): kept only when asked, for a look after the run.
	[ -n "${SNAPFS_BENCH_KEEP:-}" ] || rm -rf "$store"
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
