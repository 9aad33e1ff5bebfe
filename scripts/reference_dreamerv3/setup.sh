#!/usr/bin/env bash
# setup.sh SOURCE VENV: a CPU virtual environment for the reference DreamerV3 checked out in SOURCE
# (git clone https://github.com/danijar/dreamerv3 SOURCE && git -C SOURCE checkout e3f0224).
# Its requirements.txt with jax 0.4.33 for the CPU instead of jax[cuda12], without the Atari and
# GPU-only packages, plus Gymnasium and our old-gym shim on the venv's path.
set -euo pipefail
[ $# -eq 2 ] || { sed -n 2,5p "$0"; exit 2; }
SOURCE=$(realpath "$1"); VENV=$2; HERE=$(dirname "$(realpath "$0")")
[ -f "$SOURCE/dreamerv3/main.py" ] || { echo "error: $SOURCE has no dreamerv3/main.py" >&2; exit 2; }
python3 -m venv "$VENV"
grep -v -E '^(jax\[|ale_py|autorom|nvidia-)' "$SOURCE/requirements.txt" > "$VENV/requirements-cpu.txt"
printf 'jax==0.4.33\njaxlib==0.4.33\ngymnasium\n' >> "$VENV/requirements-cpu.txt"
"$VENV/bin/pip" install -q -r "$VENV/requirements-cpu.txt"
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$HERE/shim" > "$SITE/hmbrl_gym_shim.pth"
echo "ready: REFERENCE_SOURCE=$SOURCE REFERENCE_VENV=$VENV $HERE/compare.sh"
