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
