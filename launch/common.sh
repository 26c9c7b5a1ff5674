# Shared by the launch scripts: argument parsing and dry-run execution.
# Every script takes CONFIG and WORKDIR as its first two arguments, then options; `--dry_run`
# prints each command (one per line, shell-quoted) instead of running it. Anything after `--` is
# passed to `python -m neural_assets.main` (e.g. `-- --config.optimizer.lr=1e-4`).

DRY_RUN=0
EXTRA_FLAGS=()

usage_and_exit() {
  echo "usage: $0 CONFIG WORKDIR [--dry_run] [-- extra main.py flags]" >&2
  exit 2
}

parse_common_args() {
  [ $# -ge 2 ] || usage_and_exit
  CONFIG="$1"; WORKDIR="$2"; shift 2
  while [ $# -gt 0 ]; do
    case "$1" in
      --dry_run) DRY_RUN=1 ;;
      --) shift; EXTRA_FLAGS=("$@"); break ;;
      *) echo "$0: unknown option $1" >&2; usage_and_exit ;;
    esac
    shift
  done
}

# Runs (or, with --dry_run, prints) one command given as separate words.
run() {
  if [ "$DRY_RUN" = 1 ]; then
    printf '%q ' "$@"; printf '\n'
  else
    "$@"
  fi
}

# The training command every launcher runs on every host / process, as one shell string.
main_command() {
  local cmd
  cmd="python -m neural_assets.main --config=$(printf '%q' "$CONFIG") --workdir=$(printf '%q' "$WORKDIR")"
  for flag in "$@" "${EXTRA_FLAGS[@]}"; do cmd+=" $(printf '%q' "$flag")"; done
  echo "$cmd"
}
