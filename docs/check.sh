#!/usr/bin/env bash
# check.sh - the documentation checks CI runs (.ci/run), for a build
# folder that `make run` or `make test` has built:
#   1. `make docs`: man pages and the HTML manual, from the headers
#   2. every symbol the shared libraries export has a man page
#   3. every man page is clean under `mandoc -Tlint` (style included)
#      and `groff -ww -z -man` (what `man -l` runs, all warnings on), and
#      `cmake --install` puts them all under share/man
#   4. headless Chromium loads every HTML page: no broken link or anchor,
#      no console message, no outside request; a screenshot of the index
#      goes to docs/screenshot-index.png
# Needs: python3, mandoc, groff, man-db, chromium (Debian packages).
#   docs/check.sh [BUILD_DIR]     (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}

make docs BUILD="$build"

# libcfutures_mpi is there when the build found MPI (CI requires it).
libs="$build/libcfutures.so"
[ -e "$build/src/mpi/libcfutures_mpi.so" ] &&
    libs="$libs $build/src/mpi/libcfutures_mpi.so"
for lib in $libs; do
    nm -D --defined-only "$lib" | awk '$3 ~ /^cf_[a-z]/ { print $3 }'
done >"$build/exported-symbols.txt"
python3 docs/tools/cfdoc.py check --exported "$build/exported-symbols.txt"

bad=0
pages=0
for page in "$build"/man/man3/*.3 "$build"/man/man7/*.7; do
    pages=$((pages + 1))
    out=$({ mandoc -Tlint "$page" || true
            groff -ww -z -man "$page"; } 2>&1)
    if [ -n "$out" ]; then
        printf '%s\n' "$out"
        bad=$((bad + 1))
    fi
done
if [ "$bad" -ne 0 ]; then
    echo "check.sh: $bad of $pages man pages have warnings" >&2
    exit 1
fi
echo "check.sh: $pages man pages clean (mandoc -Tlint, groff -ww)"

# `cmake --install` puts them where man looks, links included.
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
installed=$(find "$prefix/share/man" -name '*.[37]' | wc -l)
if [ "$installed" -ne "$pages" ]; then
    echo "check.sh: $installed man pages installed, $pages built" >&2
    exit 1
fi
MANPATH="$prefix/share/man" man -w cf_executor_submit cf_future_done \
    cfutures >/dev/null
echo "check.sh: cmake --install puts all $pages pages into share/man"

python3 docs/tools/check_html.py docs/html
