#!/usr/bin/env bash
# The embedded default, end to end on a CPU: emoji faces at 64x64.
#   bash tools/demo.sh            (make demo runs the set-up first)
# Prepares the data, trains configs/introvae_dcgan_emoji64.py (IntroVAE with MMagic's
# DCGAN networks; DEMO_CONFIG=... trains another), evaluates the last checkpoint on the
# held-out faces, and draws samples, reconstructions and an interpolation. Everything
# lands in $DEMO_DIR (default work_dirs/demo_emoji64).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-$ROOT/.venv/bin/python}
CONFIG=${DEMO_CONFIG:-configs/introvae_dcgan_emoji64.py}
OUT=${DEMO_DIR:-work_dirs/demo_emoji64}
EXTRA=("$@")   # e.g. --cfg-options train_cfg.max_iters=100 for a quick look

t0=$(date +%s)
echo "[demo] 1/5 data: Noto colour emoji faces -> data/emoji"
echo "       (installs the Debian package fonts-noto-color-emoji with apt-get when the font is missing)"
"$PY" tools/prepare_data.py emoji

echo "[demo] 2/5 training $CONFIG on CPU (logs with ETA below)"
"$PY" tools/train.py "$CONFIG" --work-dir "$OUT" ${EXTRA[@]+"${EXTRA[@]}"}
CKPT=$(cat "$OUT/last_checkpoint")

echo "[demo] 3/5 evaluation of $CKPT on data/emoji/test"
"$PY" tools/test.py "$CONFIG" "$CKPT" --work-dir "$OUT/test" --out "$OUT/metrics.json" \
    ${EXTRA[@]+"${EXTRA[@]}"}

echo "[demo] 4/5 pictures"
"$PY" tools/sample.py "$CONFIG" "$CKPT" --num 64 --seed 0 --out "$OUT/samples" --grid "$OUT/samples.png"
"$PY" tools/reconstruct.py "$CONFIG" "$CKPT" --input data/emoji/test --out "$OUT/reconstructions" \
    --grid "$OUT/reconstructions.png"
mapfile -t ENDS < <(ls data/emoji/test/*.png | sed -n '1p;40p')
"$PY" tools/interpolate.py "$CONFIG" "$CKPT" --images "${ENDS[0]}" "${ENDS[1]}" --steps 10 \
    --out "$OUT/interpolation"

echo "[demo] 5/5 done in $(( $(date +%s) - t0 )) s. Results in $OUT:"
echo "  metrics.json          FID, SWD, MS-SSIM, PSNR/SSIM/MSE of reconstructions, KL figures"
echo "  samples.png           64 prior samples"
echo "  reconstructions.png   held-out faces beside their reconstructions"
echo "  interpolation/        frames, grid.png and interpolation.gif between two test faces"
echo "  <timestamp>/vis_data  training grids and TensorBoard events (tensorboard --logdir $OUT)"
cat "$OUT/metrics.json"
