package lorakit

/*
#include "lorakit.h"
*/
import "C"

import (
	"errors"
	"fmt"
)

// Sentinel errors, one per native error category. Returned errors wrap them with a detail message.
var (
	ErrIO          = errors.New("lorakit: io error")
	ErrFormat      = errors.New("lorakit: format error")
	ErrConfig      = errors.New("lorakit: config error")
	ErrShape       = errors.New("lorakit: shape error")
	ErrUnsupported = errors.New("lorakit: unsupported")
	ErrInput       = errors.New("lorakit: invalid input")
	ErrCompute     = errors.New("lorakit: compute error")
	ErrInternal    = errors.New("lorakit: internal error")
	ErrClosed      = errors.New("lorakit: use of closed model")
)

// sentinelFor maps a C status code to its sentinel error.
func sentinelFor(status C.LorakitStatus) error {
	switch status {
	case C.LORAKIT_IO:
		return ErrIO
	case C.LORAKIT_FORMAT:
		return ErrFormat
	case C.LORAKIT_CONFIG:
		return ErrConfig
	case C.LORAKIT_SHAPE:
		return ErrShape
	case C.LORAKIT_UNSUPPORTED:
		return ErrUnsupported
	case C.LORAKIT_INPUT:
		return ErrInput
	case C.LORAKIT_COMPUTE:
		return ErrCompute
	default:
		return ErrInternal
	}
}

// statusError turns a non-OK status and its owned C message into a wrapped sentinel, freeing the message.
func statusError(status C.LorakitStatus, message *C.char) error {
	if status == C.LORAKIT_OK {
		C.lorakit_string_free(message)
		return nil
	}
	detail := "no message"
	if message != nil {
		detail = C.GoString(message)
		C.lorakit_string_free(message)
	}
	if status < C.LORAKIT_OK || status > C.LORAKIT_INTERNAL {
		detail = fmt.Sprintf("unknown status %d: %s", int(status), detail)
	}
	return fmt.Errorf("%w: %s", sentinelFor(status), detail)
}

func inputError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInput, fmt.Sprintf(format, args...))
}
