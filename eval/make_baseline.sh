#!/bin/sh
# Regenerate eval/baseline.json: the demo question set on the demo knowledge base with the default
# (e5) encoder and default settings. Run it from anywhere after a deliberate change to the engine,
# the calibration or the demo FAQ, and commit the new baseline with that change.
#
# CI gate (fails when a metric falls by more than 0.01):
#   autoreply eval --knowledge knowledge/demo --questions eval/demo_questions.jsonl \
#       --baseline eval/baseline.json --max-drop 0.01
set -eu
cd "$(dirname "$0")/.."
export AUTOREPLY_CONFIG=/dev/null/none  # ignore a local autoreply.toml: baselines use defaults
"${PYTHON:-python}" -m autoreply eval --knowledge knowledge/demo \
    --questions eval/demo_questions.jsonl --encoder e5 --json > eval/baseline.json.tmp
mv eval/baseline.json.tmp eval/baseline.json
echo "wrote eval/baseline.json"
