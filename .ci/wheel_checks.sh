#!/usr/bin/env bash
# More checks of the installed wheel, run by .ci/run: $1 the clean venv, $2 an empty work folder.
# Each check is a command a user would type; add one per user path that must work from an install.
set -euo pipefail
VENV=$1
WORK=$2
cd "$WORK"
"$VENV/bin/videogen" models >/dev/null
