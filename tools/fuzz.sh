#!/bin/sh
# Builds the decoder's libFuzzer target with ASan+UBSan and runs it for
# FUZZ_SECONDS (default 30) from a seed corpus of real messages.
set -e
secs=${FUZZ_SECONDS:-30}
out=build/fuzz
mkdir -p "$out/corpus"
srcs=$(ls csrc/*.c csrc/core/*.c)
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -Icsrc $(pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4) \
  $(pkg-config --cflags libcurl 2>/dev/null) \
  -o "$out/fuzz_decode" tools/fuzz_decode.c $srcs \
  /usr/lib/x86_64-linux-gnu/liblua5.4.a -lcurl -lgmp -ldl -lm -pthread
CONCUR_NO_BUILD=1 ./lua tools/fuzz_seeds.lua "$out/corpus"
status=0
ASAN_OPTIONS=detect_leaks=1 "$out/fuzz_decode" -max_total_time="$secs" \
  -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$out/" "$out/corpus" > "$out/fuzz.log" 2>&1 || status=$?
grep -E "^Done|stat::(number_of_executed_units|new_units_added)|ERROR|SUMMARY" "$out/fuzz.log" || true
if [ "$status" != 0 ]; then
  tail -40 "$out/fuzz.log"
  echo "fuzz: the decoder failed (see $out/)"
  exit 1
fi
echo "fuzz: decoder clean"
