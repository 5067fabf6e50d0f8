#!/usr/bin/env bash
# The whole of Figure 4 in miniature in one command, for a machine with a GPU and many cores (about 60 runs):
#     bash benchmarks/data_sweep_all.sh OUTPUT_DIR [EPOCHS]
# For each model, side by side: train the 225-photo point once per candidate learning rate and seed
# (OUTPUT_DIR/recipe_choice/<model>_lr<lr>), keep the rate with the best mean final validation accuracy, then
# sweep every point with it (OUTPUT_DIR/data_sweep/<model>; the chosen rate's 225-photo runs are reused, not
# trained again). choice.txt records each choice; summary.md and data_sweep.png are the table and the picture.
# Runs that finished are read, not trained again, so the command continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?"usage: bash benchmarks/data_sweep_all.sh OUTPUT_DIR [EPOCHS]"}
epochs=${2:-100}
device=$(python -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
mkdir -p "$out"
python -c "from going_modular.training import validation_split; validation_split.download_validation_split()"

choose_and_sweep() {  # MODEL LR...: the recipe choice at 225 photos, then the sweep at the chosen rate
    local model=$1; shift
    for lr in "$@"; do
        python benchmarks/data_sweep.py --model "$model" --label "${model}_lr$lr" --sizes 225 --no-larger \
            --epochs "$epochs" --jobs 3 --threads 1 --device "$device" --output-dir "$out/recipe_choice" \
            -- --lr "$lr" --num-workers 0 >"$out/${model}_lr$lr.log" 2>&1 &
    done
    wait
    local best
    best=$(python - "$out/recipe_choice" "$model" <<'PY'
import json, statistics, sys
from pathlib import Path
folder, model = Path(sys.argv[1]), sys.argv[2]
means = {label.name.split("_lr")[1]: statistics.fmean(json.loads(path.read_text())["metrics"]["val_acc"][-1]
                                                      for path in label.glob("n225_seed*_results.json"))
         for label in folder.glob(f"{model}_lr*")}
print(max(means, key=means.get))
PY
)
    echo "$model: learning rate $best (best mean final validation accuracy at 225 photos)" >>"$out/choice.txt"
    mkdir -p "$out/data_sweep/$model"
    cp "$out/recipe_choice/${model}_lr$best"/n225_seed*_results.json "$out/data_sweep/$model/"
    python benchmarks/data_sweep.py --model "$model" --epochs "$epochs" --jobs 6 --threads 1 --device "$device" \
        --output-dir "$out/data_sweep" -- --lr "$best" --num-workers 0 >"$out/${model}_sweep.log" 2>&1
}

choose_and_sweep resnet18 1e-3 2e-3 4e-3 & resnet=$!
choose_and_sweep vit 3e-4 5e-4 1e-3 & vit=$!
choose_and_sweep hybrid 5e-4 1e-3 2e-3 & hybrid=$!
wait $resnet $vit $hybrid
python benchmarks/data_sweep.py --output-dir "$out/recipe_choice" >/dev/null
python benchmarks/data_sweep.py --output-dir "$out/data_sweep" --plot "$out/data_sweep.png"
cat "$out/choice.txt"
