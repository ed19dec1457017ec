#!/usr/bin/env bash
# Rebuild the demo survival and prognosis weights as committed in weights/ (about 20 minutes
# on 2 CPU cores). Patients of a simulated demo cohort (cohort seed 1, so the app's library,
# drawn with seed 0, is unseen) are drawn in memory and trained with the public commands:
#
# - survival-cnn-lstm (seed 000): the COVID-19 patients' X-ray series of 2000 simulated
#   patients; the DenseNet-121 starts from the demo cxr-findings weights and stays frozen
#   (seed 000 started from a pre-trained DenseNet-121; ImageNet weights cannot be downloaded
#   here), the FC-1024 and LSTM(64) train with Adam at lr 1e-3 (the paper's 0.01 left the
#   loss at chance on these features; 1e-3, 3e-4 and 1e-4 all reach a held-out AUC near 0.98);
# - covid3d-prognosis-2scan / -1scan (seed 003): the COVID-19 patients' CTs of 1000
#   simulated patients; COVID3D's demo weights fine-tuned (the last two Inception blocks and a
#   new head) to call a remaining stay of 7 days or more high risk.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-weights}"
threads="${THREADS:-2}"
python -m core train-survival --data demo:2000 --out "$out" --threads "$threads" \
  --note "X-ray series of the COVID-19 patients of a simulated demo cohort (core.demo.cohort, 2000 patients, seed 1)"
for scans in 2 1; do
  python -m core train-prognosis --data demo:1000 --scans "$scans" --out "$out" --threads "$threads" \
    --note "CTs of the COVID-19 patients of a simulated demo cohort (core.demo.cohort, 1000 patients, seed 1)"
done
