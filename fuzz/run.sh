#!/bin/sh
# run.sh - build and run the wire/codec fuzzer (see fuzz/README.md).
#
#   fuzz/run.sh [seconds]     libFuzzer with ASan+UBSan for `seconds`
#                             (default 45: a CI-sized run), clang needed
#   fuzz/run.sh --replay      replay the seed corpus with any compiler
#                             ($CC, default cc) under ASan+UBSan
#
# The working corpus and crash files go to $CF_FUZZ_DIR (default
# build-rel-fuzz/ in the repository); the seeds in fuzz/corpus stay small.
# Exits nonzero if the fuzzer finds a crash, a leak or a failed check.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
out=${CF_FUZZ_DIR:-$root/build-rel-fuzz}
mkdir -p "$out/corpus"
flags="-g -O1 -std=c11 -D_GNU_SOURCE -I$root/include -I$root/src"
srcs="$here/fuzz_wire.c $root/src/processes/wire.c $root/src/processes/codec.c"

if [ "${1:-}" = "--replay" ]; then
    ${CC:-cc} $flags -DCF_FUZZ_STANDALONE -fsanitize=address,undefined \
        -fno-sanitize-recover=all $srcs -o "$out/fuzz_wire_replay"
    exec "$out/fuzz_wire_replay" "$here"/corpus/*
fi

secs=${1:-45}
${CC:-clang} $flags -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=all $srcs -o "$out/fuzz_wire"
exec "$out/fuzz_wire" -max_total_time="$secs" -max_len=4096 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$out/" "$out/corpus" "$here/corpus"
