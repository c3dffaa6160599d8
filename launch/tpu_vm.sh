#!/usr/bin/env bash
# Run show_attend_tell on every worker of a Cloud TPU VM slice (v4-32, v5e-16, ...).
#
#   export TPU_NAME=my-v4-32 ZONE=us-central2-b    # PROJECT=... if not gcloud's default
#   launch/tpu_vm.sh setup      # ship this checkout; install Python 3.11 + jax[tpu] with uv
#   launch/tpu_vm.sh train --config configs/coco.py:soft --workdir gs://my-bucket/runs/coco_soft
#   launch/tpu_vm.sh logs       # every worker's last lines (TAIL=200 for more)
#   launch/tpu_vm.sh stop       # SIGTERM: sat saves a checkpoint and exits; `train` again resumes
#   launch/tpu_vm.sh cleanup    # kill whatever still holds the TPU (a crashed or stale run)
#
# Any other verb is a `sat` command, started detached (setsid nohup) on all workers at once with
# SAT_DISTRIBUTED=auto (jax.distributed reads the slice from the TPU metadata), so a dropped ssh
# connection does not stop it; each worker logs to ~/show_attend_tell/logs/. The workdir and
# data must be on shared storage (gs://). WORKER=0 targets one worker; DRY_RUN=1 prints the
# gcloud commands instead of running them (setup still writes the archive, to $ARCHIVE).
set -euo pipefail
verb=${1:?usage: $0 setup|logs|stop|cleanup|SAT-COMMAND [ARGS...]}
shift
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=show_attend_tell  # on each worker, under ~
# A full path, expanded on the worker: stop and cleanup match this checkout's processes only.
sat="\$HOME/$dir/.venv/bin/sat"

show() {  # one command as a shell line: words that need it in single quotes
  local word line=()
  for word in "$@"; do
    [[ $word =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]] || word="'${word//\'/\'\\\'\'}'"
    line+=("$word")
  done
  echo "${line[*]}"
}
tpu_vm() {  # gcloud compute tpus tpu-vm VERB ARGS..., on the chosen workers
  local cmd=(gcloud compute tpus tpu-vm "$@" --zone="$ZONE" --worker="${WORKER:-all}"
             ${PROJECT:+--project="$PROJECT"})
  if [[ -n ${DRY_RUN:-} ]]; then show "${cmd[@]}"; else "${cmd[@]}"; fi
}
on_workers() { tpu_vm ssh "$TPU_NAME" --command="$1"; }

case $verb in
setup)
  # Exactly the files git sees (tracked and untracked-but-not-ignored, as on disk): no .venv,
  # runs/ or /data/, and every package module (a name filter like --exclude=data would also
  # drop show_attend_tell/data/).
  git -C "$repo" rev-parse --git-dir >/dev/null 2>&1 \
    || { echo "$0 setup: $repo is not a git checkout; it ships the files git lists" >&2; exit 1; }
  archive=${ARCHIVE:-$(mktemp -d)/sat.tgz}
  (cd "$repo" && git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' file; do if [[ -e $file ]]; then printf '%s\0' "$file"; fi; done \
    | tar --null -T - -czf "$archive")
  echo "shipping $(git -C "$repo" describe --always --dirty) ($archive)"
  tpu_vm scp "$archive" "$TPU_NAME:sat.tgz"
  # uv, not apt: TPU VM images ship Python 3.10 without python3-venv, and apt is often locked
  # by unattended-upgrades on a fresh VM; uv fetches a standalone CPython with no sudo.
  on_workers "set -e; export PATH=\$HOME/.local/bin:\$PATH
    command -v uv >/dev/null || python3 -m pip install -q --user uv \
      || curl -LsSf https://astral.sh/uv/install.sh | sh
    mkdir -p ~/$dir && cd ~/$dir
    find . -mindepth 1 -maxdepth 1 ! -name .venv ! -name logs -exec rm -rf {} +
    tar -xzf ~/sat.tgz
    [ -x .venv/bin/python ] || uv venv -q --python ${PYTHON_VERSION:-3.11} .venv
    uv pip install -q --python .venv/bin/python -e . 'jax[tpu]'
    .venv/bin/python -c 'import show_attend_tell.cli, show_attend_tell.train' \
      && echo \"\$(hostname): ready\""
  ;;
logs)
  on_workers "if pgrep -f $sat >/dev/null; then state=running; else state=stopped; fi
    tail -n ${TAIL:-40} ~/$dir/logs/latest.log | sed \"s/^/[\$(hostname) \$state] /\""
  ;;
stop)
  # sat checkpoints at the step all processes agree on, then exits (status 75); wait for it.
  on_workers "pkill -TERM -f $sat || echo \"\$(hostname): no sat running\"
    for _ in \$(seq ${STOP_WAIT:-600}); do pgrep -f $sat >/dev/null || break; sleep 1; done
    tail -n 3 ~/$dir/logs/latest.log | sed \"s/^/[\$(hostname)] /\""
  ;;
cleanup)
  # /dev/accel* on v2-v4, /dev/vfio/* on v5e and later; libtpu's lock file outlives a kill.
  on_workers "pkill -KILL -f $sat; sudo lsof -t -w /dev/accel* /dev/vfio/* 2>/dev/null \
    | xargs -r sudo kill -9; sudo rm -f /tmp/libtpu_lockfile; echo \"\$(hostname): TPU free\""
  ;;
*)
  log=$(date -u +%Y%m%d-%H%M%S)-$verb.log
  args=$verb$( (($#)) && printf ' %q' "$@")
  on_workers "set -e; cd ~/$dir || { echo \"\$(hostname): no ~/$dir: run $0 setup\" >&2; exit 1; }
    mkdir -p logs
    if pgrep -f $sat >/dev/null; then
      echo \"\$(hostname): sat is already running: $0 stop, or cleanup\" >&2; exit 1; fi
    SAT_DISTRIBUTED=auto setsid nohup $sat $args \
      > logs/$log 2>&1 < /dev/null &
    ln -sfn $log logs/latest.log && echo \"\$(hostname): started, log ~/$dir/logs/$log\""
  ;;
esac
