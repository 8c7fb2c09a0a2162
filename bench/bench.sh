#!/usr/bin/env bash
# bench/bench.sh — snapfs against the native tools on the same machine, in
# one run (issue 2, item 9). Not a test: it measures and prints; run it by
# hand on a machine that is otherwise quiet.
#
#   bench/bench.sh [-s SIZE_MB] [-r RUNS] [-n SNAPSHOTS] [-d DIR] [PART...]
#
#   PART    seal (default) | read | write | floor | all (= seal read write)
#   -s      size of the collection database (and of the delta) in MiB
#           (default 600)
#   -r      rounds per measurement; the median is reported (default 3)
#   -n      snapshot directories listed by the ls and find rows (default 50)
#   -d      work directory (default $SNAPFS_BENCH_DIR or /var/tmp/snapfs-bench):
#           holds the bench build, the collection database and the delta
#           (kept between runs) and scratch copies. Put it on the disk a real
#           STORE would use, not on tmpfs: fsync must reach a disk to mean
#           anything.
#
# The table (ratio = snapfs / baseline; each row is the median of RUNS
# rounds, printed with every round, the range and how it scales):
#
#   row         snapfs side                     baseline side          target
#   warm cat    cat of a sealed snapshot        its backing file in     <= 1.05
#               through the mount               the STORE
#   cold cat    the same after drop_caches      the same                <= 1.15
#   sqlite      20,000 primary-key lookups, one sqlite3 -readonly       <= 1.05
#   ls          ls -lR over SNAPSHOTS snapshot directories              <= 1.5
#   find        find over the same                                      <= 1.5
#   cp          cp DELTA MNT/cN/incoming/d.db   cp DELTA scratch &&     <= 1.3
#               (a new empty collection cN      sync scratch (same disk
#               each round), to cp's exit       as the STORE)
#   merge       last_batch ms - seal_ms from    sqlite3 CLI: ATTACH the <= 1.1
#               cN's status once cN is idle     delta, one upsert per
#               (the batch's wall time          table, COMMIT, into an
#               without the seal)               empty copy of the schema
#   seal        seal_make (bench/seal_bench.c)  cp + sha256 +           <= 0.6
#                                               integrity_check
#   peak RSS of the daemon during merge+seal (VmHWM)                    <= 64 MiB
#
# Parts:
#   seal  seal_make of the collection database against cp + openssl dgst
#         -sha256 + sqlite3 'PRAGMA integrity_check' of the same file run
#         back to back. Note the baseline does no fsync and seal_make must
#         (the snapshot is durable before it is published), so seal carries
#         the disk write that cp leaves in the page cache.
#   read  the mount's read path against the same bytes read natively:
#         snapfs is mounted on a fresh STORE in the work directory (keep =
#         SNAPSHOTS + 10, batch_max=1), the delta goes in as collection c's
#         one snapshot and SNAPSHOTS small deltas, copied in at once, become
#         one snapshot each of collection s; each snapshot file read through
#         the mount is timed against its own backing file in the STORE:
#         warm cat, warm cp to tmpfs (reported only), the sqlite lookups,
#         ls -lR and find of s/snapshots (repeated 10,000 / SNAPSHOTS
#         times, 1 to 200), and cold cat (caches dropped before each side;
#         needs root). Prints the daemon's VmHWM after setup and
#         after the read rows. Then, if bench/floorfs is built (it is, with
#         -Dbench=true), snapfs is unmounted and the same rows are run
#         against floorfs mounted on STORE/collections: the "floor" table,
#         floorfs / native and snapfs / floorfs (the snapfs table's ratio
#         over the floor table's: each against its own native rounds).
#         floorfs (bench/floorfs.c) is the smallest FUSE filesystem that
#         serves a tree the way snapfs serves a sealed snapshot (long
#         timeouts, keep_cache, listings cached by the kernel, spliced
#         reads): the floor of the FUSE page-cache path on this kernel.
#         snapfs may beat it where it does more: warm and cold cat go by
#         FUSE passthrough (read_path=auto), floorfs by the page cache.
#   floor the read part's setup and the floor table only (no snapfs rows).
#   write cp into incoming/ and the merge: snapfs is mounted on its own
#         fresh STORE; each round makes a new collection cN, copies the
#         delta into cN/incoming/ (timed to cp's exit), waits until cN is
#         idle with a snapshot and reads last_batch from cN/status (n/a
#         while the status has no last_batch); the daemon's peak RSS is
#         reset (clear_refs) before the cp and read (VmHWM, which counts
#         the pages of files the daemon maps as well as its heap) once
#         idle. The baselines run in the same rounds: cp + sync FILE of the delta
#         into the work directory, and the sqlite3 upsert of the delta into
#         a copy of DIR/schema-only.db (the delta's schema, no _snapfs_
#         tables; only the sqlite3 run is timed). Collections are not
#         removed (rmdir is refused while a collection has snapshots); the
#         whole STORE is removed after unmounting.
#
# Environment: SNAPFS_BENCH_SNAPFS=PATH measures another snapfs binary;
# SNAPFS_BENCH_FUSE_OPTS adds snapfs mount options (e.g. -d, logging every
# request to DIR/snapfs.log, to count what reaches the daemon);
# SNAPFS_BENCH_KEEP=1 keeps the scratch STOREs (DIR/store, DIR/wstore);
# SNAPFS_BENCH_SETTLE=SECONDS is the pause after writeback (default 2);
# SNAPFS_BENCH_BATCH_DELAY=MS is the write mount's batch_delay, and how
# long the baseline waits between its copy and its merge (default 0: both
# merge at once; 5000 lets this VM's disk rest before either merge).
#
# A scale run (a 4 GiB collection and delta, 1,000 snapshot directories;
# needs ~45 GB free in DIR, and time: the data is made once and kept):
#
#   bench/bench.sh -s 4096 -n 1000 all
#
# Every measurement starts warm (the source file read once into the page
# cache; the read rows run one round of each side first, untimed, and show
# it as "warm-up NATIVE / MOUNT") and quiet (dirty pages written back
# first), and the rounds alternate which side goes first, so background
# writeback and drift hit both sides alike. The load average is printed
# before and after each part and each row. Both mounts get
# max_delta_size=(2 x SIZE_MB + 64)M, so that the delta is accepted.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
size_mb=600
runs=3
nsnaps=50
dir=${SNAPFS_BENCH_DIR:-/var/tmp/snapfs-bench}
parts=()
while [ $# -gt 0 ]; do
	case $1 in
	-s) size_mb=$2; shift 2 ;;
	-r) runs=$2; shift 2 ;;
	-n) nsnaps=$2; shift 2 ;;
	-d) dir=$2; shift 2 ;;
	-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	seal|read|write|floor) parts+=("$1"); shift ;;
	all) parts+=(seal read write); shift ;;
	*) echo "bench.sh: unknown argument $1 (try -h)" >&2; exit 2 ;;
	esac
done
[ ${#parts[@]} -gt 0 ] || parts=(seal)
for v in "$size_mb" "$runs" "$nsnaps"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: -s, -r and -n take a positive whole number, not $v" >&2; exit 2; }
done

for tool in meson ninja python3 sqlite3 openssl; do
	command -v "$tool" >/dev/null || { echo "bench.sh: $tool not found (scripts/deps.sh installs it)" >&2; exit 1; }
done

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
build=$dir/build
db=$dir/collection.sqlite3
delta=$dir/delta.sqlite3
bin=${SNAPFS_BENCH_SNAPFS:-$build/src/mount/snapfs}
floorfs=$build/bench/floorfs
# Deltas as large as the collection must be accepted (default max_delta_size is 1G).
snapfs_limits="max_delta_size=$((size_mb * 2 + 64))M"
batch_delay_ms=${SNAPFS_BENCH_BATCH_DELAY:-0}

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

isnum() { [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]]; }

# Median of the numbers given as arguments; n/a if any is not a number.
median() {
	local x
	for x in "$@"; do isnum "$x" || { echo n/a; return; }; done
	printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}

# "min-max" of the numbers given; n/a if any is not a number.
range() {
	local x
	for x in "$@"; do isnum "$x" || { echo n/a; return; }; done
	printf '%s\n' "$@" | sort -n | awk 'NR == 1 {lo = $1} {hi = $1} END {print lo "-" hi}'
}

ratio() {
	if isnum "$1" && isnum "$2" && [ "$2" != 0 ]; then awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; else echo n/a; fi
}

# met / MISSED of ratio $1 against target $2 (- : report only).
verdict() {
	if [ "$2" = - ]; then echo report
	elif ! isnum "$1"; then echo n/a
	else awk -v q="$1" -v t="$2" 'BEGIN {print (q <= t) ? "met" : "MISSED"}'
	fi
}

load1() { cut -d' ' -f1 /proc/loadavg; }

# VmHWM (peak resident set) of process $1 in MiB, one decimal.
vmhwm_mib() { awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

# Writes back dirty pages and waits for the disk to settle, so one
# measurement does not pay for the previous one's writeback.
quiesce() {
	sync
	local dirty _
	for _ in $(seq 1 120); do
		dirty=$(awk '/^(Dirty|Writeback):/ {s += $2} END {print s}' /proc/meminfo)
		[ "$dirty" -lt 32768 ] && break
		sleep 0.5
	done
	sleep "${SNAPFS_BENCH_SETTLE:-2}"
}

warm() { cat "$1" >/dev/null; }

# Drops the page cache, for cold measurements (needs root).
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# ---- rows and the summary ----

declare -A SUMMARY MED_A MED_B
SUMMARY_EXTRA=()
row_order=(warm_cat cold_cat sqlite ls find cp merge seal)

# Prints the column titles of a table: TITLE A-NAME B-NAME.
table_head() {
	echo
	printf '  %-34s %22s %22s %6s %9s  %s\n' "$1" "$2 ms (min-max)" "$3 ms (min-max)" ratio target verdict
}

# How a median scales: UNIT DEN MS; ms/GiB: MS per 2^30 of DEN bytes,
# us/...: MS in microseconds per DEN items.
scale() {
	isnum "$3" || { echo n/a; return; }
	case $1 in
	ms/GiB) awk -v m="$3" -v d="$2" 'BEGIN {printf "%.0f", m * 1073741824 / d}' ;;
	*) awk -v m="$3" -v d="$2" 'BEGIN {printf "%.1f", m * 1000 / d}' ;;
	esac
}

# report_row KEY LABEL TARGET UNIT DEN A-NAME "A ROUNDS" B-NAME "B ROUNDS" LOAD0 [EXTRA [NOTE]]
# Prints a row (ratio = B / A, EXTRA after it) with its rounds (NOTE
# after them), range, scale and the load average before (LOAD0) and now;
# unless KEY is -, keeps KEY's summary line and the medians in MED_A[KEY]
# and MED_B[KEY].
report_row() {
	local key=$1 label=$2 target=$3 unit=$4 den=$5 an=$6 av=$7 bn=$8 bv=$9 load0=${10} extra=${11:-} note=${12:-}
	local ma mb ra rb q v
	# shellcheck disable=SC2086 # the rounds are one word each
	{ ma=$(median $av); mb=$(median $bv); ra=$(range $av); rb=$(range $bv); }
	q=$(ratio "$mb" "$ma")
	v=$(verdict "$q" "$target")
	printf '  %-34s %22s %22s %6s %9s  %s%s\n' "$label" "$ma ($ra)" "$mb ($rb)" "$q" \
		"$([ "$target" = - ] && echo - || echo "<= $target")" "$v" "${extra:+  $extra}"
	printf '      rounds %s: %s; %s: %s%s | scale %s %s / %s %s %s | load %s -> %s\n' "$an" "$av" "$bn" "$bv" \
		"${note:+ ($note)}" "$an" "$(scale "$unit" "$den" "$ma")" "$bn" "$(scale "$unit" "$den" "$mb")" "$unit" "$load0" "$(load1)"
	[ "$key" = - ] && return
	MED_A[$key]=$ma
	MED_B[$key]=$mb
	SUMMARY[$key]=$(printf '%-40s %5s   %-14s %-6s (median %s %s ms, %s %s ms)' "$label" "$q" \
		"$([ "$target" = - ] && echo "(report)" || echo "target <= $target")" "$v" "$an" "$ma" "$bn" "$mb")
}

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

# The collection database minus its _snapfs_ledger table (a delta may not
# carry _snapfs_ names): what goes into incoming/. Kept between runs.
make_delta() {
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

# ---- seal ----

bench_seal() {
	local cp_ms=() sha_ms=() ic_ms=() base_ms=() seal_ms=() check_ms=()
	local r a b c s line base_sha seal_sha load0
	echo
	echo "seal: $runs rounds (ms)      cp   sha256  integrity    baseline   seal_make (check)   ratio   load"
	# One round untimed: the first large writes after idle time are slower
	# on some VMs (memory given back to the host), whichever side gets them.
	run_seal_once
	rm -f "$dir/cp.out"; cp "$db" "$dir/cp.out"; rm -f "$dir/cp.out"
	load0=$(load1)
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
		s=$(printf '%.0f' "$s")
		seal_sha=$(sed -n 's/.*sha256=\([0-9a-f]*\).*/\1/p' <<<"$line")
		if [ "$seal_sha" != "$base_sha" ]; then
			echo "bench.sh: seal_make sha256 $seal_sha differs from openssl's $base_sha" >&2
			exit 1
		fi
		cp_ms+=("$a"); sha_ms+=("$b"); ic_ms+=("$c"); base_ms+=($((a + b + c))); seal_ms+=("$s")
		check_ms+=("$(sed -n 's/.*check_ms=\([0-9.]*\).*/\1/p' <<<"$line")")
		printf '  round %d %20d %8d %10d %11d %11.0f (%4.0f) %8s   %s\n' "$r" "$a" "$b" "$c" $((a + b + c)) \
			"$s" "${check_ms[-1]}" "$(ratio "$s" $((a + b + c)))" "$(load1)"
	done
	printf '  median %21s %8s %10s %11s %11s (%4.0f)\n' "$(median "${cp_ms[@]}")" \
		"$(median "${sha_ms[@]}")" "$(median "${ic_ms[@]}")" "$(median "${base_ms[@]}")" \
		"$(median "${seal_ms[@]}")" "$(median "${check_ms[@]}")"
	printf '  range %22s %8s %10s %11s %11s\n' "$(range "${cp_ms[@]}")" \
		"$(range "${sha_ms[@]}")" "$(range "${ic_ms[@]}")" "$(range "${base_ms[@]}")" \
		"$(range "${seal_ms[@]}")"
	echo "  (seal_make = copy, hash, integrity_check + row counts, fsync, manifest; (check) is"
	echo "   the part of it spent in integrity_check + row counts; ratio = seal / baseline;"
	echo "   in the row below, snapfs = seal_make)"
	table_head "seal: $runs rounds, median" baseline snapfs
	report_row seal "seal" 0.6 ms/GiB "$(stat -c %s "$db")" baseline "${base_ms[*]}" \
		snapfs "${seal_ms[*]}" "$load0"
	rm -rf "$dir/staging"
}

run_seal_once() {
	rm -rf "$dir/staging"
	warm "$db"
	quiesce
	"$build/bench/seal_bench" "$db" "$dir/staging" bench >"$dir/seal.out"
	rm -rf "$dir/staging"
}

# ---- mounts ----

declare -A mnt_pid

# fs_start MNT LOG CMD...: runs CMD (a FUSE daemon in the foreground) in
# the background, its stderr to LOG, and waits until MNT is mounted.
fs_start() {
	local m=$1 log=$2 _
	shift 2
	if grep -q " $m fuse" /proc/mounts; then fusermount3 -u "$m" || fusermount3 -u -z "$m"; fi
	mkdir -p "$m"
	"$@" 2>"$log" &
	mnt_pid[$m]=$!
	for _ in $(seq 1 100); do
		grep -q " $m fuse" /proc/mounts && return 0
		kill -0 "${mnt_pid[$m]}" 2>/dev/null || break
		sleep 0.1
	done
	echo "bench.sh: $1 did not mount at $m:" >&2
	cat "$log" >&2
	exit 1
}

# Unmounts MNT and waits for its daemon to exit.
fs_stop() {
	local m=$1 _ rc=0
	[ -n "${mnt_pid[$m]:-}" ] || return 0
	for _ in $(seq 1 50); do
		grep -q " $m fuse" /proc/mounts || break
		fusermount3 -u "$m" 2>/dev/null && break
		sleep 0.2
	done
	if grep -q " $m fuse" /proc/mounts; then
		echo "bench.sh: $m stays busy; detaching it" >&2
		fusermount3 -u -z "$m" || true
	fi
	wait "${mnt_pid[$m]}" || rc=$?
	[ "$rc" -eq 0 ] || echo "bench.sh: the daemon of $m exited with status $rc" >&2
	unset "mnt_pid[$m]"
}

fs_stop_all() {
	local m
	for m in "${!mnt_pid[@]}"; do fs_stop "$m"; done
}
trap fs_stop_all EXIT

# snapfs_start STORE MNT OPTS: a fresh STORE mounted at MNT, log in DIR/snapfs.log.
snapfs_start() {
	local store=$1 m=$2 opts=$3 _
	# A mount left by an earlier run goes before its STORE does.
	if grep -q " $m fuse" /proc/mounts; then fusermount3 -u "$m" || fusermount3 -u -z "$m"; fi
	rm -rf "$store"
	# shellcheck disable=SC2086 # the options are words
	fs_start "$m" "$dir/snapfs.log" "$bin" "$store" "$m" -f -o "$opts,$snapfs_limits" ${SNAPFS_BENCH_FUSE_OPTS:-}
	for _ in $(seq 1 100); do
		[ -e "$m/.snapfs/status" ] && return 0
		sleep 0.1
	done
	echo "bench.sh: $m/.snapfs/status does not appear (log: $dir/snapfs.log)" >&2
	exit 1
}

# wait_snapshots MNT COLL N: waits until collection COLL is idle with
# nothing queued and at least N snapshots; prints the last snapshot's id.
wait_snapshots() {
	local _ out
	for _ in $(seq 1 12000); do
		if out=$(python3 - "$1/$2/status" "$3" 2>/dev/null <<-'PY'
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
			case $out in error:*) echo "bench.sh: collection $2: $out" >&2; exit 1 ;; esac
			echo "$out"
			return
		fi
		sleep 0.1
	done
	echo "bench.sh: collection $2: not $3 snapshots after 20 minutes (log: $dir/snapfs.log)" >&2
	exit 1
}

# ---- read path through the mount ----

lookups=20000
small_snaps=$nsnaps
# ls and find repeat so that each measurement visits ~10,000 snapshot dirs.
ls_loops=$((10000 / nsnaps))
[ "$ls_loops" -le 200 ] || ls_loops=200
[ "$ls_loops" -ge 1 ] || ls_loops=1

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

# N small deltas in DIR/small/, each a different row, so each is applied.
make_small_deltas() {
	rm -rf "$dir/small"
	mkdir "$dir/small"
	python3 - "$dir/small" "$small_snaps" <<-'PY'
		import os, sqlite3, sys
		d, n = sys.argv[1], int(sys.argv[2])
		for i in range(1, n + 1):
		    db = sqlite3.connect(os.path.join(d, "d%05d.db" % i), isolation_level=None)
		    db.execute("PRAGMA synchronous=OFF")
		    db.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, body TEXT)")
		    db.execute("INSERT INTO items VALUES (?, ?)", (i, "row %d" % i))
		    db.close()
	PY
}

ls_loop() { local _; for _ in $(seq 1 "$ls_loops"); do ls -lR "$1"; done; }
find_loop() { local _; for _ in $(seq 1 "$ls_loops"); do find "$1"; done; }
cp_shm() { cp "$1" /dev/shm/snapfs-bench.cp; rm -f /dev/shm/snapfs-bench.cp; }
lookup_run() { sqlite3 -readonly "$1" <"$dir/lookups.sql"; }

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

# read_measure SIDE KEY LABEL TARGET UNIT DEN CMD: CMD FILE timed on the
# native side (native[KEY]) and through a mount (SIDE[KEY], SIDE = mount
# or floor), $runs rounds alternating which goes first; prints the row.
# For floor, the row is not a summary row, and snapfs / floorfs is shown.
read_measure() {
	local side=$1 key=$2 label=$3 target=$4 unit=$5 den=$6 r a b load0
	shift 6
	local -n other=$side
	local nat=() mou=() note=
	load0=$(load1)
	# One round untimed, each side, to start warm; shown, for what a first run costs.
	if [ "$1" != cold_cat ]; then
		a=$(read_time "$@" "${native[$key]}")
		b=$(read_time "$@" "${other[$key]}")
		note="warm-up $a / $b"
	fi
	for r in $(seq 1 "$runs"); do
		if [ $((r % 2)) -eq 1 ]; then
			a=$(read_time "$@" "${native[$key]}")
			b=$(read_time "$@" "${other[$key]}")
		else
			b=$(read_time "$@" "${other[$key]}")
			a=$(read_time "$@" "${native[$key]}")
		fi
		nat+=("$a"); mou+=("$b")
	done
	if [ "$side" = mount ]; then
		report_row "$key" "$label" "$target" "$unit" "$den" native "${nat[*]}" snapfs "${mou[*]}" "$load0" "" "$note"
		return
	fi
	# snapfs / floorfs, each over the native median of its own table, so
	# that a load that changed between the two tables cancels out.
	local fm fn sf=n/a
	fm=$(median "${mou[@]}")
	fn=$(median "${nat[@]}")
	[ -z "${MED_B[$key]:-}" ] || sf=$(ratio "$(ratio "${MED_B[$key]}" "${MED_A[$key]}")" "$(ratio "$fm" "$fn")")
	report_row - "$label" - "$unit" "$den" native "${nat[*]}" floorfs "${mou[*]}" "$load0" \
		"snapfs/floorfs $sf" "$note"
	SUMMARY_EXTRA+=("$(printf '%-40s snapfs/floorfs %5s, floorfs/native %5s  (median native %s ms, floorfs %s ms)' \
		"floor: $label" "$sf" "$(ratio "$fm" "$fn")" "$fn" "$fm")")
}

# Mounts snapfs on a fresh STORE (DIR/store at DIR/mnt) and gets the
# delta in as collection c's snapshot and the small deltas in as
# collection s's snapshots. Sets native[] and mount[].
read_setup() {
	make_delta
	make_lookups
	store=$dir/store
	mnt=$dir/mnt
	echo
	echo "read: mounting $bin on $store at $mnt"
	snapfs_start "$store" "$mnt" "batch_delay=0,batch_max=1,keep=$((small_snaps + 10))"
	mkdir "$mnt/c" "$mnt/s"
	# N small deltas copied in at once: batch_max=1 makes each its own snapshot.
	local t0 id sid
	make_small_deltas
	t0=$(now_ns)
	cp "$dir"/small/d*.db "$mnt/s/incoming/"
	sid=$(wait_snapshots "$mnt" s "$small_snaps")
	echo "  collection s: $small_snaps small deltas in, $small_snaps snapshots (last $sid) in $((($(now_ns) - t0) / 1000000)) ms"
	rm -rf "$dir/small"
	t0=$(now_ns)
	cp "$delta" "$mnt/c/incoming/collection.sqlite3"
	id=$(wait_snapshots "$mnt" c 1)
	echo "  collection c: delta in, merged and sealed into snapshot $id in $((($(now_ns) - t0) / 1000000)) ms"
	declare -gA native mount
	native[warm_cat]=$store/collections/c/snapshots/$id/c.sqlite3
	mount[warm_cat]=$mnt/c/snapshots/$id/c.sqlite3
	local n
	for n in cp_shm sqlite cold_cat; do native[$n]=${native[warm_cat]}; mount[$n]=${mount[warm_cat]}; done
	native[ls]=$store/collections/s/snapshots
	mount[ls]=$mnt/s/snapshots
	native[find]=${native[ls]}; mount[find]=${mount[ls]}
	snap_bytes=$(stat -c %s "${native[warm_cat]}")
	echo "  native: ${native[warm_cat]} ($snap_bytes bytes)"
	echo "  mount:  ${mount[warm_cat]} ($(stat -c %s "${mount[warm_cat]}") bytes)"
	[ "$(ls "${native[ls]}" | wc -l)" -eq "$small_snaps" ] || { echo "bench.sh: expected $small_snaps snapshots in ${native[ls]}" >&2; exit 1; }
	read_check mount
	echo "  snapfs read path: $(python3 - "$mnt/.snapfs/status" <<-'PY'
		import json, sys
		r = json.load(open(sys.argv[1])).get("reads") or {}
		print("read_path=%s, kernel passthrough %s" % (r.get("read_path", "n/a"), json.dumps(r.get("passthrough", "n/a"))))
	PY
	)"
	echo "  snapfs daemon VmHWM after the setup (merge and seal of c, $small_snaps of s): $(vmhwm_mib "${mnt_pid[$mnt]}") MiB"
}

# Checks that SIDE shows the same entries and bytes as the STORE, and
# reads each side once (warm).
read_check() {
	local -n other=$1
	if [ "$(cd "${native[ls]}" && find . | sort)" != "$(cd "${other[ls]}" && find . | sort)" ]; then
		echo "bench.sh: ${other[ls]} and ${native[ls]} list different entries" >&2
		exit 1
	fi
	cmp "${native[warm_cat]}" "${other[warm_cat]}" || { echo "bench.sh: ${other[warm_cat]} and its backing file differ" >&2; exit 1; }
	lookup_run "${native[warm_cat]}" >/dev/null
	lookup_run "${other[warm_cat]}" >"$dir/lookups.out"
	[ "$(wc -l <"$dir/lookups.out")" -eq "$lookups" ] || { echo "bench.sh: $lookups lookups gave $(wc -l <"$dir/lookups.out") rows" >&2; exit 1; }
	ls -lR "${other[ls]}" >/dev/null; find "${other[ls]}" >/dev/null
}

# The rows of the read table, through SIDE (mount or floor).
read_rows() {
	local side=$1 dirs=$((ls_loops * small_snaps))
	read_measure "$side" warm_cat "warm cat (seq read)" 1.05 ms/GiB "$snap_bytes" cat
	[ "$side" = floor ] || read_measure "$side" cp_shm "warm cp to tmpfs" - ms/GiB "$snap_bytes" cp_shm
	read_measure "$side" sqlite "sqlite3 -readonly, $lookups lookups" 1.05 us/lookup "$lookups" lookup_run
	read_measure "$side" ls "ls -lR snapshots/ x $ls_loops" 1.5 us/dir "$dirs" ls_loop
	read_measure "$side" find "find snapshots/ x $ls_loops" 1.5 us/dir "$dirs" find_loop
	read_measure "$side" cold_cat "cold cat (drop_caches each side)" 1.15 ms/GiB "$snap_bytes" cold_cat
}

# bench_read [floor-only]: the snapfs table (unless floor-only), then the floor table.
bench_read() {
	command -v fusermount3 >/dev/null || { echo "bench.sh: fusermount3 not found" >&2; exit 1; }
	[ -e /dev/fuse ] || { echo "bench.sh: no /dev/fuse" >&2; exit 1; }
	read_setup
	local pid=${mnt_pid[$mnt]}
	if [ "${1:-}" != floor-only ]; then
		quiesce
		echo 5 >"/proc/$pid/clear_refs"
		table_head "read: $runs rounds, median" native snapfs
		read_rows mount
		echo "  (native = the snapshot's backing file in the STORE, snapfs = the same snapshot through"
		echo "   the mount; ratio = snapfs / native; ls and find over $small_snaps snapshot directories,"
		echo "   scale in us per snapshot directory visited; the mount needs the daemon scheduled for"
		echo "   every request, so other load costs it more)"
		echo "  snapfs daemon VmHWM after the read rows: $(vmhwm_mib "$pid") MiB (peak reset before them)"
	fi
	fs_stop "$mnt"
	if [ -x "$floorfs" ]; then
		bench_floor
	else
		echo "  (no floor table: $floorfs is not built)"
	fi
	# The STORE holds two copies of the collection (live database and
	# snapshot): kept only when asked, for a look after the run.
	[ -n "${SNAPFS_BENCH_KEEP:-}" ] || rm -rf "$store"
}

# The floor table: floorfs on STORE/collections, the same rows.
bench_floor() {
	local fmnt=$dir/fmnt
	echo
	echo "floor: mounting $floorfs on $store/collections at $fmnt (read-only view of the same files)"
	fs_start "$fmnt" "$dir/floorfs.log" "$floorfs" "$store/collections" "$fmnt" -f
	declare -gA floor
	local k
	# shellcheck disable=SC2034 # floor is read through namerefs (read_check, read_measure)
	for k in "${!native[@]}"; do floor[$k]=$fmnt/${native[$k]#"$store/collections/"}; done
	read_check floor
	quiesce
	table_head "floor (minimal FUSE fs, page cache)" native floorfs
	read_rows floor
	echo "  (floorfs = bench/floorfs.c, a minimal FUSE filesystem serving the STORE's files with"
	echo "   long timeouts, keep_cache, listings cached by the kernel and spliced reads: the floor"
	echo "   of the FUSE page-cache path on this kernel. ratio = floorfs / native; snapfs/floorfs ="
	echo "   the snapfs table's ratio over this one's, so that load that changed between them cancels)"
	fs_stop "$fmnt"
}

# ---- write path: cp into incoming/ and the merge ----

# DIR/schema-only.db (the delta's schema without _snapfs_ tables) and
# DIR/merge.sql (the upsert of every table of the delta into it), the
# baseline of the merge row.
make_merge_baseline() {
	rm -f "$dir/schema-only.db"
	sqlite3 -readonly "$delta" "SELECT sql || ';' FROM sqlite_schema WHERE sql IS NOT NULL
		AND tbl_name NOT LIKE '\\_snapfs\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
		ORDER BY rowid" | sqlite3 "$dir/schema-only.db"
	python3 - "$delta" >"$dir/merge.sql" <<-'PY'
		import sqlite3, sys
		path = sys.argv[1]
		db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
		q = lambda s: '"%s"' % s.replace('"', '""')
		print("ATTACH '%s' AS d;" % path.replace("'", "''"))
		print("BEGIN;")
		for (t,) in db.execute("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE"
		                       " 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_snapfs\\_%' ESCAPE '\\'"
		                       " ORDER BY rowid"):
		    info = db.execute("PRAGMA table_info(%s)" % q(t)).fetchall()
		    cols = ", ".join(q(c[1]) for c in info)
		    pk = [c[1] for c in sorted(info, key=lambda c: c[5]) if c[5] > 0]
		    rest = [c[1] for c in info if c[5] == 0]
		    target = "(%s) " % ", ".join(q(c) for c in pk) if pk else ""
		    action = ("UPDATE SET " + ", ".join("%s = excluded.%s" % (q(c), q(c)) for c in rest)) if rest else "NOTHING"
		    print("INSERT INTO main.%s (%s) SELECT %s FROM d.%s WHERE true ON CONFLICT %sDO %s;"
		          % (q(t), cols, cols, q(t), target, action))
		print("COMMIT;")
	PY
}

# Row counts of every table of the delta and of database $1 agree.
merge_check() {
	python3 - "$delta" "$1" <<-'PY'
		import sqlite3, sys
		a = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
		b = sqlite3.connect("file:%s?mode=ro" % sys.argv[2], uri=True)
		for (t,) in a.execute("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE"
		                      " 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_snapfs\\_%' ESCAPE '\\'"):
		    q = 'SELECT count(*) FROM "%s"' % t.replace('"', '""')
		    na, nb = a.execute(q).fetchone()[0], b.execute(q).fetchone()[0]
		    if na != nb:
		        sys.exit("table %s: %d rows in the delta, %d after the merge" % (t, na, nb))
	PY
}

# last_batch of collection $2 at mount $1 as "hash check apply seal ms deltas";
# n/a for each missing field.
last_batch() {
	python3 - "$1/$2/status" <<-'PY'
		import json, sys
		b = json.load(open(sys.argv[1])).get("last_batch") or {}
		f = lambda k: ("%.0f" % b[k]) if isinstance(b.get(k), (int, float)) else "n/a"
		print(" ".join(f(k) for k in ("hash_ms", "check_ms", "apply_ms", "seal_ms", "ms", "deltas")))
	PY
}

cp_sync() { cp "$1" "$2" && sync "$2"; }
merge_run() { sqlite3 "$1" <"$dir/merge.sql"; }

bench_write() {
	command -v fusermount3 >/dev/null || { echo "bench.sh: fusermount3 not found" >&2; exit 1; }
	[ -e /dev/fuse ] || { echo "bench.sh: no /dev/fuse" >&2; exit 1; }
	make_delta
	make_merge_baseline
	local wstore=$dir/wstore wmnt=$dir/wmnt
	echo
	echo "write: mounting $bin on $wstore at $wmnt"
	snapfs_start "$wstore" "$wmnt" "batch_delay=$batch_delay_ms"
	local pid=${mnt_pid[$wmnt]} dbytes r coll a b m
	dbytes=$(stat -c %s "$delta")
	echo "  delta: $delta ($dbytes bytes); merge baseline: sqlite3 on a copy of $dir/schema-only.db"
	echo "  running $dir/merge.sql ($(grep -c '^INSERT' "$dir/merge.sql") upserts)"
	local cpb=() cps=() mb=() ms=() rss=() hash check apply seal bms deltas load0 rmdir_note=
	load0=$(load1)
	echo
	echo "  write: $runs rounds (ms)  cp: baseline  snapfs | merge: baseline  snapfs = batch - seal (hash, check, apply overlap) | seal  batch deltas | peak RSS  load"
	for r in $(seq 1 "$runs"); do
		coll=c$r
		# Each round on a fresh STORE, as the baseline's each on fresh files.
		# This VM's disk writes blocks a removed file used before at ~1.2 GB/s
		# and blocks never written at ~0.27 GB/s (a thin-provisioned image:
		# 629 MB took 0.5 s against 2.3 s). Kept across rounds, snapfs's
		# collections pushed each later round onto fresh blocks while the
		# baseline, which removes its copies, kept reusing its own.
		if [ "$r" -gt 1 ]; then
			fs_stop "$wmnt"
			snapfs_start "$wstore" "$wmnt" "batch_delay=$batch_delay_ms"
			pid=${mnt_pid[$wmnt]}
		fi
		mkdir "$wmnt/$coll"
		if [ $((r % 2)) -eq 1 ]; then write_baseline; fi
		# snapfs: cp into the new collection, then wait for its snapshot.
		warm "$delta"
		quiesce
		echo 5 >"/proc/$pid/clear_refs"
		b=$(time_ms cp "$delta" "$wmnt/$coll/incoming/d.db")
		wait_snapshots "$wmnt" "$coll" 1 >/dev/null
		m=$(vmhwm_mib "$pid")
		read -r hash check apply seal bms deltas <<<"$(last_batch "$wmnt" "$coll")"
		if [ "$r" -eq 1 ]; then merge_check "$wmnt/$coll/snapshots/$(ls "$wmnt/$coll/snapshots" | tail -1)/$coll.sqlite3"; fi
		if [ $((r % 2)) -eq 0 ]; then write_baseline; fi
		if isnum "$bms" && isnum "$seal"; then
			ms+=($((bms - seal))) # the batch's wall time but the seal: check and hash run beside the merge
		else
			ms+=(n/a)
		fi
		cps+=("$b"); rss+=("$m")
		printf '  round %d (%s) %17s %7s | %15s %7s = %s - %s (%s | %s + %s) | %5s %6s %6s | %5s MiB  %s\n' "$r" "$coll" \
			"${cpb[-1]}" "$b" "${mb[-1]}" "${ms[-1]}" "$bms" "$seal" "$hash" "$check" "$apply" "$seal" "$bms" "$deltas" "$m" \
			"$(load1)"
		# A collection with a snapshot cannot be removed (rmdir: ENOTEMPTY); it stays until the STORE goes.
		if [ -z "$rmdir_note" ]; then
			if rmdir "$wmnt/$coll" 2>"$dir/rmdir.err"; then rmdir_note="rmdir $coll: removed"
			else rmdir_note="rmdir $coll: refused ($(sed 's/.*: //' "$dir/rmdir.err")); each round starts on a fresh STORE"; fi
			rm -f "$dir/rmdir.err"
		fi
	done
	[ "${ms[0]}" != n/a ] || echo "  (snapfs merge n/a: $wmnt/c1/status has no last_batch with ms and seal_ms)"
	echo "  ($rmdir_note)"
	table_head "write: $runs rounds, median" baseline snapfs
	report_row cp "cp of the delta into incoming/" 1.3 ms/GiB "$dbytes" baseline "${cpb[*]}" snapfs "${cps[*]}" "$load0"
	report_row merge "merge into an empty collection" 1.1 ms/GiB "$dbytes" baseline "${mb[*]}" snapfs "${ms[*]}" "$load0"
	echo "  (cp: snapfs = cp DELTA MNT/cN/incoming/d.db to cp's exit, baseline = cp DELTA scratch &&"
	echo "   sync scratch in $dir; merge: snapfs = last_batch ms - seal_ms of cN (the delta's integrity"
	echo "   check and hash run on a second thread beside its merge, so the wall time is not their sum),"
	echo "   baseline = sqlite3 running $dir/merge.sql on a copy of schema-only.db)"
	local peak
	peak=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)
	echo "  snapfs daemon peak RSS during merge+seal, per round: ${rss[*]} MiB (VmHWM, reset before each cp;"
	echo "   it counts the pages of files the daemon maps as well as its heap)"
	SUMMARY[rss]=$(printf '%-40s %5s   %-14s %-6s (max of rounds: %s MiB)' \
		"peak RSS during merge+seal (MiB)" "$peak" "target <= 64" \
		"$(awk -v p="$peak" 'BEGIN {print (p <= 64) ? "met" : "MISSED"}')" "${rss[*]}")
	fs_stop "$wmnt"
	[ -n "${SNAPFS_BENCH_KEEP:-}" ] || rm -rf "$wstore"
}

# The baselines of one write round; appends to cpb and mb.
write_baseline() {
	rm -f "$dir/scratch.db" "$dir/merge-scratch.db"
	warm "$delta"
	quiesce
	cp "$dir/schema-only.db" "$dir/merge-scratch.db"
	cpb+=("$(time_ms cp_sync "$delta" "$dir/scratch.db")")
	# The merge follows the copy as snapfs's does, batch_delay_ms after it
	# and with no quiesce between, so that both sides find the disk in the
	# state their own copy left it in.
	sleep "$(awk -v ms="$batch_delay_ms" 'BEGIN {print ms / 1000}')"
	mb+=("$(time_ms merge_run "$dir/merge-scratch.db")")
	rm -f "$dir/scratch.db"
	[ "$r" -ne 1 ] || merge_check "$dir/merge-scratch.db"
	rm -f "$dir/merge-scratch.db" "$dir/merge-scratch.db-journal"
}

# ---- main ----

build_bench
make_data
echo "snapfs bench $(git -C "$top" describe --always --dirty 2>/dev/null || echo '?'), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "host: $(nproc) cpus, kernel $(uname -r), $(df -PT "$dir" | awk 'NR == 2 {print $2 " on " $1}') for $dir"
echo "snapfs: $bin; collection: $db, $(stat -c %s "$db") bytes; -s $size_mb -r $runs -n $nsnaps"
load=$(load1)
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
if awk -v l="$load" 'BEGIN {exit !(l > 0.5)}'; then
	echo "warning: the machine is busy; seal uses both cores at once and the baseline one,"
	echo "         and the mount needs its daemon scheduled, so other load inflates snapfs more"
fi
for p in "${parts[@]}"; do
	l0=$(load1)
	case $p in
	seal) bench_seal ;;
	read) bench_read ;;
	floor) bench_read floor-only ;;
	write) bench_write ;;
	esac
	echo "  [$p: load average $l0 before, $(load1) after]"
done
echo
echo "summary (median of $runs; ratio = snapfs / baseline):"
for k in "${row_order[@]}" rss; do
	[ -z "${SUMMARY[$k]:-}" ] || echo "  ${SUMMARY[$k]}"
done
[ ${#SUMMARY_EXTRA[@]} -eq 0 ] || printf '  %s\n' "${SUMMARY_EXTRA[@]}"
