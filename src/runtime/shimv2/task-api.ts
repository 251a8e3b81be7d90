/**
 * The containerd shim v2 Task service (`containerd.task.v2.Task`) and the types it uses, as a
 * protobuf.js-style descriptor for wire/proto-schema.ts, written from the public .proto facts
 * (field names and numbers of containerd's api/runtime/task/v2/shim.proto, api/types/mount.proto,
 * api/types/task/task.proto, api/events/task.proto, google/protobuf any/timestamp/empty), and a
 * typed client over wire/ttrpc.ts. Field names are lowerCamelCase as proto-codec.ts produces them.
 */
import { Codec } from '../../wire/proto-codec.ts';
import { Schema } from '../../wire/proto-schema.ts';
import { TtrpcClient } from '../../wire/ttrpc.ts';

const s = (id: number) => ({ type: 'string', id });
const u32 = (id: number) => ({ type: 'uint32', id });
const b = (id: number) => ({ type: 'bool', id });
const m = (type: string, id: number) => ({ type, id });

const DESCRIPTOR = {
  nested: {
    google: {
      nested: {
        protobuf: {
          nested: {
            Any: { fields: { typeUrl: s(1), value: { type: 'bytes', id: 2 } } },
            Timestamp: { fields: { seconds: { type: 'int64', id: 1 }, nanos: { type: 'int32', id: 2 } } },
            Empty: { fields: {} },
          },
        },
      },
    },
    containerd: {
      nested: {
        types: {
          nested: {
            Mount: { fields: { type: s(1), source: s(2), target: s(3), options: { rule: 'repeated', type: 'string', id: 4 } } },
          },
        },
        v1: {
          nested: {
            types: {
              nested: {
                Status: { values: { UNKNOWN: 0, CREATED: 1, RUNNING: 2, STOPPED: 3, PAUSED: 4, PAUSING: 5 } },
                ProcessInfo: { fields: { pid: u32(1), info: m('.google.protobuf.Any', 2) } },
              },
            },
          },
        },
        services: {
          nested: {
            events: {
              nested: {
                ttrpc: {
                  nested: {
                    v1: {
                      nested: {
                        Envelope: { fields: { timestamp: m('.google.protobuf.Timestamp', 1), namespace: s(2), topic: s(3), event: m('.google.protobuf.Any', 4) } },
                        ForwardRequest: { fields: { envelope: m('Envelope', 1) } },
                      },
                    },
                  },
                },
              },
            },
          },
        },
        events: {
          nested: {
            TaskExit: { fields: { containerId: s(1), id: s(2), pid: u32(3), exitStatus: u32(4), exitedAt: m('.google.protobuf.Timestamp', 5) } },
          },
        },
        task: {
          nested: {
            v2: {
              nested: {
                CreateTaskRequest: {
                  fields: {
                    id: s(1), bundle: s(2), rootfs: { rule: 'repeated', type: '.containerd.types.Mount', id: 3 }, terminal: b(4),
                    stdin: s(5), stdout: s(6), stderr: s(7), checkpoint: s(8), parentCheckpoint: s(9),
                    options: m('.google.protobuf.Any', 10), oomPath: s(11),
                  },
                },
                CreateTaskResponse: { fields: { pid: u32(1) } },
                DeleteRequest: { fields: { id: s(1), execId: s(2) } },
                DeleteResponse: { fields: { pid: u32(1), exitStatus: u32(2), exitedAt: m('.google.protobuf.Timestamp', 3) } },
                ExecProcessRequest: { fields: { id: s(1), execId: s(2), terminal: b(3), stdin: s(4), stdout: s(5), stderr: s(6), spec: m('.google.protobuf.Any', 7) } },
                ResizePtyRequest: { fields: { id: s(1), execId: s(2), width: u32(3), height: u32(4) } },
                StateRequest: { fields: { id: s(1), execId: s(2) } },
                StateResponse: {
                  fields: {
                    id: s(1), bundle: s(2), pid: u32(3), status: m('.containerd.v1.types.Status', 4), stdin: s(5), stdout: s(6), stderr: s(7),
                    terminal: b(8), exitStatus: u32(9), exitedAt: m('.google.protobuf.Timestamp', 10), execId: s(11),
                  },
                },
                KillRequest: { fields: { id: s(1), execId: s(2), signal: u32(3), all: b(4) } },
                CloseIORequest: { fields: { id: s(1), execId: s(2), stdin: b(3) } },
                PidsRequest: { fields: { id: s(1) } },
                PidsResponse: { fields: { processes: { rule: 'repeated', type: '.containerd.v1.types.ProcessInfo', id: 1 } } },
                UpdateTaskRequest: { fields: { id: s(1), resources: m('.google.protobuf.Any', 2), annotations: { keyType: 'string', type: 'string', id: 3 } } },
                StartRequest: { fields: { id: s(1), execId: s(2) } },
                StartResponse: { fields: { pid: u32(1) } },
                WaitRequest: { fields: { id: s(1), execId: s(2) } },
                WaitResponse: { fields: { exitStatus: u32(1), exitedAt: m('.google.protobuf.Timestamp', 2) } },
                StatsRequest: { fields: { id: s(1) } },
                StatsResponse: { fields: { stats: m('.google.protobuf.Any', 1) } },
                ConnectRequest: { fields: { id: s(1) } },
                ConnectResponse: { fields: { shimPid: u32(1), taskPid: u32(2), version: s(3) } },
                ShutdownRequest: { fields: { id: s(1), now: b(2) } },
                PauseRequest: { fields: { id: s(1) } },
                ResumeRequest: { fields: { id: s(1) } },
                Task: {
                  methods: {
                    State: { requestType: 'StateRequest', responseType: 'StateResponse' },
                    Create: { requestType: 'CreateTaskRequest', responseType: 'CreateTaskResponse' },
                    Start: { requestType: 'StartRequest', responseType: 'StartResponse' },
                    Delete: { requestType: 'DeleteRequest', responseType: 'DeleteResponse' },
                    Pids: { requestType: 'PidsRequest', responseType: 'PidsResponse' },
                    Pause: { requestType: 'PauseRequest', responseType: '.google.protobuf.Empty' },
                    Resume: { requestType: 'ResumeRequest', responseType: '.google.protobuf.Empty' },
                    Kill: { requestType: 'KillRequest', responseType: '.google.protobuf.Empty' },
                    Exec: { requestType: 'ExecProcessRequest', responseType: '.google.protobuf.Empty' },
                    ResizePty: { requestType: 'ResizePtyRequest', responseType: '.google.protobuf.Empty' },
                    CloseIO: { requestType: 'CloseIORequest', responseType: '.google.protobuf.Empty' },
                    Update: { requestType: 'UpdateTaskRequest', responseType: '.google.protobuf.Empty' },
                    Wait: { requestType: 'WaitRequest', responseType: 'WaitResponse' },
                    Stats: { requestType: 'StatsRequest', responseType: 'StatsResponse' },
                    Connect: { requestType: 'ConnectRequest', responseType: 'ConnectResponse' },
                    Shutdown: { requestType: 'ShutdownRequest', responseType: '.google.protobuf.Empty' },
                  },
                },
              },
            },
          },
        },
      },
    },
  },
};

export const TASK_SCHEMA = new Schema(DESCRIPTOR);
export const TASK_CODEC = new Codec(TASK_SCHEMA);
export const TASK_SERVICE = 'containerd.task.v2.Task';
/** The events service a shim forwards its events to (at TTRPC_ADDRESS). */
export const EVENTS_FORWARD = 'containerd.services.events.ttrpc.v1.Events/Forward';

export interface ShimEvent { topic: string; namespace: string; typeUrl: string; taskExit: { containerId: string; id: string; pid: number; exitStatus: number } | null }

/** Decodes a Forward request's envelope; a TaskExit event is decoded too. */
export function decodeForward(payload: Buffer): ShimEvent {
  const req = TASK_CODEC.decode(TASK_SCHEMA.message('containerd.services.events.ttrpc.v1.ForwardRequest'), payload);
  const env = req.envelope as { topic: string; namespace: string; event: Any | null } | null;
  const typeUrl = env?.event?.typeUrl ?? '';
  const taskExit = typeUrl.endsWith('containerd.events.TaskExit') && env?.event
    ? TASK_CODEC.decode(TASK_SCHEMA.message('containerd.events.TaskExit'), env.event.value) as unknown as ShimEvent['taskExit']
    : null;
  return { topic: env?.topic ?? '', namespace: env?.namespace ?? '', typeUrl, taskExit };
}
const SERVICE = TASK_SCHEMA.service(TASK_SERVICE);

export type TaskStatus = 'UNKNOWN' | 'CREATED' | 'RUNNING' | 'STOPPED' | 'PAUSED' | 'PAUSING';
export interface Timestamp { seconds: number; nanos: number }
export interface Any { typeUrl: string; value: Buffer }
export interface Mount { type: string; source: string; target?: string; options: string[] }

export interface CreateTaskRequest {
  id: string; bundle: string; rootfs?: Mount[]; terminal?: boolean;
  stdin?: string; stdout?: string; stderr?: string; options?: Any | null;
}
export interface StateResponse {
  id: string; bundle: string; pid: number; status: TaskStatus | number; stdin: string; stdout: string; stderr: string;
  terminal: boolean; exitStatus: number; exitedAt: Timestamp | null; execId: string;
}
export interface ExecProcessRequest { id: string; execId: string; terminal?: boolean; stdin?: string; stdout?: string; stderr?: string; spec: Any }
export interface WaitResponse { exitStatus: number; exitedAt: Timestamp | null }
export interface DeleteResponse { pid: number; exitStatus: number; exitedAt: Timestamp | null }
export interface ConnectResponse { shimPid: number; taskPid: number; version: string }

/** The type URL containerd uses for an OCI process spec carried in an Any (Exec's `spec`). */
export const OCI_PROCESS_TYPE_URL = 'types.containerd.io/opencontainers/runtime-spec/1/Process';

/** Options of a call: its deadline. */
export interface TaskCallOptions { timeoutMs?: number; background?: boolean }

/** The Task service of one shim, over its ttrpc socket. Method errors are TtrpcCallErrors. */
export class TaskClient {
  readonly ttrpc: TtrpcClient;

  constructor(address: string) {
    this.ttrpc = new TtrpcClient(address);
  }

  async #call(name: string, req: unknown, opts: TaskCallOptions = {}): Promise<Record<string, unknown>> {
    const method = SERVICE.methods.get(name.charAt(0).toLowerCase() + name.slice(1))!;
    return await this.ttrpc.callTyped(TASK_CODEC, TASK_SERVICE, name, method.request, method.response, req, opts);
  }

  async create(req: CreateTaskRequest, opts?: TaskCallOptions): Promise<{ pid: number }> {
    return await this.#call('Create', req, opts) as unknown as { pid: number };
  }
  async start(id: string, execId = '', opts?: TaskCallOptions): Promise<{ pid: number }> {
    return await this.#call('Start', { id, execId }, opts) as unknown as { pid: number };
  }
  async state(id: string, execId = '', opts?: TaskCallOptions): Promise<StateResponse> {
    return await this.#call('State', { id, execId }, opts) as unknown as StateResponse;
  }
  /** Blocks until the process exits (give a long deadline). */
  async wait(id: string, execId = '', opts?: TaskCallOptions): Promise<WaitResponse> {
    return await this.#call('Wait', { id, execId }, opts) as unknown as WaitResponse;
  }
  async kill(id: string, signal: number, opts: TaskCallOptions & { execId?: string; all?: boolean } = {}): Promise<void> {
    await this.#call('Kill', { id, execId: opts.execId ?? '', signal, all: opts.all ?? false }, opts);
  }
  async delete(id: string, execId = '', opts?: TaskCallOptions): Promise<DeleteResponse> {
    return await this.#call('Delete', { id, execId }, opts) as unknown as DeleteResponse;
  }
  async exec(req: ExecProcessRequest, opts?: TaskCallOptions): Promise<void> {
    await this.#call('Exec', req, opts);
  }
  async resizePty(id: string, execId: string, width: number, height: number, opts?: TaskCallOptions): Promise<void> {
    await this.#call('ResizePty', { id, execId, width, height }, opts);
  }
  async closeIO(id: string, execId = '', opts?: TaskCallOptions): Promise<void> {
    await this.#call('CloseIO', { id, execId, stdin: true }, opts);
  }
  async update(id: string, resources: Any, opts?: TaskCallOptions): Promise<void> {
    await this.#call('Update', { id, resources }, opts);
  }
  async pids(id: string, opts?: TaskCallOptions): Promise<number[]> {
    const r = await this.#call('Pids', { id }, opts);
    return (r.processes as { pid: number }[]).map((p) => p.pid);
  }
  async stats(id: string, opts?: TaskCallOptions): Promise<Any | null> {
    return (await this.#call('Stats', { id }, opts)).stats as Any | null;
  }
  async pause(id: string, opts?: TaskCallOptions): Promise<void> { await this.#call('Pause', { id }, opts); }
  async resume(id: string, opts?: TaskCallOptions): Promise<void> { await this.#call('Resume', { id }, opts); }
  async connect(id: string, opts?: TaskCallOptions): Promise<ConnectResponse> {
    return await this.#call('Connect', { id }, opts) as unknown as ConnectResponse;
  }
  /** Asks the shim to exit once it has no tasks (or now). Its connection then drops: that is success. */
  async shutdown(id: string, now = false, opts?: TaskCallOptions): Promise<void> {
    await this.#call('Shutdown', { id, now }, opts);
  }

  close(): void {
    this.ttrpc.close();
  }
}
