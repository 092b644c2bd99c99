#!/usr/bin/env bash
# A grid's cells in the background on a small CPU machine (no GPU lent): each chain runs its cells
# one after another, one thread each, chains side by side (one per core), from a frozen copy of the
# code so that a cell never mixes two versions. A finished cell is skipped; a stopped one continues
# from its training checkpoint (saved every 10 minutes and on SIGTERM) when started again.
#   bash scripts/cpu-chains.sh start GRID OUTPUT_DIR CHAIN [CHAIN ...]   # CHAIN: cell paths, comma-separated
#   bash scripts/cpu-chains.sh status                                     # each chain's last progress line
#   bash scripts/cpu-chains.sh stop                                       # checkpoints saved, then exit
# Example (the control grid's CPU floor, docs/results/conll04-control/README.md):
#   p=conll04/fraction-0.01
#   bash scripts/cpu-chains.sh start docs/results/conll04-control/grid.toml docs/results/conll04-control \
#     $p/full/episode-5,$p/fish-dip-static/episode-5 $p/fish-dip/episode-5,$p/fish-dip-gated/episode-5
# Settings (environment):
#   CODE     the commit whose src/ runs the cells (default HEAD; a grid names the one its cells ran)
#   STATE    frozen code, logs and pids (default ~/.cache/fishdip/cpu-chains); PYTHON (.venv/bin/python)
#   FISHDIP_DATA_DIR, FISHDIP_CHECKPOINT_DIR   as for fishdip (defaults: ../shared/data if it exists,
#            ~/.cache/fishdip/checkpoints)
set -euo pipefail
cd "$(dirname "$0")/.."
state=${STATE:-$HOME/.cache/fishdip/cpu-chains}
mkdir -p "$state/logs"

running() {  # the chains with a process still alive (the chain's shell or its cell), one pid file each
  local f
  for f in "$state"/chain-*.pid; do
    [ -e "$f" ] && kill -0 -- "-$(cat "$f")" 2>/dev/null && echo "$f"
  done
  return 0
}

case "${1:-}" in
start)
  [ $# -ge 4 ] || { echo "usage: $0 start GRID OUTPUT_DIR CHAIN [CHAIN ...]" >&2; exit 2; }
  [ -z "$(running)" ] || { echo "chains are running already ($0 status; $0 stop)" >&2; exit 1; }
  grid=$2; outdir=$3; shift 3
  [ -f "$grid" ] || { echo "$grid: no such grid file" >&2; exit 2; }
  sha=$(git rev-parse --short "${CODE:-HEAD}")
  code=$state/code-$sha
  if [ ! -d "$code/src" ]; then mkdir -p "$code" && git archive "$sha" src | tar -x -C "$code"; fi
  export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=$code/src
  export FISHDIP_CHECKPOINT_DIR=${FISHDIP_CHECKPOINT_DIR:-$HOME/.cache/fishdip/checkpoints}
  if [ -z "${FISHDIP_DATA_DIR:-}" ] && [ -d ../shared/data ]; then
    FISHDIP_DATA_DIR=$(cd ../shared/data && pwd); export FISHDIP_DATA_DIR
  fi
  python=${PYTHON:-$(pwd)/.venv/bin/python}
  n=0
  for chain in "$@"; do
    n=$((n + 1)); log=$state/logs/chain-$n.log
    # setsid: the chain and its cell form one process group (its id: the chain's pid) that `stop` signals
    setsid bash -c '
      for cell in ${0//,/ }; do
        echo "$(date -u +%FT%TZ) start $cell (code '"$sha"')"
        nice -n 5 "$1" -c "import sys; from fishdip.cli import main; sys.exit(main())" \
          experiment "$2" --output-dir "$3" --only "$cell" || { echo "$(date -u +%FT%TZ) $cell exited $?"; exit 1; }
        echo "$(date -u +%FT%TZ) end $cell"
      done' "$chain" "$python" "$grid" "$outdir" >>"$log" 2>&1 < /dev/null &
    echo $! > "$state/chain-$n.pid"
    echo "chain $n: $chain (log $log)"
  done
  ;;
status)
  for log in "$state"/logs/chain-*.log; do
    [ -e "$log" ] || continue
    # progress bars end in carriage returns: the last one is the latest
    echo "$(basename "$log" .log): $(tail -c 2000 "$log" | tr '\r' '\n' | grep -v '^\s*$' | tail -n 1)"
  done
  echo "running: $(running | wc -l) chain(s)"
  ;;
stop)
  for f in $(running); do
    # SIGTERM to the whole group: the cell saves its checkpoint; the chain shell stops first, so it
    # starts no next cell
    kill -TERM -- "-$(cat "$f")" 2>/dev/null || true
  done
  for _ in $(seq 120); do [ -z "$(running)" ] && break; sleep 1; done
  [ -z "$(running)" ] && echo "stopped" || { echo "still running after 120 s: $(running)" >&2; exit 1; }
  ;;
*)
  sed -n '2,17p' "$0"; exit 2
  ;;
esac
