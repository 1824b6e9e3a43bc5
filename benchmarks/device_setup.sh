# Shared by the device-machine scripts (gpu_check.sh, paper_results.sh); sourced from the
# repository root after OUT, ONLY and PYTHON are set.

say() { echo "[$(date +%T) +${SECONDS}s] $*" | tee -a "$LOG"; }
wanted() { [[ ",$ONLY," == *",$1,"* ]]; }

# open_out_dir NAME: OUT made and absolute, LOG (OUT/log.txt) emptied, SCRATCH a new
# temporary folder named after NAME
open_out_dir() {
  open_scratch "$1"
  open_out
}

# open_scratch NAME: SCRATCH a new temporary folder named after NAME, LOG inside it until
# open_out, so that checks can run (and fail) before OUT exists
open_scratch() {
  SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  LOG=$SCRATCH/log.txt
  : >"$LOG"
}

# open_out: OUT made and absolute, the log so far moved to OUT/log.txt
open_out() {
  mkdir -p "$OUT"
  OUT=$(cd "$OUT" && pwd)
  cat "$LOG" >"$OUT/log.txt"
  LOG=$OUT/log.txt
}

# install_carried_wheels: the wheels in .whl (benchmarks/gpu_wheels.py) into SCRATCH/site when
# gymnasium & co. are missing, as on the GPU machines
install_carried_wheels() {
  if ! $PYTHON -c "import gymnasium, mujoco, minari, omegaconf" 2>/dev/null; then
    say "installing the carried wheels (.whl) into $SCRATCH/site"
    $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --target "$SCRATCH/site" .whl/*.whl >>"$LOG" 2>&1 || { say "wheel install failed"; exit 1; }
    export PYTHONPATH=$SCRATCH/site${PYTHONPATH:+:$PYTHONPATH}
  fi
}

# write_system_json PATH: Python, torch, CUDA, GPU, package versions and CPUs as JSON (also logged)
write_system_json() {
  $PYTHON - "$1" <<'PY' 2>>"$LOG"
import json, platform, subprocess, sys
from importlib.metadata import version
import torch
info = {
    "python": platform.python_version(),
    "torch": torch.__version__,
    "cuda": torch.version.cuda,
    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    "packages": {n: version(n) for n in ("gymnasium", "mujoco", "minari", "omegaconf", "numpy")},
    "cpus": __import__("os").cpu_count(),
}
try:
    info["nvidia_smi"] = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
        capture_output=True, text=True, timeout=20).stdout.strip()
except (OSError, subprocess.SubprocessError):
    info["nvidia_smi"] = None
json.dump(info, open(sys.argv[1], "w"), indent=2)
print(json.dumps(info))
PY
  tee -a "$LOG" <"$1" >/dev/null
}
