#!/usr/bin/env bash
# A multi-node GPU job under SLURM: one process per GPU (default) or one per host
# (PROCESS_PER=host), initialised by jax.distributed from SLURM's environment.
#   NODES=4 GPUS_PER_NODE=8 PARTITION=a100 \
#   launch/slurm_gpu.sh configs/objectron.py /shared/na/objectron [--dry_run] [-- flags]
# With --dry_run the batch script is printed, then the sbatch command.
set -euo pipefail
source "$(dirname "$0")/common.sh"
parse_common_args "$@"
NODES="${NODES:-1}"
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
PROCESS_PER="${PROCESS_PER:-gpu}"
TIME_LIMIT="${TIME_LIMIT:-48:00:00}"
case "$PROCESS_PER" in
  gpu) TASKS_PER_NODE="$GPUS_PER_NODE"; GPU_LINE="#SBATCH --gpus-per-task=1" ;;
  host) TASKS_PER_NODE=1; GPU_LINE="#SBATCH --gpus-per-node=$GPUS_PER_NODE" ;;
  *) echo "$0: PROCESS_PER must be gpu or host, not $PROCESS_PER" >&2; exit 2 ;;
esac
PARTITION_LINE=""
[ -n "${PARTITION:-}" ] && PARTITION_LINE="#SBATCH --partition=$PARTITION"
REPO_DIR="$(cd "$(dirname "$0")/.." && pwd)"
SCRIPT="$(mktemp "${TMPDIR:-/tmp}/neural_assets_slurm.XXXXXX")"
cat > "$SCRIPT" <<SBATCH
#!/usr/bin/env bash
#SBATCH --job-name=na-$(basename "$CONFIG" .py)
#SBATCH --nodes=$NODES
#SBATCH --ntasks-per-node=$TASKS_PER_NODE
$GPU_LINE
$PARTITION_LINE
#SBATCH --time=$TIME_LIMIT
#SBATCH --signal=TERM@120
#SBATCH --requeue
#SBATCH --output=%x-%j.out
set -euo pipefail
cd $(printf '%q' "$REPO_DIR")
# SIGTERM two minutes before the limit lets the job save a checkpoint; --requeue restarts the
# same command, which resumes from it.
srun --kill-on-bad-exit=1 $(main_command --distributed)
SBATCH
if [ "$DRY_RUN" = 1 ]; then cat "$SCRIPT"; fi
run sbatch "$SCRIPT"
[ "$DRY_RUN" = 1 ] && rm -f "$SCRIPT"
exit 0
