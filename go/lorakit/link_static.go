//go:build lorakit_static && !lorakit_nopkgconfig

package lorakit

// -tags lorakit_static: the static archive, so the program needs no liblorakit.so at run time.

// #cgo pkg-config: lorakit-static
import "C"
