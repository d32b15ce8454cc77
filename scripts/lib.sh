# Shared by scripts/run and scripts/test: installing what is missing, building,
# and starting Postgres and Redis. Source it; do not run it.

TOLLGATE_PACKAGES=(build-essential cmake pkg-config libcpp-httplib-dev libssl-dev nlohmann-json3-dev
  libhiredis-dev libpqxx-dev libgtest-dev libjemalloc-dev libhowardhinnant-date-dev postgresql redis-server tzdata curl ca-certificates openssl
  clang libclang-rt-14-dev)

log() { printf '\033[1m[tollgate]\033[0m %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Installs the Debian packages given (default: the build and service set) that are
# not installed yet. apt-get update runs once, and only when something is missing.
install_missing() {
  local wanted=("$@") missing=()
  [ ${#wanted[@]} -eq 0 ] && wanted=("${TOLLGATE_PACKAGES[@]}")
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    if [ -z "${TOLLGATE_APT_UPDATED:-}" ]; then
      as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
      export TOLLGATE_APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
      >/dev/null || die "apt-get install failed"
  fi
}

build_tollgate() {
  local dir=${1:-build} type=${2:-RelWithDebInfo}
  shift 2 2>/dev/null || true
  configure_tollgate "$dir" "$type" "$@"
  cmake --build "$TOP/$dir" -j"$(nproc)" || die "build failed"
}

# configure_tollgate DIR TYPE [CMAKE ARGS...]
configure_tollgate() {
  local dir=$1 type=$2
  shift 2
  cmake -S "$TOP" -B "$TOP/$dir" -DCMAKE_BUILD_TYPE="$type" "$@" >/dev/null || die "cmake configure failed"
}

# The sanitizer builds: only the libraries, the binaries and the test files named
# (TOLLGATE_TESTS), at -O1 with line tables only, which halves their build time.
# build_sanitized DIR ASAN|TSAN TEST_FILE...
build_sanitized() {
  local dir=$1 kind=$2
  shift 2
  local tests
  tests=$(IFS=';'; echo "$*")
  local opt=-DTOLLGATE_SANITIZE=ON
  [ "$kind" = TSAN ] && opt=-DTOLLGATE_TSAN=ON
  configure_tollgate "$dir" Sanitized "$opt" "-DTOLLGATE_TESTS=$tests" \
    -DCMAKE_CXX_FLAGS_SANITIZED="-O1 -g1"
  cmake --build "$TOP/$dir" -j"$(nproc)" || die "$kind build failed"
}

# The libFuzzer targets of tests/fuzz, with clang, in build-fuzz/.
build_fuzz_targets() {
  CC=clang configure_tollgate build-fuzz RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ -DTOLLGATE_FUZZ=ON \
    -DTOLLGATE_TESTS=none
  cmake --build "$TOP/build-fuzz" -j"$(nproc)" --target fuzz_targets || die "fuzz build failed"
}

fuzz_target_names() {
  local f
  for f in "$TOP"/tests/fuzz/fuzz_*.cc; do f=${f##*/}; echo "${f%.cc}"; done
}

# run_fuzz_target NAME SECONDS: one process, nice'd, from the seeds in tests/fuzz/corpus/
# and what earlier runs kept in build-fuzz/corpus/. A finding is written to
# build-fuzz/findings/NAME/ and fails the run.
run_fuzz_target() {
  local name=$1 seconds=$2 short=${1#fuzz_}
  local corpus=$TOP/build-fuzz/corpus/$short findings=$TOP/build-fuzz/findings/$short
  mkdir -p "$corpus" "$findings"
  # TOLLGATE_FUZZ_SEED: the same mutations each run (scripts/test's short runs), not a
  # new random walk that may fail one CI run and not the next.
  nice -n 10 "$TOP/build-fuzz/tests/fuzz/$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    ${TOLLGATE_FUZZ_SEED:+-seed="$TOLLGATE_FUZZ_SEED"} \
    -print_final_stats=1 -artifact_prefix="$findings/" "$corpus" "$TOP/tests/fuzz/corpus/$short" \
    >"$TOP/build-fuzz/$name.log" 2>&1
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

port_free() { ! (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p=$1
  while ! port_free "$p"; do p=$((p + 1)); done
  echo "$p"
}

# start_postgres DATADIR PORT: initialises DATADIR if empty and starts Postgres as
# the postgres user (it refuses to run as root), listening on 127.0.0.1:PORT.
start_postgres() {
  local data=$1 port=$2 bin
  bin=$(pg_bin)
  [ -n "$bin" ] || die "postgres binaries not found"
  mkdir -p "$data"
  if [ "$(id -u)" -eq 0 ]; then chown -R postgres:postgres "$data"; fi
  local run=(bash -c)
  [ "$(id -u)" -eq 0 ] && run=(su postgres -s /bin/bash -c)
  if [ ! -f "$data/PG_VERSION" ]; then
    "${run[@]}" "'$bin/initdb' -D '$data' -A trust -U postgres -E UTF8 >/dev/null" || die "initdb failed"
  fi
  "${run[@]}" "'$bin/pg_ctl' -D '$data' -l '$data/server.log' -w -t 60 \
    -o \"-p $port -k '$data' -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=${PG_FSYNC:-on}\" start \
    >/dev/null" || { cat "$data/server.log" >&2; die "postgres did not start"; }
}

stop_postgres() {
  local data=$1 bin
  bin=$(pg_bin)
  [ -f "$data/postmaster.pid" ] || return 0
  local run=(bash -c)
  [ "$(id -u)" -eq 0 ] && run=(su postgres -s /bin/bash -c)
  "${run[@]}" "'$bin/pg_ctl' -D '$data' -m fast -w stop >/dev/null" || true
}

psql_as() { # psql_as PORT DB SQL...
  local port=$1 db=$2
  shift 2
  psql -h 127.0.0.1 -p "$port" -U postgres -d "$db" -v ON_ERROR_STOP=1 -qAt "$@"
}

# start_redis DIR PORT
start_redis() {
  local dir=$1 port=$2
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$dir" --pidfile "$dir/redis.pid" \
    --logfile "$dir/redis.log" --save "${REDIS_SAVE:-}" --appendonly "${REDIS_AOF:-no}" >/dev/null ||
    die "redis did not start"
  for _ in $(seq 1 100); do
    redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.1
  done
  die "redis did not answer on port $port"
}

stop_redis() {
  local port=$1
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
}
