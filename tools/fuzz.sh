#!/bin/sh
# Builds concur's libFuzzer targets with ASan+UBSan and runs each for
# FUZZ_SECONDS (default 30) from a seed corpus:
#   decode   the value codec's decoder (tools/fuzz_decode.c), on real messages
#   robots   the robots.txt parser and matcher (tools/fuzz_robots.c)
#   cluster  the cluster's signed frames: verification and the re-keying
#            walk over a verified payload (tools/fuzz_cluster.c)
#   url      URL joining and normalising (tools/fuzz_url.c)
#   html     the HTML binding on libxml2 (tools/fuzz_html.c)
#   journal  the crawl journal's replay (tools/fuzz_journal.c)
# FUZZ_TARGETS="robots" runs only those named.
set -e
secs=${FUZZ_SECONDS:-30}
targets=${FUZZ_TARGETS:-"decode robots cluster url html journal"}
out=build/fuzz
mkdir -p "$out"
CFLAGS="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Icsrc"
LUAINC=$(pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)
CURLINC=$(pkg-config --cflags libcurl 2>/dev/null)
XMLINC=$(pkg-config --cflags libxml-2.0 2>/dev/null || echo -I/usr/include/libxml2)
XMLLIB=$(pkg-config --libs libxml-2.0 2>/dev/null || echo -lxml2)
CLUSTERLIBS=$(pkg-config --libs hiredis libcrypto 2>/dev/null || echo -lhiredis -lcrypto)

build() {   # name: the target's source and what it links
  case "$1" in
    decode|html)   # through the whole module, on a Lua state
      clang $CFLAGS $LUAINC $CURLINC $XMLINC -o "$out/fuzz_$1" tools/fuzz_$1.c \
        $(ls csrc/*.c csrc/core/*.c) /usr/lib/x86_64-linux-gnu/liblua5.4.a \
        -lcurl -lgmp -ldl -lm -pthread $CLUSTERLIBS $XMLLIB ;;
    robots)
      clang $CFLAGS -o "$out/fuzz_robots" tools/fuzz_robots.c csrc/core/fetch_robots.c ;;
    cluster)
      clang $CFLAGS -o "$out/fuzz_cluster" tools/fuzz_cluster.c csrc/core/clusterframe.c \
        csrc/core/wire.c $(pkg-config --libs libcrypto 2>/dev/null || echo -lcrypto) ;;
    journal)
      clang $CFLAGS -o "$out/fuzz_journal" tools/fuzz_journal.c csrc/core/crawl_frontier.c \
        csrc/core/crawl_journal.c csrc/core/crawl_seen.c csrc/core/wire.c ;;
    url)
      clang $CFLAGS $CURLINC -o "$out/fuzz_url" tools/fuzz_url.c csrc/core/fetch_url.c \
        csrc/core/fetch_request.c csrc/core/future.c csrc/core/wire.c csrc/core/wait.c csrc/core/sys.c \
        -lcurl -lm -pthread ;;
  esac
}

seed() {   # name: its seed corpus in $out/corpus-<name>
  dir="$out/corpus-$1"
  mkdir -p "$dir"
  case "$1" in
    decode) CONCUR_NO_BUILD=1 bin/lua tools/fuzz_seeds.lua "$dir" ;;
    robots)
      printf 'User-agent: *\nDisallow: /private\nAllow: /private/ok\nCrawl-delay: 2\n' > "$dir/seed01"
      printf 'User-agent: concur\nUser-agent: other\nDisallow: /*.pdf$\n\nUser-agent: *\nDisallow: /\n\0/a.pdf' > "$dir/seed02"
      printf '# comment\r\nSitemap: /s.xml\r\nuser-agent:*\r\ndisallow: /a*b*c$ # x\r\n\0/aXbYc' > "$dir/seed03" ;;
    cluster)   # real messages as payloads (odd first byte) and as frames
      mkdir -p "$out/corpus-decode"
      CONCUR_NO_BUILD=1 bin/lua tools/fuzz_seeds.lua "$out/corpus-decode"
      for f in "$out"/corpus-decode/seed*; do
        printf '\001' | cat - "$f" > "$dir/p-$(basename "$f")"
        printf '\000cf\001T' | cat - "$f" > "$dir/f-$(basename "$f")"
      done ;;
    html)
      printf '<!doctype html><html><head><title>T</title><base href="/b/"><meta name=robots content="noindex,nofollow"></head><body><p class="a b">x<b>y</b></p><a href="../c?d=1#e" rel=nofollow>c</a><area href=mailto:x alt=m><script>s</script></body></html>' > "$dir/seed01"
      printf '<table><tr><td>1<td>2<a href=//h2/x>t</a></table><div><div><a href="  sp ace ">' > "$dir/seed02"
      printf '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><p>&e;&amp;&#65;&#x42;</p>' > "$dir/seed03" ;;
    journal)   # 1, then records [type][len][payload]: Q (depth, hops, URL), D, S, C
      printf '\001Q\022\001\000\000\000\000\000\000\000http://h/1D\010abcdefghC\003abcS\020ABCDEFGHIJKLMNOP' > "$dir/seed01"
      printf '\000garbage that is no journal' > "$dir/seed02" ;;
    url)
      printf 'http://a/b/c/d;p?q\0../../g?y#s' > "$dir/seed01"
      printf 'HTTP://User:pw@Host:80/%%7e/./a/../b%%2e%%2E/c\0 //other:8080/x y\t#f' > "$dir/seed02"
      printf 'https://[::1]:443/a?b=%%41#c\0%%2E%%2E/%%c3%%a9?q' > "$dir/seed03" ;;
  esac
}

status=0
for t in $targets; do
  build "$t"
  seed "$t"
  rc=0
  ASAN_OPTIONS=detect_leaks=1 "$out/fuzz_$t" -max_total_time="$secs" \
    -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$out/$t-" "$out/corpus-$t" > "$out/fuzz_$t.log" 2>&1 || rc=$?
  echo "fuzz $t:"
  grep -E "^Done|stat::(number_of_executed_units|new_units_added)|ERROR|SUMMARY" "$out/fuzz_$t.log" || true
  if [ "$rc" != 0 ]; then
    tail -40 "$out/fuzz_$t.log"
    echo "fuzz: $t failed (see $out/)"
    status=1
  fi
done
[ "$status" = 0 ] && echo "fuzz: $targets clean"
exit $status
