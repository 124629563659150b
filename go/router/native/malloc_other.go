//go:build !(linux && cgo)

package native

// trimHeap has nothing to do where the C heap is not glibc's.
func trimHeap() {}
