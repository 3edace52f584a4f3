#!/usr/bin/env bash
# The XLA, mixed-precision and numeric-parity tests under each oneDNN ISA cap on this one machine
# (ONEDNN_MAX_CPU_ISA only lowers the ISA: an AVX-512 machine also runs what an AVX2 one does), and once with
# TensorFlow's oneDNN ops off. A cap above what this CPU has is skipped and says so.
# Usage: bash tests/isa_matrix.sh [extra pytest args]   (run from any folder; uses the active python)
# Each setting's whole output goes to $ISA_MATRIX_LOGS/SETTING.log (default /tmp/isa_matrix);
# ISA_MATRIX_SETTINGS="AVX2 ONEDNN_OFF" runs only those settings.
# docs/testing.md has the command and its last result.
set -uo pipefail
cd "$(dirname "$0")/.."
TESTS=(tests/test_xla.py tests/test_full_batches.py tests/test_any_machine.py
       "tests/test_training.py::test_bf16_step_equals_the_float32_step_to_bf16_precision"
       "tests/test_distribution.py::test_float16_overflow_on_one_replica_skips_the_step_on_both"
       tests/test_fused_passes.py tests/test_replica_groups.py tests/test_models.py tests/test_precision.py)
flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
has() { for f in "$@"; do [[ "$flags" == *" $f "* ]] || return 1; done; }
needs() {   # the CPU flags each cap needs
    case "$1" in
        AVX2) echo "avx2 fma" ;;
        AVX512_CORE) echo "avx512f avx512bw avx512vl avx512dq" ;;
        AVX512_CORE_BF16) echo "avx512f avx512bw avx512vl avx512dq avx512_vnni avx512_bf16" ;;
        AVX512_CORE_AMX) echo "avx512f avx512bw avx512vl avx512dq avx512_vnni avx512_bf16 amx_tile amx_int8 amx_bf16" ;;
    esac
}
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
status=0
logs="${ISA_MATRIX_LOGS:-/tmp/isa_matrix}"
mkdir -p "$logs"
for setting in ${ISA_MATRIX_SETTINGS:-AVX2 AVX512_CORE AVX512_CORE_BF16 AVX512_CORE_AMX ONEDNN_OFF}; do
    if [[ $setting == ONEDNN_OFF ]]; then
        env=(TF_ENABLE_ONEDNN_OPTS=0); label="TF_ENABLE_ONEDNN_OPTS=0"
    else
        # shellcheck disable=SC2046
        if ! has $(needs "$setting"); then
            echo "ONEDNN_MAX_CPU_ISA=$setting: skipped, this CPU lacks $(for f in $(needs "$setting"); do has "$f" || printf '%s ' "$f"; done)"
            continue
        fi
        env=(ONEDNN_MAX_CPU_ISA="$setting"); label="ONEDNN_MAX_CPU_ISA=$setting"
    fi
    start=$(date +%s)
    log="$logs/$setting.log"
    env "${env[@]}" python -m pytest -q -p no:cacheprovider -rfEs "${TESTS[@]}" "$@" > "$log" 2>&1
    rc=$?
    [[ $rc -ne 0 ]] && status=1
    echo "$label: $(tail -1 "$log") (rc $rc, $(( $(date +%s) - start )) s; $log)"
    grep -E '^(FAILED|ERROR|SKIPPED) ' "$log" | sed 's/^/    /'
done
exit $status
