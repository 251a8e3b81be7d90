/**
 * The runtime conmon and the driver run for gVisor: a small POSIX shell script between them and
 * runsc, so that a runsc *sub-container* (an app container inside the pod's sandbox) can be
 * monitored by its own conmon like any other container.
 *
 * Why it is needed (measured with runsc 0.0~20221219):
 *  - `runsc create --pid-file` writes the sandbox's pid for a sub-container; that process is not
 *    conmon's child and does not end with the sub-container, so conmon cannot wait on it;
 *  - a sub-container takes its stdio from the `runsc start` process, not from `runsc create`
 *    (which conmon runs with the log pipes);
 *  - `runsc wait ID` fails at once on a created, not yet started sub-container ("not started"),
 *    and once started returns its status (`{"exitStatus":N}`, 128+N after signal N), also when
 *    asked after the exit; it fails with an EOF from the sandbox when the whole sandbox died.
 *
 * The script tells containers apart by the one word the backend writes to `<bundle>/shim-kind`
 * (KIND_FILE, shimKindOf: from the spec's annotations), read with a shell builtin; a bundle without
 * it (made by an older daemon) by grepping its config.json for the same marks.
 *
 * What the script does for a sub-container (kind 'sub': config.json annotation
 * io.kubernetes.cri.container-type = container); every other call is `exec runsc "$@"`:
 *  - `create`: runs `runsc create` unchanged, then forks a *waiter* that keeps conmon's stdio and
 *    puts the waiter's pid in conmon's --pid-file (runsc wrote the sandbox's there). The shim
 *    exits, so the waiter is reparented to conmon (a subreaper): conmon waits on it.
 *  - the waiter blocks on the fifo `<bundle>/shim-go`; on the word from `start` it runs
 *    `runsc start ID` with conmon's stdio (so output reaches the CRI log and attach), reports the
 *    start's exit status through the fifo `<bundle>/shim-res` (runsc's error message in
 *    `<bundle>/shim-start.log`), then runs `runsc wait ID` and exits with the container's exit
 *    code; conmon records that as the container's exit. A dead sandbox counts as SIGKILL (137).
 *  - `start`: wakes the waiter and returns its result; fails at once when the waiter is gone.
 *  - `delete`: `runsc delete` as asked, then ends a waiter still waiting for a start (a started
 *    one ends by itself when its container dies).
 *  - `create`/`start`/`run` of a sandbox (root container): its network flag as the backend marked
 *    it: ROOT_APP_ANNOTATION (kind 'root-app'): the global `--network=...` flag replaced by
 *    `--network=none` (added when there was none); with `--network=sandbox` (ShimOptions.sandboxLaunch)
 *    SANDBOX_NETWORK_ANNOTATION 'host': `--network=host`, 'sandbox': start and run launched as
 *    ./runsc-launch.ts says (runsc sets a sandbox's network up at its start).
 * Files live in the bundle dir, `<runDir>/containers/<id>/` (the layout of ConmonDriver), which
 * the driver removes on delete.
 *
 * Global flags before the subcommand: the script skips the value after `--root`, `--log`,
 * `--log-format`, `--debug-log` and `--panic-log`; other global flags must be written `--x=y`.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { OciSpec } from '../../oci/spec.ts';
import { CONTAINER_TYPE_ANNOTATION } from '../conmon-backend.ts';
import { HIDE_PREFIX, SANDBOX_NETWORK_ANNOTATION, type SandboxLaunch } from './runsc-launch.ts';

/** Marker for a sub-container in a bundle's config.json as JSON.stringify writes it. */
export const SUBCONTAINER_MARKER = '"io.kubernetes.cri.container-type":"container"';
/**
 * A one-shot pod's container that is its sandbox (gvisor-backend.ts): its `create` runs with
 * `--network=none` whatever the global flags say. Set (and removed from any other spec) by the backend only.
 */
export const ROOT_APP_ANNOTATION = 'dev.bulkhead.gvisor.root-app';
const ROOT_APP_MARKER = `"${ROOT_APP_ANNOTATION}":"true"`;

/**
 * In a bundle dir: what the script does with the container (shimKindOf), one word, written by the
 * backend before conmon runs. The script reads it with a shell builtin: no grep of config.json
 * (a process each, ~1-3 ms by the load) at a create or a sandbox's start.
 */
export const KIND_FILE = 'shim-kind';
export type ShimKind = 'sub' | 'root-app' | 'netstack' | 'host' | 'sandbox';

/**
 * The kind of a container from the marks the backend put in its spec (the script reads the same
 * marks from config.json when a bundle has no KIND_FILE, one made by an older daemon):
 * 'root-app' runs --network=none; 'netstack' a sandbox on gVisor's netstack (started as
 * ShimOptions.sandboxLaunch says); 'host' a sandbox with --network=host; 'sub' a sub-container;
 * 'sandbox' one with no mark (the global flags as given).
 */
export function shimKindOf(spec: OciSpec): ShimKind {
  const a = spec.annotations ?? {};
  if (a[ROOT_APP_ANNOTATION] === 'true') return 'root-app';
  if (a[SANDBOX_NETWORK_ANNOTATION] === 'sandbox') return 'netstack';
  if (a[SANDBOX_NETWORK_ANNOTATION] === 'host') return 'host';
  return a[CONTAINER_TYPE_ANNOTATION] === 'container' ? 'sub' : 'sandbox';
}

export interface ShimOptions {
  /** Absolute path of runsc. */
  runsc: string;
  /** Directory holding `containers/<id>/` bundles (ConmonDriver's runDir). */
  runDir: string;
  /**
   * Present when runsc runs `--network=sandbox`: how a sandbox's own `start`/`run` is started
   * (./runsc-launch.ts). A sandbox whose spec says network 'host' (SANDBOX_NETWORK_ANNOTATION) runs
   * with `--network=host` instead, never with the workaround.
   */
  sandboxLaunch?: SandboxLaunch;
}

/** The shell script (see the file comment). */
export function subcontainerShimScript(o: ShimOptions): string {
  return `#!/bin/sh
# written by bulkhead (src/runtime/gvisor/subcontainer-shim.ts): runs runsc sub-containers under conmon
RUNSC=${shellQuote(o.runsc)}
RUNDIR=${shellQuote(o.runDir)}
LAUNCH=${shellQuote(o.sandboxLaunch ?? '')}
cmd=; skip=; n=0; kind=
for a; do
  n=$((n + 1))
  if [ -n "$skip" ]; then skip=; continue; fi
  case $a in
    --root|--log|--log-format|--debug-log|--panic-log) skip=1 ;;
    -*) ;;
    *) cmd=$a; break ;;
  esac
done
eval "id=\\\${$#}"
# "\${1}" ... for the global flags, expanded later by eval (no quoting of their values needed)
g=; i=1
while [ $i -lt $n ]; do g="$g \\"\\\${$i}\\""; i=$((i + 1)); done

# the global flags (before argument $n) with --network=* replaced by --network=$1 (added when absent)
set_network() {
  mode=$1; shift
  i=0; seen=
  for a; do
    shift; i=$((i + 1))
    if [ $i -lt $n ]; then case $a in --network=*) a=--network=$mode; seen=1 ;; esac; fi
    set -- "$@" "$a"
  done
  [ -n "$seen" ] || set -- --network=$mode "$@"
  exec "$RUNSC" "$@"
}

# the container's kind as the backend wrote it in <bundle>/${KIND_FILE} (read without starting a
# process); a bundle made by an older daemon has only the marks in its config.json
kind_of() {
  kind=
  if [ -f "$1/${KIND_FILE}" ]; then read -r kind < "$1/${KIND_FILE}" || :; return; fi
  case $(grep -oF -e '${SUBCONTAINER_MARKER}' -e '${ROOT_APP_MARKER}' -e '"${SANDBOX_NETWORK_ANNOTATION}":"sandbox"' -e '"${SANDBOX_NETWORK_ANNOTATION}":"host"' "$1/config.json" 2>/dev/null) in
  *'${ROOT_APP_MARKER}'*) kind=root-app ;;
  *'"${SANDBOX_NETWORK_ANNOTATION}":"sandbox"'*) kind=netstack ;;
  *'"${SANDBOX_NETWORK_ANNOTATION}":"host"'*) kind=host ;;
  *'${SUBCONTAINER_MARKER}'*) kind=sub ;;
  esac
}

# a sandbox's own create/start/run: its network as the backend marked it (see above)
sandbox_exec() {
  # without netstack a start needs no mark (a root app's --network=none matters at its create)
  [ -z "$LAUNCH" ] && [ "$cmd" = start ] && exec "$RUNSC" "$@"
  [ -n "$kind" ] || kind_of "\${bundle:-.}"
  case $kind in
  root-app) set_network none "$@" ;;
  netstack) [ "$cmd" != create ] && [ "$LAUNCH" = hide-proc-sys-net ] && exec ${HIDE_PREFIX.map(shellQuote).join(' ')} "$RUNSC" "$@" ;;
  host) [ -n "$LAUNCH" ] && set_network host "$@" ;;
  esac
  exec "$RUNSC" "$@"
}

case $cmd in
create|run)
  bundle=; pidf=; prev=
  for a; do
    case $prev in --bundle|-b) bundle=$a ;; --pid-file) pidf=$a ;; esac
    case $a in --bundle=*) bundle=\${a#*=} ;; --pid-file=*) pidf=\${a#*=} ;; esac
    prev=$a
  done
  # a pod's one container as its sandbox (ROOT_APP_ANNOTATION) is a sandbox here too
  [ -n "$bundle" ] && kind_of "$bundle"
  if [ "$cmd" = run ] || [ -z "$bundle" ] || [ -z "$pidf" ] || [ "$kind" != sub ]; then
    sandbox_exec "$@"
  fi
  rm -f "$bundle/shim-go" "$bundle/shim-res" "$bundle/shim-start.log" "$bundle/shim.pid"
  mkfifo -m 600 "$bundle/shim-go" "$bundle/shim-res" || exit 1
  "$RUNSC" "$@" || exit $?
  eval "set -- $g"
  # sh gives an asynchronous list /dev/null as stdin: hand conmon's stdin over on fd 3
  exec 3<&0
  (
    exec 0<&3 3<&-
    read -r _ < "$bundle/shim-go" || exit 255
    "$RUNSC" --log="$bundle/shim-start.log" "$@" start "$id"
    rc=$?
    echo "$rc" 1<>"$bundle/shim-res"
    [ "$rc" -eq 0 ] || exit 255
    # the sandbox holds its own copies of the stdio now; conmon sees EOF when the container ends
    exec </dev/null >/dev/null 2>&1
    out=$("$RUNSC" "$@" wait "$id" 2>"$bundle/shim-wait.err")
    case $out in
      *'"exitStatus":'*) code=\${out##*'"exitStatus":'}; code=\${code%%[!0-9]*}; exit "\${code:-255}" ;;
    esac
    # the sandbox itself is gone (urpc EOF): the container died with it
    exit 137
  ) &
  echo $! > "$bundle/shim.pid"
  echo $! > "$pidf"
  exit 0
  ;;
start)
  b=$RUNDIR/containers/$id
  # a sandbox's start is where runsc sets up its network
  if [ ! -p "$b/shim-go" ]; then bundle=$b; sandbox_exec "$@"; fi
  w=$(cat "$b/shim.pid" 2>/dev/null)
  if [ -z "$w" ] || ! kill -0 "$w" 2>/dev/null; then
    echo "bulkhead runsc shim: the waiter of sub-container $id is gone; it cannot be started" >&2
    exit 1
  fi
  # both fifos opened read-write: neither open blocks, and the word stays buffered until read
  exec 3<>"$b/shim-res" 4<>"$b/shim-go"
  echo go >&4
  read -r rc <&3
  rm -f "$b/shim-go"
  if [ "$rc" != 0 ]; then
    cat "$b/shim-start.log" >&2 2>/dev/null
    echo "runsc start $id failed (exit $rc)" >&2
    exit 1
  fi
  exit 0
  ;;
delete)
  b=$RUNDIR/containers/$id
  "$RUNSC" "$@"
  rc=$?
  if [ -p "$b/shim-go" ]; then
    w=$(cat "$b/shim.pid" 2>/dev/null)
    if [ -n "$w" ] && grep -qF -- "$id" "/proc/$w/cmdline" 2>/dev/null; then kill -KILL "$w" 2>/dev/null; fi
  fi
  exit $rc
  ;;
esac
exec "$RUNSC" "$@"
`;
}

/** Writes the script to `path` (mode 0700) unless it already holds exactly this text. */
export function writeSubcontainerShim(path: string, o: ShimOptions): void {
  const text = subcontainerShimScript(o);
  try {
    if (readFileSync(path, 'utf8') === text) return;
  } catch { /* write it */ }
  // a conmon may be running the old file right now: replace it, never rewrite it in place
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text, { mode: 0o700 });
  renameSync(tmp, path);
}

export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
