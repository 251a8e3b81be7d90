/*
 * ipc-probe: the pod suite's witness of a shared IPC namespace (busybox has no ipcmk).
 *   ipc-probe make KEY   creates a System V shared memory segment with KEY (exit 0)
 *   ipc-probe find KEY   exit 0 when a segment with KEY exists in this IPC namespace, else 1
 *   ipc-probe drop KEY   removes it
 * Built static by test/runtime/pod-suite.ts and put into a test image.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: ipc-probe make|find|drop KEY\n"); return 2; }
  key_t key = (key_t)strtol(argv[2], NULL, 0);
  int make = strcmp(argv[1], "make") == 0;
  int id = shmget(key, 4096, make ? IPC_CREAT | IPC_EXCL | 0600 : 0);
  if (id < 0) { perror("shmget"); return 1; }
  if (strcmp(argv[1], "drop") == 0 && shmctl(id, IPC_RMID, NULL) != 0) { perror("shmctl"); return 1; }
  printf("%d\n", id);
  return 0;
}
