#!/usr/bin/env bash
# A dress rehearsal of the Flickr8k workflow, offline: the commands a Flickr8k user types, on a
# Flickr8k-shaped corpus of shapes photos (`sat data rehearsal`). `make rehearsal` runs it.
#
#   launch/rehearsal.sh [DIR]      # default runs/rehearsal; every step resumes or is skipped
#
# Sizes come from the environment (the defaults are `make rehearsal`'s):
#   IMAGES=1500 VAL=150 TEST=200 STEPS=600 BATCH=32 EVAL_EVERY=200
#   TRAIN_ARGS="..."   extra --config.* overrides for sat train (the tests shrink the model)
#   CAPTIONS_PER_IMAGE=1  captions per image in a batch (the figures in docs/datasets.md: 1;
#                         5 needs BATCH a multiple of 5)
#   SAT="sat" PYTHON=python3   how to call the CLI and Python (make passes the .venv's)
set -euo pipefail
dir=${1:-runs/rehearsal}
sat=${SAT:-sat}
images=${IMAGES:-1500} val=${VAL:-150} test=${TEST:-200}
steps=${STEPS:-600} batch=${BATCH:-32} eval_every=${EVAL_EVERY:-200}
corpus=$dir/flickr8k tfds=$dir/tfds weights=$dir/lite0.npz features=$dir/features run=$dir/run
start=$SECONDS
step() { printf '== %s (%d s)\n' "$1" $((SECONDS - start)); }

step "1/7 writing the Flickr8k-shaped corpus"
[ -f "$corpus/dataset_flickr8k.json" ] || $sat data rehearsal --out "$corpus" \
  --num_images "$images" --num_val "$val" --num_test "$test"

step "2/7 building the TFDS dataset"
$sat data build karpathy/flickr8k --manual_dir "$corpus" --data_dir "$tfds"

step "3/7 importing EfficientNet-Lite0's ImageNet weights"
[ -f "$weights" ] || $sat weights import efficientnet_lite0 --out "$weights"

# What the encoder is and where the data lives, for every command that reads the config.
data=(--config.data.data_dir="$tfds" --config.model.encoder.name=efficientnet_lite0
      --config.model.encoder.weights="$weights")

step "4/7 caching the frozen encoder's annotations"
missing=()
for split in train val test; do [ -d "$features/$split" ] || missing+=("$split"); done
[ ${#missing[@]} -eq 0 ] || $sat data cache-features --config configs/flickr8k.py "${data[@]}" \
  --split "${missing[@]}" --out "$features"

step "5/7 training (early stopping on validation BLEU-4)"
# shellcheck disable=SC2086  # TRAIN_ARGS is a list of words
$sat train --config configs/flickr8k.py --workdir "$run" "${data[@]}" \
  --config.data.feature_cache="$features" --config.train.steps="$steps" \
  --config.train.batch_size="$batch" --config.train.eval_every="$eval_every" \
  --config.data.captions_per_image="${CAPTIONS_PER_IMAGE:-1}" \
  --config.train.checkpoint_every="$eval_every" ${TRAIN_ARGS:-}

step "6/7 evaluating the best checkpoint on the test split, with grounding"
$sat evaluate --workdir "$run" --split test --checkpoint best --objects "$corpus/scenes.json" \
  | tee "$dir/evaluate.txt"
report=$(sed -n 's/^wrote //p' "$dir/evaluate.txt" | tail -n 1)
${PYTHON:-python3} -m show_attend_tell.data.rehearsal "$corpus/dataset_flickr8k.json" "$report"

step "7/7 captioning three of the photos"
mapfile -t photos < <(find "$corpus/Flicker8k_Dataset" -name '*.jpg' | sort | tail -n 3)
$sat caption --workdir "$run" --checkpoint best "${photos[@]}" --out "$dir/captions"

step "done"
