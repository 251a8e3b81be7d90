/**
 * Daemon configuration: /etc/bulkhead/config.toml (every path is a setting, so tests run whole
 * daemons side by side under temporary roots). Each part owns its section; main() reads the file
 * once and passes each part its own section. Unknown keys and bad values are errors at load, so
 * a typo never silently weakens isolation.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { InvalidArgumentError, isNotFound } from '../errors.ts';

// the default locations live apart from the TOML loader: every CLI command needs them, few need the loader
import type { Paths } from './paths.ts';
import { configuredKinds } from '../runtime/backends.ts';
import type { RegistryConfig } from '../image/registry/config.ts';
import type { CniConfig } from '../network/cni-config.ts';

export type { CniConfig, RegistryConfig };
export { defaultPaths, type Paths } from './paths.ts';

export interface HandlerConfig {
  /** Backend kind: one of runtime/backends.ts's kinds. */
  backend: string;
  /** Path of the runtime binary, when not the default. */
  binary?: string;
  /** Extra runtime flags (e.g. runsc --platform). */
  runtimeArgs?: string[];
}

export interface RuntimeConfig {
  /** Handler used when a pod names none (policy may choose a stronger one). */
  defaultHandler: string;
  handlers: Record<string, HandlerConfig>;
  conmon: string;
  cgroupDriver: 'cgroupfs';
  /** Pod log directories (log_directory) must lie under this (or under <root>/logs, where the CLI's pods log). */
  podLogRoot: string;
  /** A pod's cgroup_parent must lie under one of these cgroupfs paths. */
  cgroupRoots: string[];
  /** Localhost seccomp profiles must be regular files under this; "" = <policy kubelet_root>/seccomp. */
  seccompProfileRoot: string;
}

export interface StreamConfig {
  /** Address of the exec/attach/port-forward server; loopback unless configured. */
  address: string;
  port: number;
}

export interface LogConfig {
  /** File the daemon logs to ("" = stderr); `bulkhead daemon --log-file` and the CLI's auto-start set it. */
  file: string;
  /** A log file is rotated when it would grow past this many bytes. */
  maxBytes: number;
  /** Rotated files kept (daemon.log.1 … daemon.log.N). */
  keep: number;
}

export interface Config extends Paths {
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  log: LogConfig;
  registries: RegistryConfig;
  runtime: RuntimeConfig;
  cni: CniConfig;
  stream: StreamConfig;
  /** Path of the policy file; "" = built-in default (everything untrusted). */
  policyFile: string;
  /** Raw sections owned by parts that validate their own (vm, policy, …). */
  sections: Record<string, unknown>;
}

export function defaultConfig(paths: Paths): Config {
  return {
    ...paths,
    logLevel: 'info',
    log: { file: '', maxBytes: 10 * 1024 * 1024, keep: 3 },
    registries: { mirrors: {}, insecure: [] },
    runtime: {
      defaultHandler: 'runc',
      // one handler per kind the registry (runtime/backends.ts) marks as configured
      handlers: Object.fromEntries(configuredKinds().map((k) => [k, { backend: k }])),
      conmon: 'conmon',
      cgroupDriver: 'cgroupfs',
      podLogRoot: '/var/log/pods',
      cgroupRoots: ['/bulkhead', '/kubepods'],
      seccompProfileRoot: '',
    },
    cni: { confDir: join(paths.root, 'cni', 'net.d'), binDirs: ['/usr/lib/cni', '/opt/cni/bin'], cacheDir: join(paths.root, 'cni', 'cache') },
    stream: { address: '127.0.0.1', port: 0 },
    policyFile: '',
    sections: {},
  };
}

type Table = Record<string, unknown>;

function str(t: Table, key: string, where: string): string | undefined {
  const v = t[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new InvalidArgumentError(`config: ${where}.${key} must be a string`);
  return v;
}
function strList(t: Table, key: string, where: string): string[] | undefined {
  const v = t[key];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new InvalidArgumentError(`config: ${where}.${key} must be a list of strings`);
  return v as string[];
}
function table(t: Table, key: string, where: string): Table | undefined {
  const v = t[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new InvalidArgumentError(`config: ${where}${where ? '.' : ''}${key} must be a table`);
  return v as Table;
}
function onlyKeys(t: Table, allowed: string[], where: string): void {
  for (const k of Object.keys(t)) {
    if (!allowed.includes(k)) throw new InvalidArgumentError(`config: unknown key ${where ? where + '.' : ''}${k} (allowed: ${allowed.join(', ')})`);
  }
}

/** Parses config text over the defaults. Throws InvalidArgumentError naming the bad key. */
export function parseConfig(text: string, paths: Paths): Config {
  let doc: Table;
  try {
    doc = parseToml(text) as Table;
  } catch (err) {
    throw new InvalidArgumentError(`config: not valid TOML: ${(err as Error).message}`, { cause: err });
  }
  const cfg = defaultConfig(paths);
  const owned = ['root', 'run_dir', 'socket', 'log_level', 'log', 'registries', 'runtime', 'cni', 'stream', 'policy_file'];
  const sections = ['vm', 'policy', 'network', 'images', 'metrics', 'pools'];
  onlyKeys(doc, [...owned, ...sections], '');
  cfg.root = str(doc, 'root', '') ?? cfg.root;
  cfg.runDir = str(doc, 'run_dir', '') ?? cfg.runDir;
  cfg.socket = str(doc, 'socket', '') ?? cfg.socket;
  const level = str(doc, 'log_level', '');
  if (level !== undefined) {
    if (!['debug', 'info', 'warn', 'error'].includes(level)) throw new InvalidArgumentError(`config: log_level must be debug, info, warn or error`);
    cfg.logLevel = level as Config['logLevel'];
  }
  cfg.policyFile = str(doc, 'policy_file', '') ?? cfg.policyFile;
  const log = table(doc, 'log', '');
  if (log) {
    onlyKeys(log, ['file', 'max_bytes', 'keep'], 'log');
    cfg.log.file = str(log, 'file', 'log') ?? cfg.log.file;
    if (log.max_bytes !== undefined) {
      if (typeof log.max_bytes !== 'number' || !Number.isSafeInteger(log.max_bytes) || log.max_bytes < 1024) throw new InvalidArgumentError('config: log.max_bytes must be an integer of at least 1024 (bytes)');
      cfg.log.maxBytes = log.max_bytes;
    }
    if (log.keep !== undefined) {
      if (typeof log.keep !== 'number' || !Number.isInteger(log.keep) || log.keep < 0 || log.keep > 100) throw new InvalidArgumentError('config: log.keep must be an integer 0..100 (rotated files kept)');
      cfg.log.keep = log.keep;
    }
  }
  const reg = table(doc, 'registries', '');
  if (reg) {
    onlyKeys(reg, ['mirrors', 'insecure', 'auth_file', 'mirror_fallback'], 'registries');
    const mirrors = table(reg, 'mirrors', 'registries');
    if (mirrors) for (const host of Object.keys(mirrors)) cfg.registries.mirrors[host] = strList(mirrors, host, 'registries.mirrors') ?? [];
    cfg.registries.insecure = strList(reg, 'insecure', 'registries') ?? [];
    const fb = reg.mirror_fallback;
    if (fb !== undefined) {
      if (typeof fb !== 'boolean') throw new InvalidArgumentError('config: registries.mirror_fallback must be true or false');
      cfg.registries.mirrorFallback = fb;
    }
    const af = str(reg, 'auth_file', 'registries');
    if (af !== undefined) cfg.registries.authFile = af;
  }
  const rt = table(doc, 'runtime', '');
  if (rt) {
    onlyKeys(rt, ['default_handler', 'handlers', 'conmon', 'cgroup_driver', 'pod_log_root', 'cgroup_roots', 'seccomp_profile_root'], 'runtime');
    const abs = (v: string | undefined, key: string): string | undefined => {
      if (v !== undefined && (!v.startsWith('/') || v.split('/').includes('..'))) throw new InvalidArgumentError(`config: runtime.${key} must be an absolute path without ".." (got ${JSON.stringify(v)})`);
      return v;
    };
    cfg.runtime.podLogRoot = abs(str(rt, 'pod_log_root', 'runtime'), 'pod_log_root') ?? cfg.runtime.podLogRoot;
    cfg.runtime.seccompProfileRoot = abs(str(rt, 'seccomp_profile_root', 'runtime'), 'seccomp_profile_root') ?? cfg.runtime.seccompProfileRoot;
    const cr = strList(rt, 'cgroup_roots', 'runtime');
    if (cr !== undefined) {
      for (const r of cr) if (abs(r, 'cgroup_roots') === '/') throw new InvalidArgumentError('config: runtime.cgroup_roots must not contain / (every cgroup would be allowed)');
      cfg.runtime.cgroupRoots = cr;
    }
    cfg.runtime.defaultHandler = str(rt, 'default_handler', 'runtime') ?? cfg.runtime.defaultHandler;
    cfg.runtime.conmon = str(rt, 'conmon', 'runtime') ?? cfg.runtime.conmon;
    const drv = str(rt, 'cgroup_driver', 'runtime');
    if (drv !== undefined && drv !== 'cgroupfs') throw new InvalidArgumentError(`config: runtime.cgroup_driver: only "cgroupfs" is supported (no systemd here)`);
    const hs = table(rt, 'handlers', 'runtime');
    if (hs) {
      for (const name of Object.keys(hs)) {
        const h = table(hs, name, 'runtime.handlers')!;
        onlyKeys(h, ['backend', 'binary', 'runtime_type', 'runtime_args'], `runtime.handlers.${name}`);
        const backend = str(h, 'backend', `runtime.handlers.${name}`);
        if (!backend) throw new InvalidArgumentError(`config: runtime.handlers.${name}.backend is required`);
        const hc: HandlerConfig = { backend };
        const bin = str(h, 'binary', `runtime.handlers.${name}`);
        if (bin !== undefined) hc.binary = bin;
        // a containerd shim v2 handler may name its shim as containerd does (`io.containerd.kata.v2`)
        const rtType = str(h, 'runtime_type', `runtime.handlers.${name}`);
        if (rtType !== undefined) {
          if (bin !== undefined) throw new InvalidArgumentError(`config: runtime.handlers.${name} has both binary and runtime_type; keep one`);
          hc.binary = rtType;
        }
        const ra = strList(h, 'runtime_args', `runtime.handlers.${name}`);
        if (ra !== undefined) hc.runtimeArgs = ra;
        cfg.runtime.handlers[name] = hc;
      }
    }
    if (!cfg.runtime.handlers[cfg.runtime.defaultHandler]) {
      throw new InvalidArgumentError(`config: runtime.default_handler "${cfg.runtime.defaultHandler}" is not a configured handler`);
    }
  }
  const cni = table(doc, 'cni', '');
  if (cni) {
    onlyKeys(cni, ['conf_dir', 'bin_dirs', 'cache_dir'], 'cni');
    cfg.cni.confDir = str(cni, 'conf_dir', 'cni') ?? cfg.cni.confDir;
    cfg.cni.binDirs = strList(cni, 'bin_dirs', 'cni') ?? cfg.cni.binDirs;
    cfg.cni.cacheDir = str(cni, 'cache_dir', 'cni') ?? cfg.cni.cacheDir;
  }
  const st = table(doc, 'stream', '');
  if (st) {
    onlyKeys(st, ['address', 'port'], 'stream');
    cfg.stream.address = str(st, 'address', 'stream') ?? cfg.stream.address;
    if (st.port !== undefined) {
      if (typeof st.port !== 'number' || !Number.isInteger(st.port) || st.port < 0 || st.port > 65535) throw new InvalidArgumentError('config: stream.port must be an integer 0..65535');
      cfg.stream.port = st.port;
    }
  }
  for (const s of sections) if (doc[s] !== undefined) cfg.sections[s] = doc[s];
  return cfg;
}

/** Reads the config file; a missing file means the defaults. */
export async function loadConfig(paths: Paths): Promise<Config> {
  try {
    return parseConfig(await readFile(paths.config, 'utf8'), paths);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || isNotFound(err)) return defaultConfig(paths);
    throw err;
  }
}
