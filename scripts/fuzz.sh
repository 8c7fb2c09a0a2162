#!/usr/bin/env bash
# Runs the libFuzzer targets of tests/fuzz/ (clang, ASan + UBSan), one
# after the other, each for a bounded time, and fails on any finding.
#
#   scripts/fuzz.sh [--seconds N] [--fresh] [--strict] [--merge] [TARGET...]
#
#   --seconds N  run each target N seconds (default 60); the long run is
#                scripts/fuzz.sh --seconds 600
#   --fresh      forget the corpus earlier runs grew in build-fuzz/ and
#                start again from the seeds in the repo
#   --strict     known open findings (tests/fuzz/open/) count too
#   --merge      afterwards, add to tests/fuzz/corpus/TARGET/ the inputs
#                of this run that reach code the seeds do not
#   TARGET       delta manifest lease s3xml sigv4 parse s3cred (default: all)
#
# Builds in build-fuzz/ (SNAPFS_FUZZ_BUILD_DIR overrides). Each target
# starts from its seeds (tests/fuzz/corpus/TARGET/), its regression
# inputs (tests/fuzz/regressions/TARGET/), its open findings
# (tests/fuzz/open/TARGET/) and what earlier runs added in
# build-fuzz/corpus/TARGET/. A crash, leak, timeout, out-of-memory or
# broken invariant is copied into tests/fuzz/regressions/TARGET/, named
# on stderr, and makes the exit status 1; the other targets still run.
# The last lines are one line of figures per target.
set -euo pipefail
cd "$(dirname "$0")/.."

ALL=(delta manifest lease s3xml sigv4 parse s3cred)
seconds=60
fresh=0
strict=0
merge=0
targets=()
while [ $# -gt 0 ]; do
	case "$1" in
	--seconds)
		[ $# -ge 2 ] || { echo "fuzz.sh: --seconds needs a number" >&2; exit 2; }
		seconds=$2
		shift 2
		continue
		;;
	--seconds=*) seconds=${1#--seconds=} ;;
	--fresh) fresh=1 ;;
	--strict) strict=1 ;;
	--merge) merge=1 ;;
	-h | --help)
		sed -n '2,24s/^# \{0,1\}//p' "$0"
		exit 0
		;;
	-*)
		echo "fuzz.sh: unknown option '$1' (try --help)" >&2
		exit 2
		;;
	*)
		if [[ " ${ALL[*]} " != *" $1 "* ]]; then
			echo "fuzz.sh: unknown target '$1' (targets: ${ALL[*]})" >&2
			exit 2
		fi
		targets+=("$1")
		;;
	esac
	shift
done
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
	echo "fuzz.sh: --seconds wants a whole number of seconds, not '$seconds'" >&2
	exit 2
fi
[ ${#targets[@]} -gt 0 ] || targets=("${ALL[@]}")

# Per target: the largest input worth trying, and how long one input may take.
max_len() {
	case "$1" in
	delta) echo 16384 ;;
	s3xml) echo 8192 ;;
	parse) echo 64 ;;
	*) echo 4096 ;;
	esac
}
timeout_s() {
	case "$1" in
	delta) echo 30 ;;
	*) echo 10 ;;
	esac
}
# delta's seeds include whole database images: mutate at full length from the start.
extra_opts() {
	case "$1" in
	delta) echo -len_control=0 ;;
	esac
}

scripts/deps.sh --fuzz

builddir=${SNAPFS_FUZZ_BUILD_DIR:-build-fuzz}
cc=clang-14
command -v "$cc" >/dev/null 2>&1 || cc=clang
if [ ! -f "$builddir/build.ninja" ]; then
	CC=$cc meson setup "$builddir" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false
else
	meson configure "$builddir" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false
fi
ninja -C "$builddir" $(printf "tests/fuzz/fuzz_%s " "${targets[@]}")

# llvm-symbolizer gives file:line in stack traces.
for s in llvm-symbolizer-14 /usr/lib/llvm-14/bin/llvm-symbolizer llvm-symbolizer; do
	if command -v "$s" >/dev/null 2>&1; then
		export ASAN_SYMBOLIZER_PATH=$(command -v "$s")
		break
	fi
done
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:check_initialization_order=1:strict_init_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
if [ "$strict" = 1 ]; then
	export SNAPFS_FUZZ_STRICT=1
else
	unset SNAPFS_FUZZ_STRICT
fi

status=0
summary=()
for t in "${targets[@]}"; do
	work=$builddir/corpus/$t
	art=$builddir/artifacts/$t
	log=$builddir/logs/$t.log
	[ "$fresh" = 1 ] && rm -rf "$work"
	mkdir -p "$work" "$art" "$(dirname "$log")" "tests/fuzz/regressions/$t"
	rm -f "$art"/*
	dirs=("$work" "tests/fuzz/corpus/$t" "tests/fuzz/regressions/$t")
	[ -d "tests/fuzz/open/$t" ] && dirs+=("tests/fuzz/open/$t")
	opts=(-max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout="$(timeout_s "$t")"
		-rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$art/")
	[ -f "tests/fuzz/$t.dict" ] && opts+=(-dict="tests/fuzz/$t.dict")
	opts+=($(extra_opts "$t"))
	echo "fuzz.sh: $t for ${seconds}s: $builddir/tests/fuzz/fuzz_$t ${opts[*]} ${dirs[*]}" >&2
	start=$(date +%s)
	rc=0
	"$builddir/tests/fuzz/fuzz_$t" "${opts[@]}" "${dirs[@]}" >"$log" 2>&1 || rc=$?
	took=$(($(date +%s) - start))

	# Figures: the last status line (cov, ft, corpus) and the final stats.
	last=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -n 1 || true)
	cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
	ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
	corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$last")
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
	[ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$last")

	findings=()
	for a in "$art"/crash-* "$art"/leak-* "$art"/timeout-* "$art"/oom-*; do
		[ -e "$a" ] || continue
		dest=tests/fuzz/regressions/$t/$(basename "$a")
		cp "$a" "$dest"
		findings+=("$dest")
	done
	if [ "$rc" -ne 0 ] || [ ${#findings[@]} -gt 0 ]; then
		status=1
		result="FINDING"
		echo "fuzz.sh: $t: FINDING (libFuzzer exit $rc); log $log" >&2
		for f in "${findings[@]}"; do
			echo "fuzz.sh: $t: input saved as $f (replay: $builddir/tests/fuzz/fuzz_$t $f)" >&2
		done
		[ ${#findings[@]} -gt 0 ] || echo "fuzz.sh: $t: no input was saved; see the log" >&2
		grep -E -m 3 'invariant failed|open finding|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error' "$log" | sed "s/^/fuzz.sh: $t:   /" >&2 || true
	else
		result="ok"
	fi
	if [ "$merge" = 1 ] && [ "$result" = ok ]; then
		"$builddir/tests/fuzz/fuzz_$t" -merge=1 -max_len="$(max_len "$t")" "tests/fuzz/corpus/$t" "$work" \
			>>"$log" 2>&1 || echo "fuzz.sh: $t: merging into tests/fuzz/corpus/$t failed; see $log" >&2
	fi
	summary+=("$(printf '%-9s %5ss  execs %-10s exec/s %-7s cov %-5s ft %-6s corpus %-12s %s' \
		"$t" "$took" "${execs:-?}" "${speed:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result")")
done

printf '%s\n' "${summary[@]}"
exit "$status"
