// RunPodSandbox's non-CRI inputs (policy decision, network override, signal) are one declared type,
// RunPodOptions, shared by the engine and the CRI server's seam (cri/deps.ts CriEngine). This file
// is checked by tsc (npx tsc -p tsconfig.json, run by .ci/run): a seam that declares its own copy,
// or an option the engine does not take, fails the type-check. The runtime test only records it.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import type { CriEngine } from '../../src/cri/deps.ts';
import type { Engine, RunPodOptions } from '../../src/engine/engine.ts';

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false;

// the seam names the engine's type, and the engine takes exactly it
const seamTakesRunPodOptions: Equal<Parameters<CriEngine['runPodSandbox']>[2], RunPodOptions | undefined> = true;
const engineTakesRunPodOptions: Equal<Parameters<Engine['runPodSandbox']>[2], RunPodOptions | undefined> = true;
// the Engine is the CRI server's engine as it is (no adapter)
const engineIsCriEngine: (e: Engine) => CriEngine = (e) => e;

// @ts-expect-error the host network comes from the pod's NODE namespace option (judged by the policy), never from an override
const hostOverride: RunPodOptions = { networkMode: 'host' };
// @ts-expect-error 'bridge' is what a pod gets by default; it is not an override either
const bridgeOverride: RunPodOptions = { networkMode: 'bridge' };
// @ts-expect-error a misspelt option is refused, not silently ignored
const misspelt: RunPodOptions = { netMode: 'none' };

it('RunPodOptions is one declared type for the engine and the CRI seam (checked by tsc)', () => {
  assert.equal(seamTakesRunPodOptions, true);
  assert.equal(engineTakesRunPodOptions, true);
  void [engineIsCriEngine, hostOverride, bridgeOverride, misspelt];
});
