package httpserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// MaxJSONBody is the largest request body DecodeJSON reads: the course's bodies are small
// objects, so anything bigger is a mistake or an attack.
const MaxJSONBody = 4 << 10

// DecodeJSON reads the request body into v strictly: a JSON Content-Type (or none), at most
// MaxJSONBody bytes, exactly one object, only the exact field names given (encoding/json
// alone would accept "Username" for "username" and ignore unknown ones), and values of the
// fields' types. Every refusal is a 4xx whose message says what is accepted; shape
// describes the body for those messages ("a JSON object with n").
func DecodeJSON(c echo.Context, v any, shape string, fields ...string) error {
	if ct := c.Request().Header.Get(echo.HeaderContentType); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != echo.MIMEApplicationJSON {
			return echo.NewHTTPError(http.StatusUnsupportedMediaType, "send JSON with Content-Type: application/json, got "+ct)
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, MaxJSONBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("body must be at most %d bytes", MaxJSONBody))
	case err != nil:
		return BadRequest("could not read the body")
	}
	accepted := "only " + strings.Join(fields, " and ") + " are accepted"
	if len(fields) == 1 {
		accepted = "only " + fields[0] + " is accepted"
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return BadRequest(jsonProblem(err, shape, accepted))
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(body[:dec.InputOffset()], &got); err == nil {
		for k := range got {
			known := false
			for _, f := range fields {
				known = known || k == f
			}
			if !known {
				return BadRequest(fmt.Sprintf("unknown field %q: %s", k, accepted))
			}
		}
	}
	// Only JSON whitespace may follow: dec.More() would let a trailing '}' or ']' through.
	if len(bytes.Trim(body[dec.InputOffset():], " \t\r\n")) > 0 {
		return BadRequest("body must hold exactly one JSON object")
	}
	return nil
}

// jsonProblem explains a decoding error without echoing Go's internals.
func jsonProblem(err error, shape, accepted string) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return fmt.Sprintf("%s must be %s, got a JSON %s", typeErr.Field, jsonKind(typeErr.Type.Kind().String()), typeErr.Value)
	case errors.As(err, &typeErr):
		return "body must be " + shape
	case errors.As(err, &syntaxErr), errors.Is(err, io.ErrUnexpectedEOF):
		return "body is not valid JSON"
	case errors.Is(err, io.EOF):
		return "body is empty: send " + shape
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ") + ": " + accepted
	}
	return "body is not " + shape
}

// jsonKind names a Go kind the way a JSON client thinks of it.
func jsonKind(kind string) string {
	switch {
	case kind == "string":
		return "a string"
	case strings.HasPrefix(kind, "int"), strings.HasPrefix(kind, "uint"):
		return "an integer"
	case strings.HasPrefix(kind, "float"):
		return "a number"
	case kind == "bool":
		return "true or false"
	}
	return "a JSON " + kind
}
