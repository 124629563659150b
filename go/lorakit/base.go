package lorakit

/*
#include <stdlib.h>
#include "lorakit.h"
*/
import "C"

import "unsafe"

// BasesEnv is the search path (separated like PATH) that ResolveBase tries when a recorded base path is gone.
const BasesEnv = "LORAKIT_BASES"

// ResolveBase returns the base directory of the adapter model directory dir, by the core's rule: the recorded
// base.path when it exists, else the directory on LORAKIT_BASES whose weights have the recorded sha256 (tried
// as the root itself, root/<id>, root/<last part of id>, root/<last part of base.path>). ErrIO when none does.
func ResolveBase(dir string) (string, error) {
	cDir, err := cString(dir, "model_dir")
	if err != nil {
		return "", err
	}
	defer C.free(unsafe.Pointer(cDir))
	var out, message *C.char
	if err := statusError(C.lorakit_resolve_base(cDir, &out, &message), message); err != nil {
		return "", err
	}
	defer C.lorakit_string_free(out)
	return C.GoString(out), nil
}
