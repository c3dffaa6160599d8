#!/usr/bin/env bash
# N processes on this machine, each with D forced CPU devices, started like a multi-host job:
# the same jax.distributed start-up path a TPU pod or a SLURM cluster takes.
#
#   launch/local_multiprocess.sh 2 2 train --config configs/shapes.py:smoke --workdir runs/mp
#
# Arguments: NUM_PROCESSES DEVICES_PER_PROCESS then the `sat` arguments.
set -euo pipefail
num_processes=${1:?usage: $0 NUM_PROCESSES DEVICES_PER_PROCESS sat-args...}
devices=${2:?usage: $0 NUM_PROCESSES DEVICES_PER_PROCESS sat-args...}
shift 2
port=${SAT_PORT:-$((20000 + RANDOM % 20000))}
sat=${SAT:-"$(dirname "$0")/../.venv/bin/sat"}

pids=()
for ((i = 0; i < num_processes; i++)); do
  SAT_COORDINATOR="127.0.0.1:${port}" SAT_NUM_PROCESSES="$num_processes" SAT_PROCESS_ID="$i" \
    JAX_PLATFORMS=cpu JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo \
    XLA_FLAGS="--xla_force_host_platform_device_count=${devices}" \
    "$sat" "$@" > >(sed "s/^/[process $i] /") 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=$?
done
exit "$status"
