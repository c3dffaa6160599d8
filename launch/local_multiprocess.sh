#!/usr/bin/env bash
# N processes on this machine, each with D forced CPU devices, started like a multi-host job:
# the same jax.distributed start-up path a TPU pod or a SLURM cluster takes.
#
#   launch/local_multiprocess.sh 2 2 train --config configs/shapes.py:smoke --workdir runs/mp
#
# Arguments: NUM_PROCESSES DEVICES_PER_PROCESS then the `sat` arguments (SAT=... picks the
# executable). If a process fails, the others are stopped at once (SIGTERM, then SIGKILL after
# KILL_AFTER=10 seconds: a peer blocked in a collective with a dead process never returns) and
# the script exits with the failed process's status. 0 and 75 (stopped by a signal after a
# checkpoint) are not failures: the peers are finishing the same checkpoint, so they are awaited.
# SIGTERM or SIGINT to this script is passed on to every process (each saves and exits 75).
# Each process runs in its own session (setsid), so a stop reaches its children too.
set -euo pipefail
num_processes=${1:?usage: $0 NUM_PROCESSES DEVICES_PER_PROCESS sat-args...}
devices=${2:?usage: $0 NUM_PROCESSES DEVICES_PER_PROCESS sat-args...}
shift 2
port=${SAT_PORT:-$((20000 + RANDOM % 20000))}
sat=${SAT:-"$(dirname "$0")/../.venv/bin/sat"}

pids=()  # process index -> pid, for the processes still running; each leads its own group
# A process still starting has no group yet (setsid has not run): it is signalled by its pid.
# Never both: sat takes a second SIGTERM as "exit now, skip the checkpoint".
signal_all() {
  local pid
  for pid in "${pids[@]}"; do kill -"$1" -- "-$pid" 2>/dev/null || kill -"$1" "$pid" 2>/dev/null || true; done
}
running() { kill -0 -- "-$1" 2>/dev/null || kill -0 "$1" 2>/dev/null; }
stop_all() {  # SIGTERM, then SIGKILL whatever still runs after KILL_AFTER seconds
  local pid tenths
  signal_all TERM
  for ((tenths = 0; tenths < ${KILL_AFTER:-10} * 10; tenths++)); do
    for pid in "${pids[@]}"; do running "$pid" && break; pid=; done
    [[ -n ${pid:-} ]] || return 0
    sleep 0.1
  done
  signal_all KILL
  wait "${pids[@]}" 2>/dev/null || true  # gone, not only signalled, when this script exits
}
trap 'signal_all TERM' TERM INT
trap '((${#pids[@]} == 0)) || stop_all' EXIT

for ((i = 0; i < num_processes; i++)); do
  SAT_COORDINATOR="127.0.0.1:${port}" SAT_NUM_PROCESSES="$num_processes" SAT_PROCESS_ID="$i" \
    JAX_PLATFORMS=cpu JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo \
    XLA_FLAGS="--xla_force_host_platform_device_count=${devices}" \
    setsid "$sat" "$@" > >(sed -u "s/^/[process $i] /") 2>&1 &
  pids[i]=$!
done
# Polled: bash's `wait -n` misses a process that ended before it was called.
status=0
while ((${#pids[@]})); do
  for i in "${!pids[@]}"; do
    kill -0 "${pids[i]}" 2>/dev/null && continue
    code=0
    wait "${pids[i]}" || code=$?
    unset "pids[i]"
    if ((code != 0 && code != 75)); then
      echo "launch: process $i exited with status $code; stopping the others" >&2
      stop_all
      pids=()
      exit "$code"
    fi
    ((status != 0)) || status=$code
  done
  sleep 0.2
done
exit "$status"
