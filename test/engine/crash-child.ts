// A daemon-like process that owns an Engine, for the crash-safety test. It does one job and
// either waits to be SIGKILLed by the parent or SIGKILLs itself at a chosen point.
//   argv[2]: JSON {root, runDir, imagesDir, busybox, handler, mode, podId?, cgroupParent}
// modes:
//   run            pod + 'runner' (sleeps) + 'quick' (exits 5 after 2 s); prints ids; waits
//   mid-container  in podId: SIGKILL right after the runtime created the container (record still 'creating')
//   mid-pod        new pod: SIGKILL right after the runtime created the pause container
//   mid-pin        new pod without a pause (pid CONTAINER): SIGKILL by the pinns wrapper in
//                  helperDir right after the namespaces were pinned (record still 'creating')
import { silentLogger } from '../../src/util/log.ts';
import type { Backend, CreateContainerOptions } from '../../src/runtime/backend.ts';
import { Engine } from '../../src/engine/engine.ts';
import { openImages, makeBackends, podConfig, containerConfig } from './helpers.ts';

const args = JSON.parse(process.argv[2]!) as {
  root: string; runDir: string; imagesDir: string; busybox: string;
  handler: string; mode: 'run' | 'mid-container' | 'mid-pod' | 'mid-pin'; podId?: string; cgroupParent: string;
  helperDir?: string;
};
// the same image service root as the parent (its sqlite store and snapshots are shared on disk)
const images = await openImages(args.imagesDir);
const real = makeBackends([args.handler], args.runDir, silentLogger).get(args.handler)!;

function say(o: unknown): void { process.stdout.write(JSON.stringify(o) + '\n'); }

// The same backend, except createContainer may end this process the moment it returns. The
// instance's own method shadows the class's, so the backend's pod strategy (which creates the
// sandbox container) goes through it too.
const backend: Backend = real;
const createReal = real.createContainer.bind(real);
real.createContainer = async (o: CreateContainerOptions): Promise<{ pid: number }> => {
  const r = await createReal(o);
  // mid-container: killed right after the app container; mid-pod: after the pause (the sandbox on gVisor)
  const kill = args.mode === 'mid-container' || (args.mode === 'mid-pod' && o.pod.role === 'sandbox');
  if (kill) {
    say({ killedAt: o.id, podId: o.pod.podId });
    process.kill(process.pid, 'SIGKILL');
    await new Promise(() => {});
  }
  return r;
};

const engine = new Engine({
  root: args.root, runDir: args.runDir, logger: silentLogger, images, backends: new Map([[args.handler, backend]]),
  defaultHandler: args.handler, cgroupParent: args.cgroupParent,
  ...(args.helperDir ? { helperDir: args.helperDir } : {}),
});
// no recover(): the parent's new Engine must face everything this process leaves behind

if (args.mode === 'run') {
  const pod = podConfig();
  const podId = await engine.runPodSandbox(pod, args.handler);
  const runner = await engine.createContainer(podId, containerConfig(args.busybox, 'runner', ['sleep', '1000']), pod);
  await engine.startContainer(runner);
  const quick = await engine.createContainer(podId, containerConfig(args.busybox, 'quick', ['sh', '-c', 'sleep 2; exit 5']), pod);
  await engine.startContainer(quick);
  say({ podId, runner, quick });
  await new Promise(() => {});
} else if (args.mode === 'mid-container') {
  const pod = podConfig();
  await engine.createContainer(args.podId!, containerConfig(args.busybox, 'half', ['sleep', '1000']), pod);
  say({ error: 'not killed' });
} else if (args.mode === 'mid-pin') {
  const pod = podConfig({ linux: { securityContext: { namespaceOptions: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } } } });
  say({}); // the kill comes from the helper wrapper, which cannot write to this process's stdout
  await engine.runPodSandbox(pod, args.handler);
  say({ error: 'not killed' });
} else {
  await engine.runPodSandbox(podConfig(), args.handler);
  say({ error: 'not killed' });
}
