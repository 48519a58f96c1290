# scripts/bench-common.sh: sourced by the scripts/bench-* wrappers, not run on its own. It builds
# the workspace in release mode (niced, into $CARGO_TARGET_DIR or target/), loads the test
# environment's addresses from `scripts/test-env env` when a bench needs the servers, and runs a
# hush-bench binary pinned to CPU 0 (the program under test is pinned to CPU 1 by the binary).
# See docs/benchmarks.md.
# shellcheck shell=bash

bench_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$bench_root/target}"
bench_bin="$CARGO_TARGET_DIR/release"

# bench_build: the release build of the whole workspace (the benches run the release binaries).
bench_build() {
  if [ "${BENCH_SKIP_BUILD:-0}" = 1 ]; then
    echo "==> BENCH_SKIP_BUILD=1: using the binaries in $bench_bin" >&2
    return 0
  fi
  echo "==> release build (nice cargo build --workspace --release)" >&2
  (cd "$bench_root" && nice -n 10 cargo build --workspace --release --locked >&2)
}

# bench_servers: exports the running test servers' addresses, or stops with how to start them.
bench_servers() {
  local out
  if ! out=$("$bench_root/scripts/test-env" env 2>&1); then
    echo "the test servers are not running: start them with scripts/test-env up" >&2
    echo "$out" >&2
    exit 1
  fi
  set -a
  eval "$out"
  set +a
}

# bench_run NAME ARGS...: runs the hush-bench binary NAME on CPU 0 from the repository root.
bench_run() {
  local name=$1
  shift
  command -v taskset >/dev/null || { echo "taskset is missing (Debian: util-linux)" >&2; exit 1; }
  [ "$(nproc)" -ge 2 ] || echo "==> warning: fewer than 2 CPUs; client and server share one" >&2
  cd "$bench_root"
  taskset -c 0 "$bench_bin/$name" "$@"
}
