/** Where the CNI plugins and their configs live (`[cni]` in the daemon config, composed by daemon/config.ts). */
export interface CniConfig {
  confDir: string;
  binDirs: string[];
  cacheDir: string;
}
