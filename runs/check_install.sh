#!/usr/bin/env bash
# `make check-install`: the package as a user gets it. Build the wheel, install it into a fresh venv outside the
# repository, and from an empty folder run `datafree --help`, train a 1-epoch teacher on the generated stand-in data and
# a 2-step `datafree train --recipe fmnist --data.name fake`, which must write MODEL_CARD.md.
#
#   bash runs/check_install.sh                 # the interpreter `python3` is
#   PYTHONS="3.10 3.12 3.13" bash runs/check_install.sh   # others too (pyenv versions); each line of the summary
#                                                          # says what torch it got or why it could not install
set -uo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d /tmp/datafree-install.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
PYTHONS="${PYTHONS:-$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}"
EXTRAS="${EXTRAS:-onnx}"

interpreter() {  # the python executable of version $1: pyenv's if it has it, else python$1 on the PATH
  local found
  found="$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$1".*/bin/python 2>/dev/null | sort -V | tail -1)"
  [ -n "$found" ] && echo "$found" || command -v "python$1"
}

echo "== building the wheel"
python3 -m pip wheel --no-deps -q -w "$WORK/dist" "$REPO" || { echo "FAIL: the wheel did not build"; exit 1; }
WHEEL="$(ls "$WORK"/dist/datafree-*.whl)"
unzip -l "$WHEEL" | grep -q "datafree/recipes/fmnist.toml" || { echo "FAIL: the wheel lacks the recipes"; exit 1; }

summary=()
status=0
for version in $PYTHONS; do
  py="$(interpreter "$version")"
  if [ -z "$py" ]; then summary+=("| $version | - | no interpreter here |"); continue; fi
  venv="$WORK/venv-$version"
  echo "== Python $version ($py)"
  "$py" -m venv "$venv" || { summary+=("| $version | - | venv failed |"); status=1; continue; }
  if ! "$venv/bin/pip" install -q "$WHEEL[$EXTRAS]" > "$WORK/pip-$version.log" 2>&1; then
    reason="$(grep -m1 -iE "no matching distribution|could not find a version|error:" "$WORK/pip-$version.log" | cut -c1-160)"
    summary+=("| $version | - | not installable: ${reason:-see the pip log} |"); status=1; continue
  fi
  torch_version="$("$venv/bin/python" -c 'import torch; print(torch.__version__)')"
  run="$WORK/run-$version"; mkdir -p "$run"
  (
    cd "$run" || exit 1
    export OMP_NUM_THREADS=1
    fake=(--data.name fake --data.fake_size 64 --data.eval_batch_size 64 --teacher.checkpoint "$run/teacher/teacher.safetensors")
    "$venv/bin/datafree" --help > /dev/null &&
      "$venv/bin/python" -c "import datafree, datafree.api; print('import ok', datafree.__version__)" &&
      "$venv/bin/datafree" teacher --recipe fmnist "${fake[@]}" --teacher_training.epochs 1 --teacher_training.batch_size 32 &&
      "$venv/bin/datafree" train --recipe fmnist "${fake[@]}" --train.steps 2 --train.max_minutes 0 --train.batch_size 16 \
        --train.fresh_batch_size 16 --train.student_steps 2 --train.eval_every 2 --train.precise_bn 2 --train.output_dir out &&
      test -s out/MODEL_CARD.md
  ) > "$WORK/run-$version.log" 2>&1
  if [ $? -eq 0 ]; then
    summary+=("| $version | $torch_version | pass: import, datafree --help, teacher, a 2-step train, MODEL_CARD.md |")
  else
    summary+=("| $version | $torch_version | FAIL: $(grep -m1 -E "error|Error" "$WORK/run-$version.log" | cut -c1-160) |"); status=1
    tail -20 "$WORK/run-$version.log"
  fi
done
echo
echo "| Python | torch | result |"
echo "|---|---|---|"
printf '%s\n' "${summary[@]}"
exit $status
