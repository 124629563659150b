//go:build linux && cgo

package native

/*
#include <features.h>
#ifdef __GLIBC__
#include <malloc.h>
static int lorakit_trim_heap(void) { return malloc_trim(0); }
#else
static int lorakit_trim_heap(void) { return 0; }
#endif
*/
import "C"

// trimHeap hands the C heap's free pages back to the system. A retired generation frees its weights
// into whichever malloc arenas the loading threads used; without a trim glibc keeps those pages, and a
// server that reloads often would grow by a model's size per arena.
func trimHeap() { C.lorakit_trim_heap() }
