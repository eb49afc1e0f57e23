#!/usr/bin/env bash
# `make fresh-test`: what a new user's `make test` does, on this machine, with nothing reused.
#
# Clones the committed HEAD of this repository into a temporary folder (no .venv, no .cache, no
# test models, no ComfyUI tree: all ignored, so not cloned) and runs `make test` there with pip's
# cache off and COMFYUI_PATH / DIFFIER_CACHE unset. Prints the pytest summary line, the exit status
# and the wall time. The log stays in the temporary folder; the clone (with its multi-GB .venv) is
# removed afterwards unless FRESH_KEEP=1.
#
# Environment: FRESH_DIR (parent folder of the clone, default $TMPDIR or /tmp), FRESH_KEEP=1,
# FRESH_MAKE_ARGS (extra arguments for `make test`, e.g. PYTEST_ARGS='-x').
set -euo pipefail

repo="$(git -C "$(dirname "${BASH_SOURCE[0]}")/.." rev-parse --show-toplevel)"
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]; then
    echo "fresh-test: uncommitted changes in $repo are NOT tested (it clones the committed HEAD $(git -C "$repo" rev-parse --short HEAD))" >&2
fi
work="$(mktemp -d "${FRESH_DIR:-${TMPDIR:-/tmp}}/diffier-fresh-test.XXXXXX")"
clone="$work/ComfyUI-DiffIER"
log="$work/make-test.log"
echo "fresh-test: cloning $(git -C "$repo" rev-parse --short HEAD) into $clone; log: $log"
git clone --quiet --no-hardlinks "$repo" "$clone"

start=$(date +%s)
set +e
# shellcheck disable=SC2086  # FRESH_MAKE_ARGS is split on purpose
(cd "$clone" && env -u COMFYUI_PATH -u DIFFIER_CACHE PIP_NO_CACHE_DIR=1 \
    make test ${FRESH_MAKE_ARGS:-}) >"$log" 2>&1
rc=$?
set -e
seconds=$(( $(date +%s) - start ))

summary="$(grep -E '^(=+ )?[0-9]+ (passed|failed|errors?|skipped|deselected|warnings?)[ ,].* in [0-9.]+s' "$log" \
    | tail -n 1 | sed -E 's/^=+ //; s/ =+$//')"
if [ "$rc" -eq 0 ]; then verdict=PASSED; else verdict=FAILED; fi
echo "fresh-test: $verdict (make test exit $rc) in $((seconds / 60)) min $((seconds % 60)) s: ${summary:-no pytest summary, see the log}"
if [ "$rc" -ne 0 ]; then
    echo "--- last lines of $log ---"
    tail -n 40 "$log"
fi
if [ "${FRESH_KEEP:-0}" != 1 ]; then
    rm -rf "$clone"
else
    echo "fresh-test: clone kept in $clone"
fi
exit "$rc"
