//go:build !lorakit_static && !lorakit_nopkgconfig

package lorakit

// The default: whatever lorakit.pc on PKG_CONFIG_PATH describes (the shared library when installed by
// `make install-lib`; the repository's own build points it at the static archive).

// #cgo pkg-config: lorakit
import "C"
