# Source this on the GPU machine from the repository root: makes `import gristmill.*` resolve to this
# checkout without installing (the machine is offline, so a build-isolated pip install cannot run).
_gm_root=$(pwd)
_gm_shim=$(mktemp -d)
mkdir -p "$_gm_shim/gristmill"
for _gm_pkg in pipeline filters tokenizer trainer kernels; do
  ln -s "$_gm_root/$_gm_pkg" "$_gm_shim/gristmill/$_gm_pkg"
done
export PYTHONPATH="$_gm_shim${PYTHONPATH:+:$PYTHONPATH}"
