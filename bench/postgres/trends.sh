#!/usr/bin/env bash
# The trends benchmark on PostgreSQL 15: the same generated GDELT rows as
# `annals-bench trends` (COPY into a 61-column table plus a derived day),
# the same questions for the busiest dyad (counts per month with and without
# a root filter, with Goldstein sums; a month's first 100 consultations),
# timed with pgbench over loopback TCP, merged into annals's results. Two
# index variants: plain (one index per order of the two actor countries, the
# dyad as one OR) and covering (the same with INCLUDE (goldsteinscale,
# eventrootcode), each order queried on its own and UNION ALL'd, so that the
# counts are index-only scans).
#
#   bench/postgres/trends.sh [--sizes 100000,1000000] [--indexes plain|covering|both]
#                            [--seconds 4] [--rounds 3] [--clients 8] [--quiet-wait 600]
#                            [--results bench/results/trends.json]
#                            [--bench-bin target/release/annals-bench] [--keep]
#
# Run `annals-bench trends` with the same sizes first: its results hold the
# file's sha256 and annals's answers, which PostgreSQL's must equal before
# anything is timed (a mismatch stops the run). Sizes of at most 10,000 are
# a smoke run: 1 s per measurement, 1 round, bench/results/trends-smoke.json.
# Before each pgbench run it waits (up to --quiet-wait seconds) until other
# processes (a build, say) take less than a tenth of a core, and records the
# CPU they took during the run.
# A private cluster in a temp dir (as run.sh: fsync and synchronous_commit
# on, shared_buffers 2 GB, 127.0.0.1 only), stopped and removed at exit.
set -euo pipefail

command_line="bench/postgres/trends.sh $*"
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

sizes=100000,1000000
indexes=both
seconds=
rounds=
clients=8
quiet_wait=
results=
bench_bin=$repo/target/release/annals-bench
keep=0

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --sizes) sizes=$2; shift 2 ;;
        --indexes) indexes=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --clients) clients=$2; shift 2 ;;
        --quiet-wait) quiet_wait=$2; shift 2 ;;
        --results) results=$2; shift 2 ;;
        --bench-bin) bench_bin=$2; shift 2 ;;
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
IFS=, read -r -a size_list <<<"$sizes"
smoke=1
for n in "${size_list[@]}"; do [ "$n" -gt 10000 ] && smoke=0; done
if [ "$smoke" = 1 ]; then
    : "${seconds:=1}" "${rounds:=1}" "${quiet_wait:=0}" "${results:=$repo/bench/results/trends-smoke.json}"
else
    : "${seconds:=4}" "${rounds:=3}" "${quiet_wait:=600}" "${results:=$repo/bench/results/trends.json}"
fi
# pgbench -T takes whole seconds.
secs=$(awk -v s="$seconds" 'BEGIN { r = int(s + 0.999); print (r < 1 ? 1 : r) }')

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
run_started=$(now)

pg_bin=/usr/lib/postgresql/15/bin
if [ ! -x "$pg_bin/pgbench" ]; then
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
fi
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/pgbench" ]; then
    echo "PostgreSQL 15 is not installed (bench/postgres/run.sh installs it)" >&2
    exit 1
fi
version=$("$pg_bin/postgres" --version)
log "using $version ($pg_bin)"
[ -x "$bench_bin" ] || { echo "no $bench_bin: cargo build --release --bin annals-bench" >&2; exit 1; }
[ -f "$results" ] || { echo "no $results: run annals-bench trends --sizes $sizes first" >&2; exit 1; }

# --- a private cluster (as run.sh) -------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/annals-pg-trends.XXXXXX")
as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
cluster_up=0
cleanup() {
    status=$?
    if [ "$cluster_up" = 1 ]; then
        as_postgres "$pg_bin/pg_ctl" -D "$tmp/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    if [ "$keep" = 1 ]; then log "kept $tmp"; else rm -rf "$tmp"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
[ "$(id -u)" -eq 0 ] && chown postgres: "$tmp"
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
as_postgres "$pg_bin/pg_ctl" -D "$tmp/data" -l "$tmp/postgres.log" -w start >/dev/null
cluster_up=1
export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres
psql_() { "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
log "cluster up on 127.0.0.1:$port"

tsv=$tmp/results.tsv
: >"$tsv"
mkdir -p "$tmp/logs" "$tmp/scripts"
nproc_=$(nproc)

# CPU ticks (1/100 s): the machine busy (all but idle and iowait), and this
# benchmark's own (the postmaster, its children live or reaped, and this
# shell's reaped children: pgbench, psql).
machine_ticks() { awk 'NR == 1 { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
own_ticks() {
    local postmaster
    postmaster=$(head -1 "$tmp/data/postmaster.pid")
    # A process may exit between the glob and the read: not a failure.
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v me=$$ -v pm="$postmaster" '
        {
            pid = $1; rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " ")
            if (pid == me || pid == pm || f[2] == pm) total += f[12] + f[13] + f[14] + f[15]
        }
        END { print total + 0 }'
}
# wait_quiet: until others took < 0.1 core over a second (at most --quiet-wait s).
wait_quiet() {
    local started=$SECONDS machine own others told=0
    while [ $((SECONDS - started)) -lt "${quiet_wait%.*}" ]; do
        machine=$(machine_ticks); own=$(own_ticks)
        sleep 1
        others=$(( ($(machine_ticks) - machine) - ($(own_ticks) - own) ))
        [ "$others" -lt 10 ] && break
        [ "$told" = 0 ] && log "waiting for the machine to be quiet (others: $others ticks/s)" && told=1
    done
    [ "$told" = 1 ] && log "waited $((SECONDS - started)) s"
    return 0
}

# pgbench_run VARIANT N NAME CLIENTS ROUND SCRIPT (as run.sh's)
pgbench_run() {
    local variant=$1 n=$2 name=$3 clients=$4 round=$5 script=$6
    local jobs=$clients
    [ "$jobs" -gt "$nproc_" ] && jobs=$nproc_
    local prefix=$tmp/logs/$variant-$n-$name-$clients-$round output machine own others
    wait_quiet
    machine=$(machine_ticks); own=$(own_ticks)
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
    others=$(( ($(machine_ticks) - machine) - ($(own_ticks) - own) ))
    [ "$others" -lt 0 ] && others=0
    local tps stats
    tps=$(echo "$output" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
    # Per-transaction latencies (µs, 3rd column of pgbench's log).
    stats=$(cat "$prefix".* | awk '{ print $3 }' | sort -n | awk -v tps="$tps" '
        { v[NR] = $1; sum += $1 }
        END {
            n = NR; if (n == 0) { print "0 0 0 0 0"; exit }
            i50 = int((n * 50 + 99) / 100); i99 = int((n * 99 + 99) / 100)
            printf "%s %s %.3f %s %s\n", tps, tps, sum / n, v[i50], v[i99]
        }')
    rm -f "$prefix".*
    printf 'measure\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$variant" "$n" "$name" "$clients" "$round" \
        "$(echo "$stats" | tr ' ' '\t')" "$(awk -v t="$others" 'BEGIN { printf "%.2f", t / 100 }')" >>"$tsv"
    set -- $stats
    log "$variant N=$n round $round $name c=$clients: $1 tps, p50 $4 µs, p99 $5 µs (others $others ticks)"
}

queries="count count-goldstein count-root04-goldstein list-root04 floor"
for n in "${size_list[@]}"; do
    log "== N = $n"
    checks=$tmp/checks-$n
    "$bench_bin" trends-expected --results "$results" --n "$n" --out-dir "$checks"
    # shellcheck disable=SC1091
    . "$checks/params.sh"

    started=$(now)
    file=$tmp/gdelt-$n.export.CSV
    "$bench_bin" gdelt-gen --n "$n" --out "$file" >"$tmp/gen-$n.json"
    chmod a+r "$file"
    sha=$(sha256sum "$file" | cut -d' ' -f1)
    if [ "$sha" != "$SHA256" ]; then
        echo "the generated file differs from annals's (sha256 $sha, annals had $SHA256)" >&2
        exit 1
    fi
    printf 'phase\t%s\tgenerate_s\t%s\n' "$n" "$(elapsed "$started")" >>"$tsv"

    psql_ -d postgres -c 'DROP DATABASE IF EXISTS bench' -c 'CREATE DATABASE bench'
    psql_ -d bench -f "$here/trends-schema.sql"
    started=$(now)
    psql_ -d bench -v file="$file" -f "$here/trends-load.sql"
    copy_s=$(elapsed "$started")
    started=$(now)
    psql_ -d bench -c 'ALTER TABLE gdelt ADD PRIMARY KEY (globaleventid)'
    pk_s=$(elapsed "$started")
    table_bytes=$(psql_ -d bench -A -t -c "SELECT pg_table_size('gdelt')")
    printf 'load\t%s\t%s\t%s\t%s\n' "$n" "$copy_s" "$pk_s" "$table_bytes" >>"$tsv"
    log "COPY of $n rows in $copy_s s ($table_bytes bytes), primary key in $pk_s s"
    rm -f "$file"

    for variant in $variants; do
        # Plain indexes: the dyad as one OR; covering: each order on its own,
        # UNION ALL, so that the counts are index-only scans.
        form=or; suffix=
        [ "$variant" = covering ] && form=union && suffix=-union
        for query in $queries; do
            script=$here/trends-$query$suffix.sql
            [ -f "$script" ] || script=$here/trends-$query.sql
            sed -e "s/@A@/$A_CODE/g" -e "s/@B@/$B_CODE/g" "$script" \
                >"$tmp/scripts/$query-$n-$variant.sql"
        done
        started=$(now)
        psql_ -d bench -f "$here/trends-indexes-$variant.sql"
        psql_ -d bench -c 'VACUUM (ANALYZE) gdelt'
        index_s=$(elapsed "$started")
        index_bytes=$(psql_ -d bench -A -t -c \
            "SELECT pg_relation_size('gdelt_dyad') + pg_relation_size('gdelt_dyad_reverse')")
        psql_ -d bench -c 'CREATE EXTENSION IF NOT EXISTS pg_prewarm' -A -t -c \
            "SELECT sum(pg_prewarm(c.oid::regclass)) FROM pg_class c
             JOIN pg_namespace ns ON ns.oid = c.relnamespace
             WHERE ns.nspname = 'public' AND c.relkind IN ('r', 'i')" >/dev/null

        # The gate: PostgreSQL's answers must equal annals's.
        started=$(now)
        got=$checks/got-$variant.txt
        psql_ -d bench -A -t -F'|' -f "$checks/checks-$form.sql" >"$got"
        if ! cmp -s "$checks/expected.txt" "$got"; then
            echo "PostgreSQL ($variant) disagrees with annals at N = $n:" >&2
            diff "$checks/expected.txt" "$got" | head -40 >&2
            exit 1
        fi
        checked=$(wc -l <"$checks/expected.txt")
        printf 'phase\t%s\tcheck_%s_s\t%s\n' "$n" "$variant" "$(elapsed "$started")" >>"$tsv"
        printf 'indexes\t%s\t%s\t%s\t%s\t%s\n' "$variant" "$n" "$index_s" "$index_bytes" "$checked" >>"$tsv"
        log "$variant indexes in $index_s s ($index_bytes bytes); $checked lines equal annals's answers"
        for query in $queries; do
            log "plan of $query ($variant):"
            grep -v -e '^\\set' -e '^--' "$tmp/scripts/$query-$n-$variant.sql" | sed 's/(:m)::int/7/g' \
                | sed '1s/^/EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) /' >"$tmp/explain.sql"
            psql_ -d bench -f "$tmp/explain.sql" >&2
        done

        started=$(now)
        for round in $(seq 1 "$rounds"); do
            for query in $queries; do
                for c in 1 "$clients"; do
                    pgbench_run "$variant" "$n" "${query//-/_}" "$c" "$round" "$tmp/scripts/$query-$n-$variant.sql"
                done
            done
        done
        printf 'phase\t%s\ttiming_%s_s\t%s\n' "$n" "$variant" "$(elapsed "$started")" >>"$tsv"
    done
done
printf 'total\t%s\n' "$(elapsed "$run_started")" >>"$tsv"

cp "$tsv" "${results%.json}-postgres.tsv"
"$bench_bin" trends-report --tsv "$tsv" --results "$results" --seconds "$secs" \
    --server "$version, loopback TCP, shared_buffers 2GB, fsync and synchronous_commit on" \
    --command "$command_line"
log "merged into $results and ${results%.json}.md"
