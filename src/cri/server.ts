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
import { listenAuthorityRelay, type AuthorityRelay } from '../wire/authority-relay.ts';
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
import { socketAnswers } from '../util/socket.ts';
import { serveService } from './status.ts';
import { versionStatusHandlers } from './version-status.ts';

export class CriServer {
  readonly socket: string;
  readonly #inner: string;
  readonly #server: grpc.Server;
  readonly #relay: AuthorityRelay;

  private constructor(socket: string, inner: string, server: grpc.Server, relay: AuthorityRelay) {
    this.socket = socket;
    this.#inner = inner;
    this.#server = server;
    this.#relay = relay;
  }

  static async listen(socket: string, deps: CriDeps): Promise<CriServer> {
    const protos = loadProtos();
    const server = new grpc.Server({ 'grpc.max_receive_message_length': 16 * 1024 * 1024, 'grpc.max_send_message_length': 32 * 1024 * 1024 });
    const log = deps.logger.child({ component: 'cri' });
    const runtime = serveService(protos.runtimeService, {
      ...versionStatusHandlers(deps), ...sandboxHandlers(deps), ...containerHandlers(deps),
      ...execHandlers(deps), ...statsHandlers(deps), ...eventHandlers(deps),
    }, log, deps.observeRpc);
    const image = serveService(protos.imageService, imageHandlers(deps), log, deps.observeRpc);
    const ext = serveService(protos.bulkheadService, bulkheadHandlers(deps), log, deps.observeRpc);
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
    // gRPC listens on an inner socket; the public one is a relay that fixes `:authority` for
    // older Go clients (see src/wire/authority-relay.ts). Both are made 0600 once bound. Until then
    // neither is connectable by another user: the daemon's umask keeps group and others' write bits
    // off (startDaemon), and connect() needs write permission on the socket. (The process-wide umask
    // was once tightened around these binds: the binds are asynchronous, so whatever the daemon made
    // meanwhile — a warm pool's first pause rootfs — got mode 0600 too, and every pod after failed
    // to enter it.)
    const inner = `${socket}.grpc`;
    await unlink(inner).catch(() => {});
    await new Promise<void>((resolve, reject) => {
      server.bindAsync(`unix://${inner}`, grpc.ServerCredentials.createInsecure(), (err) => {
        if (err) reject(new InternalError(`cannot listen on ${inner}: ${err.message}`, { cause: err })); else resolve();
      });
    });
    const relay = await listenAuthorityRelay(socket, inner, log).catch((err: unknown) => {
      server.forceShutdown();
      throw new InternalError(`cannot listen on ${socket}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    });
    await chmod(inner, 0o600);
    await chmod(socket, 0o600);
    log.info('CRI server listening', { socket });
    return new CriServer(socket, inner, server, relay);
  }

  /** Stops serving: waits up to `graceMs` for calls in flight, then cancels the rest. */
  async close(graceMs = 2000): Promise<void> {
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => { this.#server.forceShutdown(); resolve(); }, graceMs);
      this.#server.tryShutdown(() => { clearTimeout(t); resolve(); });
    });
    await this.#relay.close();
    await unlink(this.socket).catch(() => {});
    await unlink(this.#inner).catch(() => {});
  }
}
