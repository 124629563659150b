//go:build lorakit_nopkgconfig

package lorakit

// -tags lorakit_nopkgconfig: no cgo directive at all, so builds without pkg-config work; the caller sets
// CGO_CFLAGS="-I<prefix>/include" and CGO_LDFLAGS="-L<prefix>/lib -llorakit" (or the archive's path plus
// -lm -ldl -lpthread for a static build).

import "C"
