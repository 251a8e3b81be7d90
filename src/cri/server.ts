/**
 * The CRI v1 gRPC server (RuntimeService + ImageService) and Bulkhead's extension service on one
 * unix socket. Lifecycle: `CriServer.listen(socket, deps)` creates the socket's parent directory,
 * refuses to start when another server answers on the socket, removes a stale socket file, binds
 * with mode 0600; `close()` stops accepting, cancels streams after a grace period and removes the
 * socket file. RPC handlers live in one file per group; errors become status codes in status.ts.
 */
import * as grpc from '@grpc/grpc-js';
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { FailedPreconditionError, InternalError } from '../errors.ts';
import { bulkheadHandlers } from './bulkhead.ts';
import { containerHandlers } from './container.ts';
import type { CriDeps } from './deps.ts';
import { eventHandlers } from './events.ts';
import { execHandlers } from './exec.ts';
import { imageHandlers } from './image.ts';
import { loadProtos } from './proto.ts';
import { sandboxHandlers } from './sandbox.ts';
import { statsHandlers } from './stats.ts';
import { socketAnswers } from './socket.ts';
import { serveService } from './status.ts';
import { versionStatusHandlers } from './version-status.ts';

export class CriServer {
  readonly socket: string;
  readonly #server: grpc.Server;

  private constructor(socket: string, server: grpc.Server) {
    this.socket = socket;
    this.#server = server;
  }

  static async listen(socket: string, deps: CriDeps): Promise<CriServer> {
    const protos = loadProtos();
    const server = new grpc.Server({ 'grpc.max_receive_message_length': 16 * 1024 * 1024, 'grpc.max_send_message_length': 32 * 1024 * 1024 });
    const log = deps.logger.child({ component: 'cri' });
    const runtime = serveService(protos.runtimeService, {
      ...versionStatusHandlers(deps), ...sandboxHandlers(deps), ...containerHandlers(deps),
      ...execHandlers(deps), ...statsHandlers(deps), ...eventHandlers(deps),
    }, log);
    const image = serveService(protos.imageService, imageHandlers(deps), log);
    const ext = serveService(protos.bulkheadService, bulkheadHandlers(deps), log);
    server.addService(runtime.definition, runtime.implementation);
    server.addService(image.definition, image.implementation);
    server.addService(ext.definition, ext.implementation);

    await mkdir(dirname(socket), { recursive: true, mode: 0o700 });
    const st = await lstat(socket).catch(() => undefined);
    if (st) {
      if (!st.isSocket()) throw new FailedPreconditionError(`${socket} exists and is not a socket; remove it or choose another --socket`);
      if (await socketAnswers(socket)) throw new FailedPreconditionError(`another server already answers on ${socket}`);
      await unlink(socket);
    }
    // Bind with a tight umask so the socket is never world-accessible, even briefly.
    const oldMask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) => {
          if (err) reject(new InternalError(`cannot listen on ${socket}: ${err.message}`, { cause: err })); else resolve();
        });
      });
    } finally {
      process.umask(oldMask);
    }
    await chmod(socket, 0o600);
    log.info('CRI server listening', { socket });
    return new CriServer(socket, server);
  }

  /** Stops serving: waits up to `graceMs` for calls in flight, then cancels the rest. */
  async close(graceMs = 2000): Promise<void> {
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => { this.#server.forceShutdown(); resolve(); }, graceMs);
      this.#server.tryShutdown(() => { clearTimeout(t); resolve(); });
    });
    await unlink(this.socket).catch(() => {});
  }
}
