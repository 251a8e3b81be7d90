/**
 * CNI (spec 1.0) invocation: loading network configuration lists, running plugin binaries with
 * CNI_* environment and the plugin config on stdin, chaining results (prevResult) through a
 * list, and turning a plugin's error JSON ({code, msg, details}) into an error that names it.
 */
import { access, constants, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BulkheadError, InvalidArgumentError, UnavailableError, type ErrorCode } from '../errors.ts';
import { run } from '../util/exec.ts';

export interface CniPluginConf {
  type: string;
  capabilities?: Record<string, boolean>;
  [key: string]: unknown;
}

export interface CniNetworkList {
  cniVersion: string;
  name: string;
  disableCheck: boolean;
  plugins: CniPluginConf[];
  /** The file it came from ("" when built in memory). */
  file: string;
  /** The whole parsed document, kept so DEL after a restart uses exactly what ADD used. */
  raw: Record<string, unknown>;
}

export type CniCommand = 'ADD' | 'DEL' | 'CHECK';

/** What the runtime passes besides the config: the CNI_* variables and capability arguments. */
export interface CniRuntimeConf {
  containerId: string;
  netnsPath: string;
  ifName: string;
  /** CNI_ARGS pairs, e.g. [["K8S_POD_NAMESPACE", "default"]]. IgnoreUnknown=1 is added. */
  args: [string, string][];
  /** Capability arguments (e.g. portMappings), given to plugins that declare the capability. */
  capabilityArgs: Record<string, unknown>;
}

/** A CNI result (spec 1.0); kept as the plugin returned it. */
export type CniResult = Record<string, unknown> & {
  cniVersion?: string;
  interfaces?: { name: string; mac?: string; sandbox?: string }[];
  ips?: { address: string; gateway?: string; interface?: number }[];
};

const SUPPORTED = ['0.3.0', '0.3.1', '0.4.0', '1.0.0'];
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** Classes of CNI error codes (spec: 1-99 reserved, 100+ plugin-specific). */
function classOfCniCode(code: number): ErrorCode {
  switch (code) {
    case 4: case 7: return 'InvalidArgument';
    case 11: return 'Unavailable';
    default: return 'Internal';
  }
}

/** A plugin failed; the message names the plugin, the command and what the plugin said. */
export class CniPluginError extends BulkheadError {
  readonly plugin: string;
  readonly command: CniCommand;
  readonly cniCode: number | null;
  readonly details: string;
  constructor(plugin: string, command: CniCommand, network: string, cniCode: number | null, msg: string, details: string) {
    super(cniCode === null ? 'Internal' : classOfCniCode(cniCode),
      `CNI plugin "${plugin}" ${command} for network "${network}" failed${cniCode === null ? '' : ` (code ${cniCode})`}: ${msg}${details ? ` (${details})` : ''}`);
    this.plugin = plugin;
    this.command = command;
    this.cniCode = cniCode;
    this.details = details;
  }
}

/** Parses a .conflist, or a single-plugin .conf/.json (wrapped into a list of one). */
export function parseNetworkList(text: string, file: string): CniNetworkList {
  let doc: unknown;
  try { doc = JSON.parse(text); } catch (err) {
    throw new InvalidArgumentError(`CNI config ${file}: not valid JSON: ${(err as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new InvalidArgumentError(`CNI config ${file}: must be a JSON object`);
  const d = doc as Record<string, unknown>;
  const name = d.name;
  const cniVersion = d.cniVersion;
  if (typeof name !== 'string' || !NAME_RE.test(name)) throw new InvalidArgumentError(`CNI config ${file}: "name" must be a non-empty name of [A-Za-z0-9_.-]`);
  if (typeof cniVersion !== 'string' || !SUPPORTED.includes(cniVersion)) throw new InvalidArgumentError(`CNI config ${file}: "cniVersion" must be one of ${SUPPORTED.join(', ')}`);
  let plugins: unknown;
  if (d.plugins !== undefined) plugins = d.plugins;
  else if (typeof d.type === 'string') { const { name: _n, cniVersion: _v, ...p } = d; plugins = [p]; }
  else throw new InvalidArgumentError(`CNI config ${file}: needs "plugins" (a list) or "type"`);
  if (!Array.isArray(plugins) || plugins.length === 0) throw new InvalidArgumentError(`CNI config ${file}: "plugins" must be a non-empty list`);
  for (const [i, p] of plugins.entries()) {
    if (typeof p !== 'object' || p === null || typeof (p as CniPluginConf).type !== 'string' || !NAME_RE.test((p as CniPluginConf).type)) {
      throw new InvalidArgumentError(`CNI config ${file}: plugins[${i}] needs a "type" naming a plugin binary`);
    }
  }
  return { cniVersion, name, disableCheck: d.disableCheck === true, plugins: plugins as CniPluginConf[], file, raw: d };
}

/** The first network config in confDir by file name order (.conflist, .conf, .json), as kubelet/CRI do. */
export async function loadFirstNetworkList(confDir: string): Promise<CniNetworkList | undefined> {
  let names: string[];
  try { names = await readdir(confDir); } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const files = names.filter((n) => /\.(conflist|conf|json)$/.test(n)).sort();
  const first = files[0];
  if (first === undefined) return undefined;
  const path = join(confDir, first);
  return parseNetworkList(await readFile(path, 'utf8'), path);
}

export interface CniInvokerOptions {
  binDirs: string[];
  timeoutMs: number;
}

/** Runs CNI plugins. Stateless: results are cached by the caller. */
export class CniInvoker {
  readonly #binDirs: string[];
  readonly #timeoutMs: number;

  constructor(opts: CniInvokerOptions) {
    this.#binDirs = opts.binDirs;
    this.#timeoutMs = opts.timeoutMs;
  }

  /** Absolute path of a plugin binary; UnavailableError naming the plugin and the dirs searched. */
  async findPlugin(type: string): Promise<string> {
    if (!NAME_RE.test(type)) throw new InvalidArgumentError(`CNI plugin type ${JSON.stringify(type)} is not a plain name`);
    for (const dir of this.#binDirs) {
      const p = join(dir, type);
      try { await access(p, constants.X_OK); return p; } catch { /* next dir */ }
    }
    throw new UnavailableError(`CNI plugin "${type}" not found in ${this.#binDirs.join(':')}`);
  }

  /** Runs one plugin of a list. Returns the parsed result for ADD, null otherwise. */
  async exec(command: CniCommand, list: CniNetworkList, plugin: CniPluginConf, rt: CniRuntimeConf, prevResult: CniResult | null, signal: AbortSignal): Promise<CniResult | null> {
    const bin = await this.findPlugin(plugin.type);
    const conf: Record<string, unknown> = { ...plugin, name: list.name, cniVersion: list.cniVersion };
    if (prevResult) conf.prevResult = prevResult;
    const runtimeConfig: Record<string, unknown> = {};
    for (const [cap, on] of Object.entries(plugin.capabilities ?? {})) {
      if (on && rt.capabilityArgs[cap] !== undefined) runtimeConfig[cap] = rt.capabilityArgs[cap];
    }
    if (Object.keys(runtimeConfig).length > 0) conf.runtimeConfig = runtimeConfig;
    for (const [k, v] of rt.args) {
      if (/[;=]/.test(k) || /[;=]/.test(v)) throw new InvalidArgumentError(`CNI_ARGS ${k}: must not contain ";" or "="`);
    }
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH?.includes('/usr/sbin') ? process.env.PATH : `/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
      CNI_COMMAND: command,
      CNI_CONTAINERID: rt.containerId,
      CNI_NETNS: rt.netnsPath,
      CNI_IFNAME: rt.ifName,
      CNI_ARGS: [['IgnoreUnknown', '1'], ...rt.args].map(([k, v]) => `${k}=${v}`).join(';'),
      CNI_PATH: this.#binDirs.join(':'),
    };
    const r = await run(bin, [], { input: JSON.stringify(conf), env, timeoutMs: this.#timeoutMs, signal });
    if (r.code !== 0) {
      let code: number | null = null;
      let msg = '';
      let details = '';
      try {
        const e = JSON.parse(r.stdout) as { code?: unknown; msg?: unknown; details?: unknown };
        if (typeof e.code === 'number') code = e.code;
        if (typeof e.msg === 'string') msg = e.msg;
        if (typeof e.details === 'string') details = e.details;
      } catch { /* not the error JSON: fall back to the raw output */ }
      if (!msg) msg = (r.stderr.trim() || r.stdout.trim() || `exited with ${r.code ?? r.signal}`).slice(0, 2000);
      throw new CniPluginError(plugin.type, command, list.name, code, msg, details);
    }
    if (command !== 'ADD') return null;
    try {
      const res = JSON.parse(r.stdout) as unknown;
      if (typeof res !== 'object' || res === null || Array.isArray(res)) throw new Error('not an object');
      return res as CniResult;
    } catch (err) {
      throw new CniPluginError(plugin.type, command, list.name, null, `returned an unreadable result: ${(err as Error).message}`, r.stdout.slice(0, 500));
    }
  }

  /**
   * ADD through the list in order, each plugin getting the previous result. onResult is called
   * after each plugin (so a caller can persist progress). Returns the final result.
   */
  async addList(list: CniNetworkList, rt: CniRuntimeConf, signal: AbortSignal, onResult?: (index: number, result: CniResult) => Promise<void>): Promise<CniResult> {
    let prev: CniResult | null = null;
    for (const [i, plugin] of list.plugins.entries()) {
      prev = await this.exec('ADD', list, plugin, rt, prev, signal);
      if (onResult && prev) await onResult(i, prev);
    }
    return prev ?? {};
  }

  /** CHECK through the list in order with the cached result. */
  async checkList(list: CniNetworkList, rt: CniRuntimeConf, cached: CniResult, signal: AbortSignal): Promise<void> {
    if (list.disableCheck) return;
    for (const plugin of list.plugins) await this.exec('CHECK', list, plugin, rt, cached, signal);
  }

  /**
   * DEL through the list in reverse order with the cached result (null when ADD never finished).
   * Every plugin is run even if one fails; the first failure is thrown at the end.
   */
  async delList(list: CniNetworkList, rt: CniRuntimeConf, cached: CniResult | null, signal: AbortSignal): Promise<void> {
    let first: unknown;
    for (const plugin of [...list.plugins].reverse()) {
      try { await this.exec('DEL', list, plugin, rt, cached, signal); } catch (err) {
        signal.throwIfAborted();
        first ??= err;
      }
    }
    if (first !== undefined) throw first;
  }
}
