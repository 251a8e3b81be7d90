// ExecSync, Exec, Attach, PortForward. The streaming RPCs only hand out URLs of the streaming
// server; the bytes flow there (src/stream/).
import { FailedPreconditionError, InvalidArgumentError, UnavailableError } from '../errors.ts';
import type { CriDeps, CriStreaming } from './deps.ts';
import type { AttachRequest, ExecRequest, PortForwardRequest } from '../api/cri-messages.ts';
import { unary, type Impl } from './status.ts';
import { requireId, timeoutSeconds } from './validate.ts';

function checkCmd(cmd: string[] | undefined, method: string): string[] {
  if (!cmd || cmd.length === 0 || cmd[0] === '') throw new InvalidArgumentError(`${method}: cmd must not be empty`);
  return cmd;
}

function checkStreams(req: { stdin?: boolean; stdout?: boolean; stderr?: boolean; tty?: boolean }, method: string): void {
  if (!req.stdin && !req.stdout && !req.stderr) throw new InvalidArgumentError(`${method}: one of stdin, stdout or stderr must be set`);
  if (req.tty && req.stderr) throw new InvalidArgumentError(`${method}: stderr cannot be set with tty (a terminal merges stderr into stdout)`);
}

export function execHandlers(deps: CriDeps): Record<string, Impl> {
  const { engine } = deps;
  const streaming = (): CriStreaming => {
    if (!deps.streaming) throw new UnavailableError('the streaming server (exec/attach/port-forward) is not running in this daemon');
    return deps.streaming;
  };
  return {
    ExecSync: unary(async (req: { containerId?: string; cmd?: string[]; timeout?: number }, ctx) => {
      const id = requireId(req.containerId, 'container_id');
      const cmd = checkCmd(req.cmd, 'ExecSync');
      return await engine.execSync(id, cmd, timeoutSeconds(req.timeout, 'timeout'), ctx.signal);
    }),

    Exec: unary(async (req: ExecRequest) => {
      const containerId = requireId(req.containerId, 'container_id');
      const cmd = checkCmd(req.cmd, 'Exec');
      checkStreams(req, 'Exec');
      // Fail early on a missing or stopped container instead of at connect time.
      const st = (await engine.containerStatus(containerId, false)).status;
      if (st.state !== 'CONTAINER_RUNNING') throw new FailedPreconditionError(`container ${containerId} is not running (state ${st.state})`, { reason: 'BH_CONTAINER_NOT_RUNNING' });
      return await streaming().getExec({ containerId: st.id, cmd, tty: Boolean(req.tty), stdin: Boolean(req.stdin), stdout: Boolean(req.stdout), stderr: Boolean(req.stderr) });
    }),

    Attach: unary(async (req: AttachRequest) => {
      const containerId = requireId(req.containerId, 'container_id');
      checkStreams(req, 'Attach');
      const st = (await engine.containerStatus(containerId, false)).status;
      // Created containers too: attaching before start is how a client sees all of the output.
      if (st.state !== 'CONTAINER_RUNNING' && st.state !== 'CONTAINER_CREATED') throw new FailedPreconditionError(`container ${containerId} is not running (state ${st.state})`, { reason: 'BH_CONTAINER_NOT_RUNNING' });
      return await streaming().getAttach({ containerId: st.id, tty: Boolean(req.tty), stdin: Boolean(req.stdin), stdout: Boolean(req.stdout), stderr: Boolean(req.stderr) });
    }),

    PortForward: unary(async (req: PortForwardRequest) => {
      const podSandboxId = requireId(req.podSandboxId, 'pod_sandbox_id');
      const ports = req.port ?? [];
      for (const p of ports) if (!Number.isInteger(p) || p < 1 || p > 65535) throw new InvalidArgumentError(`PortForward: port ${p} is out of range 1..65535`);
      const pod = (await engine.podSandboxStatus(podSandboxId, false)).status;
      if (pod.state !== 'SANDBOX_READY') throw new FailedPreconditionError(`pod sandbox ${podSandboxId} is not ready`);
      return await streaming().getPortForward({ podSandboxId: pod.id, port: ports });
    }),
  };
}
