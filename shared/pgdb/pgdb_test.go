package pgdb

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
)

func TestErrorClassification(t *testing.T) {
	assert.True(t, IsNotFound(fmt.Errorf("get: %w", pgx.ErrNoRows)))
	assert.False(t, IsUnavailable(pgx.ErrNoRows), "a missing row is an answer, not an outage")

	for _, err := range []error{
		context.DeadlineExceeded,
		errors.New("dial tcp: lookup postgres: no such host"),
		&pgconn.PgError{Code: "57P01"}, // admin shutdown
		&pgconn.PgError{Code: "57014"}, // statement timeout
		&pgconn.PgError{Code: "53300"}, // too many connections
		&pgconn.PgError{Code: "08006"}, // connection failure
	} {
		assert.True(t, IsUnavailable(err), "%v", err)
	}
	assert.False(t, IsUnavailable(&pgconn.PgError{Code: "42601"}), "a syntax error is a bug, not an outage")
}
