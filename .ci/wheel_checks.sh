#!/usr/bin/env bash
# More checks of the installed wheel, run by .ci/run: $1 the clean venv, $2 an empty work folder.
# Each check is a command a user would type; add one per user path that must work from an install.
set -euo pipefail
VENV=$1
WORK=$2
cd "$WORK"
"$VENV/bin/videogen" models >/dev/null
# The Python API from the install, with the built-in model's defaults (shipped inside its model folder).
"$VENV/bin/python" -c "import videogen; r = videogen.generate('a red circle moving left on a black background', 'api.mp4', seed=1, steps=1); assert r.output.is_file() and r.record['spec']['frames'] == 17"
# The prompt from stdin, the video to stdout.
echo "a blue square moving up on a white background" | "$VENV/bin/videogen" generate - -o - --steps 1 -q > piped.mp4
test -s piped.mp4

# A Hub id from a cache laid out as huggingface_hub lays it out (blobs, snapshot links, refs/main), built from the
# installed package's own model, rendered offline with only HF_HOME set: the path of every preset of a real model.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MINI=$("$VENV/bin/python" -c "from videogen.loading import builtin_model_path; print(builtin_model_path())")
"$VENV/bin/python" "$HERE/../tests/hub_cache.py" "$MINI" "$WORK/hf" org/mini >/dev/null
env -i PATH=/usr/bin:/bin HOME="$WORK" HF_HOME="$WORK/hf" HF_HUB_OFFLINE=1 "$VENV/bin/videogen" generate \
    "a red circle moving left on a black background" -m org/mini --frames 17 --height 32 --width 32 --steps 4 \
    --seed 1 -q -o "$WORK/hub.mp4" >/dev/null
"$VENV/bin/python" - "$WORK/hub.mp4.json" <<'PY'
import json, sys
model = json.load(open(sys.argv[1]))["model"]
assert model["hub_id"] == "org/mini" and len(model["revision"]) == 40, model
PY
env -i PATH=/usr/bin:/bin HOME="$WORK" HF_HOME="$WORK/hf" "$VENV/bin/videogen" doctor --json >"$WORK/doctor.json"
"$VENV/bin/python" -c "import json, sys; json.load(open(sys.argv[1]))" "$WORK/doctor.json"
