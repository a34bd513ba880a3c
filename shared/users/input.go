package users

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/mail"
	"regexp"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/sysdesign-course/course/shared/httpserver"
)

// Input is the body POST /users and PUT /users/:id take. Both fields are required; the
// limits match the table's CHECK constraints, so Postgres never has to refuse a row.
type Input struct {
	Username string `json:"username"`
	Email    string `json:"email"`
}

// Limits on input.
const (
	MaxUsername = 64
	MaxEmail    = 254
	maxBody     = 4 << 10
)

var usernameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// Validate says what is wrong with in, in words a client can act on, or nil.
func (in Input) Validate() error {
	var problems []string
	switch {
	case in.Username == "":
		problems = append(problems, "username is required")
	case len(in.Username) > MaxUsername:
		problems = append(problems, fmt.Sprintf("username must be at most %d characters", MaxUsername))
	case !usernameRE.MatchString(in.Username):
		problems = append(problems, "username may hold only letters, digits, '.', '_' and '-'")
	}
	switch {
	case in.Email == "":
		problems = append(problems, "email is required")
	case len(in.Email) > MaxEmail:
		problems = append(problems, fmt.Sprintf("email must be at most %d characters", MaxEmail))
	default:
		if a, err := mail.ParseAddress(in.Email); err != nil || a.Address != in.Email || a.Name != "" {
			problems = append(problems, "email must be a plain address such as ada@example.com")
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// DecodeInput reads a JSON Input strictly: one object of at most 4 KiB, no unknown
// fields, strings where strings belong. Every refusal is a 4xx that says why.
func DecodeInput(c echo.Context) (Input, error) {
	var in Input
	if ct := c.Request().Header.Get(echo.HeaderContentType); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != echo.MIMEApplicationJSON {
			return in, echo.NewHTTPError(http.StatusUnsupportedMediaType, "send JSON with Content-Type: application/json, got "+ct)
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, maxBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return in, echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("body must be at most %d bytes", maxBody))
	case err != nil:
		return in, httpserver.BadRequest("could not read the body")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return in, httpserver.BadRequest(jsonProblem(err))
	}
	// encoding/json matches field names regardless of case ("Username" fills Username);
	// the API's names are exact.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body[:dec.InputOffset()], &fields); err == nil {
		for k := range fields {
			if k != "username" && k != "email" {
				return in, httpserver.BadRequest(fmt.Sprintf("unknown field %q: only username and email are accepted", k))
			}
		}
	}
	// Only JSON whitespace may follow: dec.More() would let a trailing '}' or ']' through.
	if len(bytes.Trim(body[dec.InputOffset():], " \t\r\n")) > 0 {
		return in, httpserver.BadRequest("body must hold exactly one JSON object")
	}
	if err := in.Validate(); err != nil {
		return in, echo.NewHTTPError(http.StatusUnprocessableEntity, err.Error())
	}
	return in, nil
}

// jsonProblem explains a decoding error without echoing Go's internals.
func jsonProblem(err error) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return fmt.Sprintf("%s must be a string, got a JSON %s", typeErr.Field, typeErr.Value)
	case errors.As(err, &typeErr):
		return "body must be a JSON object with username and email"
	case errors.As(err, &syntaxErr), errors.Is(err, io.ErrUnexpectedEOF):
		return "body is not valid JSON"
	case errors.Is(err, io.EOF):
		return "body is empty: send a JSON object with username and email"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ") + ": only username and email are accepted"
	}
	return "body is not a JSON object with username and email"
}
