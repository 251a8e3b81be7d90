/** Kept only until the engine's split lands (issue #14): the engine imports cgroupMode from here; src/cgroup/ owns it. */
export { cgroupMode } from '../cgroup/hierarchy.ts';
