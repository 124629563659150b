package router

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Texts is a JSON list of strings in a request. Unlike []string it refuses null elements, which
// encoding/json would otherwise turn into empty texts that the model silently classifies.
type Texts []string

// nullTextError is the decode error of a null element; decodeJSON answers it as invalid_request.
type nullTextError struct{ index int }

func (e *nullTextError) Error() string {
	return fmt.Sprintf("text %d is null: every text must be a string", e.index)
}

// UnmarshalJSON decodes a list of strings; a null list leaves t nil (the handlers then report it missing).
func (t *Texts) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	var items []*string
	if err := json.Unmarshal(data, &items); err != nil {
		return err
	}
	out := make(Texts, len(items))
	for i, s := range items {
		if s == nil {
			return &nullTextError{index: i}
		}
		out[i] = *s
	}
	*t = out
	return nil
}

// nullTextAPIError is the answer for err when it reports a null text, nil otherwise.
func nullTextAPIError(err error) *apiError {
	var null *nullTextError
	if errors.As(err, &null) {
		return errorf(http.StatusBadRequest, codeInvalidRequest, "%v", null)
	}
	return nil
}
