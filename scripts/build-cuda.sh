#!/usr/bin/env bash
# Builds afx with `--features cuda` (candle's CUDA backend) on a machine WITHOUT a GPU and without a system
# CUDA toolkit, as CI does. Nothing here needs a GPU: candle-kernels compiles its .cu files to PTX and to a
# static library at build time, for the compute capability given in CUDA_COMPUTE_CAP.
#
# The CUDA toolchain comes from NVIDIA's PyPI wheels, pinned below, installed into a venv
# ($AFX_CUDA_VENV, default target/cuda-toolchain). They are CUDA 13.0: NVIDIA's CUDA 12 nvcc wheels ship only
# ptxas and libnvvm, not the nvcc driver itself; the CUDA 13 wheels lay out a complete toolkit root under
# site-packages/nvidia/cu13 (bin/nvcc, nvvm/bin/cicc, include/, lib/).
#
# Environment (all optional):
#   CUDA_COMPUTE_CAP  GPU architecture to compile for; default 90 (H100/H200, compiled as sm_90a).
#                     E.g. 80 for A100, 89 for L4/L40S. The PTX only loads on that architecture.
#   CARGO_TARGET_DIR  default target/cuda, so the CPU build in target/ is not rebuilt.
#   AFX_CUDA_VENV     where the toolchain venv goes; default target/cuda-toolchain.
#
# Running the result on a GPU machine needs an NVIDIA driver for CUDA 13 (>= 580) and the CUDA libraries the
# binary links: LD_LIBRARY_PATH=<venv>/lib/python3*/site-packages/nvidia/cu13/lib (the script prints it).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target/cuda}
venv=${AFX_CUDA_VENV:-$repo/target/cuda-toolchain}

# The CUDA 13.0 wheels, versions as in NVIDIA's cuda-toolkit==13.0.3.0 meta-package. What each is for:
wheels=(
  nvidia-cuda-nvcc==13.0.88     # nvcc, cudafe++, ptxas, fatbinary, nvlink
  nvidia-nvvm==13.0.88          # cicc and libnvvm (nvcc's device compiler)
  nvidia-cuda-crt==13.0.88      # include/crt: nvcc's device-side headers
  nvidia-cuda-runtime==13.0.96  # cuda.h, cuda_runtime.h, libcudart (candle-kernels links cudart)
  nvidia-cuda-cccl==13.0.85     # thrust, cub, libcu++ headers (candle-kernels' sort kernels)
  nvidia-cuda-nvrtc==13.0.88    # libnvrtc (cudarc links it)
  nvidia-curand==10.4.0.35      # libcurand (cudarc links it)
  nvidia-cublas==13.1.1.3       # libcublas, libcublasLt (cudarc links them); the big one, ~420 MB
)

# Debian packages the workspace itself needs to build (liblilv-dev, pkg-config, ...); idempotent.
bash scripts/setup-debian.sh

# 1. The venv. Debian's python3 lacks the venv module until python3-venv is installed.
if [ ! -x "$venv/bin/pip" ]; then
  if ! command -v python3 >/dev/null || ! python3 -m venv "$venv" >/dev/null 2>&1; then
    rm -rf "$venv"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
fi
# --no-deps: exactly the pinned set (the wheels' own requirements are unpinned). A second run finds them
# installed and downloads nothing.
"$venv/bin/pip" install --disable-pip-version-check --quiet --no-deps "${wheels[@]}"

cuda=$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')
if [ ! -x "$cuda/bin/nvcc" ]; then
  echo "build-cuda.sh: no nvcc in $cuda/bin after installing the wheels" >&2
  exit 1
fi

# 2. Make $cuda look like a CUDA toolkit root to the linker. Wheels cannot hold symlinks, so the unversioned
# names that `-lcublas` etc. look for are made here. libcuda comes with the GPU driver, not with any wheel: the
# link gets a stub in lib/stubs (as NVIDIA's own toolkit has) exporting every function cuda.h declares, under
# the driver's soname libcuda.so.1, so at run time the real driver library is loaded. Each stub function returns
# CUDA_ERROR_STUB_LIBRARY (34), so a binary that meets the stub instead of a driver fails cleanly. lib/stubs is
# a link path only: never put it on LD_LIBRARY_PATH on a GPU machine.
for lib in cudart:13 cublas:13 cublasLt:13 curand:10 nvrtc:13; do
  ln -sfn "lib${lib%%:*}.so.${lib##*:}" "$cuda/lib/lib${lib%%:*}.so"
done
mkdir -p "$cuda/lib/stubs"
stub_c=$(mktemp --suffix=.c)
trap 'rm -f "$stub_c"' EXIT
# Declarations after preprocessing carry the exported names (cuCtxCreate -> cuCtxCreate_v4, ...).
gcc -E -P -I"$cuda/include" "$cuda/include/cuda.h" \
  | grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' | tr -d '( \t' | sort -u \
  | sed 's/.*/int &(void) { return 34; }/' >"$stub_c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$cuda/lib/stubs/libcuda.so" "$stub_c"
ln -sfn libcuda.so "$cuda/lib/stubs/libcuda.so.1" # for the smoke test at the end

# 3. Point the build scripts at it. cudaforge (candle-kernels) takes nvcc from NVCC, else PATH, and reads
# CUDA_COMPUTE_CAP instead of asking nvidia-smi; cudarc runs `nvcc --version` for the CUDA version (13.0) and
# adds $CUDA_HOME/lib and $CUDA_HOME/lib/stubs (also CUDA_PATH, CUDA_ROOT) to the link path.
export PATH="$cuda/bin:$PATH" NVCC="$cuda/bin/nvcc"
export CUDA_HOME="$cuda" CUDA_PATH="$cuda" CUDA_ROOT="$cuda"
echo "build-cuda.sh: $(nvcc --version | grep release), CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP, target dir $CARGO_TARGET_DIR"

# 4. The afx binary with the cuda code paths (every library crate of the workspace is in it). Tests, benches and
# examples too with AFX_CUDA_ALL_TARGETS=1 (about 11 more minutes on 2 cores; CI skips them to stay well inside
# its time limit: nvcc compiling candle's kernels already takes about 20 of the cold build's minutes).
if [ "${AFX_CUDA_ALL_TARGETS:-0}" = 1 ]; then
  cargo build --release --locked --features cuda --workspace --all-targets
fi
cargo build --release --locked --features cuda

# 5. Smoke test without a GPU: the binary loads (every library it links is found, libcuda being the stub) and
# asking for the CUDA device fails with the driver's error instead of the "built without CUDA" one.
afx="$CARGO_TARGET_DIR/release/afx"
smoke=$(LD_LIBRARY_PATH="$cuda/lib:$cuda/lib/stubs" "$afx" train --device cuda --chain none --data /nonexistent \
  --out /nonexistent 2>&1 || true)
if ! grep -q 'cuda:0' <<<"$smoke" || grep -q 'without CUDA' <<<"$smoke"; then
  echo "build-cuda.sh: smoke test failed, \`afx train --device cuda\` without a GPU said:" >&2
  echo "$smoke" >&2
  exit 1
fi
echo "build-cuda.sh: smoke test ok: $(grep -m 1 'cuda:0' <<<"$smoke")"

echo "build-cuda.sh: built $afx for compute capability $CUDA_COMPUTE_CAP."
echo "To run it on a GPU machine (NVIDIA driver >= 580): LD_LIBRARY_PATH=$cuda/lib $afx ..."
