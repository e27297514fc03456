#!/usr/bin/env bash
# The tl-synth-v1 benchmark on PostgreSQL 15: the same workload, the same
# questions (Q1-Q4, Q1 for the hottest entity) and durable appends, measured
# with pgbench over loopback TCP, for comparison with annals-bench.
#
#   bench/postgres/run.sh [--sizes 10000,100000,1000000] [--indexes plain|covering|both]
#                         [--seconds 4] [--rounds 3] [--checks 400] [--socket]
#                         [--annals bench/results/latest.json] [--out bench/results/postgres.json]
#                         [--bench-bin target/release/annals-bench] [--no-appends] [--keep]
#
# A private cluster in a temp dir (initdb as the postgres user when run as
# root), fsync and synchronous_commit on, shared_buffers 2 GB, listening on
# 127.0.0.1 only; stopped and removed at exit, whatever happens. Before
# anything is timed, a sample of SQL answers is compared with the oracle of
# annals-bench (`annals-bench pg-checks`); a mismatch stops the run.
set -euo pipefail

command_line="bench/postgres/run.sh $*"
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

sizes=10000,100000,1000000
indexes=both
seconds=4
rounds=3
checks=400
annals_json=
out=$repo/bench/results/postgres.json
bench_bin=$repo/target/release/annals-bench
use_socket=0
appends=1
keep=0

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --sizes) sizes=$2; shift 2 ;;
        --indexes) indexes=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --checks) checks=$2; shift 2 ;;
        --annals) annals_json=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --bench-bin) bench_bin=$2; shift 2 ;;
        --socket) use_socket=1; shift ;;
        --no-appends) appends=0; shift ;;
        --keep) keep=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
done
case "$indexes" in
    plain|covering) variants=$indexes ;;
    both) variants="plain covering" ;;
    *) echo "--indexes is plain, covering or both" >&2; exit 2 ;;
esac
# pgbench -T takes whole seconds.
secs=$(awk -v s="$seconds" 'BEGIN { r = int(s + 0.999); print (r < 1 ? 1 : r) }')

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }

# --- PostgreSQL 15 ---------------------------------------------------------
pg_bin=
for candidate in /usr/lib/postgresql/15/bin "$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)")"; do
    if [ -x "$candidate/initdb" ] && [ -x "$candidate/pg_ctl" ] && [ -x "$candidate/pgbench" ]; then
        pg_bin=$candidate
        break
    fi
done
if [ -z "$pg_bin" ]; then
    log "PostgreSQL 15 not found; installing it with apt"
    sudo_=; [ "$(id -u)" -ne 0 ] && sudo_=sudo
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq postgresql-15 postgresql-contrib-15 \
        || DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq postgresql postgresql-contrib
    pg_bin=/usr/lib/postgresql/15/bin
    [ -x "$pg_bin/initdb" ] || pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
version=$("$pg_bin/postgres" --version)
log "using $version ($pg_bin)"

# --- annals-bench (generator, oracle, report) --------------------------------
if [ ! -x "$bench_bin" ]; then
    log "building annals-bench"
    (cd "$repo" && cargo build --release --bin annals-bench)
fi

# --- a private cluster --------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/annals-pg.XXXXXX")
as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}
cluster_up=0
cleanup() {
    status=$?
    if [ "$cluster_up" = 1 ]; then
        as_postgres "$pg_bin/pg_ctl" -D "$tmp/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    if [ "$keep" = 1 ]; then
        log "kept $tmp"
    else
        rm -rf "$tmp"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$tmp"   # initdb refuses to run as root
fi
chmod 755 "$tmp"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo 54329)
as_postgres "$pg_bin/initdb" -D "$tmp/data" -U postgres -A trust --no-locale -E UTF8 >"$tmp/initdb.log"
cat >>"$tmp/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$tmp'
max_connections = 200
fsync = on
synchronous_commit = on
full_page_writes = on
shared_buffers = 2GB
maintenance_work_mem = 512MB
max_wal_size = 8GB
checkpoint_timeout = 30min
EOF
start_cluster() {
    as_postgres "$pg_bin/pg_ctl" -D "$tmp/data" -l "$tmp/postgres.log" -w start >/dev/null
    cluster_up=1
}
stop_cluster() {
    as_postgres "$pg_bin/pg_ctl" -D "$tmp/data" -m fast -w stop >/dev/null
    cluster_up=0
}
start_cluster
export PGPORT=$port PGUSER=postgres
if [ "$use_socket" = 1 ]; then export PGHOST=$tmp; transport="unix socket"; else export PGHOST=127.0.0.1; transport="loopback TCP"; fi
psql_() { "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
log "cluster up on port $port ($transport)"

results=$tmp/results.tsv
: >"$results"
mkdir -p "$tmp/logs" "$tmp/scripts"
nproc_=$(nproc)

# pgbench_run VARIANT N KIND NAME CLIENTS ROUND ITEMS_PER_TX SCRIPT
pgbench_run() {
    local variant=$1 n=$2 kind=$3 name=$4 clients=$5 round=$6 items=$7 script=$8
    local jobs=$clients
    [ "$jobs" -gt "$nproc_" ] && jobs=$nproc_
    local prefix=$tmp/logs/$variant-$n-$name-$clients-$round
    local output
    if ! output=$("$pg_bin/pgbench" -n -M prepared -T "$secs" -c "$clients" -j "$jobs" \
        -f "$script" -l --log-prefix="$prefix" bench 2>&1); then
        echo "$output" >&2
        echo "pgbench failed: $name at $clients clients" >&2
        exit 1
    fi
    if echo "$output" | grep -q 'number of failed transactions: [1-9]'; then
        echo "$output" >&2
        exit 1
    fi
    local tps
    tps=$(echo "$output" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
    # Per-transaction latencies (µs, 3rd column of pgbench's log).
    local sorted=$tmp/logs/latencies.sorted
    cat "$prefix".* | awk '{ print $3 }' | sort -n >"$sorted"
    rm -f "$prefix".*
    local stats
    stats=$(awk -v tps="$tps" -v items="$items" '
        { v[NR] = $1; sum += $1 }
        END {
            n = NR; if (n == 0) { print "0 0 0 0 0"; exit }
            i50 = int((n * 50 + 99) / 100); i99 = int((n * 99 + 99) / 100)
            printf "%s %.3f %.3f %s %s\n", tps, tps * items, sum / n, v[i50], v[i99]
        }' "$sorted")
    rm -f "$sorted"
    printf 'measure\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$variant" "$n" "$kind" "$name" "$clients" "$round" \
        "$(echo "$stats" | tr ' ' '\t')" >>"$results"
    set -- $stats
    log "$variant N=$n round $round $name c=$clients: $1 tps, p50 $4 µs, p99 $5 µs"
}

# make_script NAME N BODY_FILE: pgbench's random parameters, then the query.
make_script() {
    local name=$1 n=$2 body=$3 file=$tmp/scripts/$1-$2.sql
    {
        case "$name" in
            q1_hot) echo '\set x 1' ;;
            *) echo '\set x random(1, 1000)' ;;
        esac
        echo '\set t random(0, 46020)'
        echo "\\set s random(2, $((n + 1)))"
        echo '\set d random(30, 3650)'
        echo '\set subject random(1, 1000)'
        echo '\set object 1 + (:subject + random(0, 998)) % 1000'
        echo '\set day random(0, 46020)'
        cat "$body"
    } >"$file"
    echo "$file"
}

IFS=, read -r -a size_list <<<"$sizes"
for variant in $variants; do
    for n in "${size_list[@]}"; do
        log "== $variant indexes, N = $n"
        csv=$tmp/csv-$n
        if [ ! -f "$csv/events.csv" ]; then
            "$bench_bin" gen --n "$n" --out-dir "$csv"
            "$bench_bin" pg-checks --n "$n" --queries "$checks" --sql-dir "$here" --out-dir "$tmp/checks-$n"
            chmod -R a+rX "$csv"
        fi
        psql_ -d postgres -c 'DROP DATABASE IF EXISTS bench' -c 'CREATE DATABASE bench'
        started=$(now)
        psql_ -d bench -f "$here/schema.sql"
        psql_ -d bench -v entities_csv="$csv/entities.csv" -v events_csv="$csv/events.csv" \
            -f "$here/load.sql" >/dev/null
        psql_ -d bench -f "$here/indexes-$variant.sql"
        psql_ -d bench -c 'VACUUM (ANALYZE) entities' -c 'VACUUM (ANALYZE) events'
        load_s=$(elapsed "$started")
        bytes=$(psql_ -d bench -A -t -c \
            "SELECT pg_total_relation_size('events') + pg_total_relation_size('entities')")
        # Reopen: a clean stop, then start to the first answer.
        stop_cluster
        started=$(now)
        start_cluster
        psql_ -d bench -A -t -c 'SELECT count(*) FROM entities' >/dev/null
        reopen_s=$(elapsed "$started")
        psql_ -d bench -c 'CREATE EXTENSION IF NOT EXISTS pg_prewarm' -A -t -c \
            "SELECT sum(pg_prewarm(c.oid::regclass)) FROM pg_class c
             JOIN pg_namespace ns ON ns.oid = c.relnamespace
             WHERE ns.nspname = 'public' AND c.relkind IN ('r', 'i')" >/dev/null
        log "loaded in $load_s s; $bytes bytes; reopened in $reopen_s s"

        # The gate: SQL answers must equal the oracle's.
        got=$tmp/checks-$n/got-$variant.txt
        psql_ -d bench -A -t -F'|' -f "$tmp/checks-$n/checks.sql" >"$got"
        if ! cmp -s "$tmp/checks-$n/expected.txt" "$got"; then
            echo "PostgreSQL ($variant) disagrees with the oracle at N = $n:" >&2
            diff "$tmp/checks-$n/expected.txt" "$got" | head -40 >&2
            exit 1
        fi
        checked=$(grep -c '^#' "$tmp/checks-$n/expected.txt")
        log "$checked SQL answers equal the oracle's"
        printf 'load\t%s\t%s\t%s\t%s\t%s\t%s\n' "$variant" "$n" "$load_s" "$bytes" "$reopen_s" "$checked" >>"$results"

        for name in q1 q2 q3 q4 q1_hot; do
            body=$here/${name%_hot}.sql
            make_script "$name" "$n" "$body" >/dev/null
        done
        make_script single "$n" "$here/append.sql" >/dev/null
        make_script batch_1000 "$n" "$here/append-batch.sql" >/dev/null
        for round in $(seq 1 "$rounds"); do
            for spec in q1:1 q1:8 q2:1 q2:8 q3:1 q3:8 q4:1 q4:8 q1_hot:1; do
                name=${spec%%:*}; clients=${spec##*:}
                pgbench_run "$variant" "$n" query "$name" "$clients" "$round" 1 "$tmp/scripts/$name-$n.sql"
            done
        done
        if [ "$appends" = 1 ]; then
            for round in $(seq 1 "$rounds"); do
                for spec in single:1 single:16 single:64 batch_1000:1; do
                    name=${spec%%:*}; clients=${spec##*:}
                    items=1; [ "$name" = batch_1000 ] && items=1000
                    pgbench_run "$variant" "$n" append "$name" "$clients" "$round" "$items" "$tmp/scripts/$name-$n.sql"
                done
            done
        fi
    done
done

mkdir -p "$(dirname "$out")"
cp "$results" "${out%.json}.tsv"
report_args=(pg-report --tsv "$results" --out "$out" --seconds "$secs" --rounds "$rounds"
    --server "$version, $transport, shared_buffers 2GB, fsync and synchronous_commit on"
    --command "$command_line")
if [ -n "$annals_json" ]; then
    report_args+=(--annals "$annals_json")
fi
"$bench_bin" "${report_args[@]}"
