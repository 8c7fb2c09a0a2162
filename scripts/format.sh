#!/usr/bin/env bash
# Checks or applies the C formatting of .clang-format (clang-format 14:
# other versions format some constructs differently).
#
#   scripts/format.sh --check [FILE...]   list the files that would change;
#                                         exit 1 if any would
#   scripts/format.sh --fix [FILE...]     rewrite them in place
#
# Without FILEs: every C file git knows (src/, include/, tests/, bench/).
# CLANG_FORMAT names the binary (default clang-format-14, else clang-format).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=
case "${1:-}" in
--check | --fix) mode=$1; shift ;;
-h | --help)
	sed -n '2,11s/^# \{0,1\}//p' "$0"
	exit 0
	;;
*)
	echo "format.sh: say --check or --fix (try --help)" >&2
	exit 2
	;;
esac

cf=${CLANG_FORMAT:-}
if [ -z "$cf" ] && ! command -v clang-format-14 >/dev/null 2>&1; then
	scripts/deps.sh --format
fi
if [ -z "$cf" ]; then
	cf=$(command -v clang-format-14 || command -v clang-format || true)
fi
if [ -z "$cf" ]; then
	echo "format.sh: clang-format not found (apt-get install clang-format-14)" >&2
	exit 2
fi
version=$("$cf" --version | sed -n 's/.*clang-format version \([0-9]*\).*/\1/p')
if [ "$version" != 14 ]; then
	echo "format.sh: $cf is version ${version:-unknown}; .clang-format is checked with 14" >&2
fi

if [ $# -gt 0 ]; then
	files=("$@")
else
	mapfile -t files < <(git ls-files -- '*.c' '*.h')
fi

if [ "$mode" = --fix ]; then
	"$cf" -i --style=file "${files[@]}"
	exit 0
fi
bad=()
for f in "${files[@]}"; do
	if ! "$cf" --dry-run --Werror --style=file "$f" >/dev/null 2>&1; then
		bad+=("$f")
	fi
done
if [ ${#bad[@]} -gt 0 ]; then
	printf '%s\n' "${bad[@]}"
	echo "format.sh: ${#bad[@]} of ${#files[@]} files are not formatted (scripts/format.sh --fix)" >&2
	exit 1
fi
echo "format.sh: ${#files[@]} files formatted"
