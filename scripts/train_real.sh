#!/usr/bin/env bash
# Train the real-data models shipped in weights/ with the project's own commands, from scratch
# (no ImageNet weights can be had here), on ../shared/data (never committed: see its README).
#
#   bash scripts/train_real.sh pilot   # learning-rate pilot at 112 px, 4 epochs each (~10 min)
#   bash scripts/train_real.sh xray    # cxr-real-resnet18 at 224 px (~45 min on 2 CPU cores)
#   bash scripts/train_real.sh ct      # ct-slice-real-resnet18 at 224 px (~25 min)
#   bash scripts/train_real.sh checks  # shortcut checks and OOD detection figures of both (~10 min)
#   bash scripts/train_real.sh demo    # OOD references and detection figures of the demo models (~30 min)
#
# Recipe, and why (README "Real-data models" has the figures):
# - ResNet-18, one input channel, AdamW (weight decay 1e-4), batch 32, one warm-up epoch then
#   cosine decay: from scratch a constant rate either crawls (3e-5, seed 000's fine-tuning rate)
#   or leaves BatchNorm statistics lagging the weights at the end; the decay settles them.
#   The pilot compares peak rates 3e-4, 1e-3 and 3e-3 on the dev loss.
# - --strong-augment: affine jitter, blur or down-and-up resampling (the Pneumonia films came
#   through two resampling paths, a texture shortcut), blanked borders (burned-in markers and
#   black frames differ between the Spanish COVID-19 films and the American others), gamma.
# - X-ray: a balanced sampler (559 Pneumonia films against 1,800 Normal and 1,749 COVID-19).
# - Split: by NIH patient id for Pneumonia; COVID-19 and Normal films, and every CT slice, have
#   no id: blocks of 25 (X-ray) / 50 (CT slices, about two patients' slices) neighbouring file
#   numbers stay on one side.
# - CT slices: one seeded train/dev/test split of slice images (no k-fold: 5 folds would cost
#   five trainings on the CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${DATA:-../shared/data}"
stage="${1:-all}"
threads="${THREADS:-2}"

xray_note="Adult frontal chest X-rays, 224 px 8-bit: COVID-19 from BIMCV-COVID19+ (Valencia, Spain) via the COVID-19 Radiography Database; Normal from the RSNA Pneumonia Detection Challenge (NIH ChestX-ray14, USA); Pneumonia (any cause, non-COVID) from NIH ChestX-ray14 films labelled Pneumonia, adults only"
xray_licences="BIMCV-COVID19+: research use only, no redistribution (Medical Imaging Databank of the Valencia Region). COVID-19 Radiography Database: cite Chowdhury et al., IEEE Access 8 (2020) 132665 and Rahman et al., Comput Biol Med 132 (2021) 104319. RSNA Pneumonia Detection Challenge (2018) and NIH ChestX-ray14: no usage restrictions, attribution to the NIH Clinical Center; cite Wang et al., CVPR 2017, 3462-3471."
ct_note="Axial chest CT slices, 8-bit PNG (mostly lung window), COVID-19 and Non-COVID (not infected by SARS-CoV-2, may have other lung disease), from the SARS-CoV-2 CT-scan dataset of Soares et al. (one hospital, Sao Paulo, Brazil)"
ct_licences="SARS-CoV-2 CT-scan dataset (Soares et al., medRxiv 2020, doi:10.1101/2020.04.24.20078584): CC BY-NC-SA 4.0, non-commercial use only, derived work under the same licence."

xray_common=(--data "$data/cxr-adult/manifest.csv" --arch resnet18 --channels 1 --batch-size 32
  --weight-decay 1e-4 --schedule cosine --strong-augment --balanced --block 25 --seed 0
  --threads "$threads" --domain real --note "$xray_note" --licences "$xray_licences")
ct_common=(--data "$data/ct-slices" --batch-size 32 --weight-decay 1e-4 --schedule cosine
  --strong-augment --block 50 --seed 0 --threads "$threads" --domain real --note "$ct_note"
  --licences "$ct_licences")

mkdir -p /tmp/train-real
if [[ $stage == pilot ]]; then
  for lr in 3e-4 1e-3 3e-3; do
    python -m core train-xray "${xray_common[@]}" --size 112 --epochs 4 --patience 9 --lr "$lr" \
      --out /tmp/train-real/pilot --id "pilot-xray-$lr" 2>&1 | grep -E "^epoch [0-9]+:|held-out"
  done
fi
if [[ $stage == xray || $stage == all ]]; then
  python -m core train-xray "${xray_common[@]}" --size 224 --epochs "${XRAY_EPOCHS:-16}" --patience 5 \
    --lr "${XRAY_LR:-1e-3}" --out weights --id cxr-real-resnet18
fi
if [[ $stage == ct || $stage == all ]]; then
  python -m core train-ct-slice "${ct_common[@]}" --size 224 --epochs "${CT_EPOCHS:-14}" --patience 5 \
    --lr "${CT_LR:-1e-3}" --out weights --id ct-slice-real-resnet18
fi
xray_caveats="Every COVID-19 film comes from Spanish hospitals (BIMCV) and every Normal and Pneumonia film from one American one (NIH): COVID-19 against the rest can be learnt from the hospital (markers, frames, processing) instead of the disease, so high figures here do not show that it detects COVID-19; Pneumonia against Normal is the within-site contrast. COVID-19 labels are PCR-based and many films look near-normal; NIH Pneumonia labels were mined from reports. Expect lower figures on other hospitals' films."
ct_caveats="All slices come from one hospital in Sao Paulo and were exported as 8-bit images with their own crop and window; no patient ids (split by blocks of 50 neighbouring slices). On a DICOM series each slice is windowed at W1500/L-600 and cropped to its lungs, which only approximates these exports, and only the slices through the lungs are read."
if [[ $stage == checks || $stage == all ]]; then
  python -m core shortcut-check --model cxr-real-resnet18 --caveats "$xray_caveats"
  python -m core shortcut-check --model ct-slice-real-resnet18 --caveats "$ct_caveats"
  python -m core ood-check --model cxr-real-resnet18 --model ct-slice-real-resnet18
fi
if [[ $stage == demo ]]; then
  demo_models=(cxr-resnet18 cxr-custom cxr-densenet121 cxr-findings ct-slice-resnet18 covid3d)
  for m in "${demo_models[@]}"; do python -m core fit-ood --model "$m"; done
  for m in "${demo_models[@]}"; do python -m core ood-check --model "$m"; done
fi
