// Version, Status, RuntimeConfig, UpdateRuntimeConfig.
import { InvalidArgumentError } from '../errors.ts';
import type { CriDeps } from './deps.ts';
import type { RuntimeConfigResponse, StatusResponse, VersionResponse } from '../api/cri-messages.ts';
import { unary, type Impl } from './status.ts';

/** The CRI API version this server speaks (VersionResponse.runtime_api_version). */
export const CRI_API_VERSION = 'v1';

export function versionStatusHandlers(deps: CriDeps): Record<string, Impl> {
  return {
    Version: unary(async (): Promise<VersionResponse> => ({
      version: '0.1.0',
      runtimeName: 'bulkhead',
      runtimeVersion: deps.info.version,
      runtimeApiVersion: CRI_API_VERSION,
    })),

    Status: unary(async (req: { verbose?: boolean }): Promise<StatusResponse> => {
      const handlers = await deps.handlers.statuses({ wait: false });
      const def = handlers.find((h) => h.isDefault);
      const runtimeReady = def?.probe.available === true;
      const net = deps.networkStatus ? await deps.networkStatus() : { ready: true };
      const info: Record<string, string> = {};
      if (req.verbose) {
        info.handlers = JSON.stringify(handlers.map((h) => ({
          name: h.name, backend: h.backend, isolation: h.isolation, default: h.isDefault,
          available: h.probe.available, reason: h.probe.reason ?? '', details: h.probe.details,
        })));
        info.config = JSON.stringify({ ...deps.info, podCidr: deps.state.podCidr });
      }
      return {
        status: {
          conditions: [
            {
              type: 'RuntimeReady',
              status: runtimeReady,
              reason: runtimeReady ? '' : 'DefaultHandlerUnavailable',
              message: runtimeReady ? '' : `default runtime handler "${deps.handlers.defaultHandler}" is unavailable: ${def?.probe.reason ?? 'not configured'}`,
            },
            { type: 'NetworkReady', status: net.ready, reason: net.ready ? '' : (net.reason ?? 'NetworkNotReady'), message: net.message ?? '' },
          ],
        },
        info,
        runtimeHandlers: handlers.filter((h) => h.probe.available).map((h) => ({
          name: h.name,
          features: { recursiveReadOnlyMounts: false, userNamespaces: false },
        })),
        features: { supplementalGroupsPolicy: false },
      };
    }),

    RuntimeConfig: unary(async (): Promise<RuntimeConfigResponse> => ({ linux: { cgroupDriver: 'CGROUPFS' } })),

    UpdateRuntimeConfig: unary(async (req: { runtimeConfig?: { networkConfig?: { podCidr?: string } | null } | null }) => {
      const cidr = req.runtimeConfig?.networkConfig?.podCidr ?? '';
      if (cidr === '') return {};
      if (!isCidrList(cidr)) throw new InvalidArgumentError(`pod CIDR "${cidr.slice(0, 100)}" is not a CIDR (or comma-separated CIDRs)`);
      deps.state.podCidr = cidr;
      await deps.onPodCidr?.(cidr);
      return {};
    }),
  };
}

function isCidrList(s: string): boolean {
  return s.split(',').every((part) => {
    const m = /^([0-9a-fA-F:.]+)\/(\d{1,3})$/.exec(part.trim());
    if (!m) return false;
    const bits = Number(m[2]);
    return m[1]!.includes(':') ? bits <= 128 : bits <= 32 && m[1]!.split('.').length === 4 && m[1]!.split('.').every((o) => Number(o) <= 255);
  });
}
