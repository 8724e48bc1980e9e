#!/usr/bin/env bash
# utils/setup.sh: create the folder of a new corpus recipe (as ESPnet's egs2/TEMPLATE/asr1/setup.sh).
#
#   egs/TEMPLATE/utils/setup.sh egs/mycorpus
#
# makes egs/mycorpus with
#   utils, path.sh, kt.sh   relative symlinks to egs/TEMPLATE (shared, so fixes there reach every recipe)
#   cmd.sh, run.sh          copies to edit (launchers; the corpus's option values)
#   conf/                   copies of egs/TEMPLATE/conf/*.yaml, commented (fbank.yaml: set sample_rate to the
#                           corpus's audio rate first), to edit
#   local/data.sh           the data preparation to write, which fails until it is written
# The folder is built under a temporary name and renamed at the end; an existing folder is never touched.
set -euo pipefail

if [ $# -ne 1 ] || [[ $1 == -* ]]; then
  echo "Usage: $0 <new-recipe-dir>   e.g. $0 egs/mycorpus" >&2
  exit 1
fi
target=${1%/}

template=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd -P)
if [ -e "$target" ] || [ -L "$target" ]; then
  echo "$0: $target already exists: refusing to overwrite it (remove it or choose another name)" >&2
  exit 1
fi
parent=$(dirname "$target")
[ -d "$parent" ] || { echo "$0: the parent folder $parent of $target does not exist" >&2; exit 1; }
parent=$(cd "$parent" && pwd -P)
name=$(basename "$target")

# The links are relative to the physical location, so they stay valid when the repository is moved.
rel=$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$template" "$parent/$name")

tmp=$(mktemp -d "$parent/.setup.$name.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# Same parent folder as the target, so the relative links need no change after the rename.
for f in utils path.sh kt.sh; do
  ln -s "$rel/$f" "$tmp/$f"
done
cp "$template/cmd.sh" "$tmp/cmd.sh"
cp "$template/run.sh" "$tmp/run.sh"
mkdir -p "$tmp/conf" "$tmp/local"
[ -d "$template/conf" ] || { echo "$0: $template/conf is missing: the template is incomplete" >&2; exit 1; }
cp -R "$template/conf/." "$tmp/conf/"
cp "$template/local/data.sh" "$tmp/local/data.sh"
chmod +x "$tmp/run.sh" "$tmp/local/data.sh"
chmod 755 "$tmp"  # mktemp -d makes it 700

# -T: never move into a folder that appeared meanwhile.
mv -T "$tmp" "$parent/$name"
trap - EXIT
echo "$0: created $target: write local/data.sh, set the options in run.sh and the configs in conf/, then ./run.sh (check sample_rate in conf/fbank.yaml: it must be your audio's rate)"
