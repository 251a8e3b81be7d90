#!/usr/bin/env bash
# Runs critest (cri-tools v1.26.1) against Bulkhead in the shared CRI rig (/work/shared/cri-rig).
#
#   test/critest/run.sh start            # start Bulkhead's daemon in the rig netns (idempotent)
#   test/critest/run.sh critest [LABEL]  # run the rig's run-critest.sh against it
#   test/critest/run.sh stop             # remove leftover pods, stop the daemon this script started (by pid)
#   test/critest/run.sh all              # start, critest (runc), stop
#
# Env: CRITEST / CRICTL (default: found on PATH or /tmp/*/critest), RIG_RUNTIME_HANDLER=gvisor,
#      RIG_CRITEST_FOCUS / RIG_CRITEST_SKIP / RIG_CRITEST_RPC_TIMEOUT (passed to the rig),
#      BH_CRITEST_ROOT (default /var/lib/bulkhead-critest), BH_CRITEST_RUN (default /run/bulkhead-critest),
#      RIG_DIR (default /work/shared/cri-rig).
# Needs: root, the rig netns + registry (RIG_DIR/setup-registry.sh, build-test-images.sh).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
RIG_DIR="${RIG_DIR:-/work/shared/cri-rig}"
ROOT="${BH_CRITEST_ROOT:-/var/lib/bulkhead-critest}"
RUN="${BH_CRITEST_RUN:-/run/bulkhead-critest}"
SOCK="$RUN/cri.sock"
PIDF="$RUN/daemon.pid"
LOGF="$ROOT/daemon.log"
NETNS="${RIG_NETNS-rigcri}"

log() { printf '[critest/run.sh] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

find_critest() {
  if [ -z "${CRITEST:-}" ]; then
    CRITEST="$(type -P critest || ls /tmp/*/critest /tmp/critest 2>/dev/null | head -1 || true)"
  fi
  [ -n "$CRITEST" ] && [ -x "$CRITEST" ] || die "critest not found; build it (see README.md) and set CRITEST=..."
  export CRITEST
}

alive() { # pid file -> pid of a live bulkhead daemon, or nothing
  [ -f "$PIDF" ] || return 1
  local p; p="$(cat "$PIDF")"
  kill -0 "$p" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$p/cmdline" | grep -qF -- "--socket $SOCK" || return 1
  echo "$p"
}

start() {
  if p="$(alive)"; then log "daemon already running (pid $p)"; return 0; fi
  [ -z "$NETNS" ] || [ -e "/run/netns/$NETNS" ] || die "netns $NETNS missing: run $RIG_DIR/setup-registry.sh and build-test-images.sh"
  mkdir -p "$ROOT" "$RUN"
  log "starting Bulkhead daemon in netns '${NETNS:-host}' (root $ROOT, socket $SOCK, log $LOGF)"
  local ns=()
  [ -n "$NETNS" ] && ns=(nsenter "--net=/run/netns/$NETNS" --)
  # cwd = repo root: config.toml names the policy file relative to it.
  cd "$repo"
  setsid "${ns[@]}" "$repo/bin/bulkhead" daemon --root "$ROOT" --run-dir "$RUN" \
    --socket "$SOCK" --config "$here/config.toml" >>"$LOGF" 2>&1 </dev/null &
  echo $! >"$PIDF"
  for _ in $(seq 1 120); do
    [ -S "$SOCK" ] && { log "daemon up (pid $(cat "$PIDF"))"; return 0; }
    alive >/dev/null || { tail -20 "$LOGF" >&2; die "daemon exited during startup"; }
    sleep 0.5
  done
  die "daemon socket $SOCK did not appear within 60s (see $LOGF)"
}

find_crictl() {
  if [ -z "${CRICTL:-}" ]; then
    CRICTL="$(type -P crictl || ls /tmp/*/crictl /tmp/crictl 2>/dev/null | head -1 || true)"
  fi
  [ -n "$CRICTL" ] && [ -x "$CRICTL" ]
}

# critest leaks the pod of a failed HostNetwork spec (it records the id only after the check):
# remove every pod left in this daemon (it serves nothing but critest) before stopping it.
remove_pods() {
  find_crictl || { log "crictl not found: leftover pods are not removed"; return 0; }
  local ns=() pods
  [ -n "$NETNS" ] && ns=(nsenter "--net=/run/netns/$NETNS" --)
  pods="$("${ns[@]}" "$CRICTL" -r "unix://$SOCK" pods -q 2>/dev/null || true)"
  [ -n "$pods" ] || return 0
  # shellcheck disable=SC2086
  "${ns[@]}" "$CRICTL" -r "unix://$SOCK" stopp $pods >/dev/null 2>&1 || true
  # shellcheck disable=SC2086
  "${ns[@]}" "$CRICTL" -r "unix://$SOCK" rmp $pods >/dev/null 2>&1 || true
  log "removed leftover pods: $(echo $pods | wc -w)"
}

stop() {
  local p
  if ! p="$(alive)"; then log "no daemon of ours running"; rm -f "$PIDF"; return 0; fi
  remove_pods
  log "stopping daemon pid $p"
  kill -TERM "$p"
  for _ in $(seq 1 60); do kill -0 "$p" 2>/dev/null || { rm -f "$PIDF"; return 0; }; sleep 0.5; done
  log "daemon did not stop in 30s; sending KILL"; kill -KILL "$p" || true; rm -f "$PIDF"
}

run_critest() {
  find_critest
  local label="${1:-bulkhead${RIG_RUNTIME_HANDLER:+-$RIG_RUNTIME_HANDLER}}"
  alive >/dev/null || die "daemon not running: $0 start"
  "$RIG_DIR/run-critest.sh" "unix://$SOCK" "$label"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  critest) shift; run_critest "$@" ;;
  all) start; rc=0; run_critest || rc=$?; stop; exit "$rc" ;;
  *) die "usage: $0 start|critest [LABEL]|stop|all" ;;
esac
