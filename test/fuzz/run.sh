#!/usr/bin/env bash
# Fuzzes the addon's decoders of peer bytes under AddressSanitizer and
# UndefinedBehaviorSanitizer with libFuzzer (clang): page frames without and
# with a baseline, LZ4 frames, zstd frames without and with a dictionary, the
# peer's RDMA queue pair description, and the checksum kernels. The harnesses
# compile native/codec_core.cc, native/pages_core.cc, native/checksum.cc and
# native/rdma_peer.h as the addon does, without N-API.
#
#   test/fuzz/run.sh [SECONDS | -runs=N] [HARNESS...]
#
# SECONDS per harness (default 20), or N inputs per harness; all harnesses, or
# those named. One harness at a time, under nice (the machine is shared).
# Seeds are generated from valid frames by gen_seeds.cc (under build/fuzz/seeds);
# the corpus grows under build/fuzz/corpus; inputs kept in test/fuzz/regressions/
# <harness>/ are replayed first. Exits 1 on any finding (crash, sanitizer report,
# leak, timeout, out-of-memory), which libFuzzer writes to build/fuzz/findings/.
# Each harness's executions go to build/fuzz/summary.txt.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/test/fuzz
OUT=${DWCP_FUZZ_OUT:-$ROOT/build/fuzz}
ALL=(pages pages_base lz4 zstd zstd_dict rdma_peer checksum)

budget=-max_total_time=20
if [[ $# -gt 0 && $1 =~ ^-runs=[0-9]+$ ]]; then
  budget=$1
  shift
elif [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
  budget=-max_total_time=$1
  shift
fi
harnesses=("$@")
[[ ${#harnesses[@]} -gt 0 ]] || harnesses=("${ALL[@]}")
for h in "${harnesses[@]}"; do
  [[ " ${ALL[*]} " == *" $h "* ]] || { echo "fuzz: unknown harness '$h' (one of: ${ALL[*]})" >&2; exit 2; }
done

CXX=${FUZZ_CXX:-$(command -v clang++-14 || command -v clang++ || true)}
[[ -n $CXX ]] || { echo "fuzz: needs clang++ with libFuzzer (Debian: clang, libclang-rt-14-dev)" >&2; exit 2; }
for h in /usr/include/lz4frame.h /usr/include/zstd.h /usr/include/zdict.h /usr/include/xxhash.h; do
  [[ -f $h ]] || { echo "fuzz: needs $h (Debian: liblz4-dev libzstd-dev libxxhash-dev)" >&2; exit 2; }
done

# --- build (again only when a source changed) ------------------------------------
SAN=(-fsanitize=address,undefined -fno-sanitize-recover=all)
STRICT=(-fsanitize=unsigned-integer-overflow,implicit-integer-truncation)
CXXFLAGS=(-std=c++17 -g -O1 -fno-omit-frame-pointer -Wall -Wextra -Werror -DDWCP_HAVE_CODECS -I"$ROOT/native" -I"$HERE")
[[ $(uname -m) == x86_64 ]] && CXXFLAGS+=(-DDWCP_HAVE_AVX2)
LIBS=(-llz4 -lzstd)
mkdir -p "$OUT/obj"
stamp=$OUT/.built
if [[ ! -f $stamp ]] || [[ -n $(find "$ROOT/native" "$HERE" -newer "$stamp" -name '*.[ch]*' -print -quit) ]]; then
  echo "fuzz: building with $CXX"
  objs=()
  for src in codec_core pages_core checksum xxh3_sse2 xxh3_avx2; do
    extra=()
    [[ $src == xxh3_avx2 ]] && extra=(-mavx2)
    # The decoders also trap on any unsigned wrap or narrowing that loses bits:
    # their arithmetic on peer-supplied counts is meant never to wrap. (Not the
    # hash kernels, whose arithmetic wraps by design.)
    [[ $src == codec_core || $src == pages_core ]] && extra=("${STRICT[@]}")
    [[ $src == xxh3_avx2 && $(uname -m) != x86_64 ]] && continue
    "$CXX" "${CXXFLAGS[@]}" "${SAN[@]}" -fsanitize=fuzzer-no-link "${extra[@]}" -c "$ROOT/native/$src.cc" -o "$OUT/obj/$src.o"
    objs+=("$OUT/obj/$src.o")
  done
  build() { # name source defines...
    local name=$1 src=$2
    shift 2
    "$CXX" "${CXXFLAGS[@]}" "${SAN[@]}" -fsanitize=fuzzer "$@" "$HERE/$src" "${objs[@]}" "${LIBS[@]}" -o "$OUT/fuzz_$name"
  }
  build pages fuzz_pages.cc
  build pages_base fuzz_pages.cc -DFUZZ_BASELINE=1
  build lz4 fuzz_lz4.cc
  build zstd fuzz_zstd.cc
  build zstd_dict fuzz_zstd.cc -DFUZZ_DICT=1
  build rdma_peer fuzz_rdma_peer.cc "${STRICT[@]}"
  build checksum fuzz_checksum.cc
  "$CXX" "${CXXFLAGS[@]}" "${SAN[@]}" -fsanitize=fuzzer-no-link "$HERE/gen_seeds.cc" "${objs[@]}" "${LIBS[@]}" -o "$OUT/gen_seeds"
  rm -rf "$OUT/seeds"
  mkdir -p "$OUT/seeds"
  "$OUT/gen_seeds" "$OUT/seeds"
  touch "$stamp"
fi

# --- run ----------------------------------------------------------------------------
maxlen() {
  case $1 in
    pages | pages_base) echo 40000 ;;
    lz4 | zstd | zstd_dict) echo 24000 ;;
    rdma_peer) echo 128 ;;
    checksum) echo 8192 ;;
  esac
}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=0
summary=$OUT/summary.txt
printf '# %s  budget %s\n' "$(date -u +%FT%TZ)" "$budget" >>"$summary"
for h in "${harnesses[@]}"; do
  bin=$OUT/fuzz_$h
  mkdir -p "$OUT/corpus/$h" "$OUT/findings/$h" "$OUT/seeds/$h"
  log=$OUT/$h.log
  # Regression inputs: each once, before fuzzing.
  regs=()
  [[ -d $HERE/regressions/$h ]] && mapfile -t regs < <(find "$HERE/regressions/$h" -type f | sort)
  if [[ ${#regs[@]} -gt 0 ]] && ! "$bin" "${regs[@]}" >"$log.regressions" 2>&1; then
    echo "fuzz: $h: a regression input fails again (see $log.regressions)" >&2
    failed=1
    continue
  fi
  start=$(date +%s)
  set +e
  nice -n 10 "$bin" "$budget" -max_len="$(maxlen "$h")" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$OUT/findings/$h/" "$OUT/corpus/$h" "$OUT/seeds/$h" >"$log" 2>&1
  rc=$?
  set -e
  secs=$(($(date +%s) - start))
  execs=$(awk '/stat::number_of_executed_units:/ {print $2}' "$log" | tail -1)
  findings=$(find "$OUT/findings/$h" -type f | wc -l)
  line=$(printf '%-10s %12s inputs  %5ss  exit %s  findings %s  corpus %s' "$h" "${execs:-?}" "$secs" "$rc" "$findings" \
    "$(find "$OUT/corpus/$h" -type f | wc -l)")
  echo "fuzz: $line"
  echo "$line" >>"$summary"
  if [[ $rc -ne 0 || $findings -ne 0 || -z $execs ]]; then
    echo "fuzz: $h FAILED; the end of its log ($log):" >&2
    tail -40 "$log" >&2
    failed=1
  fi
done
exit $failed
