#!/usr/bin/env bash
# The long chaos run (issue 5): every nemesis × many seeds, one portcullis-chaos run
# each, summaries collected in OUT/summaries.jsonl and a Markdown table per nemesis
# printed at the end (the table in CHAOS.md comes from it).
#
#   chaos/long-run.sh [--seeds "1 2 3"] [--duration 45s] [--out DIR] [--nemeses "kill pause ..."]
#
# Run dirs of runs with violations are kept under OUT/ (clean ones are removed).
# Exit status 1 if any run reported a violation or could not run.
set -euo pipefail
cd "$(dirname "$0")/.."

seeds="1 2 3"
duration="45s"
out="target/chaos-long-run"
nemeses="kill pause partition leader-isolation flaky slow all"
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) seeds="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --nemeses) nemeses="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

cargo build -q -p portcullis -p portcullis-chaos
mkdir -p "$out"
summaries="$out/summaries.jsonl"
: > "$summaries"
status=0
for nemesis in $nemeses; do
  for seed in $seeds; do
    dir="$out/$nemesis-$seed"
    rm -rf "$dir"
    echo "== $nemesis seed $seed ($duration)" >&2
    set +e
    line=$(target/debug/portcullis-chaos run --nemesis "$nemesis" --seed "$seed" --duration "$duration" \
      --keep "$dir" 2>"$out/$nemesis-$seed.stderr" | tail -n 1)
    rc=$?
    set -e
    echo "$line" >&2
    if [ "$rc" -ne 0 ] || [ -z "$line" ]; then
      status=1
      echo "{\"nemesis\":\"$nemesis\",\"seed\":$seed,\"error\":\"exit $rc\"}" >> "$summaries"
      continue
    fi
    echo "$line" >> "$summaries"
    rm -rf "$dir" "$out/$nemesis-$seed.stderr"
  done
done

# One row per nemesis: runs, ops, ok, violations, failover p50 (median of the runs'
# p50s) and max.
num() { grep -o "\"$1\":[0-9]*" | head -n 1 | cut -d: -f2; }
echo
echo "| nemesis | runs | could not run | ops | ok | violations | failover p50 / max (ms) |"
echo "|---|---|---|---|---|---|---|"
for nemesis in $nemeses; do
  runs=0 errs=0 ops=0 ok=0 viol=0 fmax=0 p50s=""
  while IFS= read -r l; do
    case "$l" in *"\"nemesis\":\"$nemesis\""*) ;; *) continue ;; esac
    runs=$((runs + 1))
    case "$l" in *'"error"'*) errs=$((errs + 1)); continue ;; esac
    ops=$((ops + $(echo "$l" | num ops)))
    ok=$((ok + $(echo "$l" | num ok)))
    viol=$((viol + $(echo "$l" | num violations)))
    p=$(echo "$l" | num failover_ms_p50 || true)
    m=$(echo "$l" | num failover_ms_max || true)
    [ -n "$p" ] && p50s="$p50s $p"
    [ -n "$m" ] && [ "$m" -gt "$fmax" ] && fmax=$m
  done < "$summaries"
  p50=$(for p in $p50s; do echo "$p"; done | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "-"}')
  echo "| $nemesis | $runs | $errs | $ops | $ok | $viol | $p50 / $fmax |"
done
exit $status
