#!/usr/bin/env bash
# Builds fastlanczos with its CUDA kernels on a machine without a GPU and checks the result:
#   the build succeeds, ptxas reports no register spills for csrc/cuda kernels, and every op
#   has a CUDA kernel registered with the dispatcher.
# Usage: .ci/build_cuda.sh [VENV]   (default .venv-cuda; an existing venv with torch 2.14.1 is
# reused). Environment: CUDA_HOME (default /usr/local/cuda), TORCH_CUDA_ARCH_LIST
# (default "8.0;9.0"), MAX_JOBS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${1:-.venv-cuda}
case $VENV in /*) ;; *) VENV=$ROOT/$VENV ;; esac  # later steps run from /tmp
TORCH_PIN=2.14.1
LOG=${BUILD_LOG:-build/build-cuda.log}
mkdir -p "$(dirname "$LOG")"

export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export PATH="$CUDA_HOME/bin:$PATH"
export FORCE_CUDA=1
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-8.0;9.0}
export MAX_JOBS=${MAX_JOBS:-2}

if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_PIN')" 2>/dev/null; then
  echo "== creating $VENV with torch==$TORCH_PIN"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q "torch==$TORCH_PIN" numpy pybind11 ninja setuptools wheel pytest scipy
fi
PY="$VENV/bin/python"
"$PY" -c "import torch; assert torch.version.cuda, 'torch in $VENV has no CUDA'; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"

echo "== building (log: $LOG)"
# A CPU build of another torch may have left objects in build/: never let ninja reuse them.
rm -rf build && mkdir -p "$(dirname "$LOG")"
start=$(date +%s)
if ! "$PY" -m pip install --no-build-isolation --no-deps -v . >"$LOG" 2>&1; then
  grep -E "error|Error" "$LOG" | head -40
  echo "FAIL: build failed, see $LOG"
  exit 1
fi
echo "built in $(( $(date +%s) - start )) s"

echo "== ptxas report for csrc/cuda kernels"
# ptxas -v prints, per kernel and architecture: "Compiling entry function '<name>' for 'sm_XX'",
# then "... bytes stack frame, N bytes spill stores, M bytes spill loads" and "Used R registers".
"$PY" - "$LOG" <<'PYEOF'
import re, subprocess, sys
text = open(sys.argv[1], errors="replace").read()
names, rows, bad = {}, [], []
kernel = arch = None
for line in text.splitlines():
    m = re.search(r"Compiling entry function '([^']+)' for '(sm_\d+)'", line)
    if m:
        kernel, arch = m.groups()
        continue
    m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
    if m and kernel:
        stack, stores, loads = map(int, m.groups())
        rows.append([kernel, arch, stack, stores, loads, None])
        if stores or loads:
            bad.append(kernel)
        continue
    m = re.search(r"Used (\d+) registers", line)
    if m and rows and rows[-1][5] is None:
        rows[-1][5] = int(m.group(1))
if not rows:
    sys.exit("FAIL: no ptxas report found in the build log (was -Xptxas -v passed?)")
try:  # readable kernel names
    demangled = subprocess.run(["c++filt"], input="\n".join(r[0] for r in rows), text=True,
                               capture_output=True).stdout.splitlines()
except OSError:
    demangled = [r[0] for r in rows]
for r, name in zip(rows, demangled):
    short = re.sub(r"\(.*", "", name.replace("(anonymous namespace)::", ""))[-60:]
    print(f"  {r[1]:6} regs {r[5]!s:>4}  stack {r[2]:>4}  spill st/ld {r[3]}/{r[4]}  {short}")
if bad:
    sys.exit(f"FAIL: register spills in {len(bad)} kernel(s)")
print(f"  {len(rows)} kernel builds, no spills")
PYEOF

echo "== dispatcher: every op has a CUDA kernel"
(cd /tmp && "$PY" -c "
import torch, fastlanczos.krylov.ops as ops
assert ops.available(), ops.load_error()
assert ops.built_with_cuda(), 'extension built without CUDA'
for op in ('tridiag_eigh', 'reorth_step'):
    assert torch._C._dispatch_has_kernel_for_dispatch_key('fastlanczos::' + op, 'CUDA'), op
print('  CUDA kernels registered; compiled against CUDA runtime', torch.ops.fastlanczos.cuda_version())
")
# From /tmp, so that the installed package is tested, not the source tree.
(cd /tmp && "$PY" -m pytest -q -p no:cacheprovider "$ROOT/tests/test_ops.py" \
  -k test_every_op_has_a_cuda_kernel -rs) | tee /tmp/fastlanczos-dispatch.txt | tail -3
grep -q "1 passed" /tmp/fastlanczos-dispatch.txt || { echo "FAIL: dispatcher test did not pass"; exit 1; }
echo "OK: CUDA build of fastlanczos passed all checks"
