#!/usr/bin/env bash
# The whole of Figure 4 in miniature in one command (up to 81 runs of 100 epochs):
#     bash benchmarks/data_sweep_all.sh OUTPUT_DIR [EPOCHS] [JOBS]
# A queue of single runs, JOBS at a time (default: one per CPU core, one thread each). First the 225-photo point for
# every candidate learning rate of every model (OUTPUT_DIR/recipe_choice/<model>_lr<lr>): seed 0, then seeds 1 and 2
# for the rates within 0.05 of the best. Each model keeps the rate with the best mean final validation accuracy
# (choice.txt), and every other point trains at that rate (OUTPUT_DIR/data_sweep/<model>; the chosen rate's
# 225-photo runs are copied there, not trained again). summary.md and data_sweep.png are the table and the picture.
# Finished runs are read, not trained again, and an interrupted run resumes from its last epoch, so the command
# continues where it stopped. When a grown grid moves a model's choice, its runs at the old rate move to
# OUTPUT_DIR/superseded/. LEARNING_RATES="resnet18=5e-4 vit=3e-4 hybrid=1.25e-4" (the rates chosen in
# benchmarks/README.md) replaces those models' grids: the figure without the choice, 45 runs instead of up to 81.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:?"usage: bash benchmarks/data_sweep_all.sh OUTPUT_DIR [EPOCHS] [JOBS]"}")
epochs=${2:-100}
jobs=${3:-$(nproc)}
device=$(python -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
declare -A candidates=([resnet18]="2.5e-4 5e-4 1e-3 2e-3 4e-3" [vit]="1.5e-4 3e-4 5e-4 1e-3"
                       [hybrid]="6.25e-5 1.25e-4 2.5e-4 5e-4 1e-3 2e-3")
models="resnet18 vit hybrid"  # the slowest first, so that the queue ends on short runs
for setting in ${LEARNING_RATES:-}; do
    if [[ $setting != *=* || ! -v "candidates[${setting%%=*}]" ]]; then
        echo "LEARNING_RATES: '$setting' is not MODEL=RATE with MODEL one of: $models" >&2
        exit 2
    fi
    candidates[${setting%%=*}]=${setting#*=}
done
mkdir -p "$out/logs"
python -c "from going_modular.training import validation_split; validation_split.download_validation_split()"

run() {  # MODEL LABEL FOLDER SEED LR [SIZE FLAGS...]: one run of data_sweep.py, its output in logs/
    local model=$1 label=$2 folder=$3 seed=$4 lr=$5
    shift 5
    python benchmarks/data_sweep.py --model "$model" --label "$label" --seeds "$seed" "$@" --epochs "$epochs" \
        --jobs 1 --threads 1 --device "$device" --output-dir "$folder" -- --lr "$lr" --num-workers 0 \
        >>"$out/logs/$label.log" 2>&1 || echo "failed: $*; see $out/logs/$label.log" >&2
}
export -f run
export out epochs device

within() {  # MODEL MARGIN: its candidate rates whose mean final validation accuracy (over the seeds run) at 225
    # photos is within MARGIN of the best one's, best first
    python - "$out/recipe_choice" "$1" "$2" <<'PY'
import json, statistics, sys
from pathlib import Path
folder, model, margin = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
means = {label.name.split("_lr")[1]: statistics.fmean(json.loads(path.read_text())["metrics"]["val_acc"][-1]
                                                      for path in label.glob("n225_seed*_results.json"))
         for label in folder.glob(f"{model}_lr*")}
print(" ".join(lr for lr in sorted(means, key=means.get, reverse=True) if means[lr] >= max(means.values()) - margin))
PY
}

choose() {  # SEED...: every candidate of every model at 225 photos
    for seed in "$@"; do for model in $models; do for lr in ${candidates[$model]}; do
        echo "$model ${model}_lr$lr $out/recipe_choice $seed $lr --sizes 225 --no-larger"
    done; done; done | xargs -P "$jobs" -L 1 bash -c 'run "$@"' _
}

choose 0
for model in $models; do  # seeds 1 and 2 only for the rates within 0.05 (about two seeds' spread) of the best
    candidates[$model]=$(within "$model" 0.05)
done
choose 1 2

: >"$out/choice.txt"
: >"$out/choice.lrs"
for model in $models; do
    best=$(within "$model" 0 | cut -d " " -f 1)
    echo "$model: learning rate $best (best mean final validation accuracy at 225 photos)" >>"$out/choice.txt"
    chosen="$out/data_sweep/$model/learning_rate"
    if [[ -f $chosen && $(<"$chosen") != "$best" ]]; then  # a grid grew and chose anew: set the old runs aside
        mkdir -p "$out/superseded"
        mv "$out/data_sweep/$model" "$out/superseded/${model}_lr$(<"$chosen")"
    fi
    mkdir -p "$out/data_sweep/$model"
    echo "$best" >"$chosen"
    cp "$out/recipe_choice/${model}_lr$best"/n225_seed*_results.json "$out/data_sweep/$model/"
    echo "$model $best" >>"$out/choice.lrs"
done

for seed in 0 1 2; do while read -r model lr; do
    for sizes in "--sizes --larger" "--sizes 28 --no-larger" "--sizes 56 --no-larger" "--sizes 112 --no-larger"; do
        echo "$model $model $out/data_sweep $seed $lr $sizes"
    done
done <"$out/choice.lrs"; done | xargs -P "$jobs" -L 1 bash -c 'run "$@"' _
rm "$out/choice.lrs"

python benchmarks/data_sweep.py --output-dir "$out/recipe_choice" >/dev/null
python benchmarks/data_sweep.py --output-dir "$out/data_sweep" --plot "$out/data_sweep.png"
cat "$out/choice.txt"
