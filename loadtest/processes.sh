# Sourced by the loadtest scripts (from the repository root, after setting WORK to the run's
# temporary directory): every process a run starts goes into `started`, and `stop_all`
# stops exactly those and waits until they are gone; on exit the run's processes are
# stopped and WORK removed, whatever ended the run.

started=()
stop_all() {
  for pid in "${started[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${started[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  done
  started=()
}
trap 'stop_all; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM
