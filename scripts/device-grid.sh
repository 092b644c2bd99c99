#!/usr/bin/env bash
# A grid's cells on a lent GPU machine, each cell its own process on the one GPU (a 135M model is far
# too small to fill the card). On the device machine, in the repository root:
#   bash scripts/device-grid.sh                     # only stage the .device/part-<n> this call carries
#   bash scripts/device-grid.sh GRID PATTERN ...    # stage, then run every cell matching a pattern
#   COPY_AHEAD=1 bash scripts/device-grid.sh [GRID PATTERN ...]   # copy-ahead's speed first (below)
# (scripts/device-prepare.sh, run here first, makes the parts and says how.) Results go to
# /tmp/res/grid (the grid's layout: copy the cell folders into docs/results/<grid>/ here); a tarball
# of them and of the logs, $OUT/res.tgz, is refreshed every 20 s, so a call cut short still returns
# its finished cells; every minute each running cell's last progress line is printed.
# Settings (environment):
#   GRID_EDIT   a sed script applied to the grid file (a rehearsal: 's/^epochs = 1000/epochs = 20/')
#   ARGS        more options for every cell (e.g. "--model embedded" for the paper protocol's grid)
#   MAX_PROCS   cells at a time (default: all of them)
#   CUDA_TESTS  1: run the test suite's CUDA tests first (pytest -m cuda), log in $OUT
#   CACHE_MODEL the offline model the grid names (embedded; gemma3-270m needs device-prepare.sh --gemma)
#   COPY_AHEAD  1: train the README quick start's fish-dip model (QS_ARGS: its options) and time
#               copy-ahead on it (benchmarks/generation.py --trained, batch 64 on 96 test sentences and
#               batch 1 on 16), JSON in /tmp/res/bench; DEVICE: where (cuda)
#   STAGE, PYTHON  where parts are staged (/tmp/fishdip-stage) and which Python runs (python3)
set -u
out=${OUT:-/tmp/out}; stage=${STAGE:-/tmp/fishdip-stage}; python=${PYTHON:-python3}
res=/tmp/res; logs=$res/logs
mkdir -p "$out" "$logs" "$stage/chunks"

# -- stage this call's part; unpack once every chunk of the manifest is there -------------------
for part in .device/part-*; do
  [ -d "$part" ] || continue
  cp "$part"/chunk-* "$part/manifest" "$stage/chunks/"
  echo "staged $part"
done
if [ ! -e "$stage/ready" ] && [ -f "$stage/chunks/manifest" ]; then
  if (cd "$stage/chunks" && sha256sum --quiet -c manifest >/dev/null 2>&1); then
    cat "$stage"/chunks/chunk-* | tar xz -C "$stage" || exit 1
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$stage/site" "$stage"/whl/*.whl || exit 1
    touch "$stage/ready"
    echo "unpacked: $(ls "$stage/site" | grep -c dist-info) packages, data: $(ls "$stage/data" | tr '\n' ' ')"
  else
    echo "waiting for more parts: $(ls "$stage/chunks" | grep -c chunk-) of $(wc -l < "$stage/chunks/manifest") staged"
  fi
fi
[ $# -gt 0 ] || [ "${COPY_AHEAD:-0}" = 1 ] || exit 0
[ -e "$stage/ready" ] || { echo "not every part has been staged: nothing to run" >&2; exit 1; }
grid=${1:-}; shift $(( $# > 0 ))

export PYTHONPATH=$PWD/src:$stage/site${PYTHONPATH:+:$PYTHONPATH} FISHDIP_DATA_DIR=$stage/data \
  FISHDIP_CACHE_DIR=/tmp/fishdip-cache FISHDIP_CHECKPOINT_DIR=/tmp/checkpoints \
  PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1

# Evaluation batch 64 instead of 16: generation is latency-bound on a GPU (each sentence keeps its
# own token budget, padding is on the left). No checkpoint saves: a cell here takes minutes.
[ -z "$grid" ] || sed -e 's/^\[options\]$/[options]\neval_batch_size = 64\ncheckpoint_every = 1e9/' \
  -e "${GRID_EDIT:-}" "$grid" > /tmp/grid.toml
"$python" - <<'EOF' | tee "$logs/machine.txt"
import torch, transformers
print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu", "| torch", torch.__version__,
      "| transformers", transformers.__version__)
EOF
# the float32 cache of the offline model, made once before the cells start (they would race for it)
"$python" -c "from fishdip.models.loading import resolve; resolve('${CACHE_MODEL:-embedded}')" > "$logs/model.log" 2>&1 ||
  { tail -n 5 "$logs/model.log"; exit 1; }

snapshot() { tar czf "$out/.res.tgz" --exclude=checkpoint -C /tmp res && mv "$out/.res.tgz" "$out/res.tgz"; }
(while sleep 20; do snapshot; done) &
ticker=$!

if [ "${CUDA_TESTS:-0}" = 1 ]; then
  "$python" -m pytest -m cuda -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$out/cuda-tests.log" | tail -n 3
fi

if [ "${COPY_AHEAD:-0}" = 1 ]; then  # issue 36: copy-ahead's tokens/s where a pass of a few tokens is cheap
  mkdir -p "$res/bench"
  # shellcheck disable=SC2086  # QS_ARGS is a list of options
  if "$python" -m fishdip train --task conll04 --method fish-dip --device "${DEVICE:-cuda}" --output-dir /tmp/qs \
      ${QS_ARGS:---train-size 48 --epochs 8 --refresh-steps 10 --eval-limit 100} > "$logs/qs-train.log" 2>&1; then
    for b in 64 1; do
      "$python" benchmarks/generation.py --trained /tmp/qs --device "${DEVICE:-cuda}" --batch-sizes $b \
        --sentences "$([ $b = 1 ] && echo "${BENCH_B1:-16}" || echo "${BENCH_B64:-96}")" --widths 8,16 \
        --output "$res/bench/generation-trained-b$b-${DEVICE:-cuda}.json" > "$logs/bench-b$b.log" 2>&1
      grep '^|' "$logs/bench-b$b.log"
    done
  else
    tail -n 5 "$logs/qs-train.log"
  fi
  snapshot
fi
[ -n "$grid" ] || { kill $ticker; exit 0; }

mapfile -t cells < <("$python" - /tmp/grid.toml "$@" <<'EOF'
import sys
from fishdip.runs.grid import load_grid, matches
grid = load_grid(sys.argv[1])
print("\n".join(c.path for c in grid.cells() if matches(c, sys.argv[2:])))
EOF
)
[ ${#cells[@]} -gt 0 ] || { echo "no cell of $grid matches: $*" >&2; kill $ticker; exit 1; }
echo "${#cells[@]} cell(s), at most ${MAX_PROCS:-${#cells[@]}} at a time"
start=$(date +%s)
(while sleep 60; do for log in "$logs"/cell-*.log; do
   last=$(tail -c 300 "$log" | tr '\r' '\n' | tail -n 1)
   [[ $last == *"cells finished"* ]] || echo "$(( $(date +%s) - start )) s $(basename "$log"): $last"; done; done) &
watcher=$!
for cell in "${cells[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge $(( ${MAX_PROCS:-${#cells[@]}} + 2 )) ]; do sleep 5; done  # + ticker, watcher
  # shellcheck disable=SC2086  # ARGS is a list of options
  "$python" -m fishdip experiment /tmp/grid.toml ${ARGS:-} --output-dir "$res/grid" --only "$cell" \
    > "$logs/cell-${cell//\//_}.log" 2>&1 &
done
while [ "$(jobs -rp | wc -l)" -gt 2 ]; do sleep 5; done
kill $watcher $ticker
echo "all ${#cells[@]} cell(s): $(( $(date +%s) - start )) s" | tee -a "$logs/machine.txt"
snapshot
for log in "$logs"/cell-*.log; do echo "$(basename "$log"): $(tail -c 300 "$log" | tr '\r' '\n' | tail -n 1)"; done
