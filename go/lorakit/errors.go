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

// Status codes of the C ABI, as Go ints so the mapping below needs no cgo types.
const (
	statusOK          = int(C.LORAKIT_OK)
	statusIO          = int(C.LORAKIT_IO)
	statusFormat      = int(C.LORAKIT_FORMAT)
	statusConfig      = int(C.LORAKIT_CONFIG)
	statusShape       = int(C.LORAKIT_SHAPE)
	statusUnsupported = int(C.LORAKIT_UNSUPPORTED)
	statusInput       = int(C.LORAKIT_INPUT)
	statusCompute     = int(C.LORAKIT_COMPUTE)
	statusInternal    = int(C.LORAKIT_INTERNAL)
)

var sentinels = map[int]error{
	statusIO:          ErrIO,
	statusFormat:      ErrFormat,
	statusConfig:      ErrConfig,
	statusShape:       ErrShape,
	statusUnsupported: ErrUnsupported,
	statusInput:       ErrInput,
	statusCompute:     ErrCompute,
	statusInternal:    ErrInternal,
}

// errorFor wraps the sentinel of a status code with its detail message; nil for OK. An unknown code is
// reported as internal, never dropped.
func errorFor(status int, detail string) error {
	if status == statusOK {
		return nil
	}
	sentinel, known := sentinels[status]
	if !known {
		sentinel, detail = ErrInternal, fmt.Sprintf("unknown status %d: %s", status, detail)
	}
	return fmt.Errorf("%w: %s", sentinel, detail)
}

// statusError converts a C status and its owned message (freed here) into an error.
func statusError(status C.LorakitStatus, message *C.char) error {
	detail := "no message"
	if message != nil {
		detail = C.GoString(message)
		C.lorakit_string_free(message)
	}
	return errorFor(int(status), detail)
}

func inputError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInput, fmt.Sprintf(format, args...))
}
