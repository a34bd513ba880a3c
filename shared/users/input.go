package users

import (
	"errors"
	"fmt"
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

// DecodeInput reads a JSON Input strictly (httpserver.DecodeJSON), then validates it.
// Every refusal is a 4xx that says why.
func DecodeInput(c echo.Context) (Input, error) {
	var in Input
	if err := httpserver.DecodeJSON(c, &in, "a JSON object with username and email", "username", "email"); err != nil {
		return in, err
	}
	if err := in.Validate(); err != nil {
		return in, echo.NewHTTPError(http.StatusUnprocessableEntity, err.Error())
	}
	return in, nil
}
