#!/bin/bash
# The one device call of session 6 (README "On a GPU"): environment, a tiny smoke run, the GPU
# benchmarks, then the base preset trained until the deadline; its files land in $OUT.
set -u
T0=$(date +%s)
BUDGET=${BUDGET:-500}           # seconds for the whole script
DEV=${DEV:-cuda}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
HS=${HS:-histosynth}  # on the device machine: python3 -c "from model.cli import main; main()"
DATA=${DATA:-../shared/data/gleason}  # on the device machine: a carried copy (.gpu/gleason)
LOG=$OUT/log.txt
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
step() { echo "=== $(date +%T) [+$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }
{
step env
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
python3 -c "import torch,sys; print(sys.version); print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
nproc
} >>"$LOG" 2>&1
step smoke; timeout 60 $HS train --data $DATA --preset tiny --device $DEV --exclude test101,test106 --out "$(mktemp -d)/smoke" >>"$LOG" 2>&1; echo "rc=$?" >>"$LOG"
step bench-generate; timeout ${BG_T:-110} $HS bench generate --arch ours,pix2pix,pix2pixhd --size 256,512,1024 --batch 1,8,32 --repeat 3 --device $DEV --json $OUT/bench-generate.json >>"$LOG" 2>&1; echo "rc=$?" >>"$LOG"
step bench-train; timeout ${BT_T:-70} $HS bench train --preset base --steps 10 --warmup 3 --device $DEV --json $OUT/bench-train.json >>"$LOG" 2>&1; echo "rc=$?" >>"$LOG"
step bench-segment; timeout ${BS_T:-40} $HS bench segment --size 512,1024,2048 --repeat 3 --device $DEV --json $OUT/bench-segment.json >>"$LOG" 2>&1; echo "rc=$?" >>"$LOG"
R=${RUN:-/tmp/base}; TL=$(( $(left) - 25 ))
step "train base for at most ${TL}s"
if [ "$TL" -gt 30 ]; then
  timeout --signal=INT $TL $HS train --data $DATA --classes $DATA/classes.json --preset base ${TRAIN_ARGS:-} \
    --exclude test101,test106 --device $DEV --out $R --name prostate-gleason-base --half \
    --set train.log_every=10 --set train.sample_every=200 >>"$LOG" 2>&1
  echo "rc=$?" >>"$LOG"
fi
step collect
cp $R/model-fp16.pt $OUT/ 2>/dev/null || {
  last=$(ls $R/scales/scale*.pt 2>/dev/null | sort -V | head -1)   # lowest n = finest finished
  [ -n "$last" ] && python3 -c "
import sys; sys.path.insert(0, '.')
from model.checkpoint import load_model, save_model
m = load_model('$last')
save_model('$OUT/' + '$(basename $last .pt)-fp16.pt', m.generator, m.segmenter, m.config, m.classes, m.metadata, half=True)
" >>"$LOG" 2>&1; }
tar -C $R -czf $OUT/run.tgz --exclude='*.pt' . 2>>"$LOG"
ls -la $OUT $R $R/scales >>"$LOG" 2>&1
step done
